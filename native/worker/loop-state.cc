// The worker's event loop, published to its scoreboard at no cost when idle: no timer, a
// few stores when the loop falls asleep and when it wakes.
//
//   asleep: a prepare handle, as the loop enters the poll phase (where it blocks when it
//           has nothing to do). The loop can take a connection at once.
//   awake:  the first entry into JavaScript after that (V8's before-call hook), or the check
//           handle after the poll phase, whichever comes first. I/O callbacks (a request's
//           handler) run inside the poll phase, before check, so the hook is what tells a
//           handler that blocks for 200 ms from a loop that sleeps. It is found with dlsym
//           at run time, so the addon stays ABI-stable: without it (a Node that lacks the
//           symbol), the check handle alone marks the loop awake, later.
// Both handles are unref'd: they never keep the process alive. The accept thread reads the
// state with relaxed loads (native/placement.h), the supervisor derives utilisation from
// the busy time and stalls from how long the loop has been awake. RSS is refreshed from
// the check handle at most once a second, so an idle worker costs nothing.
//
// Each awake span (wake-up to falling asleep again) also goes into a histogram kept in this
// process: the longest any event arriving meanwhile waited for the loop. That is the
// worker's event-loop delay, measured without the 10 ms timer of perf_hooks'
// monitorEventLoopDelay (which would wake an idle loop 100 times a second). It covers the
// last 10-20 s (two windows, turned over as spans are recorded or read, never by a timer),
// so that a reading does not depend on who else read it before; loopDelay() reads it when
// the primary asks for the worker's health.
#include <dlfcn.h>
#include <napi.h>
#include <uv.h>

#include <cerrno>

#include "shared/errors.h"
#include "shared/scoreboard.h"

namespace herdless {
namespace {

constexpr uint32_t kRssEveryMs = 1000;
constexpr uint32_t kDelayWindowMs = 10000;

// Log-linear buckets of µs: 4 per power of two (at most 19% wide), exact below 8 µs.
constexpr int kSubBits = 2;
constexpr int kDelayBuckets = (32 - kSubBits + 1) << kSubBits;

int DelayBucket(uint32_t us) {
  if (us < (1u << (kSubBits + 1))) return static_cast<int>(us);
  int exp = 31 - __builtin_clz(us);  // us >= 8: exp >= 3
  uint32_t sub = (us >> (exp - kSubBits)) & ((1u << kSubBits) - 1);
  return ((exp - kSubBits + 1) << kSubBits) + static_cast<int>(sub);
}

struct DelayHistogram {
  uint32_t bucket[kDelayBuckets] = {};
  uint32_t count = 0;
  uint32_t max_us = 0;
  uint64_t sum_us = 0;

  void Record(uint32_t us) {
    bucket[DelayBucket(us)]++;
    count++;
    sum_us += us;
    if (us > max_us) max_us = us;
  }
  void Add(const DelayHistogram& o) {
    for (int i = 0; i < kDelayBuckets; i++) bucket[i] += o.bucket[i];
    count += o.count;
    sum_us += o.sum_us;
    if (o.max_us > max_us) max_us = o.max_us;
  }
};

// The largest µs value bucket `i` holds (what a percentile reports: never an underestimate).
uint64_t DelayBucketTop(int i) {
  if (i < (1 << (kSubBits + 1))) return static_cast<uint64_t>(i);
  int exp = (i >> kSubBits) + kSubBits - 1;
  uint64_t sub = static_cast<uint64_t>(i & ((1 << kSubBits) - 1));
  return ((((1ull << kSubBits) + sub + 1) << (exp - kSubBits))) - 1;
}

struct LoopState {
  Scoreboard* board = nullptr;
  uv_loop_t* loop = nullptr;
  uv_prepare_t prepare;
  uv_check_t check;
  bool awake = true;
  bool hooked = false;
  uint32_t awake_since_us = 0;
  uint32_t busy_us = 0;
  uint32_t wakeups = 0;
  uint32_t rss_at_ms = 0;
  // Spans of the window under way, and of the one before it.
  DelayHistogram delay;
  DelayHistogram delay_before;
  uint32_t window_ms = 0;
};

LoopState* state = nullptr;  // one per process: only the main thread's loop is watched

// Starts a new window once the current one is kDelayWindowMs old.
void TurnWindow(uint32_t now_ms) {
  uint32_t age = now_ms - state->window_ms;
  if (age < kDelayWindowMs) return;
  state->delay_before = age < 2 * kDelayWindowMs ? state->delay : DelayHistogram{};
  state->delay = DelayHistogram{};
  state->window_ms = now_ms;
}

void Store(ScoreField f, uint32_t v) {
  state->board->field[f].store(static_cast<int32_t>(v), std::memory_order_relaxed);
}

void PublishRss(uint32_t now_ms) {
  size_t rss = 0;
  if (uv_resident_set_memory(&rss) == 0) Store(kRssKb, static_cast<uint32_t>(rss / 1024));
  state->rss_at_ms = now_ms;
}

void MarkAwake() {
  if (state->awake) return;
  MonotonicNow now = Monotonic();
  state->awake = true;
  state->awake_since_us = now.us;
  Store(kLoopWakeups, ++state->wakeups);
  Store(kLoopSinceMs, now.ms);
  Store(kLoopState, (now.us & ~1u) | 1u);
}

void MarkAsleep() {
  if (!state->awake) return;
  MonotonicNow now = Monotonic();
  state->awake = false;
  uint32_t span = now.us - state->awake_since_us;
  state->busy_us += span;
  TurnWindow(now.ms);
  state->delay.Record(span);
  Store(kBusyMicros, state->busy_us);
  Store(kLoopSinceMs, now.ms);
  Store(kLoopState, now.us & ~1u);
}

void OnPrepare(uv_prepare_t*) {
  // Unconditionally: uv_backend_timeout() says 0 whenever libuv has watcher changes queued,
  // which is most iterations. A loop whose poll phase will not block (immediates queued)
  // shows asleep for the few µs until its next callback, and it does read its channel
  // in that poll phase: it can take a connection at once.
  MarkAsleep();
}

void OnCheck(uv_check_t*) {
  MarkAwake();
  uint32_t now_ms = MonotonicMillis();
  if (now_ms - state->rss_at_ms >= kRssEveryMs) PublishRss(now_ms);
}

// v8::Isolate::GetCurrent() and v8::Isolate::AddBeforeCallEnteredCallback(cb), looked up
// rather than linked: the Itanium names have not changed since V8 5, but if they ever do
// the addon still loads and the check handle does the job.
bool HookJsEntry() {
  using GetCurrent = void* (*)();
  using Callback = void (*)(void*);
  using AddCallback = void (*)(void* isolate, Callback cb);
  auto get = reinterpret_cast<GetCurrent>(dlsym(RTLD_DEFAULT, "_ZN2v87Isolate10GetCurrentEv"));
  auto add =
      reinterpret_cast<AddCallback>(dlsym(RTLD_DEFAULT, "_ZN2v87Isolate28AddBeforeCallEnteredCallbackEPFvPS0_E"));
  if (get == nullptr || add == nullptr) return false;
  void* isolate = get();
  if (isolate == nullptr) return false;
  add(isolate, [](void*) { MarkAwake(); });
  return true;
}

// watchLoop(scoreboardFd, useJsHook) -> { jsHook: boolean }: start publishing this
// process's loop state into its scoreboard (our own mapping of the page).
Napi::Value WatchLoop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (state != nullptr) throw Napi::Error::New(env, "watchLoop() was already called in this process");
  int fd = info[0].As<Napi::Number>().Int32Value();
  bool use_hook = info.Length() < 2 || info[1].ToBoolean();
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) throw Napi::Error::New(env, "no libuv loop");
  Scoreboard* board = MapScoreboard(fd);
  if (board == nullptr) throw ErrnoError(env, errno, "mmap", "scoreboard");
  state = new LoopState;  // lives as long as the process: the handles are never closed
  state->board = board;
  state->loop = loop;
  MonotonicNow now = Monotonic();
  state->awake_since_us = now.us;
  state->window_ms = now.ms;
  Store(kBusyMicros, 0);
  Store(kLoopWakeups, 0);
  Store(kLoopSinceMs, now.ms);
  Store(kLoopState, (now.us & ~1u) | 1u);
  PublishRss(now.ms);
  uv_prepare_init(loop, &state->prepare);
  uv_check_init(loop, &state->check);
  uv_prepare_start(&state->prepare, OnPrepare);
  uv_check_start(&state->check, OnCheck);
  uv_unref(reinterpret_cast<uv_handle_t*>(&state->prepare));
  uv_unref(reinterpret_cast<uv_handle_t*>(&state->check));
  state->hooked = use_hook && HookJsEntry();
  Napi::Object out = Napi::Object::New(env);
  out.Set("jsHook", state->hooked);
  return out;
}

// loopDelay() -> { count, p50, p99, max, mean } (µs) of the awake spans of the last 10-20 s,
// the one under way included (it is called while the loop is awake: a span that has already
// lasted long, a block that just ended, is a delay too). null before watchLoop().
Napi::Value LoopDelay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (state == nullptr) return env.Null();
  MonotonicNow now = Monotonic();
  TurnWindow(now.ms);
  DelayHistogram h = state->delay_before;
  h.Add(state->delay);
  if (state->awake) h.Record(now.us - state->awake_since_us);
  auto percentile = [&h](double q) -> uint64_t {
    if (h.count == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * h.count + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < kDelayBuckets; i++) {
      seen += h.bucket[i];
      if (seen >= rank) return DelayBucketTop(i) < h.max_us ? DelayBucketTop(i) : h.max_us;
    }
    return h.max_us;
  };
  Napi::Object out = Napi::Object::New(env);
  out.Set("count", static_cast<double>(h.count));
  out.Set("p50", static_cast<double>(percentile(0.5)));
  out.Set("p99", static_cast<double>(percentile(0.99)));
  out.Set("max", static_cast<double>(h.max_us));
  out.Set("mean", h.count == 0 ? 0.0 : static_cast<double>(h.sum_us) / h.count);
  return out;
}

}  // namespace

void InitLoopState(Napi::Env env, Napi::Object exports) {
  exports.Set("watchLoop", Napi::Function::New(env, WatchLoop));
  exports.Set("loopDelay", Napi::Function::New(env, LoopDelay));
}

}  // namespace herdless
