#include "shared/scoreboard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "shared/errors.h"
#include "shared/fd.h"

namespace herdless {

namespace {

// A worker must not be able to shrink the page under the primary's mapping (the primary's
// next read would fault with SIGBUS) or grow it; and nobody may lift that again.
constexpr int kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

Scoreboard* Map(int fd, int prot) {
  void* p = mmap(nullptr, kScoreboardBytes, prot, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : static_cast<Scoreboard*>(p);
}

}  // namespace

Scoreboard* MapScoreboard(int fd) { return Map(fd, PROT_READ | PROT_WRITE); }

const Scoreboard* MapScoreboardReadOnly(int fd) {
  // Only a sealed page of the right size is safe to read from the accept thread.
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) return nullptr;
  struct stat st;
  if ((seals & kSeals) != kSeals || fstat(fd, &st) != 0 || st.st_size != static_cast<off_t>(kScoreboardBytes)) {
    errno = EPERM;
    return nullptr;
  }
  return Map(fd, PROT_READ);
}

void UnmapScoreboard(const Scoreboard* board) {
  if (board != nullptr) munmap(const_cast<Scoreboard*>(board), kScoreboardBytes);
}

void WaitHistogram::Record(uint64_t wait_us, uint32_t connections) {
  size_t i = 0;
  while (i < kWaitBuckets - 1 && wait_us > kWaitBoundsUs[i]) i++;
  bucket[i].fetch_add(connections, std::memory_order_relaxed);
  sum_us.fetch_add(wait_us * connections, std::memory_order_relaxed);
}

uint32_t MonotonicMillis() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: no syscall
  return static_cast<uint32_t>(static_cast<uint64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000);
}

MonotonicNow Monotonic() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: no syscall
  uint64_t us = static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
  return {static_cast<uint32_t>(us), static_cast<uint32_t>(us / 1000)};
}

namespace {

// The ArrayBuffer owns the mapping from here on; if it cannot be made, the mapping goes now.
Napi::ArrayBuffer Expose(Napi::Env env, const Scoreboard* board) {
  try {
    // The primary's view is read-only whatever the pointer type says (JS there only loads);
    // a worker's is its own, writable one.
    return Napi::ArrayBuffer::New(env, const_cast<Scoreboard*>(board), kScoreboardBytes,
                                  [](Napi::Env, void* data) { UnmapScoreboard(static_cast<Scoreboard*>(data)); });
  } catch (...) {
    UnmapScoreboard(board);
    throw;
  }
}

// createScoreboard() -> { fd, buffer }: a zeroed page the primary passes to one worker,
// sealed at its size before the worker exists. The primary only reads it: its view is
// read-only, so a stray write in the primary faults here instead of lying to the acceptor.
Napi::Value CreateScoreboard(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UniqueFd fd(memfd_create("herdless-scoreboard", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.Valid()) throw ErrnoError(env, errno, "memfd_create");
  if (ftruncate(fd.Get(), kScoreboardBytes) != 0) throw ErrnoError(env, errno, "ftruncate");
  if (fcntl(fd.Get(), F_ADD_SEALS, kSeals) != 0) throw ErrnoError(env, errno, "fcntl", "F_ADD_SEALS");
  const Scoreboard* board = MapScoreboardReadOnly(fd.Get());
  if (board == nullptr) throw ErrnoError(env, errno, "mmap", "scoreboard");
  Napi::Object out = Napi::Object::New(env);
  out.Set("buffer", Expose(env, board));
  out.Set("fd", fd.Release());
  return out;
}

// mapScoreboard(fd) -> ArrayBuffer: the worker's view of its own page.
Napi::Value MapScoreboardJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Scoreboard* board = MapScoreboard(fd);
  if (board == nullptr) throw ErrnoError(env, errno, "mmap");
  return Expose(env, board);
}

// externalBuffersAllowed() -> boolean: whether this runtime lets an ArrayBuffer wrap memory
// it did not allocate. V8-sandboxed builds (Electron, for one) refuse, and the scoreboard is
// exactly such memory: Dispatcher.start() asks first and explains, rather than failing in a
// worker. HERDLESS_TEST_REFUSE_EXTERNAL_BUFFERS=1 answers as such a build would (tests only).
Napi::Value ExternalBuffersAllowed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* refuse = getenv("HERDLESS_TEST_REFUSE_EXTERNAL_BUFFERS");
  if (refuse != nullptr && std::string(refuse) == "1") return Napi::Boolean::New(env, false);
  static char probe[8];
  napi_value buffer;
  napi_status status = napi_create_external_arraybuffer(env, probe, sizeof(probe), nullptr, nullptr, &buffer);
  if (status == napi_no_external_buffers_allowed) return Napi::Boolean::New(env, false);
  NAPI_THROW_IF_FAILED(env, status, Napi::Value());
  return Napi::Boolean::New(env, true);
}

Napi::Value MonotonicMillisJs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), MonotonicMillis());
}

}  // namespace

void InitScoreboard(Napi::Env env, Napi::Object exports) {
  exports.Set("createScoreboard", Napi::Function::New(env, CreateScoreboard));
  exports.Set("mapScoreboard", Napi::Function::New(env, MapScoreboardJs));
  exports.Set("externalBuffersAllowed", Napi::Function::New(env, ExternalBuffersAllowed));
  exports.Set("monotonicMillis", Napi::Function::New(env, MonotonicMillisJs));
}

}  // namespace herdless
