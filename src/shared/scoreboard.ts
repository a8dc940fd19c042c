/**
 * Field indices of a worker's scoreboard page (shared memory); keep in step with
 * native/scoreboard.h. Workers write their own page with Atomics, the accept thread reads
 * it to choose a worker, and the primary reads it for stats().
 */
export const Score = {
  received: 0,
  open: 1,
  inFlight: 2,
  requests: 3,
  wakeups: 5,
  emptyWakeups: 6,
  rejected: 7,
  utilization: 8,
  rssKb: 9,
  /** The server's own maxConnections (0 = none): a cap for the dispatcher. */
  maxConnections: 10,
  /** Times the worker stopped reading its channel near its fd limit. */
  fdRoomStalls: 11,
  /** Loop state: bit 0 = awake (1) or asleep in the poll phase (0); bits 1..31 = µs of that change. */
  loopState: 12,
  /** µs the loop has spent awake, as of when it last fell asleep (wraps). */
  busyMicros: 13,
  /** Times the loop woke from sleep (wraps). */
  loopWakeups: 14,
  /** CLOCK_MONOTONIC ms (low 32 bits) of the last loop state change. */
  loopSinceMs: 15,
} as const;

/** The page's size: 16 int32 fields, then the dispatch-wait histogram (native/scoreboard.h). */
export const SCOREBOARD_BYTES = 192;
const WAIT_OFFSET = 64;

/** Upper bounds of the dispatch-wait buckets, seconds; one more bucket (+Inf) follows. */
export const WAIT_BUCKETS_SECONDS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] as const;

/** Dispatch-wait counts: per bucket (not cumulative; the last is +Inf) and the sum of waits, µs. */
export interface WaitCounts {
  buckets: number[];
  sumUs: number;
}

export function emptyWait(): WaitCounts {
  return { buckets: new Array<number>(WAIT_BUCKETS_SECONDS.length + 1).fill(0), sumUs: 0 };
}

/** More connections than one worker could take in years at full speed: a page claiming more is lying. */
const SANE_WAIT_COUNT = 2 ** 40;

/**
 * The histogram of `board` (written by the worker's inbox), or undefined if it cannot be
 * true: the page is the worker's to write, and a count or sum summed unchecked poisoned the
 * pool's totals for good (a count of 2.7e20). Each bucket bounds its waits, so the sum must
 * lie between what its counts allow; a wait in the last (+Inf) bucket is at most `maxWaitUs`.
 */
export function readWait(board: Int32Array, maxWaitUs: number): WaitCounts | undefined {
  const w = emptyWait();
  if (board.buffer.byteLength < SCOREBOARD_BYTES) return w;
  const words = new BigUint64Array(board.buffer, WAIT_OFFSET, WAIT_BUCKETS_SECONDS.length + 2);
  let least = 0;
  let most = 0;
  for (let i = 0; i < w.buckets.length; i++) {
    const n = Number(Atomics.load(words, i));
    if (n > SANE_WAIT_COUNT) return undefined;
    w.buckets[i] = n;
    least += n * (i === 0 ? 0 : WAIT_BUCKETS_SECONDS[i - 1] * 1e6);
    most += n * (i < WAIT_BUCKETS_SECONDS.length ? WAIT_BUCKETS_SECONDS[i] * 1e6 : maxWaitUs);
  }
  w.sumUs = Number(Atomics.load(words, w.buckets.length));
  // Waits are whole µs and a bucket's lower bound is exclusive; allow for doubles' rounding.
  if (w.sumUs < least * (1 - 1e-9) || w.sumUs > most * (1 + 1e-9)) return undefined;
  return w;
}

/** `later` could follow `earlier`: histogram counts never go down. */
export function waitFollows(earlier: WaitCounts, later: WaitCounts): boolean {
  return later.sumUs >= earlier.sumUs && later.buckets.every((n, i) => n >= earlier.buckets[i]);
}

export function addWaitCounts(into: WaitCounts, w: WaitCounts): WaitCounts {
  for (let i = 0; i < into.buckets.length; i++) into.buckets[i] += w.buckets[i];
  into.sumUs += w.sumUs;
  return into;
}

/** Most connections or requests a worker can plausibly hold; anything above is nonsense. */
const SANE_COUNT = 1 << 24;

/**
 * A count the worker writes (open connections, requests in flight), as the primary may use
 * it: the page is the worker's to write, so a negative or absurd value reads as 0.
 */
export function readCount(board: Int32Array, field: 'open' | 'inFlight'): number {
  const v = Atomics.load(board, Score[field]);
  return v < 0 || v > SANE_COUNT ? 0 : v;
}

/** The worker's event loop as of `clockMs` (the addon's monotonicMillis()). */
export function readLoop(board: Int32Array, clockMs: number): { awake: boolean; forMs: number; busyMicros: number; wakeups: number } {
  const state = Atomics.load(board, Score.loopState);
  const since = Atomics.load(board, Score.loopSinceMs) >>> 0;
  let forMs = (clockMs - since) >>> 0;
  if (forMs >= 2 ** 31) forMs = 0; // a time in the future: untrusted, read as "just now"
  return {
    awake: (state & 1) === 1,
    forMs,
    busyMicros: Atomics.load(board, Score.busyMicros) >>> 0,
    wakeups: Atomics.load(board, Score.loopWakeups) >>> 0,
  };
}

export function readScore(board: Int32Array, field: keyof typeof Score): number {
  // Counters that only grow are read as unsigned so they survive wrapping past 2^31.
  return Atomics.load(board, Score[field]) >>> 0;
}
