#include "scoreboard.h"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"
#include "fd.h"

namespace herdless {

Scoreboard* MapScoreboard(int fd) {
  void* p = mmap(nullptr, kScoreboardBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : static_cast<Scoreboard*>(p);
}

void UnmapScoreboard(Scoreboard* board) {
  if (board != nullptr) munmap(board, kScoreboardBytes);
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

Napi::ArrayBuffer Expose(Napi::Env env, Scoreboard* board) {
  return Napi::ArrayBuffer::New(env, board, kScoreboardBytes,
                                [](Napi::Env, void* data) { UnmapScoreboard(static_cast<Scoreboard*>(data)); });
}

// createScoreboard() -> { fd, buffer }: a zeroed page the primary passes to one worker.
Napi::Value CreateScoreboard(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UniqueFd fd(memfd_create("herdless-scoreboard", MFD_CLOEXEC));
  if (!fd.Valid()) throw ErrnoError(env, errno, "memfd_create");
  if (ftruncate(fd.Get(), kScoreboardBytes) != 0) throw ErrnoError(env, errno, "ftruncate");
  Scoreboard* board = MapScoreboard(fd.Get());
  if (board == nullptr) throw ErrnoError(env, errno, "mmap");
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

Napi::Value MonotonicMillisJs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), MonotonicMillis());
}

}  // namespace

void InitScoreboard(Napi::Env env, Napi::Object exports) {
  exports.Set("createScoreboard", Napi::Function::New(env, CreateScoreboard));
  exports.Set("mapScoreboard", Napi::Function::New(env, MapScoreboardJs));
  exports.Set("monotonicMillis", Napi::Function::New(env, MonotonicMillisJs));
}

}  // namespace herdless
