/**
 * The worker process's entry point (spawned by the primary, never required by users).
 *
 * Life cycle: read config -> tie our life to the primary's -> load the app -> wait for its
 * readiness -> open our inboxes -> tell the primary 'ready' -> serve -> on 'drain' (or
 * SIGTERM, or the primary vanishing): stop taking connections, run the app's onShutdown
 * hooks, let open connections finish, exit once both are done (or at the deadline).
 *
 * What the app does itself ends as in plain Node: server.close() stops this worker's share
 * and the process ends when nothing is left in its event loop (or at the deadline the
 * primary sets); an app with its own SIGTERM handler decides what SIGTERM means.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { loadAddon, type NativeInbox } from '../shared/binding';
import { CONFIG_ENV, SCOREBOARD_FD, HERDLESS_EVENT, isPrimaryMessage, wire, type ShutdownReason, type WorkerConfig, type WorkerMessage } from '../shared/protocol';
import { Intake } from './intake';
import { becomeClusterWorker } from './cluster-worker';
import { answerAsk, startHealth } from './health';
import { attachListenHandle, ListenHandleError } from './listen-handle';
import { routeAppListen } from './app-listen';
import { loadApp, AppLoadError } from './load-app';
import { shutdownHooksPending, startShutdownHooks } from './shutdown-hooks';
import { state } from './state';

const ORPHAN_DEADLINE_MS = 800; // the primary is gone: finish quickly, within a second
const DRAIN_POLL_MS = 50;
const KEEPALIVE_GRACE_MS = 500;
const CONNECTION_CHECK_MS = 1000;
const EXIT_APP_LOAD = 4; // as gunicorn: "the app could not load", do not respawn blindly

const config = JSON.parse(process.env[CONFIG_ENV] ?? 'null') as WorkerConfig | null;
if (!config) {
  process.stderr.write('herdless: this module is started by the dispatcher, not directly\n');
  process.exit(1);
}
delete process.env[CONFIG_ENV];

/**
 * `user`/`group` where setpriv(1) did not switch already: before anything else runs (the
 * addon, the app), groups first (that needs root), then the gid, then the uid, after which
 * nothing can be changed back. Also before the death signal below: the kernel clears it
 * when credentials change.
 */
function becomeUser(c: NonNullable<WorkerConfig['credentials']>): void {
  // process.initgroups exists on POSIX; this @types/node release does not declare it.
  const proc = process as NodeJS.Process & { initgroups(user: string, extraGroup: number): void };
  try {
    if (c.initGroups && c.user !== undefined) proc.initgroups(c.user, c.gid);
    else proc.setgroups!([c.gid]);
    proc.setgid!(c.gid);
    proc.setuid!(c.uid);
  } catch (err) {
    process.stderr.write(`herdless: worker ${config!.id} could not switch to uid ${c.uid}, gid ${c.gid}: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
if (config.credentials) becomeUser(config.credentials);

const addon = loadAddon();
// If the primary dies, even by SIGKILL, the kernel sends us SIGTERM. Checking the parent
// afterwards closes the race where it died before prctl().
addon.setParentDeathSignal(15);
if (process.ppid !== config.parentPid) process.exit(1);
addon.watchParent(config.parentPid, ORPHAN_DEADLINE_MS + 50);

addon.raiseFdLimit();
state.id = config.id;
state.slot = config.slot;
const boardBuffer = addon.mapScoreboard(SCOREBOARD_FD);
const board = new Int32Array(boardBuffer);
// The loop's state (asleep in poll, or awake since t), its busy time and RSS reach the
// scoreboard from native prepare/check handles (native/loop-state.cc): no timer, so an idle
// worker sleeps. The primary derives utilisation and stalls from them.
addon.watchLoop(SCOREBOARD_FD, process.env.HERDLESS_LOOP_JS_HOOK !== '0');
startHealth(config.health !== false);

function send(message: WorkerMessage): void {
  if (process.connected) process.send!(wire(message));
}

const inboxes: NativeInbox[] = [];
const intake = new Intake(board, config.listeners);

function openInboxes(): void {
  const take = (list: number[] | null, consumed: number, proxied?: (number | string)[]) => {
    if (list === null) drain('primary-gone', ORPHAN_DEADLINE_MS); // the channel hung up: the primary is gone
    else intake.take(list, consumed, proxied);
  };
  for (const source of config!.sources) {
    if (source.kind === 'channel') inboxes.push(new addon.Inbox(source.fd, 'channel', take, boardBuffer));
    else {
      const fd = source.kind === 'listener' ? source.fd : addon.listenTcp(source.ip, source.port, source.backlog, true, true);
      inboxes.push(new addon.Inbox(fd, 'listener', take, boardBuffer, inboxes.length));
    }
  }
}

/** Node checks headersTimeout/requestTimeout every 30 s by default, which lets a slowloris
 *  hold a connection for half a minute past its deadline; check every second instead. The
 *  check itself starts when the server 'listens' (attachListenHandle). */
function tightenConnectionChecks(server: net.Server): void {
  const s = server as net.Server & { connectionsCheckingInterval?: number };
  if (s.connectionsCheckingInterval === 30_000) s.connectionsCheckingInterval = CONNECTION_CHECK_MS;
}

function applyTimeouts(server: net.Server): void {
  const t = config!.serverTimeouts;
  const s = server as net.Server & Record<string, unknown>;
  for (const key of ['headersTimeout', 'requestTimeout', 'keepAliveTimeout'] as const) {
    if (t[key] !== undefined && key in s) s[key] = t[key];
  }
}

let draining = false;
/** The app closed its server: the process ends when its event loop is empty, as in Node. */
let endsOnItsOwn = false;
let deadlineAt = Infinity;
let deadlineTimer: NodeJS.Timeout | undefined;

/** Exit `ms` from now at the latest, whatever is still open or pending (an earlier deadline wins). */
function setDeadline(ms: number): void {
  if (Date.now() + ms >= deadlineAt) return;
  deadlineAt = Date.now() + ms;
  clearTimeout(deadlineTimer);
  deadlineTimer = setTimeout(() => {
    const left = shutdownHooksPending();
    if (left > 0) process.stderr.write(`herdless: worker ${config!.id}: shutdown deadline reached with ${left} onShutdown hook(s) unsettled; exiting\n`);
    process.exit(0);
  }, ms);
  deadlineTimer.unref();
}

/** Take no more connections: close our inboxes and tell the primary to send none. */
function stopTaking(): void {
  if (draining) return;
  draining = true;
  send({ herdless: 'draining' });
  // A listener of our own (reuseport) or a copy of the shared one (herd) is closed now, so
  // that the kernel queues no more connections on it for us.
  for (const inbox of inboxes) inbox.close(true);
  intake.draining = true;
}

/**
 * The app closed its server (the last one it listened with): its onShutdown hooks run, and
 * from here on herdless holds nothing that keeps the process alive (the IPC channel, its
 * timers), so it ends when the app's own work does, as in Node. The primary answers
 * 'draining' with a 'drain' that sets the deadline.
 */
function appClosed(): void {
  letProcessEnd();
  drain('closed');
}

let drainPoll: NodeJS.Timeout | undefined;
function letProcessEnd(): void {
  endsOnItsOwn = true;
  drainPoll?.unref();
  (process.channel as { unref?: () => void } | undefined)?.unref?.();
}

/** The app registered SIGTERM handlers of its own (beyond ours). */
function appHandles(signal: 'SIGTERM'): boolean {
  return process.listeners(signal).some((f) => f !== onSigterm);
}

let drainStarted = false;
function drain(reason: ShutdownReason, deadlineMs?: number): void {
  if (deadlineMs !== undefined) setDeadline(deadlineMs);
  if (drainStarted) return;
  drainStarted = true;
  stopTaking();
  const servers = intake.servers() as (net.Server & { closeIdleConnections?: () => void })[];
  const sessions = http2Sessions;
  const started = Date.now();
  const check = () => {
    if (intake.sockets.size === 0 && shutdownHooksPending() === 0 && !endsOnItsOwn) process.exit(0);
    // Busy keep-alive clients get "Connection: close" on their next response and leave
    // cleanly; only after a grace period are idle ones closed (closing a connection the
    // client is writing to at that instant would fail its request).
    if (Date.now() - started >= KEEPALIVE_GRACE_MS) for (const server of servers) server.closeIdleConnections?.();
    for (const session of sessions) session.close();
  };
  // The hooks run while connections finish; the exit waits for both.
  startShutdownHooks(reason, check);
  check();
  drainPoll = setInterval(check, DRAIN_POLL_MS);
  if (endsOnItsOwn) drainPoll.unref();
}

const http2Sessions = new Set<{ close(): void; once(e: string, f: () => void): void }>();

/** Once per server, before it takes connections: our timeouts, and its HTTP/2 sessions for the drain. */
const prepared = new WeakSet<net.Server>();
function prepare(server: net.Server): void {
  if (prepared.has(server)) return;
  prepared.add(server);
  applyTimeouts(server);
  tightenConnectionChecks(server);
  server.on('session', (session) => {
    http2Sessions.add(session);
    session.once('close', () => http2Sessions.delete(session));
  });
}

/** The server that takes the configured listeners' connections (`listen` option, --port). */
let configuredServer: net.Server | undefined;
function serveConfigured(server: net.Server): void {
  configuredServer = server;
  config!.listeners.forEach((info, i) => intake.route(i, server, info));
}

/** The app's servers listening through the primary. */
const appServers = new Set<net.Server>();
let listenedOnce: () => void = () => {};
const listened = new Promise<void>((resolve) => (listenedOnce = resolve));
if (config.appListen) {
  // Before the app loads: its listen() calls go to the primary (app-listen.ts).
  routeAppListen({
    listening(server, index, info) {
      appServers.add(server);
      prepare(server);
      intake.route(index, server, info);
      // Addresses given to herdless too (--port): served by the app's first server.
      if (configuredServer === undefined && config!.listeners.length > 0) serveConfigured(server);
      listenedOnce();
    },
    closed(server, index) {
      send({ herdless: 'unlisten', index });
      appServers.delete(server);
      // The last one: nothing of ours is left to serve, and the process ends as Node's would
      // (unless the app listens again within this turn, as a restart does).
      setImmediate(() => {
        if (appServers.size === 0 && configuredServer === undefined) appClosed();
      });
    },
  });
}

function loadFailed(message: string, stack?: string): void {
  // Exit once the message is out: the half-loaded app may hold handles open.
  const exit = () => process.exit(EXIT_APP_LOAD);
  if (process.connected) process.send!(wire<WorkerMessage>({ herdless: 'load-error', message, stack }), exit);
  else exit();
}

/** An app that exports a handler, with no address configured: $PORT or 8080, as the CLI always did. */
function listenOnDefault(server: net.Server): Promise<void> {
  return new Promise((resolve, reject) => {
    const port = process.env.PORT ?? '8080';
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve();
    });
    server.listen(/^\d+$/.test(port) ? Number(port) : port);
  });
}

/** The app exports nothing to serve: it must listen() within startTimeout (an async bootstrap may take a while). */
function waitForListen(): Promise<boolean> {
  // Before the primary's own timer (it kills at the deadline): the message must arrive first.
  const ms = Math.max(0, config!.startDeadline - Date.now() - Math.min(1000, config!.startTimeout / 5));
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void listened.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function main(): Promise<void> {
  let server: net.Server | undefined;
  becomeClusterWorker(config!.slot, () => drain('closed'));
  try {
    server = await loadApp(config!.app, config!.args ?? [], config!.appListen, config!.listeners.length === 0);
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    return loadFailed(e instanceof AppLoadError ? e.message : `the app module threw while loading: ${e.message}`, e.stack);
  }
  if (server && configuredServer === undefined && config!.listeners.length > 0) {
    prepare(server);
    try {
      // server.close() from the app means what it means in Node: take no more connections.
      attachListenHandle(server, config!.listeners[0], appClosed);
    } catch (err) {
      if (!(err instanceof ListenHandleError)) throw err;
      return loadFailed(`ERR_HERDLESS_UNSUPPORTED: ${err.message}`);
    }
    serveConfigured(server);
  } else if (server && config!.listeners.length === 0) {
    try {
      await listenOnDefault(server);
    } catch (err) {
      return loadFailed(`no listen address was given (--port, \`listen\`) and the app did not call listen(); listening on $PORT or 8080 failed: ${(err as Error).message}`);
    }
  } else if (!server && !(await waitForListen())) {
    if (state.listenCalls > 0) {
      return loadFailed(
        `the app called listen() ${state.listenCalls} time(s) but none succeeded within startTimeout (${config!.startTimeout} ms): ` +
          `see the 'error' its server emitted (EADDRINUSE, EACCES, ...), or raise startTimeout if the app takes longer to start`,
      );
    }
    return loadFailed(
      `the app neither called listen() within startTimeout (${config!.startTimeout} ms) nor exports a request listener (req, res) => {}, ` +
        `an http/https/http2 server that is not listening, or a factory returning one. Call server.listen(port) as under plain Node ` +
        `(herdless serves it from the primary), export a handler, or raise startTimeout if the app takes longer to start`,
    );
  }
  openInboxes();
  send({ herdless: 'ready', protocols: intake.protocols() });
}

process.on(HERDLESS_EVENT, (m: unknown) => {
  if (!isPrimaryMessage(m)) return;
  if (m.herdless === 'ask') {
    void answerAsk(addon, config!.app, m.seq, m.metrics).then(send, () => {});
    return;
  }
  if (m.herdless !== 'drain') return;
  // The primary retires us (stop, reload, recycle...): an app with a SIGTERM handler of its
  // own gets SIGTERM, as `cluster`'s worker.kill() and pm2 give it, and ends itself (or the
  // deadline ends it); the drain still stops our intake and runs the onShutdown hooks.
  const toApp = m.reason !== 'closed' && !drainStarted && appHandles('SIGTERM');
  if (toApp) letProcessEnd();
  drain(m.reason ?? 'shutdown', m.deadline);
  // Emitted, not raised: a real signal arrives a loop turn later, and with our intake closed
  // and the channel unref'd the loop may have nothing left to wait for by then.
  if (toApp) (process.emit as (event: string, ...args: unknown[]) => boolean)('SIGTERM', 'SIGTERM', os.constants.signals.SIGTERM);
});
// The primary is gone (its IPC end closed): finish quickly. Node counts 'message' and
// 'disconnect' listeners on process, not 'internalMessage' ones, in the channel's ref: this
// one keeps the worker alive while it waits on the primary (a listen() answer, a drain),
// whether or not the app listens for messages, until letProcessEnd() unrefs the channel.
process.on('disconnect', () => drain('primary-gone', ORPHAN_DEADLINE_MS));
// SIGTERM from a supervisor reaches every process: drain; if orphaned (the kernel sends it
// when the primary dies), within a second. Otherwise the primary, told we are draining,
// sends the deadline.
// An app with SIGTERM handlers of its own owns SIGTERM, as in plain Node (they run after
// this one, hence the look once the emit is over).
const SIGTERM_SETTLE_MS = 30;
function onSigterm(): void {
  if (primaryGone()) return drain('primary-gone', ORPHAN_DEADLINE_MS);
  // A primary killed outright signals us while its threads are still exiting, and on a busy
  // machine its main thread may not read as a zombie yet: look again a moment later (by
  // then the channel's hang-up, 'disconnect', may have said so first).
  setTimeout(() => {
    if (primaryGone()) drain('primary-gone', ORPHAN_DEADLINE_MS);
    else if (!appHandles('SIGTERM')) drain('signal');
  }, SIGTERM_SETTLE_MS);
}
process.on('SIGTERM', onSigterm);

/**
 * The kernel sends the death signal when the thread that spawned us exits, which for a
 * primary killed outright may come while its other threads still exit: our parent pid is
 * still its pid then, but its main thread is a zombie.
 */
function primaryGone(): boolean {
  if (process.ppid !== config!.parentPid) return true;
  try {
    const stat = fs.readFileSync(`/proc/${config!.parentPid}/stat`, 'latin1');
    return 'ZX'.includes(stat.slice(stat.lastIndexOf(')') + 2)[0]);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT'; // not "cannot see it" (hidepid)
  }
}
// Ctrl-C, a terminal hang-up or `systemctl kill -s HUP` reach every process of the group or
// unit; the primary decides what they mean (HUP reload, TTIN/TTOU resize), not each worker.
for (const signal of ['SIGINT', 'SIGHUP', 'SIGTTIN', 'SIGTTOU'] as const) process.on(signal, () => {});

void main();
