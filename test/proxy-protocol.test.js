'use strict';
// proxyProtocol: the accept thread reads a PROXY header (v1 text or v2 binary, written here
// byte by byte by the test, as HAProxy or nginx would) before the hand-off; the app sees the
// client it names as the socket's remote end and never sees the header's bytes. Malformed
// headers and silent peers are closed and counted, without blocking anybody else.
const assert = require('node:assert/strict');
const net = require('node:net');
const { Dispatcher } = require('..');
const { parseCli } = require('../lib/cli/args');
const { get, sleep, waitFor } = require('./helpers');

const app = require.resolve('./fixtures/proxy-peer.js');
const local = { port: 0, host: '127.0.0.1' };
const REQUEST = 'GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v2 header: command 0 LOCAL / 1 PROXY, family byte (0x11 TCP4, 0x21 TCP6, 0x00), address block, TLVs. */
function v2(command, family, addresses = Buffer.alloc(0), tlvs = Buffer.alloc(0)) {
  const len = addresses.length + tlvs.length;
  return Buffer.concat([SIG, Buffer.from([0x20 | command, family, len >> 8, len & 255]), addresses, tlvs]);
}
const port16 = (p) => Buffer.from([p >> 8, p & 255]);
const v4 = (a) => Buffer.from(a.split('.').map(Number));
function v6(a) {
  const b = Buffer.alloc(16);
  const [head, tail = ''] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  h.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  t.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), 16 - (t.length - i) * 2));
  return b;
}
const tlv = (type, value) => Buffer.concat([Buffer.from([type, value.length >> 8, value.length & 255]), value]);

/**
 * Writes `chunks` on a new connection (`gapMs` apart), resolves { data, closedMs } once the
 * server closes it: everything received, and how long the connection lived.
 */
function exchange(port, chunks, { gapMs = 0, localAddress } = {}) {
  return new Promise((resolve) => {
    const started = Date.now();
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    const data = [];
    s.on('data', (d) => data.push(d));
    s.on('error', () => {});
    s.on('close', () => resolve({ data: Buffer.concat(data).toString(), closedMs: Date.now() - started }));
    s.on('connect', async () => {
      for (const c of chunks) {
        if (s.destroyed) return;
        s.write(c);
        if (gapMs) await sleep(gapMs);
      }
    });
  });
}
/** The app's JSON answer in a raw HTTP response, or null if there was no 200. */
function answer(raw) {
  if (!raw.startsWith('HTTP/1.1 200')) return null;
  return JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4));
}

describe('proxyProtocol: PROXY v1/v2 headers (real sockets)', function () {
  this.timeout(30_000);
  let d;
  let port;
  afterEach(async () => {
    await d?.close({ timeout: 3000 });
    d = undefined;
  });
  async function start(options = {}) {
    d = await Dispatcher.start({ app, listen: local, min: 2, max: 2, proxyProtocol: true, ...options });
    port = d.address().port;
    return port;
  }
  /** The app's view of one request sent after `header`. */
  async function seen(header, opts) {
    const r = await exchange(port, Array.isArray(header) ? header : [Buffer.concat([Buffer.from(header), Buffer.from(REQUEST)])], opts);
    const a = answer(r.data);
    assert.ok(a, `no 200 answer: ${JSON.stringify(r.data.slice(0, 80))}`);
    assert.equal(a.url, '/hello', 'the request after the header reached the app intact');
    return a;
  }
  /** Everything that names the remote end agrees; the local end is the real one. */
  function assertPeer(a, address, port_, family) {
    assert.equal(a.remoteAddress, address);
    assert.equal(a.remotePort, port_);
    assert.equal(a.remoteFamily, family);
    assert.equal(a.connectionRemoteAddress, address);
    assert.deepEqual(a.peername, { address, port: port_, family });
    assert.equal(a.presented, true);
    assert.deepEqual(a.address, { address: '127.0.0.1', port, family: 'IPv4' }, 'socket.address() stays the local end');
  }

  it('v1 TCP4 and TCP6: the app sees the client the header names, and none of its bytes', async () => {
    await start();
    assertPeer(await seen('PROXY TCP4 203.0.113.7 198.51.100.1 40001 443\r\n'), '203.0.113.7', 40001, 'IPv4');
    assertPeer(await seen('PROXY TCP6 2001:db8::17 2001:db8::1 40002 443\r\n'), '2001:db8::17', 40002, 'IPv6');
    assertPeer(await seen('PROXY TCP6 ::ffff:203.0.113.9 ::ffff:198.51.100.1 40003 443\r\n'), '::ffff:203.0.113.9', 40003, 'IPv6');
    assert.deepEqual(pick(d.stats().proxy), { accepted: 3, local: 0, malformed: 0, timedOut: 0 });
  });

  it('v1 UNKNOWN and v2 LOCAL keep the connection\'s own address', async () => {
    await start();
    for (const header of ['PROXY UNKNOWN\r\n', 'PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n', v2(0, 0x00), v2(0, 0x11, Buffer.concat([v4('1.2.3.4'), v4('5.6.7.8'), port16(1), port16(2)]))]) {
      const a = await seen(header);
      assert.equal(a.remoteAddress, '127.0.0.1');
      assert.equal(a.presented, false, 'no address of our own: the socket answers for itself');
      assert.notEqual(a.remotePort, 1);
    }
    assert.deepEqual(pick(d.stats().proxy), { accepted: 4, local: 2, malformed: 0, timedOut: 0 });
  });

  it('v2 TCP4, TCP6, and TLVs (skipped, even past the first peek)', async () => {
    await start();
    assertPeer(await seen(v2(1, 0x11, Buffer.concat([v4('192.0.2.44'), v4('192.0.2.1'), port16(50123), port16(443)]))), '192.0.2.44', 50123, 'IPv4');
    assertPeer(await seen(v2(1, 0x21, Buffer.concat([v6('2001:db8:0:1::44'), v6('2001:db8::1'), port16(50124), port16(443)]))), '2001:db8:0:1::44', 50124, 'IPv6');
    const tlvs = Buffer.concat([tlv(0x01, Buffer.from('h2')), tlv(0x02, Buffer.from('example.com')), tlv(0x04, Buffer.alloc(400, 7))]);
    assertPeer(await seen(v2(1, 0x11, Buffer.concat([v4('192.0.2.45'), v4('192.0.2.1'), port16(50125), port16(443)]), tlvs)), '192.0.2.45', 50125, 'IPv4');
    assert.deepEqual(pick(d.stats().proxy), { accepted: 3, local: 0, malformed: 0, timedOut: 0 });
  });

  it('a header split over several writes with delays, and the request in the same segment as the header', async () => {
    await start();
    const line = 'PROXY TCP4 203.0.113.70 198.51.100.1 40070 80\r\n';
    assertPeer(await seen([line.slice(0, 3), line.slice(3, 20), line.slice(20), REQUEST], { gapMs: 60 }), '203.0.113.70', 40070, 'IPv4');
    const bin = Buffer.concat([v2(1, 0x11, Buffer.concat([v4('203.0.113.71'), v4('198.51.100.1'), port16(40071), port16(80)]), tlv(0x04, Buffer.alloc(300))), Buffer.from(REQUEST)]);
    assertPeer(await seen([bin.subarray(0, 5), bin.subarray(5, 14), bin.subarray(14, 100), bin.subarray(100)], { gapMs: 60 }), '203.0.113.71', 40071, 'IPv4');
    // Header + request + a pipelined second request, all in one write.
    const r = await exchange(port, [line + 'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n']);
    assert.equal((r.data.match(/HTTP\/1\.1 200/g) || []).length, 2);
    assert.match(r.data, /"url":"\/b"/);
  });

  it('malformed headers: closed without an answer and counted; everyone else is served', async () => {
    await start();
    const bad = [
      REQUEST, // no header at all
      'PROXY TCP4 203.0.113.7\r\n',
      'PROXY TCP4 203.0.113.7 198.51.100.1 99999 80\r\n',
      'PROXY TCP4 2001:db8::1 198.51.100.1 1 80\r\n',
      'PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n',
      `PROXY ${'x'.repeat(120)}\r\n`,
      Buffer.concat([SIG, Buffer.from([0x31, 0x11, 0, 12]), Buffer.alloc(12)]), // version 3
      Buffer.concat([SIG, Buffer.from([0x22, 0x11, 0, 12]), Buffer.alloc(12)]), // command 2
      v2(1, 0x21, Buffer.alloc(12)), // TCP6 with a TCP4-sized block
      // Families past 3 and protocols past 2 are undefined: the spec says reject them.
      v2(1, 0xff, Buffer.alloc(12)),
      v2(1, 0x41, Buffer.alloc(12)),
      v2(1, 0x13, Buffer.alloc(12)),
      v2(0, 0xf0), // even with LOCAL
    ];
    for (const b of bad) {
      const r = await exchange(port, [typeof b === 'string' ? b + REQUEST : Buffer.concat([b, Buffer.from(REQUEST)])]);
      assert.equal(r.data, '', `answered after ${JSON.stringify(String(b).slice(0, 40))}`);
      assertPeer(await seen('PROXY TCP4 203.0.113.8 198.51.100.1 40008 80\r\n'), '203.0.113.8', 40008, 'IPv4');
    }
    // A peer that closes halfway through its header is malformed too.
    const half = net.connect(port, '127.0.0.1');
    half.on('error', () => {});
    half.end('PROXY TCP4 203.');
    await waitFor(() => d.stats().proxy.malformed === bad.length + 1, 3000);
    assert.deepEqual(pick(d.stats().proxy), { accepted: bad.length, local: 0, malformed: bad.length + 1, timedOut: 0 });
    // handedOff counts sends: one stolen back from a worker and handed on counts twice.
    const { handedOff, stolen } = d.stats().dispatcher;
    assert.equal(handedOff - stolen, bad.length, 'only the good ones reached a worker');
    assertBalance(d.stats());
  });

  it('a silent peer is closed after proxyTimeout, while others are served meanwhile', async () => {
    await start({ proxyTimeout: 400 });
    const silent = exchange(port, []);
    const slow = exchange(port, ['PROXY TCP4 203.0.113.9 '], {}); // part of a header, then nothing
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) assertPeer(await seen(`PROXY TCP4 203.0.113.${10 + i} 198.51.100.1 4001${i} 80\r\n`), `203.0.113.${10 + i}`, 40010 + i, 'IPv4');
    assert.ok(Date.now() - t0 < 400, 'served before the silent peers timed out: the accept thread was not blocked');
    const [s, p] = await Promise.all([silent, slow]);
    for (const r of [s, p]) {
      assert.equal(r.data, '');
      assert.ok(r.closedMs >= 350 && r.closedMs < 1500, `closed after ${r.closedMs} ms (proxyTimeout 400)`);
    }
    assert.deepEqual(pick(d.stats().proxy), { accepted: 5, local: 0, malformed: 0, timedOut: 2 });
    assertBalance(d.stats());
  });

  it('while no worker has room (the accept thread paused), silent peers still go at proxyTimeout and headers that came in time are kept', async () => {
    await start({ proxyTimeout: 400, min: 1, max: 1, maxConnectionsPerWorker: 1 });
    const t0 = Date.now();
    const silent = exchange(port, []);
    // Its header comes 200 ms in, while the pool is full; its answer must come once there is room.
    const late = exchange(port, [Buffer.alloc(0), `PROXY TCP4 203.0.113.62 198.51.100.1 40062 80\r\n${REQUEST}`], { gapMs: 200 });
    await waitFor(() => d.stats().proxy.waiting === 2, 3000);
    // A proxied connection that stays open fills the only worker; one more waits in the backlog,
    // so the accept thread has something it cannot place and pauses.
    const holder = net.connect({ port, host: '127.0.0.1' });
    holder.on('error', () => {});
    holder.write('PROXY TCP4 203.0.113.60 198.51.100.1 40060 80\r\n');
    await waitFor(() => d.stats().workers[0].connectionsOpen === 1, 3000);
    const queued = exchange(port, [`PROXY TCP4 203.0.113.61 198.51.100.1 40061 80\r\n${REQUEST}`]);
    try {
      const r = await Promise.race([silent, sleep(2500).then(() => null)]);
      assert.ok(r, 'the silent peer outlived proxyTimeout while the accept thread was paused');
      assert.equal(r.data, '');
      assert.ok(r.closedMs >= 350 && r.closedMs < 1500, `closed after ${r.closedMs} ms (proxyTimeout 400)`);
      assert.ok(d.stats().dispatcher.backpressurePauses >= 1, 'the accept thread never paused: the test proves nothing');
      // Hold the pool full past the late peer's own deadline: its header came in time.
      await sleep(Math.max(0, 900 - (Date.now() - t0)));
    } finally {
      holder.destroy();
    }
    for (const [name, pending] of [['late header', late], ['queued', queued]]) {
      const a = answer((await pending).data);
      assert.ok(a, `${name}: no answer once the pool had room`);
    }
    assert.equal(d.stats().proxy.timedOut, 1);
    assertBalance(d.stats());
  });

  // From 2 s up, TCP listeners defer accepting until data comes (TCP_DEFER_ACCEPT, 1 s): a
  // silent peer waits that second in the kernel, then the rest of proxyTimeout here.
  it('with a deferring TCP listener (proxyTimeout >= 2 s), a silent peer still goes after about proxyTimeout', async () => {
    await start({ proxyTimeout: 2000 });
    const silent = exchange(port, []);
    assertPeer(await seen('PROXY TCP4 203.0.113.40 198.51.100.1 40040 80\r\n'), '203.0.113.40', 40040, 'IPv4');
    const r = await silent;
    assert.equal(r.data, '');
    assert.ok(r.closedMs >= 1700 && r.closedMs < 3500, `closed after ${r.closedMs} ms (proxyTimeout 2000)`);
    assert.equal(d.stats().proxy.timedOut, 1);
    assertBalance(d.stats());
  });

  it('on a unix listener too', async () => {
    const fs = require('node:fs');
    const os = require('node:os');
    const path = require('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-proxy-'));
    const sock = path.join(dir, 'p.sock');
    d = await Dispatcher.start({ app, listen: { path: sock }, min: 1, max: 1, proxyProtocol: true, proxyTimeout: 300 });
    const over = (chunks) =>
      new Promise((resolve) => {
        const started = Date.now();
        const s = net.connect(sock);
        const data = [];
        s.on('data', (x) => data.push(x));
        s.on('error', () => {});
        s.on('close', () => resolve({ data: Buffer.concat(data).toString(), closedMs: Date.now() - started }));
        for (const c of chunks) s.write(c);
      });
    const silent = over([]);
    const a = answer((await over(['PROXY TCP4 203.0.113.50 198.51.100.1 40050 80\r\n' + REQUEST])).data);
    assert.equal(a.remoteAddress, '203.0.113.50');
    assert.equal(a.remotePort, 40050);
    const s = await silent;
    assert.equal(s.data, '');
    assert.ok(s.closedMs >= 250 && s.closedMs < 1500, `silent unix peer closed after ${s.closedMs} ms (proxyTimeout 300)`);
    assert.equal(d.stats().proxy.timedOut, 1);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('waiting headers are bounded: past the limit, connections wait in the backlog, then are served', async () => {
    // backlog 64: the limit (the largest backlog, at least 64) is 64 waiting at once, and the
    // kernel's queue holds the rest.
    await start({ proxyTimeout: 700, backlog: 64 });
    const silent = Array.from({ length: 70 }, () => exchange(port, []));
    await waitFor(() => d.stats().proxy.waiting === 64 && d.stats().proxy.fullPauses > 0, 5000, 10, '64 waiting, accepting paused');
    // A good client behind them is accepted once the silent ones time out.
    assertPeer(await seen('PROXY TCP4 203.0.113.99 198.51.100.1 40099 80\r\n'), '203.0.113.99', 40099, 'IPv4');
    await Promise.all(silent);
    assert.equal(d.stats().proxy.timedOut, 70);
  });

  it("route: 'client-ip' routes by the proxied address, not the proxy's", async () => {
    await start({ min: 4, max: 4, route: 'client-ip' });
    const homes = new Map();
    for (let c = 0; c < 8; c++) {
      const pids = new Set();
      for (let i = 0; i < 5; i++) pids.add((await seen(`PROXY TCP4 198.18.0.${c + 1} 198.51.100.1 ${41000 + i} 80\r\n`)).pid);
      assert.equal(pids.size, 1, `proxied client 198.18.0.${c + 1} reached ${[...pids]}`);
      homes.set(c, [...pids][0]);
    }
    // All from one real address (127.0.0.1), yet spread by the client each header names.
    assert.ok(new Set(homes.values()).size > 1, 'every proxied client on one worker');
    // v1 TCP6 with a mapped address routes as the IPv4 client it is.
    for (let c = 0; c < 8; c++) assert.equal((await seen(`PROXY TCP6 ::ffff:198.18.0.${c + 1} ::1 42000 80\r\n`)).pid, homes.get(c));
  });

  it('https: TLS over the proxied connection sees the client too', async () => {
    const fs = require('node:fs');
    const os = require('node:os');
    const path = require('node:path');
    const tls = require('node:tls');
    const { makeCert } = require('./helpers');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-proxy-tls-'));
    makeCert(dir);
    d = await Dispatcher.start({ app: require.resolve('./fixtures/https-app.js'), listen: local, min: 1, max: 1, proxyProtocol: true, env: { CERT_DIR: dir } });
    port = d.address().port;
    const raw = net.connect(port, '127.0.0.1');
    await new Promise((r) => raw.once('connect', r));
    raw.write('PROXY TCP4 203.0.113.61 198.51.100.1 40061 443\r\n');
    const secure = tls.connect({ socket: raw, rejectUnauthorized: false, servername: 'localhost' });
    const text = await new Promise((resolve, reject) => {
      const chunks = [];
      secure.on('secureConnect', () => secure.write('GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      secure.on('data', (c) => chunks.push(c));
      secure.on('end', () => resolve(Buffer.concat(chunks).toString()));
      secure.on('error', reject);
    });
    const a = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
    assert.equal(a.encrypted, true);
    assert.equal(a.remoteAddress, '203.0.113.61');
    assert.equal(a.remotePort, 40061);
    assert.equal(a.remoteFamily, 'IPv4');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('/metrics counts header errors by reason', async () => {
    await start({ proxyTimeout: 200, metrics: { port: 0, host: '127.0.0.1' } });
    await exchange(port, ['NOPE\r\n']);
    await exchange(port, []);
    await seen(v2(0, 0x00));
    const text = (await get(d.metricsAddress().port, '/metrics')).text;
    assert.match(text, /herdless_proxy_header_errors_total\{reason="malformed"\} 1/);
    assert.match(text, /herdless_proxy_header_errors_total\{reason="timeout"\} 1/);
    assert.match(text, /herdless_proxy_headers_total\{kind="local"\} 1/);
  });

  it('without proxyProtocol nothing changes: a PROXY line is the app\'s (a bad request), addresses are the socket\'s', async () => {
    d = await Dispatcher.start({ app, listen: local, min: 1, max: 1 });
    port = d.address().port;
    const plain = answer((await exchange(port, [REQUEST])).data);
    assert.equal(plain.remoteAddress, '127.0.0.1');
    assert.equal(plain.presented, false);
    const r = await exchange(port, ['PROXY TCP4 203.0.113.7 198.51.100.1 40001 443\r\n' + REQUEST]);
    assert.match(r.data, /^HTTP\/1\.1 400/);
    assert.deepEqual(pick(d.stats().proxy), { accepted: 0, local: 0, malformed: 0, timedOut: 0 });
  });

  it('options and flags: proxyProtocol must be a boolean, proxyTimeout a positive integer', async () => {
    await assert.rejects(Dispatcher.start({ app, listen: local, proxyProtocol: 'yes' }), { code: 'ERR_HERDLESS_INVALID_OPTION', option: 'proxyProtocol' });
    await assert.rejects(Dispatcher.start({ app, listen: local, proxyProtocol: true, proxyTimeout: 0 }), { code: 'ERR_HERDLESS_INVALID_OPTION', option: 'proxyTimeout' });
    await assert.rejects(Dispatcher.start({ app, listen: local, proxyProtocol: true, mode: 'herd' }), { code: 'ERR_HERDLESS_INVALID_OPTION', option: 'proxyProtocol' });
    const o = parseCli(['--proxy-protocol', '--proxy-timeout', '1500', 'app.js']).options;
    assert.equal(o.proxyProtocol, true);
    assert.equal(o.proxyTimeout, 1500);
    assert.throws(() => parseCli(['--proxy-timeout', 'soon', 'app.js']), { code: 'ERR_HERDLESS_INVALID_OPTION', option: '--proxy-timeout' });
  });
});

/** Every accepted connection is accounted for: handed off, waiting, dropped, or closed for its header. */
function assertBalance(st) {
  const x = st.dispatcher;
  const p = st.proxy;
  assert.equal(x.handedOff + x.waiting + x.dropped + p.malformed + p.timedOut + p.waiting, x.accepted + x.redispatched + x.stolen);
}

function pick(p) {
  return { accepted: p.accepted, local: p.local, malformed: p.malformed, timedOut: p.timedOut };
}
