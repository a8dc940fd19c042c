'use strict';
// The nginx contender, started by the harness (nginx is the server "script" here): a
// throw-away prefix directory holds the generated nginx.conf, pid file, logs and temp dirs.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const http = require('node:http');
const { spawn, execFileSync } = require('node:child_process');
const bodies = require('../apps/bodies');
const { killPids } = require('../lib/child');
const counters = require('../lib/counters');
const proc = require('../lib/proc');

const hardNoFile = () => Number(execFileSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim()) || 1024;

function config({ workers, port, dir, accessLog }) {
  const limit = Math.min(65535, hardNoFile());
  return `
worker_processes ${workers};
${process.getuid() === 0 ? 'user root;  # run as the current user, as the Node contenders do' : ''}
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
worker_rlimit_nofile ${limit};
events { worker_connections ${Math.max(1024, limit - 100)}; }
http {
  default_type text/plain;
  sendfile on;
  open_file_cache max=16;
  ${accessLog ? `log_format bench '$pid'; access_log ${dir}/access.log bench;` : 'access_log off;'}
  # Node keeps a connection open for any number of requests; nginx's default 1000 would make
  # wrk reconnect in keep-alive runs. Same idle timeout as Node's default keepAliveTimeout.
  keepalive_requests 100000000;
  keepalive_timeout 5s;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location = / { return 200 "${bodies.small}"; }
    # A config string is limited to 4 KB, so the 10,000-byte body is a file.
    location = /big { alias ${dir}/big.txt; }
    # 444: close the connection without answering, like apps/close.js.
    location = /close { return 444; }
  }
}
`;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function get(port) {
  return new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    }).on('error', () => resolve(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The Node servers exit when the harness's end of their stdin closes; nginx does not watch
 * stdin, so a small shell stops it if the harness dies without cleaning up (SIGKILL).
 * `read -t 1` on an idle pipe waits without starting a process every second as sleep would.
 */
function outlive(parent, pid, dir) {
  const script =
    `exec 3<> <(:); while kill -0 ${parent} 2>/dev/null; do read -t 1 -u 3; done; ` +
    `kill -TERM ${pid} 2>/dev/null; sleep 1; rm -rf '${dir}'`;
  const w = spawn('bash', ['-c', script], { stdio: 'ignore', detached: true });
  w.unref();
  return w;
}

/** Start nginx with `workers` worker processes; resolves once it answers on its port. */
async function start({ workers, accessLog = false }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herdless-bench-nginx-'));
  // The port is free when picked; another process could take it before nginx binds, in
  // which case nginx exits and start() fails loudly.
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'big.txt'), bodies.big);
  fs.writeFileSync(path.join(dir, 'nginx.conf'), config({ workers, port, dir, accessLog }));
  const child = spawn('nginx', ['-p', `${dir}/`, '-c', `${dir}/nginx.conf`, '-e', `${dir}/error.log`, '-g', 'daemon off;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  let exited = false;
  child.once('exit', () => (exited = true));
  const watchdog = outlive(process.pid, child.pid, dir);
  const deadline = Date.now() + 10_000;
  while (!(await get(port))) {
    if (exited || Date.now() > deadline) {
      killPids(proc.tree(child.pid));
      const log = fs.existsSync(path.join(dir, 'error.log')) ? fs.readFileSync(path.join(dir, 'error.log'), 'utf8') : '';
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`nginx did not start: ${stderr}${log}`);
    }
    await sleep(50);
  }
  // Wait for every worker to exist, so pids and fairness cover all of them.
  while (proc.children(child.pid).length < workers && Date.now() < deadline) await sleep(20);
  return {
    pid: child.pid,
    tmpDir: dir,
    port,
    info: { port },
    alive: () => !exited,
    counts: accessLog ? async () => counters.readPidLog(path.join(dir, 'access.log'), proc.children(child.pid)) : null,
    command: null,
    async stop() {
      if (exited) return;
      watchdog.kill();
      const pids = proc.tree(child.pid);
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM'); // fast shutdown
      const timer = setTimeout(() => killPids(pids), 5000);
      await gone;
      clearTimeout(timer);
      killPids(pids.slice(1));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = { start, config };
