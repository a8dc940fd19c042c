'use strict';
// `node` + cluster as an unmodified app runs under it: a primary forking N workers that run
// the app file as their main module. Usage: node cluster-main.js <n> <app>
const cluster = require('node:cluster');

const [n, app] = process.argv.slice(2);
cluster.setupPrimary({ exec: app });
for (let i = 0; i < Number(n); i++) cluster.fork();
