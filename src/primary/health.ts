/**
 * Asking workers for their health (and the app's prom-client metrics) over the IPC channel,
 * with a deadline: a worker whose loop is blocked cannot answer, and one such worker must
 * not hold up a scrape or `status`. Its last known figures are kept, marked stale.
 *
 * Nothing is asked unless someone wants figures (a scrape, stats(), refreshHealth()), so an
 * idle pool is not woken by this.
 */
import { HERDLESS_EVENT, isWorkerMessage, wire, type HealthReport, type PrimaryMessage } from '../shared/protocol';
import { readScore } from '../shared/scoreboard';
import type { WorkerStats } from './stats';
import type { WorkerHandle } from './worker-handle';

export type WorkerHealth = NonNullable<WorkerStats['health']>;

/** The default deadline for an answer; a scrape answers within about this. */
export const ASK_TIMEOUT_MS = 500;

/** stats() asks again in the background when its figures are older than this. */
const STALE_AFTER_MS = 1000;

export interface WorkerReply {
  id: number;
  slot: number;
  pid: number;
  /** false: no answer within the deadline (or the worker could not be asked). */
  answered: boolean;
  /** The app's prom-client getMetricsAsJSON(), when asked for and the app uses prom-client. */
  metrics?: unknown[] | null;
}

interface Known {
  health: WorkerHealth;
  at: number;
  requests: number;
}

type Answer = { health: HealthReport | null; metrics?: unknown[] | null };

export class HealthBook {
  private seq = 0;
  private readonly known = new WeakMap<WorkerHandle, Known>();
  private readonly waiting = new WeakMap<WorkerHandle, Map<number, (a: Answer) => void>>();
  private background: Promise<unknown> | undefined;
  private lastAsk = 0;

  /** The last figures of `w`, if it ever answered. */
  get(w: WorkerHandle): WorkerHealth | undefined {
    return this.known.get(w)?.health;
  }

  /** Asks in the background when the figures are older than STALE_AFTER_MS (none in flight). */
  refreshIfOld(workers: WorkerHandle[]): void {
    if (this.background || Date.now() - this.lastAsk < STALE_AFTER_MS || workers.length === 0) return;
    this.background = this.ask(workers, false, ASK_TIMEOUT_MS).finally(() => (this.background = undefined));
  }

  /** Ask every worker in `workers` at once; resolves within `timeoutMs` with each one's reply. */
  async ask(workers: WorkerHandle[], metrics: boolean, timeoutMs = ASK_TIMEOUT_MS): Promise<WorkerReply[]> {
    this.lastAsk = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
    try {
      return await Promise.all(workers.map((w) => this.askOne(w, metrics, deadline)));
    } finally {
      clearTimeout(timer);
    }
  }

  private async askOne(w: WorkerHandle, metrics: boolean, deadline: Promise<undefined>): Promise<WorkerReply> {
    const reply: WorkerReply = { id: w.id, slot: w.slot, pid: w.pid, answered: false };
    const child = w.child;
    if (!child?.connected) return this.missed(w, reply);
    const seq = ++this.seq;
    const waiting = this.listen(w);
    const answered = new Promise<Answer>((resolve) => waiting.set(seq, resolve));
    const message: PrimaryMessage = { herdless: 'ask', seq, metrics };
    try {
      child.send(wire(message), () => {});
    } catch {
      waiting.delete(seq);
      return this.missed(w, reply);
    }
    const answer = await Promise.race([answered, deadline]);
    waiting.delete(seq);
    if (!answer) return this.missed(w, reply);
    if (answer.health) this.record(w, answer.health);
    return { ...reply, answered: true, metrics: answer.metrics };
  }

  /** One listener per worker, for every ask it will ever get. */
  private listen(w: WorkerHandle): Map<number, (a: Answer) => void> {
    const waiting = this.waiting.get(w);
    if (waiting) return waiting;
    const map = new Map<number, (a: Answer) => void>();
    this.waiting.set(w, map);
    w.child!.on(HERDLESS_EVENT, (m: unknown) => {
      if (!isWorkerMessage(m) || m.herdless !== 'health') return;
      const waiter = map.get(m.seq);
      if (waiter) waiter({ health: m.health, metrics: m.metrics });
      // Past its deadline: nobody waits, but the figures are its latest (and no longer stale).
      else if (m.health) this.record(w, m.health);
    });
    return map;
  }

  private missed(w: WorkerHandle, reply: WorkerReply): WorkerReply {
    const known = this.known.get(w);
    if (known) known.health = { ...known.health, stale: true };
    return reply;
  }

  private record(w: WorkerHandle, r: HealthReport): void {
    const now = Date.now();
    const requests = readScore(w.board, 'requests');
    const before = this.known.get(w);
    const since = before ? before.at : w.startedAt;
    const served = (requests - (before?.requests ?? 0)) >>> 0; // the counter wraps at 2^32
    const seconds = Math.max(0.001, (now - since) / 1000);
    const ms = (us: number) => us / 1000;
    this.known.set(w, {
      at: now,
      requests,
      health: {
        eventLoopDelay: { p50: ms(r.delayUs.p50), p99: ms(r.delayUs.p99), max: ms(r.delayUs.max) },
        elu: r.elu,
        heapUsed: r.heapUsed,
        heapTotal: r.heapTotal,
        rss: r.rss,
        gcCount: r.gcCount,
        gcMs: r.gcMs,
        handles: r.handles,
        requestsPerSecond: served / seconds,
        stale: false,
      },
    });
  }
}
