/**
 * The set of worker processes: starting them (with back-off and crash-loop detection,
 * crash-loop.ts), adding them to dispatch once ready, retiring them gracefully, replacing
 * them, and cleaning up after each exit so that no connection it was sent is lost
 * (read-back.ts).
 *
 * How many workers there should be is decided elsewhere (the Supervisor, resize(), reload());
 * the pool keeps `target` workers alive and replaces crashed ones.
 */
import { EventEmitter } from 'node:events';
import type { Addon, NativeAcceptor } from '../shared/binding';
import type { HerdlessError } from '../shared/errors';
import type { Listener } from './listeners';
import { answerListen, type AppListeners } from './app-listeners';
import { HERDLESS_EVENT, isProtocol, isWorkerMessage, wire, type Protocol } from '../shared/protocol';
import type { NormalizedOptions } from './options';
import type { WaitCounts } from '../shared/scoreboard';
import { WorkerHandle, type RetireReason, type WorkerExit } from './worker-handle';
import { emptyIpcCounts } from './ipc-guard';
import { CrashLoop } from './crash-loop';
import { DispatchWait } from './dispatch-wait';
import { ReadBack } from './read-back';

export interface PoolEvents {
  'worker-start': [{ id: number; slot: number; pid: number }];
  /** What the app sent with process.send(), as cluster's 'message' event. */
  message: [{ id: number; slot: number; pid: number }, unknown];
  'worker-exit': [WorkerExit];
  error: [Error];
}

/** A worker's 'ready' names at most this many listeners (a label each; the IPC guard bounds the message too). */
const MAX_LISTENERS_TOLD = 256;

export class Pool extends EventEmitter<PoolEvents> {
  readonly workers = new Map<number, WorkerHandle>();
  /** How many workers the pool keeps alive. */
  target: number;
  /** A reload or resize is running: the supervisor leaves the size alone. */
  busy = 0;
  private nextId = 0;
  /** Workers started in each slot so far: all but the first of them are its restarts. */
  private readonly slotStarts = new Map<number, number>();
  private closing = false;
  private started = false;
  /** Back-off between starts, and the crash-loop halt. */
  private readonly crashLoop = new CrashLoop();
  private readonly wait = new DispatchWait();
  private readonly readBack: ReadBack;
  /** What workers' IPC channels were refused (handles closed, channels ended, reads paused), over the pool's life. */
  readonly ipc = emptyIpcCounts();
  /** By listener index: what its connections speak, as the workers serving it said. */
  readonly protocols = new Map<number, Protocol>();
  /** Starts under way (being started, or waiting out a back-off before a start). */
  private readonly launches = new Set<Promise<WorkerHandle | undefined>>();

  constructor(
    private readonly addon: Addon,
    private readonly opts: NormalizedOptions,
    private readonly sockets: Listener[],
    private readonly acceptor: NativeAcceptor | undefined,
    /** Listeners opened by the app's own listen() calls (dispatch mode). */
    private readonly appListeners?: AppListeners,
  ) {
    super();
    this.target = opts.min;
    this.readBack = new ReadBack(acceptor, (err) => this.report(err));
  }

  /** Workers taking connections now. */
  get size(): number {
    return this.count('ready');
  }

  count(state: WorkerHandle['state']): number {
    let n = 0;
    for (const w of this.workers.values()) if (w.state === state) n++;
    return n;
  }

  /** Ready workers that are not leaving. */
  serving(): WorkerHandle[] {
    return [...this.workers.values()].filter((w) => w.state === 'ready' && w.retireReason === undefined);
  }

  /** Set once workers crash-loop: nothing starts until reload(). */
  get isHalted(): boolean {
    return this.crashLoop.halted !== undefined;
  }

  /** Start `min` workers; rejects on an app load error or a crash loop. */
  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.opts.min }, () => this.startReady()));
    this.started = true;
  }

  /** Start `count` more workers in parallel; resolves when they are ready. */
  async grow(count: number): Promise<void> {
    this.target = Math.min(this.opts.max, this.target + count);
    await this.startMany(count);
  }

  get launching(): number {
    return this.launches.size;
  }

  private async startMany(count: number, delayMs = 0): Promise<void> {
    await Promise.all(Array.from({ length: count }, () => this.startReady(delayMs)));
  }

  /** Wait for every start under way (those begun by a crash refill included). */
  private async settleLaunches(): Promise<void> {
    while (this.launches.size > 0) await Promise.allSettled([...this.launches]);
  }

  /**
   * Start a worker and wait until it is ready, retrying failed starts with exponential
   * back-off. An app that cannot load fails at once: retrying cannot help. Resolves
   * undefined if the pool closes meanwhile.
   */
  private startReady(delayMs = 0): Promise<WorkerHandle | undefined> {
    const launch = this.launch(delayMs);
    this.launches.add(launch);
    const forget = () => this.launches.delete(launch);
    launch.then(forget, forget);
    return launch;
  }

  private async launch(delayMs: number): Promise<WorkerHandle | undefined> {
    if (delayMs > 0) await this.crashLoop.sleep(delayMs);
    for (;;) {
      if (this.closing) return undefined;
      if (this.crashLoop.halted) throw this.crashLoop.halted;
      const w = this.startOne();
      try {
        await w.ready;
        return w;
      } catch (err) {
        if ((err as HerdlessError).code === 'ERR_HERDLESS_APP_LOAD') throw err;
        await w.exited;
        if (this.crashLoop.halted) throw this.crashLoop.halted;
        await this.crashLoop.sleep(this.crashLoop.backoff());
      }
    }
  }

  /**
   * The lowest slot no serving worker holds. A worker being retired (reload, recycle, stall)
   * or gone has given its slot up, so its replacement takes the same number.
   */
  private freeSlot(): number {
    const held = new Set<number>();
    for (const w of this.workers.values()) if (w.state !== 'exited' && w.retireReason === undefined) held.add(w.slot);
    let slot = 0;
    while (held.has(slot)) slot++;
    return slot;
  }

  /** Times a worker was started in `slot` after its first (crash, reload, recycle, stall, scale back up). */
  restarts(slot: number): number {
    return Math.max(0, (this.slotStarts.get(slot) ?? 0) - 1);
  }

  private startOne(): WorkerHandle {
    const slot = this.freeSlot();
    this.slotStarts.set(slot, (this.slotStarts.get(slot) ?? 0) + 1);
    const w = new WorkerHandle(this.addon, this.nextId++, slot, this.opts, this.sockets, this.ipc);
    this.workers.set(w.id, w);
    w.ready.then(
      () => {
        if (this.closing) return w.drain('shutdown');
        this.crashLoop.noteReady(w);
        try {
          if (this.acceptor && w.channel) this.acceptor.addWorker(w.id, w.channel.primaryEnd, w.scoreboardFd, w.channel.workerEnd, w.slot);
        } catch (err) {
          // Cannot take connections (mmap failed): it goes like a crash and is replaced.
          w.kill('SIGKILL');
          return this.report(err as Error);
        }
        this.emit('worker-start', { id: w.id, slot: w.slot, pid: w.pid });
      },
      () => w.kill('SIGKILL'),
    );
    w.once('closed', () => this.onAppClosed(w));
    // The app's own process.send(): surfaced, never acted upon (ours arrive as HERDLESS_EVENT).
    w.child?.on('message', (m: unknown) => {
      if (this.listenerCount('message') > 0) this.emit('message', { id: w.id, slot: w.slot, pid: w.pid }, m);
    });
    w.child?.on(HERDLESS_EVENT, (m: unknown) => this.onWorkerMessage(w, m));
    void w.exited.then((exit) => this.onExit(w, exit));
    return w;
  }

  /** The app called server.close() in a worker: as in Node, that server takes no more
   *  connections and the worker leaves once its own are done. A fresh worker takes its place
   *  at once (this is not a crash). */
  private onAppClosed(w: WorkerHandle): void {
    if (w.retireReason !== undefined || this.closing) return;
    void this.retire(w, 'closed');
    this.refill();
  }

  /** listen() and server.close() in the app: the primary opens, shares and closes the listeners. */
  private onWorkerMessage(w: WorkerHandle, m: unknown): void {
    if (!isWorkerMessage(m)) return;
    if (m.herdless === 'ready') {
      if (Array.isArray(m.protocols)) for (const entry of m.protocols.slice(0, MAX_LISTENERS_TOLD)) this.noteProtocol(entry?.[0], entry?.[1]);
      return;
    }
    if (m.herdless !== 'listen' && m.herdless !== 'unlisten') return;
    const reply = answerListen(this.appListeners, w.id, m, this.closing || w.state === 'exited', this.opts.mode);
    if (reply?.herdless === 'listening') this.noteProtocol(reply.index, m.herdless === 'listen' ? m.protocol : undefined);
    if (reply && w.child?.connected) w.child.send(wire(reply), () => {});
  }

  /** What listener `index` speaks, as its workers say (a label for stats and the banner only). */
  private noteProtocol(index: unknown, protocol: unknown): void {
    if (Number.isInteger(index) && (index as number) >= 0 && isProtocol(protocol)) this.protocols.set(index as number, protocol);
  }

  /** Dispatch-wait counts of every worker there has been (each one's page, and those gone). */
  dispatchWait(): WaitCounts {
    return this.wait.total(this.workers.values());
  }

  /** Workers whose histogram page was refused as implausible (written with nonsense), at least once. */
  get refusedWaitPages(): number {
    return this.wait.refusedPages;
  }

  private onExit(w: WorkerHandle, exit: WorkerExit): void {
    // It leaves this.workers below, in the same turn.
    this.wait.retire(w);
    this.readBack.detach(w);
    this.readBack.reclaim(w);
    this.appListeners?.leaveAll(w.id);
    this.workers.delete(w.id);
    this.emit('worker-exit', exit);
    if (w.spawnError) this.crashLoop.noteSpawnFailure(w.spawnError, this.started);
    else if (exit.reason === 'crashed' || exit.reason === 'start-failed' || exit.reason === 'stalled') {
      const halt = this.crashLoop.noteCrash(Date.now() - w.startedAt, w);
      if (halt && this.started) this.emit('error', halt);
      if (exit.reason !== 'start-failed') this.refill();
    }
  }

  /** Never throws: before the dispatcher listens (during start()) nobody hears 'error'. */
  private report(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** How many workers are missing from `target`, counting those on their way. */
  private missing(): number {
    return Math.max(0, this.target - this.serving().length - this.launching);
  }

  /** Bring the pool back up to `target` after a crash, with back-off. */
  private refill(): void {
    // A reload or resize in progress makes up the numbers itself when it ends (trim()).
    if (this.closing || this.crashLoop.halted || this.busy > 0) return;
    this.startMany(this.missing(), this.crashLoop.backoff()).catch((err) => {
      // A crash loop was already reported when it was detected.
      if (!this.closing && err !== this.crashLoop.halted) this.emit('error', err);
    });
  }

  /** Gracefully stop one worker: no new connections, finish in-flight, exit; SIGKILL after timeout. */
  async retire(w: WorkerHandle, reason: RetireReason, timeoutMs = 30_000): Promise<WorkerExit> {
    this.readBack.detach(w);
    w.drain(reason, timeoutMs);
    this.handOn(w);
    const timer = setTimeout(() => w.kill('SIGKILL'), timeoutMs);
    const exit = await w.exited;
    clearTimeout(timer);
    return exit;
  }

  /** Retire the worker with this id (sizing down). */
  async shrink(id: number): Promise<void> {
    const w = this.workers.get(id);
    if (!w || w.retireReason !== undefined) return;
    this.target = Math.max(this.opts.min, this.target - 1);
    await this.retire(w, 'scaled-down');
  }

  /** A fresh worker takes over from `w` (ready first), then `w` drains: recycling. */
  async replace(w: WorkerHandle, reason: RetireReason): Promise<void> {
    if (w.retireReason !== undefined) return;
    w.retireReason = reason; // not counted as serving any more
    // It takes no new connections from now on (others, or the backlog, hold them while its
    // successor starts), so a limit like maxRequestsPerWorker is not overshot by much.
    this.acceptor?.pauseWorker(w.id, true);
    try {
      await this.startReady();
    } finally {
      await this.retire(w, reason);
    }
  }

  /** Kill a worker whose loop is stuck; it is replaced like a crash. */
  kill(w: WorkerHandle, reason: 'stalled'): void {
    w.retireReason = reason;
    this.readBack.detach(w);
    w.kill('SIGKILL');
    this.handOn(w);
  }

  /** Connections sent to `w` and not read go to other workers now (read-back.ts); on close()
   *  there is nobody to hand them to, and they stay for onExit(). */
  private handOn(w: WorkerHandle): void {
    if (!this.closing) this.readBack.handOn(w);
  }

  /** Grow or shrink to `n` workers (clamped to [min, max]); shrinking goes one at a time. */
  async resize(n: number): Promise<number> {
    const want = Math.max(this.opts.min, Math.min(this.opts.max, Math.floor(n)));
    this.busy++;
    try {
      this.target = want;
      await this.settleLaunches();
      await this.startMany(this.missing());
      await this.trim('resized');
      return want;
    } finally {
      this.busy--;
    }
  }

  /**
   * Replace every worker with a fresh one, a few at a time; each new worker is ready before
   * an old one stops taking connections, so a client under load sees no failure.
   */
  async reload(): Promise<void> {
    this.busy++;
    try {
      this.crashLoop.reset();
      const old = this.serving();
      const batch = Math.max(1, Math.floor(old.length / 4));
      for (let i = 0; i < old.length; i += batch) {
        const chunk = old.slice(i, i + batch);
        for (const w of chunk) w.retireReason = 'reloaded';
        await this.startMany(chunk.length);
        await Promise.all(chunk.map((w) => this.retire(w, 'reloaded')));
      }
      // Workers may have crashed meanwhile, or a crash-loop halt left fewer than wanted.
      await this.trim('reloaded');
    } finally {
      this.busy--;
    }
  }

  /** Make the pool exactly `target` again: start what is missing, retire the surplus (the
   *  newest first: the oldest have warm caches and JIT), one at a time. */
  private async trim(reason: RetireReason): Promise<void> {
    await this.settleLaunches();
    await this.startMany(this.missing());
    const serving = this.serving().sort((a, b) => b.startedAt - a.startedAt);
    for (const w of serving.slice(0, Math.max(0, serving.length - this.target))) await this.retire(w, reason);
  }

  /** Retire every worker at once; resolves when every process is gone. */
  async close(timeoutMs: number): Promise<void> {
    this.closing = true;
    this.crashLoop.wakeAll();
    await Promise.all([...this.workers.values()].map((w) => this.retire(w, 'shutdown', timeoutMs)));
  }

  /** Kill everything now (a failed start). */
  async destroy(): Promise<void> {
    this.closing = true;
    this.crashLoop.wakeAll();
    const all = [...this.workers.values()];
    for (const w of all) {
      w.retireReason ??= 'shutdown';
      w.kill('SIGKILL');
    }
    await Promise.all(all.map((w) => w.exited));
  }
}
