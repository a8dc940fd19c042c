/**
 * The primary's handle on one worker process: its fds (scoreboard, channel), its start-up
 * handshake, its exit, and the last lines it wrote to stderr (for error messages).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { EventEmitter } from 'node:events';
import * as path from 'node:path';
import type { Addon } from '../shared/binding';
import type { Credentials } from './credentials';
import { HerdlessError } from '../shared/errors';
import type { Listener } from './listeners';
import { emptyIpcCounts, guardIpc, type IpcCounts } from './ipc-guard';
import { forwardLines } from './worker-output';
import type { NormalizedOptions } from './options';
import { SCOREBOARD_BYTES } from '../shared/scoreboard';
import { ROUTE_SECRET_ENV } from './route-secret';
import {
  CONFIG_ENV,
  FIRST_EXTRA_FD,
  HERDLESS_EVENT,
  isWorkerMessage,
  wire,
  type PrimaryMessage,
  type ShutdownReason,
  type WorkerConfig,
  type WorkerSource,
} from '../shared/protocol';

/**
 * Variables that speak for the primary alone: a worker that sent READY=1 or WATCHDOG=1 to
 * systemd, or took a socket meant for the primary, would lie about the service.
 */
const PRIMARY_ONLY_ENV = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', ROUTE_SECRET_ENV];

function primaryEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of PRIMARY_ONLY_ENV) delete env[name];
  return env;
}

const WORKER_MAIN = path.join(__dirname, '..', 'worker', 'main.js');
/** Where setpriv(1) (util-linux) may live; see workerCommand(). */
const SETPRIV_PATHS = ['/usr/bin/setpriv', '/bin/setpriv'];
const STDERR_LINES = 20;
/** How long an exited worker's output pipes may stay open before its exit is told anyway. */
const OUTPUT_GRACE_MS = 100;
/**
 * Free fds a start needs, with room to spare: ours (scoreboard, channel: 3), Node's stdio
 * and IPC pipes (4), libuv's exec-error pipe (2), and connections the accept thread holds
 * meanwhile. Node leaks its pipes when spawn() fails with EMFILE after making them, so a
 * start is not even tried with less.
 */
const SPAWN_FDS = 32;

export type WorkerState = 'starting' | 'ready' | 'draining' | 'exited';

export type ExitReason = 'crashed' | 'start-failed' | 'stalled' | RetireReason;
/** 'closed': the app itself called server.close() in the worker. */
export type RetireReason = 'scaled-down' | 'reloaded' | 'recycled' | 'resized' | 'shutdown' | 'closed';

/** What the worker's onShutdown hooks are told for each reason the primary retires it. */
const SHUTDOWN_REASON: Record<RetireReason, ShutdownReason> = {
  'scaled-down': 'scale-down',
  resized: 'scale-down',
  reloaded: 'reload',
  recycled: 'recycle',
  shutdown: 'shutdown',
  closed: 'closed',
};

/** Grace kept between the deadline a worker is told and the primary's SIGKILL: its own exit comes first. */
const DEADLINE_MARGIN_MS = 100;

/** As Pool.retire()'s default: how long a worker asked to go has before it is killed. */
const DEFAULT_RETIRE_TIMEOUT_MS = 30_000;

/** A worker's slot as pm2 and cluster-minded apps read it ("run the cron only in slot 0"). */
function slotEnv(slot: number): Record<string, string> {
  return { HERDLESS_SLOT: String(slot), NODE_APP_INSTANCE: String(slot) };
}

export interface WorkerExit {
  id: number;
  slot: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why it went: we retired it (and why), it crashed, it never became ready, or it stalled. */
  reason: ExitReason;
  /** The process could not be created at all (spawn failed: EMFILE, EAGAIN, ...): why. */
  error?: Error;
}

/** A board for a worker that never got one (its start failed): reads as all zeros. */
const EMPTY_BOARD = new Int32Array(SCOREBOARD_BYTES / 4);

export class WorkerHandle extends EventEmitter {
  /** Undefined when spawn() itself threw. */
  readonly child: ChildProcess | undefined;
  readonly board: Int32Array = EMPTY_BOARD;
  readonly scoreboardFd: number = -1;
  /** dispatch mode: our end, and our own copy of the worker's end (to recover what it never read). */
  readonly channel?: { primaryEnd: number; workerEnd: number };
  readonly startedAt = Date.now();
  readonly ready: Promise<void>;
  readonly exited: Promise<WorkerExit>;
  state: WorkerState = 'starting';
  /** Set when we ask it to go (or kill it): its exit is then not a crash. */
  retireReason: Exclude<ExitReason, 'crashed' | 'start-failed'> | undefined;
  /** Why the process could not be created (EMFILE, ENFILE, EAGAIN...), if it could not. */
  spawnError: Error | undefined;
  private stderrTail: string[] = [];
  private settleExit!: (exit: WorkerExit) => void;
  private released = false;

  constructor(
    private readonly addon: Addon,
    readonly id: number,
    /** 0..max-1, reused by whoever takes this worker's place (pm2's NODE_APP_INSTANCE). */
    readonly slot: number,
    opts: NormalizedOptions,
    listeners: Listener[],
    ipcCounts: IpcCounts = emptyIpcCounts(),
  ) {
    super();
    this.exited = new Promise((resolve) => (this.settleExit = resolve));
    // Every resource a start takes can run out (fds, processes, memory): a failure at any
    // step is a failed start, never an exception out of here, and release() frees whatever
    // was made before it.
    try {
      checkFdHeadroom();
      const scoreboard = addon.createScoreboard();
      this.scoreboardFd = scoreboard.fd;
      this.board = new Int32Array(scoreboard.buffer);
      const extraFds: number[] = [];
      const sources: WorkerSource[] = [];
      if (opts.mode === 'dispatch') {
        const [primaryEnd, workerEnd] = addon.socketpair();
        this.channel = { primaryEnd, workerEnd };
        extraFds.push(workerEnd);
        sources.push({ kind: 'channel', fd: FIRST_EXTRA_FD });
      } else {
        for (const l of listeners) {
          if (l.reusePort) sources.push({ kind: 'reuseport', ...l.reusePort });
          else sources.push({ kind: 'listener', fd: FIRST_EXTRA_FD + extraFds.push(l.fd) - 1 });
        }
      }
      const config: WorkerConfig = {
        id,
        slot,
        app: opts.app,
        args: opts.args,
        mode: opts.mode,
        parentPid: process.pid,
        sources,
        listeners: listeners.map(({ info }) => ({ family: info.family, address: info.address, port: info.port, path: info.path })),
        serverTimeouts: opts.serverTimeouts,
        startTimeout: opts.startTimeout,
        startDeadline: Date.now() + opts.startTimeout,
        appListen: opts.mode === 'dispatch',
        health: opts.health,
      };
      const creds = opts.credentials;
      const [file, args, switched] = workerCommand(opts.execArgv, creds);
      if (creds && !switched) config.credentials = { uid: creds.uid, gid: creds.gid, user: creds.user, initGroups: creds.initGroups };
      this.child = spawn(file, args, {
        stdio: ['ignore', opts.workerOutput === 'inherit' ? 'inherit' : 'pipe', 'pipe', 'ipc', this.scoreboardFd, ...extraFds],
        env: { ...primaryEnv(), ...userEnv(creds), ...opts.env, ...slotEnv(slot), [CONFIG_ENV]: JSON.stringify(config) },
      });
    } catch (err) {
      this.spawnFailed(err as Error);
    }
    const child = this.child;
    if (child) {
      guardIpc(child, ipcCounts);
      // EMFILE/ENFILE/EAGAIN...: spawn() returns a child without a pid and emits 'error' on
      // the next tick (and no 'exit' ever). Later errors (a kill or send that failed) change
      // nothing: the exit, when it comes, says what happened.
      child.on('error', (err) => {
        if (child.pid === undefined) this.spawnFailed(err);
      });
      const format = opts.workerOutput;
      child.stderr?.on('data', (chunk: Buffer) => {
        if (format === 'inherit') process.stderr.write(chunk);
        this.keepStderr(chunk.toString('utf8'));
      });
      if (format !== 'inherit') {
        const source = { id, slot, pid: this.pid };
        if (child.stdout) forwardLines(child.stdout, process.stdout, format, { ...source, stream: 'stdout' });
        if (child.stderr) forwardLines(child.stderr, process.stderr, format, { ...source, stream: 'stderr' });
      }
      child.once('exit', (code, signal) => {
        if (this.state === 'exited') return;
        const reason = this.retireReason ?? (this.state === 'starting' ? 'start-failed' : 'crashed');
        this.state = 'exited';
        // Its last lines may still be in the pipes: the exit is told once they are passed on
        // ('close': every stdio stream ended), or shortly after if something else (a process
        // it started) still holds them open.
        const settle = () => this.settleExit({ id, slot, pid: this.pid, code, signal, reason });
        if (format === 'inherit') return settle();
        const late = setTimeout(settle, OUTPUT_GRACE_MS);
        child.once('close', () => {
          clearTimeout(late);
          settle();
        });
      });
    }
    this.ready = this.handshake(opts.startTimeout);
    this.ready.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
  }

  /** The process could not be created: a failed start, with nothing left running. */
  private spawnFailed(err: Error): void {
    if (this.state === 'exited') return;
    this.spawnError = err;
    this.state = 'exited';
    // After EAGAIN Node has set up stdio objects for a process that does not exist.
    this.child?.stderr?.destroy();
    try {
      if (this.child?.connected) this.child.disconnect();
    } catch {
      // nothing was connected
    }
    this.settleExit({ id: this.id, slot: this.slot, pid: -1, code: null, signal: null, reason: 'start-failed', error: err });
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  get stderr(): string {
    return this.stderrTail.join('\n');
  }

  private keepStderr(text: string): void {
    this.stderrTail.push(...text.split('\n').filter((l) => l !== ''));
    if (this.stderrTail.length > STDERR_LINES) this.stderrTail.splice(0, this.stderrTail.length - STDERR_LINES);
  }

  private handshake(timeoutMs: number): Promise<void> {
    const child = this.child;
    const spawnFailure = (err: Error) =>
      new HerdlessError(
        'ERR_HERDLESS_WORKER_START',
        `could not start worker ${this.id}: ${err.message}. The pool retries with back-off; free the resource ` +
          `(raise the fd or process limit) and it recovers by itself.`,
        { cause: err, errno: (err as NodeJS.ErrnoException).code },
      );
    if (!child || this.spawnError) return Promise.reject(spawnFailure(this.spawnError!));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        fail(new HerdlessError('ERR_HERDLESS_WORKER_START', `worker ${this.id} (pid ${this.pid}) was not ready within startTimeout (${timeoutMs} ms)`));
        this.kill('SIGKILL');
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        child.off(HERDLESS_EVENT, onMessage);
      };
      const fail = (err: Error) => {
        done();
        reject(err);
      };
      const onMessage = (m: unknown) => {
        if (!isWorkerMessage(m)) return;
        if (m.herdless === 'ready') {
          // A 'ready' read after the exit was seen (both can be pending in one turn) must not
          // bring a dead worker back into dispatch: the exit handler below fails the start.
          if (this.state !== 'starting') return;
          done();
          this.state = 'ready';
          // From now on a 'draining' we did not ask for means the app closed its server.
          child.on(HERDLESS_EVENT, (later: unknown) => {
            if (isWorkerMessage(later) && later.herdless === 'draining' && this.retireReason === undefined) this.emit('closed');
          });
          resolve();
        } else if (m.herdless === 'load-error') {
          const stack = m.stack ? `\n${m.stack}` : '';
          fail(new HerdlessError('ERR_HERDLESS_APP_LOAD', `App module failed to load in worker ${this.id}: ${m.message}${stack}`, { workerStack: m.stack }));
        }
      };
      child.on(HERDLESS_EVENT, onMessage);
      void this.exited.then(({ code, signal, error }) => {
        if (error) return fail(spawnFailure(error));
        // A worker's stderr may still be in flight when 'exit' fires: give it a moment.
        setTimeout(() => {
          const tail = this.stderr ? `; its last stderr lines:\n${this.stderr}` : '';
          fail(new HerdlessError('ERR_HERDLESS_WORKER_START', `worker ${this.id} exited before it was ready (code ${code}, signal ${signal})${tail}`));
        }, 20);
      });
    });
  }

  /**
   * Ask the worker to stop taking connections, run its onShutdown hooks, finish what it has,
   * and exit; `timeoutMs` is when the caller kills it, and the worker is told a little less.
   */
  drain(reason: RetireReason, timeoutMs = DEFAULT_RETIRE_TIMEOUT_MS): void {
    this.retireReason ??= reason;
    if (this.state === 'exited') return;
    this.state = 'draining';
    const deadline = Math.max(0, timeoutMs - Math.min(DEADLINE_MARGIN_MS, timeoutMs / 10));
    const message: PrimaryMessage = { herdless: 'drain', reason: SHUTDOWN_REASON[reason], deadline };
    if (this.child?.connected) this.child.send(wire(message), (err) => err && this.kill('SIGTERM'));
    else this.kill('SIGTERM');
  }

  kill(signal: NodeJS.Signals): void {
    if (this.state !== 'exited') this.child?.kill(signal);
  }

  /** Connections sent to this worker that it has not read: after it exited, or once it was taken out of dispatch.
   *  acceptedAt: when each was first accepted, for the next worker's dispatch-wait figure. */
  unread(): { handoffs: number[]; acceptedAt: number[] } {
    const acceptedAt: number[] = [];
    const handoffs = this.channel ? this.addon.drainChannel(this.channel.workerEnd, acceptedAt) : [];
    return { handoffs, acceptedAt };
  }

  /** Close our fds for this worker; its scoreboard mapping goes with the garbage collector. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.scoreboardFd >= 0) this.addon.closeFd(this.scoreboardFd);
    if (this.channel) {
      this.addon.closeFd(this.channel.primaryEnd);
      this.addon.closeFd(this.channel.workerEnd);
    }
  }
}

let setpriv: string | null | undefined;

/** setpriv(1) with --pdeathsig (util-linux 2.33 and later), or null. Probed once. */
function findSetpriv(): string | null {
  if (setpriv !== undefined) return setpriv;
  for (const file of SETPRIV_PATHS) {
    try {
      fs.accessSync(file, fs.constants.X_OK);
    } catch {
      continue;
    }
    const probe = spawnSync(file, ['--pdeathsig', 'SIGKILL', '--', 'true'], { stdio: 'ignore', timeout: 5000 });
    // A probe that could not run (fds or processes short right now: EMFILE, EAGAIN) says
    // nothing about setpriv. Starting without it would leave this worker with no death signal
    // and, with `user`, run --require/NODE_OPTIONS as root before the switch; so this start
    // fails (the pool retries with back-off) and the next one probes again.
    if (probe.error) throw probe.error;
    setpriv = probe.status === 0 ? file : null;
    return setpriv;
  }
  setpriv = null;
  return setpriv;
}

/**
 * The command that starts a worker. The worker asks the kernel for SIGTERM when the primary
 * dies (PR_SET_PDEATHSIG), but only once Node has booted and loaded our code: a worker stuck
 * before that (a slow --require, a blocked disk) would outlive a primary killed meanwhile.
 * Started through `setpriv --pdeathsig SIGKILL`, it is tied to the primary from before Node
 * runs (the setting survives exec); the worker then replaces it with SIGTERM for a graceful
 * end. Without setpriv, the worker's own parent check and watchdog remain.
 */
function workerCommand(execArgv: string[], creds: Credentials | undefined): [file: string, args: string[], switched: boolean] {
  const node = [...execArgv, WORKER_MAIN];
  const wrapper = findSetpriv();
  if (!wrapper) return [process.execPath, node, false];
  // setpriv also switches user, group and supplementary groups before Node even starts (so
  // nothing runs as root in the worker); it sets the death signal after the switch, which
  // would otherwise clear it.
  const become = creds
    ? [`--regid=${creds.gid}`, creds.initGroups ? '--init-groups' : `--groups=${creds.gid}`, `--reuid=${creds.uid}`]
    : [];
  return [wrapper, [...become, '--pdeathsig', 'SIGKILL', '--', process.execPath, ...node], creds !== undefined];
}

/** HOME, USER and LOGNAME of the user workers run as (what login(1) would set). */
function userEnv(creds: Credentials | undefined): Record<string, string> {
  if (!creds?.user) return {};
  return { USER: creds.user, LOGNAME: creds.user, ...(creds.home ? { HOME: creds.home } : {}) };
}

/** How many more fds this process may open under RLIMIT_NOFILE (Infinity if unlimited). */
export function fdHeadroom(): number {
  const limit = /^Max open files\s+(\S+)/m.exec(fs.readFileSync('/proc/self/limits', 'latin1'))?.[1];
  if (limit === undefined || limit === 'unlimited') return Infinity;
  return Number(limit) - fs.readdirSync('/proc/self/fd').length;
}

/** Throws EMFILE when fewer than SPAWN_FDS fds are free under RLIMIT_NOFILE. */
function checkFdHeadroom(): void {
  const free = fdHeadroom();
  if (free >= SPAWN_FDS) return;
  const err: NodeJS.ErrnoException = new Error(`spawn EMFILE (${free} fds free; a worker start needs ${SPAWN_FDS})`);
  err.code = 'EMFILE';
  err.errno = -24;
  err.syscall = 'spawn';
  throw err;
}
