/**
 * The control socket's `status` answer, built from Dispatcher.stats() when asked: nothing is
 * sampled in between, so an idle pool is not woken for it. Requests per second are the change
 * since the previous status request (top asks once a second); a worker's health figures are
 * shown when stats() carries them, and its RSS is read from /proc otherwise.
 */
import * as fs from 'node:fs';
import type { Dispatcher } from '../dispatcher';
import type { WorkerStats } from '../stats';
import { WAIT_BUCKETS_SECONDS } from '../../shared/scoreboard';
import type { ListenerRow, StatusResult, WorkerRow } from '../../shared/control';

/** What the health side of stats() may add to a worker; read when present. */
interface HealthFigures {
  eventLoopDelay: { p50: number; p99: number; max: number };
  elu: number;
  heapUsed: number;
  heapTotal: number;
  rss: number;
  requestsPerSecond: number;
  stale: boolean;
}

export interface StatusInfo {
  app: string;
  version: string;
  min: number;
  max: number;
  startedAt: number;
}

/** A rate needs two samples at least this far apart, and not so old they say little about now. */
const MIN_RATE_GAP_MS = 200;
const MAX_RATE_GAP_MS = 60_000;

const PAGE_SIZE = 4096;

function procRss(pid: number): number | null {
  try {
    const resident = Number(fs.readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return Number.isFinite(resident) ? resident * PAGE_SIZE : null;
  } catch {
    return null;
  }
}

/** The bucket bound under which at least 99% of the waits fell (Infinity past the last). */
export function waitP99(buckets: { le: number; count: number }[], count: number): number | null {
  if (count === 0) return null;
  const want = 0.99 * count;
  return buckets.find((b) => b.count >= want)?.le ?? Infinity;
}

export class StatusBuilder {
  private last = new Map<number, { at: number; requests: number }>();

  constructor(
    private readonly d: Dispatcher,
    private readonly info: StatusInfo,
  ) {}

  /** Fresh health figures from every serving worker (at most ~300 ms; a blocked one stays stale). */
  async refresh(): Promise<void> {
    await this.d.refreshHealth(300);
  }

  build(): StatusResult {
    const now = Date.now();
    const s = this.d.stats();
    const seen = new Map<number, { at: number; requests: number }>();
    const workers = s.workers.map((w) => this.row(w, now, seen)).sort((a, b) => a.slot - b.slot || a.id - b.id);
    this.last = seen;
    const listeners: ListenerRow[] = s.listeners.map((l) => ({ address: l.address, protocol: l.protocol, queued: l.queued, backlog: l.backlog }));
    const p99 = s.mode === 'dispatch' ? waitP99(s.dispatchWait.buckets, s.dispatchWait.count) : null;
    return {
      pid: process.pid,
      version: this.info.version,
      app: this.info.app,
      mode: s.mode,
      uptimeMs: now - this.info.startedAt,
      size: this.d.size,
      min: this.info.min,
      max: this.info.max,
      workers,
      listeners,
      // JSON has no Infinity: past the last bucket reads as its bound.
      dispatchWaitP99Seconds: p99 === null ? null : Math.min(p99, WAIT_BUCKETS_SECONDS[WAIT_BUCKETS_SECONDS.length - 1]),
      dispatchWaitCount: s.dispatchWait.count,
    };
  }

  private row(w: WorkerStats, now: number, seen: Map<number, { at: number; requests: number }>): WorkerRow {
    const health = (w as WorkerStats & { health?: HealthFigures }).health;
    seen.set(w.id, { at: now, requests: w.requestsServed });
    const prev = this.last.get(w.id);
    const gap = prev ? now - prev.at : 0;
    // The change since the previous status is the freshest figure; the health figure (as of the
    // last health ask, up to a second or more old) stands in when there is no recent status.
    let rate: number | null = health ? health.requestsPerSecond : null;
    if (prev && gap >= MIN_RATE_GAP_MS && gap <= MAX_RATE_GAP_MS) rate = ((w.requestsServed - prev.requests) * 1000) / gap;
    if (prev && gap < MIN_RATE_GAP_MS) seen.set(w.id, prev); // too close: keep the older sample
    return {
      slot: w.slot,
      id: w.id,
      pid: w.pid,
      state: w.state,
      uptimeMs: now - w.startedAt,
      restarts: w.restarts,
      connections: w.connectionsOpen,
      requests: w.requestsServed,
      requestsPerSecond: rate,
      eventLoopDelayP99Ms: health ? health.eventLoopDelay.p99 : null,
      elu: health ? health.elu : null,
      heapUsed: health ? health.heapUsed : null,
      rss: health ? health.rss : procRss(w.pid),
      stale: health ? health.stale : false,
    };
  }
}
