// Stealing: when the accept thread takes back what a worker has not read, and how much. A
// pure function of the same views placement.h judges (header-only, unit-tested through
// pickForTest), so that placing and taking back never disagree about who is stalled.
#pragma once

#include <cstddef>
#include <cstdint>

#include "primary/placement.h"

namespace herdless {
namespace placement {

constexpr uint32_t kAsleepStealUs = 20000;  // see ShouldSteal

// Should the connections waiting for this worker be taken back? When its loop has been
// awake past `steal_after_us` with them unread (it is running something else: a long
// handler, a synchronous call, a major GC), or when a loop that says it is asleep has not
// read them for kAsleepStealUs (or 4 x steal_after_us) -- stopped, or starved of CPU: on a
// loaded machine a sleeping worker often takes a few ms to be scheduled, and moving its
// connections to another that must be scheduled too would only add work. A worker whose
// board is nonsense is treated alike: the records are ours.
// Microseconds until ShouldSteal() turns true if nothing changes: 0 = now, UINT64_MAX =
// never (nothing waits, or stealing is off).
inline uint64_t StealIn(const WorkerView& w, Clock now, uint32_t steal_after_us) {
  if (steal_after_us == 0 || w.pending <= 0) return UINT64_MAX;
  Options o;  // no cap, default threshold: only the tier and the times matter here
  WorkerView probe = w;
  probe.usable = true;
  probe.max_connections = 0;
  Assessment a = Assess(probe, o, now);
  uint64_t unread = 0;
  if (!Elapsed(now.us, w.unread_since_us, &unread)) unread = 0;
  uint64_t held = unread, after = steal_after_us;
  if ((w.loop & 1u) == 0 && a.tier != Tier::kSuspect) {
    after = steal_after_us * 4 > kAsleepStealUs ? steal_after_us * 4 : kAsleepStealUs;
  } else if (a.tier != Tier::kSuspect) {
    held = a.wait_us - static_cast<uint64_t>(w.pending) * kPendingCostUs;  // max(awake, unread)
  }
  return held > after ? 0 : after - held + 1;
}

// How many of a stalled worker's unread connections to take back for a taker that holds
// `taker` connections while the worker holds `holds` (open + unread): below kSpreadFrom all
// of them (a stall at moderate load is what stealing is for); past that, only as many as leave
// the taker holding no more than the worker plus SpreadSlack(), possibly none: a burst's
// hundreds must not move to one taker the moment every loop is busy, which would undo the
// spread (rule 5). No floor: StealStep looks again right after a steal, and a floor per look
// would drain the worker all the same.
inline int64_t StealCap(int64_t holds, int64_t taker) {
  if (holds < kSpreadFrom) return holds;
  int64_t cap = (holds - taker + SpreadSlack(taker)) / 2;
  return cap < 0 ? 0 : cap;
}

// For a worker `i` that ShouldSteal(): how many of its unread connections to take back now;
// 0 while no other worker is free or prompt to take them.
inline int64_t StealCount(const WorkerView* workers, size_t n, size_t i, const Options& o, Clock now) {
  bool taker = false;
  int64_t least = 0;  // the least any taker holds
  for (size_t j = 0; j < n; j++) {
    if (j == i) continue;
    Assessment a = Assess(workers[j], o, now);
    if (a.tier != Tier::kFree && a.tier != Tier::kPrompt) continue;
    if (!taker || a.holds < least) least = a.holds;
    taker = true;
  }
  if (!taker) return 0;
  const WorkerView& w = workers[i];
  int64_t pending = w.pending < 0 ? 0 : w.pending;
  int64_t cap = StealCap(int64_t{w.open < 0 ? 0 : w.open} + pending, least);
  return cap < pending ? cap : pending;
}

// Hedging at light load. A connection handed to one worker waits for that worker alone: if
// it is in a scavenge, slow to be scheduled, or (Assess's "answering") in a handler that
// blocks, the connection waits it out, where a shared listening socket would have been taken
// by whichever worker ran first. So at light load (the accept thread's last round took at most
// one connection, and that one is all that waits unread in the pool: Quiet) a connection left
// unread for kHedgeUs is taken back and handed to a worker asleep in poll with nothing sent to
// it lately, if there is one. One client's connections are read within ~100 µs and the next
// one arrives before kHedgeUs has passed, so the timer rarely fires; under load connections
// wait in several channels at once and StealIn alone decides.
constexpr uint32_t kHedgeUs = 1000;

// Microseconds until the hedge would take back what worker `i` has not read (0 = now), or
// UINT64_MAX when nothing waits or no other worker is asleep and free to take it.
inline uint64_t HedgeIn(const WorkerView* workers, size_t n, size_t i, Clock now) {
  const WorkerView& w = workers[i];
  if (w.pending != 1 || !Quiet(workers, n, 1) || !HedgeTaker(workers, n, i, now)) return UINT64_MAX;
  uint64_t unread = 0;
  if (!Elapsed(now.us, w.unread_since_us, &unread)) return UINT64_MAX;
  return unread >= kHedgeUs ? 0 : kHedgeUs - unread;
}

inline bool ShouldSteal(const WorkerView& w, Clock now, uint32_t steal_after_us) {
  return StealIn(w, now, steal_after_us) == 0;
}

}  // namespace placement
}  // namespace herdless
