/**
 * The pool's clock: every `scale.interval` ms it reads each worker's scoreboard, applies
 * the sizing policy (scaling.ts), replaces stalled workers (`stallTimeout`) and recycles
 * workers past `maxRequestsPerWorker` or `maxMemory`. Reading shared memory costs no
 * message and no syscall, so the tick is cheap however many workers there are.
 */
import type { Addon, NativeAcceptor } from './binding';
import type { NormalizedOptions } from './options';
import type { Pool } from './pool';
import { decideScale, type WorkerSample } from './scaling';
import { readScore } from './scoreboard';
import type { WorkerHandle } from './worker-handle';

/** A heartbeat older than this means the worker's loop is blocked right now. */
const STALLED_MS = 100;
/** Recycling jitter, so that workers started together do not all restart together. */
const REQUEST_JITTER = 0.1;

export interface ScaleEvent {
  from: number;
  to: number;
  reason: string;
}

export class Supervisor {
  private timer: NodeJS.Timeout | undefined;
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
    this.timer = setInterval(() => this.tick(), this.opts.scale.interval);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    const now = Date.now();
    const clock = this.addon.monotonicMillis();
    const ready = [...this.pool.workers.values()].filter((w) => w.state === 'ready' && w.retireReason === undefined);
    const acceptorStats = this.acceptor?.stats();
    const pending = acceptorStats?.pendingByWorker ?? {};
    const samples: WorkerSample[] = [];
    for (const w of ready) {
      const silentMs = (clock - readScore(w.board, 'heartbeat')) >>> 0;
      if (this.isStalled(w, silentMs, now)) {
        this.pool.kill(w, 'stalled');
        continue;
      }
      this.recycleIfDue(w);
      const utilization = silentMs > STALLED_MS ? 1 : readScore(w.board, 'utilization') / 1000;
      const inFlight = readScore(w.board, 'inFlight');
      const waiting = pending[String(w.id)] ?? 0;
      // Busy since the last tick: loop in use, work in hand, or a request served in between.
      const requests = readScore(w.board, 'requests');
      const served = requests !== this.lastRequests.get(w.id);
      this.lastRequests.set(w.id, requests);
      if (utilization >= this.opts.scale.downUtilization || inFlight > 0 || waiting > 0 || served) {
        this.lastBusyAt.set(w.id, now);
      }
      const open = readScore(w.board, 'open');
      samples.push({ id: w.id, utilization, inFlight, open, pending: waiting, idleFor: now - this.lastBusyAt.get(w.id)! });
    }
    for (const id of this.lastBusyAt.keys()) {
      if (this.pool.workers.has(id)) continue;
      this.lastBusyAt.delete(id);
      this.lastRequests.delete(id);
      this.silentSince.delete(id);
    }

    const pauses = acceptorStats?.backpressurePauses ?? 0;
    const backpressure = pauses > this.lastBackpressurePauses;
    this.lastBackpressurePauses = pauses;
    if (this.acting || this.pool.busy > 0 || this.pool.isHalted || this.opts.min === this.opts.max) return;

    const decision = decideScale(
      { min: this.opts.min, max: this.opts.max, workers: samples, starting: this.pool.launching, backpressure },
      this.opts.scale,
    );
    if (decision.action === 'none') return;
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
  }

  /**
   * stallTimeout: a worker is replaced only when the supervisor itself has watched it stay
   * silent with a request in flight for that long. An idle worker that merely did not get
   * the CPU for a while (a loaded machine) is left alone, and so is silence from before the
   * request started.
   */
  private isStalled(w: WorkerHandle, silentMs: number, now: number): boolean {
    if (this.opts.stallTimeout <= 0) return false;
    if (silentMs <= STALLED_MS || readScore(w.board, 'inFlight') === 0) {
      this.silentSince.delete(w.id);
      return false;
    }
    const since = this.silentSince.get(w.id) ?? now;
    this.silentSince.set(w.id, since);
    return silentMs >= this.opts.stallTimeout && now - since + STALLED_MS >= this.opts.stallTimeout;
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
