'use strict';
// The same app as hello.js, started as users start theirs: it calls listen() itself
// (herdless routes that to the primary). Scenario "app-listen" compares the two.
require('node:http').createServer(require('./hello')).listen(0, '127.0.0.1');
