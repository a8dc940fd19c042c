/**
 * The pool's clock: every `scale.interval` ms it reads each worker's scoreboard, applies
 * the sizing policy (scaling.ts), replaces stalled workers (`stallTimeout`) and recycles
 * workers past `maxRequestsPerWorker` or `maxMemory`. Reading shared memory costs no
 * message and no syscall, so the tick is cheap however many workers there are.
 */
import type { Addon, NativeAcceptor } from '../shared/binding';
import type { NormalizedOptions } from './options';
import type { Pool } from './pool';
import { decideScale, type WorkerSample } from './scaling';
import { readCount, readLoop, readScore } from '../shared/scoreboard';
import type { WorkerHandle } from './worker-handle';

/** A loop awake this long is busy right now (utilisation reads 1). */
const STALLED_MS = 100;
/** Recycling jitter, so that workers started together do not all restart together. */
const REQUEST_JITTER = 0.1;
/** While nothing happens the tick slows down, to this many intervals at most; the next
 *  accepted connection brings it back at once (dispatch mode). */
const MAX_BACKOFF = 16;
/** Herd and reuseport have no accept thread to call back: a pool that can grow backs off
 *  less, so that it still grows within this many intervals of load arriving. */
const MAX_BACKOFF_UNWATCHED = 4;

export interface ScaleEvent {
  from: number;
  to: number;
  reason: string;
}

interface LoopSample {
  busyMicros: number;
  /** µs of the current awake span already counted, as of `at`. */
  awakeMicros: number;
  at: number;
  utilization: number;
}

export class Supervisor {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private quiet = 0;
  private lastAccepted = -1;
  private lastLoop = new Map<number, LoopSample>();
  private lastBusyAt = new Map<number, number>();
  private lastRequests = new Map<number, number>();
  private silentSince = new Map<number, number>();
  private requestLimit = new Map<number, number>();
  private lastBackpressurePauses = 0;
  private acting = false;

  constructor(
    private readonly addon: Addon,
    private readonly opts: NormalizedOptions,
    private readonly pool: Pool,
    private readonly acceptor: NativeAcceptor | undefined,
    private readonly onScale: (event: ScaleEvent) => void,
    private readonly onError: (err: Error) => void,
  ) {}

  start(): void {
    this.schedule(this.opts.scale.interval);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.acceptor?.watchActivity(null);
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => this.run(), ms);
    this.timer.unref();
  }

  /**
   * One tick, then the next: one interval while anything moves; while nothing does (no
   * connection accepted, no request served or in flight, no loop busy, nothing starting), twice as long each time up to
   * MAX_BACKOFF intervals, so an idle pool wakes the primary a few times a minute. The
   * acceptor calls back on the next connection, and sampling resumes one interval later:
   * the pool still grows within one interval of load arriving. Without the accept thread
   * (herd, reuseport) nothing calls back: a pool fixed in size backs off as far, one that
   * can grow only to MAX_BACKOFF_UNWATCHED intervals.
   */
  private run(): void {
    const { changed, shrinkDueIn } = this.tick();
    const interval = this.opts.scale.interval;
    const most = this.acceptor || this.opts.min === this.opts.max ? MAX_BACKOFF : MAX_BACKOFF_UNWATCHED;
    if (changed) this.quiet = 0;
    else this.quiet = Math.min(this.quiet + 1, Math.log2(most));
    let delay = interval * 2 ** this.quiet;
    if (shrinkDueIn !== undefined) delay = Math.min(delay, Math.max(interval, shrinkDueIn));
    if (delay > interval) this.acceptor?.watchActivity(() => this.onActivity());
    this.schedule(delay);
  }

  private onActivity(): void {
    if (this.stopped || this.quiet === 0) return;
    this.quiet = 0;
    // Utilisation over the next interval, not diluted by the quiet time before it.
    const clock = this.addon.monotonicMillis();
    for (const w of this.pool.workers.values()) this.sampleLoop(w, clock, true);
    this.schedule(this.opts.scale.interval);
  }

  /** Busy fraction of the loop since the last sample, from the busy time the worker keeps. */
  private sampleLoop(w: WorkerHandle, clock: number, reset = false): { utilization: number; busyMs: number } {
    const loop = readLoop(w.board, clock);
    const busyMs = loop.awake ? loop.forMs : 0;
    const awakeMicros = busyMs * 1000;
    const prev = this.lastLoop.get(w.id);
    let utilization = prev?.utilization ?? 0;
    const elapsedMicros = prev ? ((clock - prev.at) >>> 0) * 1000 : 0;
    if (prev && elapsedMicros > 0 && !reset) {
      const busy = ((loop.busyMicros - prev.busyMicros) >>> 0) + awakeMicros - prev.awakeMicros;
      // The worker writes these: clamp whatever it says to [0, 1].
      utilization = Math.min(1, Math.max(0, busy / elapsedMicros));
    }
    if (busyMs > STALLED_MS) utilization = 1;
    if (!prev || elapsedMicros > 0 || reset) this.lastLoop.set(w.id, { busyMicros: loop.busyMicros, awakeMicros, at: clock, utilization });
    return { utilization, busyMs };
  }

  /** Returns whether anything moved, and when the next idle worker may be retired (ms). */
  private tick(): { changed: boolean; shrinkDueIn?: number } {
    const now = Date.now();
    const clock = this.addon.monotonicMillis();
    const ready = [...this.pool.workers.values()].filter((w) => w.state === 'ready' && w.retireReason === undefined);
    const acceptorStats = this.acceptor?.stats();
    const pending = acceptorStats?.pendingByWorker ?? {};
    const samples: WorkerSample[] = [];
    let changed = this.pool.workers.size !== ready.length || this.pool.launching > 0 || this.pool.busy > 0 || this.acting;
    const accepted = acceptorStats?.accepted ?? 0;
    if (accepted !== this.lastAccepted) changed = true;
    this.lastAccepted = accepted;
    for (const w of ready) {
      const { utilization, busyMs } = this.sampleLoop(w, clock);
      // A loop that woke for its own timers is not load: only work counts as a change.
      if (busyMs > 0) changed = true;
      if (this.isStalled(w, busyMs, now)) {
        this.pool.kill(w, 'stalled');
        continue;
      }
      this.recycleIfDue(w);
      const inFlight = readCount(w.board, 'inFlight');
      const waiting = Math.max(0, pending[String(w.id)] ?? 0);
      // Busy since the last tick: loop in use, work in hand, or a request served in between.
      const requests = readScore(w.board, 'requests');
      const served = requests !== this.lastRequests.get(w.id);
      this.lastRequests.set(w.id, requests);
      if (utilization >= this.opts.scale.downUtilization || inFlight > 0 || waiting > 0 || served) {
        this.lastBusyAt.set(w.id, now);
        changed = true;
      }
      const open = readCount(w.board, 'open');
      samples.push({ id: w.id, utilization, inFlight, open, pending: waiting, idleFor: now - this.lastBusyAt.get(w.id)! });
    }
    for (const id of this.lastBusyAt.keys()) {
      if (this.pool.workers.has(id)) continue;
      this.lastBusyAt.delete(id);
      this.lastRequests.delete(id);
      this.silentSince.delete(id);
      this.lastLoop.delete(id);
    }
    let shrinkDueIn: number | undefined;
    if (samples.length > this.opts.min) {
      const idlest = Math.max(...samples.map((x) => x.idleFor));
      shrinkDueIn = Math.max(0, this.opts.scale.idleTimeout - idlest);
    }

    const pauses = acceptorStats?.backpressurePauses ?? 0;
    const backpressure = pauses > this.lastBackpressurePauses;
    this.lastBackpressurePauses = pauses;
    if (backpressure) changed = true;
    if (this.acting || this.pool.busy > 0 || this.pool.isHalted || this.opts.min === this.opts.max) return { changed, shrinkDueIn };

    const decision = decideScale(
      { min: this.opts.min, max: this.opts.max, workers: samples, starting: this.pool.launching, backpressure },
      this.opts.scale,
    );
    if (decision.action === 'none') return { changed, shrinkDueIn };
    const from = this.pool.target;
    let work: Promise<void>;
    if (decision.action === 'grow') {
      this.onScale({ from, to: Math.min(this.opts.max, from + decision.count), reason: decision.reason });
      work = this.pool.grow(decision.count);
    } else {
      this.onScale({ from, to: Math.max(this.opts.min, from - 1), reason: decision.reason });
      work = this.pool.shrink(decision.worker);
    }
    this.acting = true;
    work.catch(this.onError).finally(() => (this.acting = false));
    return { changed: true, shrinkDueIn };
  }

  /**
   * stallTimeout: a worker is replaced only when the supervisor itself has watched its loop
   * stay awake (busy) with a request in flight for that long. An idle worker that merely did not get
   * the CPU for a while (a loaded machine) is left alone, and so is silence from before the
   * request started.
   */
  private isStalled(w: WorkerHandle, busyMs: number, now: number): boolean {
    if (this.opts.stallTimeout <= 0) return false;
    if (busyMs <= STALLED_MS || readCount(w.board, 'inFlight') === 0) {
      this.silentSince.delete(w.id);
      return false;
    }
    const since = this.silentSince.get(w.id) ?? now;
    this.silentSince.set(w.id, since);
    return busyMs >= this.opts.stallTimeout && now - since + STALLED_MS >= this.opts.stallTimeout;
  }

  private recycleIfDue(w: WorkerHandle): void {
    let why: string | undefined;
    if (this.opts.maxRequestsPerWorker > 0) {
      let limit = this.requestLimit.get(w.id);
      if (limit === undefined) {
        limit = Math.round(this.opts.maxRequestsPerWorker * (1 + Math.random() * REQUEST_JITTER));
        this.requestLimit.set(w.id, limit);
      }
      if (readScore(w.board, 'requests') >= limit) why = 'maxRequestsPerWorker';
    }
    if (this.opts.maxMemory > 0 && readScore(w.board, 'rssKb') * 1024 > this.opts.maxMemory) why = 'maxMemory';
    if (why === undefined) return;
    this.requestLimit.delete(w.id);
    this.pool.replace(w, 'recycled').catch(this.onError);
  }
}
