/**
 * The primary's handle on one worker process: its fds (scoreboard, channel), its start-up
 * handshake, its exit, and the last lines it wrote to stderr (for error messages).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as path from 'node:path';
import type { Addon } from './binding';
import { HerdlessError } from './errors';
import type { Listener } from './listeners';
import type { NormalizedOptions } from './options';
import { CONFIG_ENV, FIRST_EXTRA_FD, isWorkerMessage, type PrimaryMessage, type WorkerConfig, type WorkerSource } from './protocol';

const WORKER_MAIN = path.join(__dirname, 'worker', 'main.js');
const STDERR_LINES = 20;

export type WorkerState = 'starting' | 'ready' | 'draining' | 'exited';

export type ExitReason = 'crashed' | 'start-failed' | 'stalled' | RetireReason;
export type RetireReason = 'scaled-down' | 'reloaded' | 'recycled' | 'resized' | 'shutdown';

export interface WorkerExit {
  id: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why it went: we retired it (and why), it crashed, it never became ready, or it stalled. */
  reason: ExitReason;
}

export class WorkerHandle extends EventEmitter {
  readonly child: ChildProcess;
  readonly board: Int32Array;
  readonly scoreboardFd: number;
  /** dispatch mode: our end, and our own copy of the worker's end (to recover what it never read). */
  readonly channel?: { primaryEnd: number; workerEnd: number };
  readonly startedAt = Date.now();
  readonly ready: Promise<void>;
  readonly exited: Promise<WorkerExit>;
  state: WorkerState = 'starting';
  /** Set when we ask it to go (or kill it): its exit is then not a crash. */
  retireReason: Exclude<ExitReason, 'crashed' | 'start-failed'> | undefined;
  private stderrTail: string[] = [];

  constructor(
    private readonly addon: Addon,
    readonly id: number,
    opts: NormalizedOptions,
    listeners: Listener[],
  ) {
    super();
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
      app: opts.app,
      mode: opts.mode,
      parentPid: process.pid,
      sources,
      listeners: listeners.map(({ info }) => ({ family: info.family, address: info.address, port: info.port, path: info.path })),
      serverTimeouts: opts.serverTimeouts,
    };
    this.child = spawn(process.execPath, [...opts.execArgv, WORKER_MAIN], {
      stdio: ['ignore', 'inherit', 'pipe', 'ipc', this.scoreboardFd, ...extraFds],
      env: { ...process.env, ...opts.env, [CONFIG_ENV]: JSON.stringify(config) },
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      this.keepStderr(chunk.toString('utf8'));
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        const reason = this.retireReason ?? (this.state === 'starting' ? 'start-failed' : 'crashed');
        this.state = 'exited';
        resolve({ id, pid: this.pid, code, signal, reason });
      });
    });
    this.ready = this.handshake(opts.startTimeout);
    this.ready.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get stderr(): string {
    return this.stderrTail.join('\n');
  }

  private keepStderr(text: string): void {
    this.stderrTail.push(...text.split('\n').filter((l) => l !== ''));
    if (this.stderrTail.length > STDERR_LINES) this.stderrTail.splice(0, this.stderrTail.length - STDERR_LINES);
  }

  private handshake(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        fail(new HerdlessError('ERR_HERDLESS_WORKER_START', `worker ${this.id} (pid ${this.pid}) was not ready within startTimeout (${timeoutMs} ms)`));
        this.kill('SIGKILL');
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.child.off('message', onMessage);
        this.child.off('error', onSpawnError);
      };
      const fail = (err: Error) => {
        done();
        reject(err);
      };
      const onMessage = (m: unknown) => {
        if (!isWorkerMessage(m)) return;
        if (m.herdless === 'ready') {
          done();
          this.state = 'ready';
          resolve();
        } else if (m.herdless === 'load-error') {
          const stack = m.stack ? `\n${m.stack}` : '';
          fail(new HerdlessError('ERR_HERDLESS_APP_LOAD', `App module failed to load in worker ${this.id}: ${m.message}${stack}`, { workerStack: m.stack }));
        }
      };
      const onSpawnError = (err: Error) => fail(new HerdlessError('ERR_HERDLESS_WORKER_START', `could not start a worker: ${err.message}`));
      this.child.on('message', onMessage);
      this.child.once('error', onSpawnError);
      void this.exited.then(({ code, signal }) => {
        // A worker's stderr may still be in flight when 'exit' fires: give it a moment.
        setTimeout(() => {
          const tail = this.stderr ? `; its last stderr lines:\n${this.stderr}` : '';
          fail(new HerdlessError('ERR_HERDLESS_WORKER_START', `worker ${this.id} exited before it was ready (code ${code}, signal ${signal})${tail}`));
        }, 20);
      });
    });
  }

  /** Ask the worker to stop taking connections, finish what it has, and exit. */
  drain(reason: RetireReason): void {
    this.retireReason ??= reason;
    if (this.state === 'exited') return;
    this.state = 'draining';
    const message: PrimaryMessage = { herdless: 'drain' };
    if (this.child.connected) this.child.send(message, (err) => err && this.kill('SIGTERM'));
    else this.kill('SIGTERM');
  }

  kill(signal: NodeJS.Signals): void {
    if (this.state !== 'exited') this.child.kill(signal);
  }

  /** Connections sent to this worker that it never read (call after it exited). */
  unread(): number[] {
    return this.channel ? this.addon.drainChannel(this.channel.workerEnd) : [];
  }

  /** Close our fds for this worker; its scoreboard mapping goes with the garbage collector. */
  release(): void {
    this.addon.closeFd(this.scoreboardFd);
    if (this.channel) {
      this.addon.closeFd(this.channel.primaryEnd);
      this.addon.closeFd(this.channel.workerEnd);
    }
  }
}
