'use strict';
// Issue 17, item 1: with proxyProtocol, a client that reached the port directly could name any
// client it liked (req.socket.remoteAddress, Express req.ip, the client-ip route). proxyFrom
// says which peers may: others must still send a header, which is read and ignored (the
// connection keeps its own address) and counted as proxy.untrusted. Real sockets from
// different loopback addresses (127.0.0.1, 127.0.0.2, ::1) play the proxy and the intruder.
const assert = require('node:assert/strict');
const net = require('node:net');
const { Dispatcher } = require('../..');
const { parseCli } = require('../../lib/cli/args');
const { get } = require('../helpers');

const app = require.resolve('../fixtures/proxy-peer.js');
const REQUEST = 'GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';

function ask(port, text, { host = '127.0.0.1', localAddress } = {}) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host, localAddress });
    const chunks = [];
    s.on('data', (c) => chunks.push(c));
    s.on('error', () => {}); // a connection closed for its header may be reset: 'close' follows
    s.on('close', () => {
      const raw = Buffer.concat(chunks).toString();
      resolve(raw.startsWith('HTTP/1.1 200') ? JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) : { raw });
    });
    s.write(text);
  });
}
const header = (addr) => `PROXY TCP4 ${addr} 198.51.100.1 40001 443\r\n${REQUEST}`;

describe('proxyFrom: only trusted peers may name the client (real sockets)', function () {
  this.timeout(30_000);
  let d;
  afterEach(async () => {
    await d?.close({ timeout: 2000 });
    d = undefined;
  });
  const start = async (opts) => {
    d = await Dispatcher.start({ app, listen: { port: 0, host: '127.0.0.1' }, min: 2, max: 2, proxyProtocol: true, ...opts });
    return d.address().port;
  };

  it('default (loopback): a loopback proxy names the client', async () => {
    const port = await start({});
    const a = await ask(port, header('203.0.113.7'));
    assert.equal(a.remoteAddress, '203.0.113.7');
    assert.equal(d.stats().proxy.untrusted, 0);
  });

  it('a peer outside proxyFrom: its header is required and consumed, but ignored; counted, and in /metrics', async () => {
    const port = await start({ proxyFrom: '127.0.0.2', metrics: { port: 0, host: '127.0.0.1' } });
    const trusted = await ask(port, header('203.0.113.7'), { localAddress: '127.0.0.2' });
    assert.equal(trusted.remoteAddress, '203.0.113.7');
    const spoof = await ask(port, header('6.6.6.6'), { localAddress: '127.0.0.1' });
    assert.equal(spoof.remoteAddress, '127.0.0.1', 'an untrusted peer chose its own address');
    assert.equal(spoof.presented, false, 'the socket answers for itself');
    assert.equal(spoof.url, '/hello', 'the header was consumed, not passed to the app');
    // Still required from everyone: no header, no service.
    const bare = await ask(port, REQUEST, { localAddress: '127.0.0.1' });
    assert.equal(bare.raw, '');
    const p = d.stats().proxy;
    assert.deepEqual({ accepted: p.accepted, untrusted: p.untrusted, malformed: p.malformed }, { accepted: 2, untrusted: 1, malformed: 1 });
    const text = (await get(d.metricsAddress().port, '/metrics')).text;
    assert.match(text, /herdless_proxy_headers_untrusted_total 1/);
  });

  it('CIDR ranges: 127.0.0.0/31 trusts .0 and .1, not .2', async () => {
    const port = await start({ proxyFrom: ['127.0.0.0/31'] });
    assert.equal((await ask(port, header('203.0.113.1'), { localAddress: '127.0.0.1' })).remoteAddress, '203.0.113.1');
    assert.equal((await ask(port, header('203.0.113.2'), { localAddress: '127.0.0.2' })).remoteAddress, '127.0.0.2');
    assert.equal(d.stats().proxy.untrusted, 1);
  });

  it("'*' trusts every peer; an empty intersection trusts none", async () => {
    let port = await start({ proxyFrom: '*' });
    assert.equal((await ask(port, header('203.0.113.9'), { localAddress: '127.0.0.3' })).remoteAddress, '203.0.113.9');
    await d.close();
    port = await start({ proxyFrom: ['10.0.0.0/8', 'fd00::/8'] });
    assert.equal((await ask(port, header('203.0.113.9'))).remoteAddress, '127.0.0.1');
    assert.equal(d.stats().proxy.untrusted, 1);
  });

  it('IPv6 peers: ::1 is trusted by default, and a v6 rule does not match IPv4 peers', async () => {
    d = await Dispatcher.start({ app, listen: [{ port: 0, host: '::1' }], min: 1, max: 1, proxyProtocol: true });
    const port = d.address().port;
    assert.equal((await ask(port, header('203.0.113.6'), { host: '::1' })).remoteAddress, '203.0.113.6');
    await d.close();
    d = await Dispatcher.start({ app, listen: [{ port: 0, host: '::1' }], min: 1, max: 1, proxyProtocol: true, proxyFrom: '::2' });
    assert.equal((await ask(d.address().port, header('203.0.113.6'), { host: '::1' })).remoteAddress, '::1');
  });

  it('a dual-stack listener (::): an IPv4 peer, seen as ::ffff:a.b.c.d, matches IPv4 rules', async () => {
    d = await Dispatcher.start({ app, listen: [{ port: 0, host: '::' }], min: 1, max: 1, proxyProtocol: true, proxyFrom: '127.0.0.2/32' });
    const port = d.address().port;
    assert.equal((await ask(port, header('203.0.113.5'), { localAddress: '127.0.0.2' })).remoteAddress, '203.0.113.5');
    assert.equal((await ask(port, header('203.0.113.5'), { localAddress: '127.0.0.3' })).remoteAddress, '::ffff:127.0.0.3');
    assert.equal(d.stats().proxy.untrusted, 1);
  });

  it("route: 'client-ip' follows the real peer when its header is not trusted", async () => {
    const port = await start({ min: 4, max: 4, route: 'client-ip', proxyFrom: '127.0.0.2' });
    const pids = new Set();
    for (let i = 0; i < 12; i++) pids.add((await ask(port, header(`198.18.0.${i + 1}`), { localAddress: '127.0.0.1' })).pid);
    assert.equal(pids.size, 1, 'an untrusted peer steered its connections by the addresses it named');
    const named = new Set();
    for (let i = 0; i < 12; i++) named.add((await ask(port, header(`198.18.0.${i + 1}`), { localAddress: '127.0.0.2' })).pid);
    assert.ok(named.size > 1, 'a trusted proxy\'s clients are spread by the address each header names');
  });

  it('options and --proxy-from: validated, named in the error', async () => {
    for (const bad of ['nope', '10.0.0.0/33', 'fd00::/129', '', ['*', '10.0.0.1'], [], 5, '1.2.3.4/x']) {
      await assert.rejects(Dispatcher.start({ app, listen: { port: 0, host: '127.0.0.1' }, proxyProtocol: true, proxyFrom: bad }), { code: 'ERR_HERDLESS_INVALID_OPTION', option: 'proxyFrom' }, JSON.stringify(bad));
    }
    assert.equal(parseCli(['--proxy-protocol', '--proxy-from', '10.0.0.0/8,fd00::/8,unix', 'app.js']).options.proxyFrom, '10.0.0.0/8,fd00::/8,unix');
    assert.throws(() => parseCli(['--proxy-from', '10.0.0.0/40', 'app.js']), { code: 'ERR_HERDLESS_INVALID_OPTION', option: '--proxy-from' });
  });

  it('the default rules (built without net.isIP) are exactly what parsing DEFAULT_PROXY_FROM gives', () => {
    const { normalizeProxyFrom, encodeProxyTrust, DEFAULT_PROXY_FROM } = require('../../lib/primary/proxy-from');
    assert.deepEqual(encodeProxyTrust(normalizeProxyFrom(undefined)), encodeProxyTrust(normalizeProxyFrom(DEFAULT_PROXY_FROM)));
    assert.deepEqual(normalizeProxyFrom(undefined), normalizeProxyFrom(DEFAULT_PROXY_FROM.join(',')));
  });
});
