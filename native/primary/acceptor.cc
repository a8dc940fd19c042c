#include "primary/acceptor.h"

#include <sys/epoll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <string>

#include "shared/errors.h"
#include "shared/fd.h"

namespace herdless {

void Acceptor::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "Acceptor",
                                    {
                                        InstanceMethod<&Acceptor::Start>("start"),
                                        InstanceMethod<&Acceptor::Stop>("stop"),
                                        InstanceMethod<&Acceptor::AddWorker>("addWorker"),
                                        InstanceMethod<&Acceptor::RemoveWorker>("removeWorker"),
                                        InstanceMethod<&Acceptor::PauseWorker>("pauseWorker"),
                                        InstanceMethod<&Acceptor::Dispatch>("dispatch"),
                                        InstanceMethod<&Acceptor::Stats>("stats"),
                                        InstanceMethod<&Acceptor::SetMaxConnections>("setMaxConnections"),
                                        InstanceMethod<&Acceptor::SetStealAfter>("setStealAfter"),
                                        InstanceMethod<&Acceptor::WatchActivity>("watchActivity"),
                                        InstanceMethod<&Acceptor::SetRoute>("setRoute"),
                                        InstanceMethod<&Acceptor::SetProxyProtocol>("setProxyProtocol"),
                                        InstanceMethod<&Acceptor::AddListener>("addListener"),
                                        InstanceMethod<&Acceptor::RemoveListener>("removeListener"),
                                        InstanceMethod<&Acceptor::JoinListener>("joinListener"),
                                    });
  exports.Set("Acceptor", ctor);
}

// new Acceptor(listenFds: number[], maxConnectionsPerWorker: number, stallMs: number, onError)
Acceptor::Acceptor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Acceptor>(info) {
  Napi::Env env = info.Env();
  Napi::Array fds = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < fds.Length(); i++) listeners_.push_back(fds.Get(i).As<Napi::Number>().Int32Value());
  max_connections_ = info[1].As<Napi::Number>().Int32Value();
  stall_ms_ = info[2].As<Napi::Number>().Uint32Value();

  dead_.assign(listeners_.size(), false);
  open_to_all_.assign(listeners_.size(), true);
  members_.resize(listeners_.size());

  // A constructor that throws never runs the destructor: every fd is held here until the
  // last step that can fail is behind us.
  UniqueFd epoll_fd(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_fd.Valid()) throw ErrnoError(env, errno, "epoll_create1");
  UniqueFd wake_fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd.Valid()) throw ErrnoError(env, errno, "eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  if (epoll_ctl(epoll_fd.Get(), EPOLL_CTL_ADD, wake_fd.Get(), &ev) != 0) throw ErrnoError(env, errno, "epoll_ctl");
  // Level-triggered: a listener left with a backlog (we paused) wakes us again later.
  for (size_t i = 0; i < listeners_.size(); i++) {
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = i;
    if (epoll_ctl(epoll_fd.Get(), EPOLL_CTL_ADD, listeners_[i], &ev) != 0)
      throw ErrnoError(env, errno, "epoll_ctl", "listener fd " + std::to_string(listeners_[i]));
  }
  if (info[3].IsFunction()) {
    on_error_ = Napi::ThreadSafeFunction::New(env, info[3].As<Napi::Function>(), "herdless.Acceptor", 0, 1);
    on_error_.Unref(env);  // an idle acceptor must not keep the process alive
    has_on_error_ = true;
  }
  epoll_fd_ = epoll_fd.Release();
  wake_fd_ = wake_fd.Release();
}

Acceptor::~Acceptor() {
  StopThread();
  for (Worker& w : workers_) UnmapScoreboard(w.board);
  for (const Handoff& h : waiting_) ::close(h.fd);
  proxy_.CloseAll();  // while its epoll fd is still ours
  CloseFds();
}

void Acceptor::CloseFds() {
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  wake_fd_ = epoll_fd_ = -1;
}

Napi::Value Acceptor::Start(const Napi::CallbackInfo& info) {
  if (epoll_fd_ < 0) throw Napi::Error::New(info.Env(), "the acceptor was stopped and cannot start again");
  if (!thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_ = true;
    }
    thread_ = std::thread(&Acceptor::Run, this);
  }
  return info.Env().Undefined();
}

// stop(): joins the thread. Connections accepted but not yet handed off are handed off
// one last time if a worker has room; the rest are closed, and their count returned.
Napi::Value Acceptor::Stop(const Napi::CallbackInfo& info) {
  StopThread();
  std::lock_guard<std::mutex> lock(mutex_);
  for (Worker& w : workers_) w.full = false;
  FlushWaiting();
  uint32_t dropped = static_cast<uint32_t>(waiting_.size() + proxy_.CloseAll());
  for (const Handoff& h : waiting_) ::close(h.fd);
  waiting_.clear();
  dropped_.fetch_add(dropped, std::memory_order_relaxed);
  if (has_on_error_) {
    on_error_.Release();
    has_on_error_ = false;
  }
  // The thread is gone: its epoll and eventfd go now, not whenever the GC runs.
  CloseFds();
  return Napi::Number::New(info.Env(), dropped);
}

void Acceptor::StopThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
}

void Acceptor::Wake() {
  if (wake_fd_ < 0) return;  // stopped
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the thread will wake anyway.
  while (write(wake_fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
}

// addWorker(id, channelFd, scoreboardFd, workerEndFd?, routeKey?): workerEndFd, the primary's
// copy of the worker's end, lets the thread take back what a stalled worker has not read
// (stealAfter). routeKey: its client-ip key (its slot, so that a replacement keeps the
// clients of the worker it replaces); default: the id.
Napi::Value Acceptor::AddWorker(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Worker w;
  w.id = info[0].As<Napi::Number>().Int32Value();
  w.channel = info[1].As<Napi::Number>().Int32Value();
  if (info.Length() > 3 && info[3].IsNumber()) w.worker_end = info[3].As<Napi::Number>().Int32Value();
  uint32_t route_key = static_cast<uint32_t>(w.id);
  if (info.Length() > 4 && info[4].IsNumber()) route_key = info[4].As<Napi::Number>().Uint32Value();
  w.board = MapScoreboardReadOnly(info[2].As<Napi::Number>().Int32Value());
  if (w.board == nullptr) throw ErrnoError(env, errno, "mmap", "scoreboard of worker " + std::to_string(w.id));
  // The worker may already have taken connections from a previous life of the channel
  // (re-dispatch reads them back), so start from what the board says it received.
  w.sent = static_cast<uint32_t>(w.board->Load(kReceived));
  w.seen_received = w.seen_sent = w.sent;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    workers_.push_back(w);
    keys_.push_back(route_key);
  }
  Wake();  // we may have been paused for lack of workers
  return env.Undefined();
}

// removeWorker(id): after this returns the thread no longer sends to that worker.
Napi::Value Acceptor::RemoveWorker(const Napi::CallbackInfo& info) {
  int id = info[0].As<Napi::Number>().Int32Value();
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < workers_.size(); i++) {
    if (workers_[i].id != id) continue;
    UnmapScoreboard(workers_[i].board);
    workers_.erase(workers_.begin() + static_cast<long>(i));
    keys_.erase(keys_.begin() + static_cast<long>(i));
    return Napi::Boolean::New(info.Env(), true);
  }
  return Napi::Boolean::New(info.Env(), false);
}

// pauseWorker(id, paused): a draining worker gets no new connections.
Napi::Value Acceptor::PauseWorker(const Napi::CallbackInfo& info) {
  int id = info[0].As<Napi::Number>().Int32Value();
  bool paused = info[1].As<Napi::Boolean>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (Worker& w : workers_)
      if (w.id == id) w.paused = paused;
  }
  Wake();
  return info.Env().Undefined();
}

// dispatch([fd, listener, ...], acceptedAt?): connections read back from a dead worker's
// channel. They go ahead of new ones; the acceptor owns (and eventually closes) them.
// acceptedAt (drainChannel's): each one's first accept time, CLOCK_MONOTONIC ns, so that
// the wait a worker measures counts from then; without it, from now. list.peers
// (drainChannel's): their client addresses, so that they keep their route and PROXY address.
Napi::Value Acceptor::Dispatch(const Napi::CallbackInfo& info) {
  Napi::Array list = info[0].As<Napi::Array>();
  Napi::Array times =
      info.Length() > 1 && info[1].IsArray() ? info[1].As<Napi::Array>() : Napi::Array::New(info.Env(), 0);
  uint64_t now = MonotonicNanos();
  Napi::Value peers_js = list.Get("peers");
  const Peer* peers = nullptr;
  if (peers_js.IsBuffer() && peers_js.As<Napi::Buffer<uint8_t>>().Length() >= (list.Length() / 2) * sizeof(Peer))
    peers = reinterpret_cast<const Peer*>(peers_js.As<Napi::Buffer<uint8_t>>().Data());
  uint32_t closed = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!running_)
      for (Worker& w : workers_) w.full = false;  // nobody else will retry a full channel
    for (uint32_t i = 0; i + 1 < list.Length(); i += 2) {
      Handoff h{list.Get(i).As<Napi::Number>().Int32Value(), list.Get(i + 1).As<Napi::Number>().Uint32Value(), now};
      if (i / 2 < times.Length()) {
        double t = times.Get(i / 2).ToNumber().DoubleValue();
        if (t > 0 && t <= static_cast<double>(now)) h.accepted_ns = static_cast<uint64_t>(t);
      }
      if (peers != nullptr)
        std::memcpy(&h.peer, reinterpret_cast<const uint8_t*>(peers) + (i / 2) * sizeof(Peer), sizeof(Peer));
      redispatched_.fetch_add(1, std::memory_order_relaxed);
      if (running_) {
        waiting_.push_back(h);
      } else if (!Deliver(h)) {
        ::close(h.fd);
        closed++;
      }
    }
    dropped_.fetch_add(closed, std::memory_order_relaxed);
  }
  Wake();
  return Napi::Number::New(info.Env(), closed);
}

Napi::Value Acceptor::SetMaxConnections(const Napi::CallbackInfo& info) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    max_connections_ = info[0].As<Napi::Number>().Int32Value();
  }
  Wake();
  return info.Env().Undefined();
}

// setStealAfter(ms): 0 disables taking connections back.
Napi::Value Acceptor::SetStealAfter(const Napi::CallbackInfo& info) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    steal_after_us_ = info[0].As<Napi::Number>().Uint32Value() * 1000u;
  }
  Wake();
  return info.Env().Undefined();
}

// setRoute(clientIp, secret?): before start(). true: route: 'client-ip' (route-hash.h,
// PickByClient). secret: the pool's 16-byte key for the client hash (a Buffer).
Napi::Value Acceptor::SetRoute(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(mutex_);
  route_by_client_ = info[0].ToBoolean();
  if (info.Length() > 1 && info[1].IsBuffer() && info[1].As<Napi::Buffer<uint8_t>>().Length() == 16) {
    const uint8_t* b = info[1].As<Napi::Buffer<uint8_t>>().Data();
    route_key_ = {};
    for (size_t i = 0; i < 8; i++) {
      route_key_.k0 |= uint64_t{b[i]} << (8 * i);
      route_key_.k1 |= uint64_t{b[8 + i]} << (8 * i);
    }
  }
  send_peers_ = route_by_client_ || proxy_.Enabled();
  return info.Env().Undefined();
}

// setProxyProtocol(timeoutMs, maxWaiting, trusted?): before start(). Every connection must begin with
// a PROXY header (v1 or v2), read by the accept thread before the hand-off (proxy-reader.h).
Napi::Value Acceptor::SetProxyProtocol(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (running_) throw Napi::Error::New(info.Env(), "setProxyProtocol() must come before start()");
  uint32_t timeout_ms = info[0].As<Napi::Number>().Uint32Value();
  uint32_t capacity = info[1].As<Napi::Number>().Uint32Value();
  proxy_.Configure(epoll_fd_, timeout_ms, capacity < 1 ? 1 : capacity);
  // trusted (proxyFrom): rules as a Buffer; absent, every peer may name the client ('*').
  if (info.Length() > 2 && info[2].IsBuffer()) {
    Napi::Buffer<uint8_t> rules = info[2].As<Napi::Buffer<uint8_t>>();
    proxy_.Trust().Configure(false, rules.Data(), rules.Length());
  } else {
    proxy_.Trust().Configure(true, nullptr, 0);
  }
  send_peers_ = true;
  // A proxied client always speaks first (its header), so TCP listeners hand us a connection
  // only once data has come (TCP_DEFER_ACCEPT, 1 s, as nginx's `deferred`): the header is then
  // read at once, in the accept batch, with no epoll registration or extra wake-up. A silent
  // peer waits that second in the kernel (holding no fd of ours), then the rest of its
  // proxyTimeout here. Not for a proxyTimeout under 2 s, where the kernel's one-second steps
  // would blur it; best effort: without it, headers are read from the epoll set as they come.
  deferred_ms_.assign(listeners_.size(), 0);
  for (size_t i = 0; i < listeners_.size() && timeout_ms >= 2000; i++) DeferAccept(i);
  return info.Env().Undefined();
}

// watchActivity(cb): arms a one-shot cb() for the next accepted connection; calling it
// again re-arms it. watchActivity(null) releases the callback.
Napi::Value Acceptor::WatchActivity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!info[0].IsFunction()) {
    if (has_on_activity_) on_activity_.Release();
    has_on_activity_ = activity_armed_ = false;
    return env.Undefined();
  }
  if (!has_on_activity_) {
    on_activity_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "herdless.Acceptor.activity", 0, 1);
    on_activity_.Unref(env);
    has_on_activity_ = true;
  }
  activity_armed_ = true;
  activity_seen_ = accepted_.load(std::memory_order_relaxed);
  return env.Undefined();
}

// Under mutex_, after a round: the first connection since watchActivity() calls back once.
void Acceptor::NoteActivity() {
  if (!activity_armed_ || accepted_.load(std::memory_order_relaxed) == activity_seen_) return;
  activity_armed_ = false;
  if (has_on_activity_) on_activity_.NonBlockingCall();
}

Napi::Value Acceptor::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto num = [&](const std::atomic<uint64_t>& v) {
    return Napi::Number::New(env, static_cast<double>(v.load(std::memory_order_relaxed)));
  };
  Napi::Object out = Napi::Object::New(env);
  out.Set("accepted", num(accepted_));
  out.Set("handedOff", num(handed_off_));
  out.Set("handoffRetries", num(retries_));
  out.Set("redispatched", num(redispatched_));
  out.Set("stolen", num(stolen_));
  out.Set("steals", num(steals_));
  out.Set("backpressurePauses", num(backpressure_pauses_));
  out.Set("backpressurePausedMs", num(backpressure_ms_));
  out.Set("fdPauses", num(fd_pauses_));
  out.Set("fdPausedMs", num(fd_pause_ms_));
  out.Set("dropped", num(dropped_));
  out.Set("shortSlice", Napi::Boolean::New(env, short_slice_.load(std::memory_order_relaxed)));
  Napi::Object errors = Napi::Object::New(env);
  for (int e = 0; e < 256; e++) {
    uint64_t n = accept_errors_[e].load(std::memory_order_relaxed);
    if (n > 0) errors.Set(ErrnoName(e), Napi::Number::New(env, static_cast<double>(n)));
  }
  out.Set("acceptErrors", errors);
  Napi::Object proxy = Napi::Object::New(env);
  proxy.Set("accepted", num(proxy_.counters.accepted));
  proxy.Set("local", num(proxy_.counters.local));
  proxy.Set("untrusted", num(proxy_.counters.untrusted));
  proxy.Set("malformed", num(proxy_.counters.malformed));
  proxy.Set("timedOut", num(proxy_.counters.timed_out));
  proxy.Set("fullPauses", num(proxy_.counters.full));
  out.Set("proxy", proxy);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    out.Set("waiting", Napi::Number::New(env, static_cast<double>(waiting_.size())));
    proxy.Set("waiting", Napi::Number::New(env, static_cast<double>(proxy_.Waiting())));
    Napi::Object pending = Napi::Object::New(env);
    for (const Worker& w : workers_) {
      // The board is the worker's to write: received past sent is nonsense, shown as 0.
      int32_t p = static_cast<int32_t>(w.sent - static_cast<uint32_t>(w.board->Load(kReceived)));
      pending.Set(std::to_string(w.id), p < 0 ? 0 : p);
    }
    out.Set("pendingByWorker", pending);
  }
  return out;
}
}  // namespace herdless
