'use strict';
// The bench app as users write theirs: it calls listen() itself, on $PORT.
const http = require('node:http');
const hello = require('./hello');

http.createServer(hello).listen(Number(process.env.PORT), '127.0.0.1');
