'use strict';
// A small new-connection load generator, for what wrk cannot do: bind each connection to one
// of several loopback source addresses (127.0.0.2, 127.0.0.3, ...: distinct clients to route
// by), and start each connection with a PROXY protocol header (v1 text or v2 binary).
// `concurrency` lanes each open a connection, optionally write the header, send one
// `Connection: close` GET, read the answer (the pid of the worker, from apps/pid.js) and
// start over, for `seconds`. Connection i of lane k comes from source (k + i * concurrency)
// mod `sources`: every client gets connections, several in flight at once when sources <
// concurrency. runProcesses() runs several generators as child processes (one Node client
// process cannot saturate a server) and merges their results.
//
//   node bench/lib/conn-load.js --port P [--seconds 3] [--concurrency 32] [--sources 16] [--header none|v1|v2]
// prints one JSON line: { connections, errors, seconds, bySource: { addr: { pid: count } } }.
const net = require('node:net');
const { parseArgs } = require('node:util');

const REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n');
const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

const source = (i) => `127.0.${(i + 2) >> 8}.${(i + 2) & 255}`;

/** The bytes a proxy would send first for a client at `addr`:`port`. */
function proxyHeader(kind, addr, port) {
  if (kind === 'v1') return Buffer.from(`PROXY TCP4 ${addr} 127.0.0.1 ${port} 80\r\n`);
  if (kind === 'v2') {
    const b = Buffer.alloc(16 + 12);
    SIG.copy(b);
    b[12] = 0x21; // version 2, PROXY
    b[13] = 0x11; // TCP over IPv4
    b.writeUInt16BE(12, 14);
    addr.split('.').forEach((x, i) => (b[16 + i] = Number(x)));
    [127, 0, 0, 1].forEach((x, i) => (b[20 + i] = x));
    b.writeUInt16BE(port, 24);
    b.writeUInt16BE(80, 26);
    return b;
  }
  return null;
}

function once(port, localAddress, kind, seq) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    const chunks = [];
    s.on('connect', () => {
      const h = proxyHeader(kind, localAddress, 10000 + (seq % 50000));
      s.end(h ? Buffer.concat([h, REQUEST]) : REQUEST);
    });
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      const text = Buffer.concat(chunks).toString();
      if (!text.startsWith('HTTP/1.1 200')) return resolve(null);
      resolve(text.slice(text.indexOf('\r\n\r\n') + 4));
    });
  });
}

async function run({ port, seconds = 3, concurrency = 32, sources = 16, header = 'none' }) {
  const end = Date.now() + seconds * 1000;
  const bySource = {};
  let connections = 0;
  let errors = 0;
  let seq = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, lane) => {
      for (let i = 0; Date.now() < end; i++) {
        const addr = source((lane + i * concurrency) % sources);
        const seen = (bySource[addr] ??= {});
        const pid = await once(port, addr, header, seq++);
        if (pid === null) {
          errors++;
          continue;
        }
        connections++;
        seen[pid] = (seen[pid] || 0) + 1;
      }
    }),
  );
  return { connections, errors, seconds: (Date.now() - started) / 1000, bySource };
}

/** `procs` generators at once, as child processes; their results merged. */
async function runProcesses({ procs = 2, ...options }) {
  const { execFile } = require('node:child_process');
  const args = Object.entries(options).flatMap(([k, v]) => [`--${k}`, String(v)]);
  const one = () =>
    new Promise((resolve, reject) =>
      execFile(process.execPath, [__filename, ...args], { maxBuffer: 64 << 20 }, (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout)))),
    );
  const results = await Promise.all(Array.from({ length: procs }, one));
  const merged = { connections: 0, errors: 0, seconds: 0, bySource: {} };
  for (const r of results) {
    merged.connections += r.connections;
    merged.errors += r.errors;
    merged.seconds = Math.max(merged.seconds, r.seconds);
    for (const [addr, pids] of Object.entries(r.bySource)) {
      const into = (merged.bySource[addr] ??= {});
      for (const [pid, n] of Object.entries(pids)) into[pid] = (into[pid] || 0) + n;
    }
  }
  return merged;
}

module.exports = { run, runProcesses, source, proxyHeader };

if (require.main === module) {
  const { values: v } = parseArgs({
    options: {
      port: { type: 'string' },
      seconds: { type: 'string', default: '3' },
      concurrency: { type: 'string', default: '32' },
      sources: { type: 'string', default: '16' },
      header: { type: 'string', default: 'none' },
    },
  });
  run({ port: Number(v.port), seconds: Number(v.seconds), concurrency: Number(v.concurrency), sources: Number(v.sources), header: v.header })
    .then((r) => process.stdout.write(`${JSON.stringify(r)}\n`));
}
