/**
 * The pool's sizing policy, as a pure function of what the pool observes.
 *
 * Grow when every live worker is busy (event-loop utilisation at or above `upUtilization`,
 * or its loop is stalled) and work is waiting or utilisation says more hands would help.
 * The target is computed from the evidence rather than stepped up blindly as Apache's
 * 1, 2, 4, ... per second does: one worker per connection waiting (in a channel, in a busy
 * worker without a request in flight, or in the backlog), or enough workers to bring utilisation down to `targetUtilization`, whichever
 * is larger, at least one more, at most `maxSpawn` more per interval. That reacts within
 * one sampling interval to a burst and does not overshoot when the burst is small.
 *
 * Shrink one worker at a time, only when the pool is not busy and a worker has been idle
 * (utilisation below `downUtilization`, nothing in flight) for `idleTimeout`, like uWSGI's
 * cheaper-idle but without letting a single slow request block it.
 */
export interface ScaleConfig {
  /** Sampling period, ms. */
  interval: number;
  /** How long a surplus worker must be idle before it is retired, ms. */
  idleTimeout: number;
  /** A worker at or above this event-loop utilisation (0..1) is busy. */
  upUtilization: number;
  /** A worker below this utilisation with nothing in flight is idle. */
  downUtilization: number;
  /** Utilisation the pool aims for when it grows. */
  targetUtilization: number;
  /** Most workers started in one interval. */
  maxSpawn: number;
}

export const DEFAULT_SCALE: ScaleConfig = {
  interval: 200,
  idleTimeout: 10_000,
  upUtilization: 0.75,
  downUtilization: 0.25,
  targetUtilization: 0.6,
  maxSpawn: 8,
};

export interface WorkerSample {
  id: number;
  /** 0..1; 1 when the loop is stalled. */
  utilization: number;
  inFlight: number;
  /** Connections it holds (requests in flight or not). */
  open: number;
  /** Connections sent to it that it has not read yet. */
  pending: number;
  /** How long it has been idle, ms (0 if busy now). */
  idleFor: number;
}

export interface PoolSample {
  min: number;
  max: number;
  /** Ready workers, in the order the sizing should prefer to keep them. */
  workers: WorkerSample[];
  /** Workers started but not yet ready. */
  starting: number;
  /** The dispatcher paused accepting for lack of room since the last sample. */
  backpressure: boolean;
}

export type ScaleDecision =
  | { action: 'none' }
  | { action: 'grow'; count: number; reason: string }
  | { action: 'shrink'; worker: number; reason: string };

/** What a worker reports is untrusted: clamp it to what is possible. */
function sane(w: WorkerSample): WorkerSample {
  const count = (n: number) => (Number.isFinite(n) && n > 0 ? Math.floor(n) : 0);
  const u = Number.isFinite(w.utilization) ? Math.min(1, Math.max(0, w.utilization)) : 0;
  return { ...w, utilization: u, inFlight: count(w.inFlight), open: count(w.open), pending: count(w.pending) };
}

export function decideScale(input: PoolSample, cfg: ScaleConfig): ScaleDecision {
  const s = { ...input, workers: input.workers.map(sane) };
  const size = s.workers.length;
  const planned = size + s.starting;
  if (planned < s.min) return { action: 'grow', count: s.min - planned, reason: 'below min' };

  const busy = s.workers.filter((w) => w.utilization >= cfg.upUtilization).length;
  // Waiting work: connections not yet read, and connections read but without a request in
  // flight (on a busy worker these are mostly requests queued behind the one running).
  const waiting = s.workers.reduce((n, w) => n + w.pending + Math.max(0, w.open - w.inFlight), 0) + (s.backpressure ? 1 : 0);
  if (size > 0 && busy === size && planned < s.max && s.starting === 0) {
    const load = s.workers.reduce((n, w) => n + w.utilization, 0);
    const byUtilization = Math.ceil(load / cfg.targetUtilization);
    const byQueue = size + waiting;
    const target = Math.min(s.max, size + cfg.maxSpawn, Math.max(byUtilization, byQueue, size + 1));
    return {
      action: 'grow',
      count: target - planned,
      reason: `all ${size} workers busy, ${waiting} connections waiting`,
    };
  }

  if (size > s.min && s.starting === 0 && busy < size) {
    // Retire the idlest surplus worker, if it has been idle long enough.
    let pick: WorkerSample | undefined;
    for (const w of s.workers) if (w.inFlight === 0 && (!pick || w.idleFor > pick.idleFor)) pick = w;
    if (pick && pick.idleFor >= cfg.idleTimeout) {
      return { action: 'shrink', worker: pick.id, reason: `worker idle for ${Math.round(pick.idleFor)} ms` };
    }
  }
  return { action: 'none' };
}
