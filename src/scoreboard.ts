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
