'use strict';
// The receiving end of sd_notify(3), as systemd's: an AF_UNIX datagram socket. Node cannot
// bind one, so python3 does, and prints each datagram with its sender's pid (SO_PASSCRED).
const { spawn } = require('node:child_process');
const readline = require('node:readline');

const RECEIVER = `
import json, socket, struct, sys
where = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind('\\0' + where[1:] if where.startswith('@') else where)
print(json.dumps({'bound': True}), flush=True)
while True:
    data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, value in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack('iII', value[:12])[0]
    print(json.dumps({'pid': pid, 'text': data.decode()}), flush=True)
`;

/** Bind `address` (a path, or "@name" for an abstract one); resolves once it is bound. */
function notifyReceiver(address) {
  const child = spawn('python3', ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages = [];
  const waiters = [];
  let bound;
  const isBound = new Promise((resolve, reject) => {
    bound = resolve;
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`python3 receiver exited (${code}) before binding ${address}`)));
  });
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const m = JSON.parse(line);
    if (m.bound) return bound();
    // One datagram: "KEY=value" lines, as sd_notify sends them.
    const fields = Object.fromEntries(m.text.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    messages.push({ pid: m.pid, text: m.text, fields, at: Date.now() });
    for (const w of [...waiters]) if (w.check()) waiters.splice(waiters.indexOf(w), 1);
  });
  return isBound.then(() => ({
    messages,
    /** Resolves with the first message (from index `from`) for which `pred(message)` holds. */
    waitFor(pred, ms = 10000, from = 0) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no matching notify message within ${ms} ms: ${pred}; got ${JSON.stringify(messages.map((m) => m.text))}`)),
          ms,
        );
        const w = {
          check: () => {
            const found = messages.slice(from).find(pred);
            if (found) (clearTimeout(timer), resolve(found));
            return Boolean(found);
          },
        };
        if (!w.check()) waiters.push(w);
      });
    },
    close: () => child.kill('SIGKILL'),
  }));
}

module.exports = { notifyReceiver };
