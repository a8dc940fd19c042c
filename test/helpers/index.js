'use strict';
// Everything the tests share: require('./helpers').
module.exports = {
  ...require('./wait'),
  ...require('./http'),
  ...require('./proc'),
  ...require('./cert'),
};
