// The scoreboard: one small shared-memory page per worker (a memfd mapped by the primary
// and by that worker), in the spirit of Apache's scoreboard. The worker updates its own
// figures with atomic adds from JS (Atomics on an Int32Array over the mapping); the accept
// thread reads them with relaxed atomic loads. Choosing a worker therefore costs no
// syscall and no message.
//
// After the 16 fields (one cache line) comes the dispatch-wait histogram: how long each
// connection waited from the primary's accept to the worker taking it, written by the
// worker's inbox (native/inbox.cc), summed by the primary on a stats() call.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>

namespace herdless {

// Indices into the worker's Int32Array; keep in step with src/scoreboard.ts.
enum ScoreField : int {
  kReceived = 0,  // connections the worker has taken off its channel (wraps)
  kOpen = 1,      // connections open in the worker now
  kInFlight = 2,  // requests being handled now
  kRequests = 3,  // requests served (wraps)
  // 4: unused since the loop state (12..15) replaced the 25 ms heartbeat; kept free so the
  // other indices stay put.
  kWakeups = 5,          // herd/reuseport: times the worker woke to accept
  kEmptyWakeups = 6,     // ... and found nothing
  kRejected = 7,         // hand-off records that were malformed or lost fds (MSG_CTRUNC)
  kUtilization = 8,      // event-loop utilisation over the last ~100 ms, per mille
  kRssKb = 9,            // resident set size in KiB, refreshed at most once a second while the loop runs
  kMaxConnections = 10,  // the app server's maxConnections (0: none): a cap for the dispatcher
  kFdRoomStalls = 11,    // times the worker stopped reading its channel near its fd limit
  // The worker's event loop, written by native/loop-state.cc (no timer: a store per wake-up):
  kLoopState = 12,    // bit 0: 1 = awake (running callbacks), 0 = asleep in the poll phase;
                      // bits 1..31: CLOCK_MONOTONIC microseconds (low 32 bits) of that change
  kBusyMicros = 13,   // microseconds the loop has spent awake, updated as it falls asleep (wraps)
  kLoopWakeups = 14,  // times the loop woke from sleep (wraps)
  kLoopSinceMs = 15,  // CLOCK_MONOTONIC milliseconds (low 32 bits) of the last change: long spans
  kFieldCount = 16,   // 64 bytes: one cache line per worker
};

// Upper bounds (le, µs) of the dispatch-wait buckets; the last bucket is +Inf. Keep in step
// with src/scoreboard.ts (WAIT_BUCKETS_SECONDS).
constexpr uint32_t kWaitBoundsUs[] = {50,    100,   250,   500,    1000,   2500,   5000,
                                      10000, 25000, 50000, 100000, 250000, 500000, 1000000};
constexpr size_t kWaitBuckets = sizeof(kWaitBoundsUs) / sizeof(kWaitBoundsUs[0]) + 1;

// Per-bucket counts (not cumulative: one add per connection) and the sum of waits in µs.
// The count is the sum of the buckets, so a reader never sees it disagree with them.
struct WaitHistogram {
  std::atomic<uint64_t> bucket[kWaitBuckets];
  std::atomic<uint64_t> sum_us;
  void Record(uint64_t wait_us, uint32_t connections);
};

struct Scoreboard {
  std::atomic<int32_t> field[kFieldCount];
  WaitHistogram wait;
  int32_t Load(ScoreField f) const { return field[f].load(std::memory_order_relaxed); }
};

constexpr size_t kWaitOffset = kFieldCount * sizeof(int32_t);  // 64: the histogram starts here
constexpr size_t kScoreboardBytes = sizeof(Scoreboard);

static_assert(kWaitOffset == 64 && sizeof(Scoreboard) == kWaitOffset + sizeof(WaitHistogram), "scoreboard layout");
static_assert(kScoreboardBytes == 192, "scoreboard layout: keep in step with src/scoreboard.ts");
static_assert(std::atomic<int32_t>::is_always_lock_free, "scoreboard atomics must be lock-free");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "scoreboard atomics must be lock-free");

// Maps a scoreboard memfd (the worker's own, writable view); returns nullptr and sets errno
// on failure.
Scoreboard* MapScoreboard(int fd);
// The primary's view: read-only, and only of a page sealed against shrinking and growing
// (EPERM otherwise), so that nothing a worker does to the memfd can fault the reader.
// const: a store through it would fault (PROT_READ), so it does not compile.
const Scoreboard* MapScoreboardReadOnly(int fd);
void UnmapScoreboard(const Scoreboard* board);

uint32_t MonotonicMillis();

// Both clocks from one reading, as the loop state stores them.
struct MonotonicNow {
  uint32_t us;  // low 32 bits of CLOCK_MONOTONIC microseconds (wraps every ~71 minutes)
  uint32_t ms;  // low 32 bits of CLOCK_MONOTONIC milliseconds
};
MonotonicNow Monotonic();

void InitScoreboard(Napi::Env env, Napi::Object exports);

}  // namespace herdless
