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
  heartbeat: 4,
  wakeups: 5,
  emptyWakeups: 6,
  rejected: 7,
  utilization: 8,
  rssKb: 9,
  maxConnections: 10,
  fdRoomStalls: 11,
} as const;

export function readScore(board: Int32Array, field: keyof typeof Score): number {
  // Counters that only grow are read as unsigned so they survive wrapping past 2^31.
  return Atomics.load(board, Score[field]) >>> 0;
}
