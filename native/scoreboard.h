// The scoreboard: one small shared-memory page per worker (a memfd mapped by the primary
// and by that worker), in the spirit of Apache's scoreboard. The worker updates its own
// figures with atomic adds from JS (Atomics on an Int32Array over the mapping); the accept
// thread reads them with relaxed atomic loads. Choosing a worker therefore costs no
// syscall and no message.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>

namespace herdless {

// Indices into the worker's Int32Array; keep in step with src/scoreboard.ts.
enum ScoreField : int {
  kReceived = 0,      // connections the worker has taken off its channel (wraps)
  kOpen = 1,          // connections open in the worker now
  kInFlight = 2,      // requests being handled now
  kRequests = 3,      // requests served (wraps)
  kHeartbeat = 4,     // CLOCK_MONOTONIC milliseconds (low 32 bits) when the loop last ran
  kWakeups = 5,       // herd/reuseport: times the worker woke to accept
  kEmptyWakeups = 6,  // ... and found nothing
  kRejected = 7,      // hand-off records that were malformed or lost fds (MSG_CTRUNC)
  kUtilization = 8,   // event-loop utilisation over the last ~100 ms, per mille
  kRssKb = 9,         // resident set size in KiB, refreshed every second
  kMaxConnections = 10,  // the app server's maxConnections (0: none): a cap for the dispatcher
  kFdRoomStalls = 11,    // times the worker stopped reading its channel near its fd limit
  kFieldCount = 16,   // 64 bytes: one cache line per worker
};

constexpr size_t kScoreboardBytes = kFieldCount * sizeof(int32_t);

struct Scoreboard {
  std::atomic<int32_t> field[kFieldCount];
  int32_t Load(ScoreField f) const { return field[f].load(std::memory_order_relaxed); }
};

static_assert(sizeof(Scoreboard) == kScoreboardBytes, "scoreboard layout");
static_assert(std::atomic<int32_t>::is_always_lock_free, "scoreboard atomics must be lock-free");

// Maps a scoreboard memfd (the worker's own, writable view); returns nullptr and sets errno
// on failure.
Scoreboard* MapScoreboard(int fd);
// The primary's view: read-only, and only of a page sealed against shrinking and growing
// (EPERM otherwise), so that nothing a worker does to the memfd can fault the reader.
// const: a store through it would fault (PROT_READ), so it does not compile.
const Scoreboard* MapScoreboardReadOnly(int fd);
void UnmapScoreboard(const Scoreboard* board);

uint32_t MonotonicMillis();

void InitScoreboard(Napi::Env env, Napi::Object exports);

}  // namespace herdless
