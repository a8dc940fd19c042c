/**
 * The set of worker processes: starting them, adding them to dispatch once ready, and
 * cleaning up after each exit so that no connection it was sent is lost.
 *
 * Sizing policy (when to grow or shrink) is not decided here; callers ask for workers and
 * retire them. Unexpected exits are replaced with an exponential back-off.
 */
import { EventEmitter } from 'node:events';
import type { Addon, NativeAcceptor } from './binding';
import type { Listener } from './listeners';
import type { NormalizedOptions } from './options';
import { WorkerHandle, type WorkerExit } from './worker-handle';

const RESPAWN_BASE_MS = 100;
const RESPAWN_MAX_MS = 10_000;
const STABLE_AFTER_MS = 10_000; // a worker that lived this long resets the back-off

export class Pool extends EventEmitter {
  readonly workers = new Map<number, WorkerHandle>();
  private nextId = 0;
  private closing = false;
  private quickCrashes = 0;
  private respawnTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly addon: Addon,
    private readonly opts: NormalizedOptions,
    private readonly sockets: Listener[],
    private readonly acceptor: NativeAcceptor | undefined,
  ) {
    super();
  }

  /** Workers that take connections now. */
  get size(): number {
    let n = 0;
    for (const w of this.workers.values()) if (w.state === 'ready') n++;
    return n;
  }

  /** Start `count` workers in parallel; resolves when all are ready, rejects on the first failure. */
  async spawn(count: number): Promise<WorkerHandle[]> {
    const started: WorkerHandle[] = [];
    for (let i = 0; i < count; i++) started.push(this.startOne());
    await Promise.all(started.map((w) => w.ready));
    return started;
  }

  private startOne(): WorkerHandle {
    const w = new WorkerHandle(this.addon, this.nextId++, this.opts, this.sockets);
    this.workers.set(w.id, w);
    w.ready.then(
      () => {
        if (this.acceptor && w.channel && w.state === 'ready') this.acceptor.addWorker(w.id, w.channel.primaryEnd, w.scoreboardFd);
        this.emit('worker-start', { id: w.id, pid: w.pid });
      },
      () => w.kill('SIGKILL'),
    );
    void w.exited.then((exit) => this.onExit(w, exit));
    return w;
  }

  private onExit(w: WorkerHandle, exit: WorkerExit): void {
    this.acceptor?.removeWorker(w.id);
    // What the worker was sent but never read goes to another worker (counted as
    // re-dispatched). The primary kept its own copy of the worker's end for exactly this.
    const unread = w.unread();
    if (unread.length > 0) this.acceptor!.dispatch(unread);
    w.release();
    this.workers.delete(w.id);
    this.emit('worker-exit', exit);
    if (exit.reason === 'crashed' && !this.closing) this.scheduleRespawn(Date.now() - w.startedAt);
  }

  private scheduleRespawn(livedMs: number): void {
    this.quickCrashes = livedMs >= STABLE_AFTER_MS ? 0 : this.quickCrashes + 1;
    const delay = this.quickCrashes === 0 ? 0 : Math.min(RESPAWN_BASE_MS * 2 ** (this.quickCrashes - 1), RESPAWN_MAX_MS);
    clearTimeout(this.respawnTimer);
    this.respawnTimer = setTimeout(() => this.refill(), delay);
  }

  /** Start workers until there are at least `min` (crash recovery). */
  private refill(): void {
    if (this.closing) return;
    const missing = this.opts.min - this.workers.size;
    for (let i = 0; i < missing; i++) {
      const w = this.startOne();
      w.ready.catch((err) => this.emit('error', err));
    }
  }

  /** Gracefully stop one worker: no new connections, finish in-flight, exit; SIGKILL after timeout. */
  async retire(w: WorkerHandle, timeoutMs: number): Promise<WorkerExit> {
    this.acceptor?.removeWorker(w.id);
    w.drain();
    const timer = setTimeout(() => w.kill('SIGKILL'), timeoutMs);
    const exit = await w.exited;
    clearTimeout(timer);
    return exit;
  }

  /** Retire every worker at once; resolves when every process is gone. */
  async close(timeoutMs: number): Promise<void> {
    this.closing = true;
    clearTimeout(this.respawnTimer);
    await Promise.all([...this.workers.values()].map((w) => this.retire(w, timeoutMs)));
  }

  /** Kill everything now (a failed start). */
  async destroy(): Promise<void> {
    this.closing = true;
    clearTimeout(this.respawnTimer);
    const all = [...this.workers.values()];
    for (const w of all) {
      w.retiring = true;
      w.kill('SIGKILL');
    }
    await Promise.all(all.map((w) => w.exited));
  }
}
