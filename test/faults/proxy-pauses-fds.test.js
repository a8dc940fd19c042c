'use strict';
// Issue 17, item 3, with fd exhaustion in the mix: a primary under `ulimit -n 256` with
// proxyProtocol. Whatever the order in which its fds run out (accept says EMFILE: the thread
// pauses) and its PROXY reader fills (the listeners are disarmed), once both have passed a
// new request is answered at once: no pause may leave a listener disarmed.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const net = require('node:net');
const { sleep, waitFor } = require('../helpers');

const fixture = require.resolve('../fixtures/primary-lowfd.js');
const header = (n) => `PROXY TCP4 203.0.113.${n} 198.51.100.1 ${40000 + n} 80\r\n`;
const REQUEST = 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';

async function startPrimary(env) {
  const child = spawn('bash', ['-c', `ulimit -n 256 && exec "${process.execPath}" "${fixture}"`], {
    env: { ...process.env, MIN: '1', ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const [first] = await once(child, 'message');
  const ask = async (cmd) => {
    const reply = once(child, 'message');
    child.send({ cmd });
    return (await reply)[0];
  };
  return { child, ask, ...first };
}

function exchange(port, text, sockets) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    sockets.push(s);
    const chunks = [];
    s.on('data', (c) => chunks.push(c));
    s.on('error', () => {});
    s.on('close', () => resolve(Buffer.concat(chunks).toString()));
    if (text) s.write(text);
  });
}

async function answeredWithin(port, ms, sockets) {
  const r = await Promise.race([exchange(port, header(99) + REQUEST, sockets), sleep(ms).then(() => null)]);
  assert.ok(r !== null && r.startsWith('HTTP/1.1 200'), `a new request was not answered within ${ms} ms`);
}

describe('fault: fd exhaustion and a full PROXY reader, in either order, leave the listeners armed', function () {
  this.timeout(40_000);
  let p;
  const sockets = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    if (p && p.child.exitCode === null) {
      p.child.kill('SIGKILL');
      await once(p.child, 'exit');
    }
    p = undefined;
  });
  const options = JSON.stringify({ proxyProtocol: true, proxyTimeout: 800, listen: { port: 0, host: '127.0.0.1', backlog: 64 } });

  it('fds run out first (EMFILE pause), then the reader fills, then its peers time out', async () => {
    p = await startPrimary({ EXTRA_OPTIONS: options });
    assert.ok(p.filled > 0);
    const silent = Array.from({ length: 70 }, () => exchange(p.port, '', sockets));
    const queued = exchange(p.port, header(1) + REQUEST, sockets);
    await waitFor(async () => (await p.ask('stats')).stats.dispatcher.fdPauses > 0, 5000, 20, 'an fd pause');
    await p.ask('release');
    // The backlog (64) held what the reader can take (64): full, and disarmed at the next one.
    await waitFor(async () => {
      const { proxy } = (await p.ask('stats')).stats;
      return proxy.waiting === 64 || proxy.fullPauses > 0;
    }, 5000, 5, 'the reader full');
    await Promise.all(silent);
    assert.ok((await queued).startsWith('HTTP/1.1 200'), 'the connection queued behind them was not served');
    await answeredWithin(p.port, 1500, sockets);
  });

  it('the reader fills first, then fds run out, then its peers time out (freeing fds)', async () => {
    p = await startPrimary({ EXTRA_OPTIONS: options, NO_FILL: '1' });
    const silent = Array.from({ length: 66 }, () => exchange(p.port, '', sockets));
    await waitFor(async () => (await p.ask('stats')).stats.proxy.fullPauses > 0, 5000, 20, 'the reader full');
    assert.ok((await p.ask('fill')).filled > 0);
    const queued = exchange(p.port, header(2) + REQUEST, sockets);
    await Promise.all(silent);
    await p.ask('release');
    assert.ok((await queued).startsWith('HTTP/1.1 200'), 'the connection queued behind them was not served');
    await answeredWithin(p.port, 1500, sockets);
    const st = (await p.ask('stats')).stats;
    assert.equal(st.proxy.timedOut, 66);
  });
});
