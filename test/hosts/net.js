'use strict';
/**
 * The network of test/hosts/run.js: three network namespaces, "lb" (HAProxy and the load
 * generator) joined to "a" and "b" (one herdless each) by a veth pair each. Every address and
 * interface lives inside these namespaces, so docs/haproxy.cfg's 10.0.0.11/10.0.0.12 can be
 * used as written and concurrent runs cannot clash. Names carry the harness's pid so that a
 * later run can tell a stale set (its harness is gone) from a live one and sweep it.
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const crypto = require('node:crypto');

const PREFIX = 'herdless-hosts-';
const LB_ADDR = '10.0.0.1';
const HOSTS = [
  { name: 'web1', side: 'a', addr: '10.0.0.11' },
  { name: 'web2', side: 'b', addr: '10.0.0.12' },
];

function ip(...args) {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function listNamespaces() {
  return ip('netns', 'list')
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter(Boolean);
}

function pidsIn(ns) {
  try {
    return ip('netns', 'pids', ns).split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // already gone
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** SIGKILL everything inside `ns`, wait for it to go, delete it (its veths go with it). */
function destroy(ns) {
  for (let i = 0; i < 50; i++) {
    const pids = pidsIn(ns);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    sleepSync(40);
  }
  try {
    ip('netns', 'del', ns);
  } catch {
    // never created, or deleted by someone else
  }
}

/** Namespaces left by runs whose harness died without cleaning up (SIGKILL, power loss). */
function sweepStale() {
  const swept = [];
  for (const ns of listNamespaces()) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(ns);
    if (!m) continue;
    const owner = Number(m[1]);
    let ours = false;
    try {
      ours = alive(owner) && fs.readFileSync(`/proc/${owner}/cmdline`, 'utf8').includes('test/hosts/run.js');
    } catch {
      ours = false;
    }
    if (ours && owner !== process.pid) continue; // a concurrent run's
    destroy(ns);
    swept.push(ns);
  }
  return swept;
}

/** Builds lb <-> a and lb <-> b; returns the namespace names. */
function create() {
  const id = `${PREFIX}${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
  const net = { id, lb: `${id}-lb`, hosts: HOSTS.map((h) => ({ ...h, ns: `${id}-${h.side}` })) };
  created.push(net.lb, ...net.hosts.map((h) => h.ns));
  ip('netns', 'add', net.lb);
  ip('-n', net.lb, 'link', 'set', 'lo', 'up');
  for (const h of net.hosts) {
    ip('netns', 'add', h.ns);
    // Created straight inside the namespaces: the names never exist in the root namespace.
    ip('link', 'add', 'eth0', 'netns', h.ns, 'type', 'veth', 'peer', 'name', `to-${h.side}`, 'netns', net.lb);
    ip('-n', h.ns, 'link', 'set', 'lo', 'up');
    ip('-n', h.ns, 'addr', 'add', `${h.addr}/32`, 'dev', 'eth0');
    ip('-n', h.ns, 'link', 'set', 'eth0', 'up');
    ip('-n', h.ns, 'route', 'add', `${LB_ADDR}/32`, 'dev', 'eth0');
    ip('-n', net.lb, 'addr', 'add', `${LB_ADDR}/32`, 'dev', `to-${h.side}`);
    ip('-n', net.lb, 'link', 'set', `to-${h.side}`, 'up');
    ip('-n', net.lb, 'route', 'add', `${h.addr}/32`, 'dev', `to-${h.side}`);
  }
  return net;
}

const created = [];

/** Idempotent and synchronous, so that exit and signal handlers can call it too. */
function destroyAll() {
  while (created.length > 0) destroy(created.pop());
}

module.exports = { PREFIX, LB_ADDR, create, destroyAll, sweepStale, pidsIn, alive, listNamespaces };
