#include "acceptor.h"

#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <string>

#include "coalesce.h"
#include "errors.h"
#include "fd.h"

namespace herdless {
namespace {

constexpr int kMaxEvents = 16;
constexpr int kAcceptBatch = 64;          // per listener per wake-up, so listeners share fairly
constexpr int kBackpressureRetryMs = 2;   // workers free room without telling us: look again soon
constexpr int kFdExhaustedRetryMs = 100;  // EMFILE/ENFILE: give the process time to close fds
constexpr int kErrorRetryMs = 100;        // a whole batch of failed accepts: something is wrong, slow down
constexpr uint64_t kWakeTag = UINT64_MAX;
constexpr uint32_t kAvoidUs = 2000;        // a loop awake this long gets nothing while another can take it
constexpr int kStealRecheckMs = 2;         // a stalled worker holds connections but nobody is free yet
constexpr size_t kStealMaxRecords = 64;    // per worker per step, like a worker's own read batch

// The client's address from accept4's own sockaddr (no extra syscall); none for unix sockets.
Peer PeerOf(const sockaddr_storage& ss, socklen_t len) {
  Peer p;
  if (ss.ss_family == AF_INET && len >= sizeof(sockaddr_in)) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    p.family = 4;
    p.port = ntohs(in->sin_port);
    std::memcpy(p.addr, &in->sin_addr, 4);
  } else if (ss.ss_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    p.family = 6;
    p.port = ntohs(in6->sin6_port);
    std::memcpy(p.addr, &in6->sin6_addr, 16);
  }
  return p;
}

bool IsFdExhaustion(int err) { return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM; }

// accept() errors that say the listener itself is unusable (shut down by whoever else holds
// it, closed under us), not that one client went away: retrying can only spin.
bool IsDeadListener(int err) { return err == EINVAL || err == EBADF || err == ENOTSOCK || err == EFAULT; }

// A listener that reports these has been shut down: a listening TCP socket never hangs up,
// and a shut-down unix listener reads as readable forever while accept() says EAGAIN.
constexpr uint32_t kHangup = EPOLLERR | EPOLLHUP | EPOLLRDHUP;

}  // namespace

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

// addWorker(id, channelFd, scoreboardFd, workerEndFd?): workerEndFd, the primary's copy of
// the worker's end, lets the thread take back what a stalled worker has not read (stealAfter).
Napi::Value Acceptor::AddWorker(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Worker w;
  w.id = info[0].As<Napi::Number>().Int32Value();
  w.channel = info[1].As<Napi::Number>().Int32Value();
  if (info.Length() > 3 && info[3].IsNumber()) w.worker_end = info[3].As<Napi::Number>().Int32Value();
  w.board = MapScoreboardReadOnly(info[2].As<Napi::Number>().Int32Value());
  if (w.board == nullptr) throw ErrnoError(env, errno, "mmap", "scoreboard of worker " + std::to_string(w.id));
  // The worker may already have taken connections from a previous life of the channel
  // (re-dispatch reads them back), so start from what the board says it received.
  w.sent = static_cast<uint32_t>(w.board->Load(kReceived));
  w.seen_received = w.seen_sent = w.sent;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    workers_.push_back(w);
    keys_.push_back(static_cast<uint32_t>(w.id));
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
  Napi::Array times = info.Length() > 1 && info[1].IsArray() ? info[1].As<Napi::Array>() : Napi::Array::New(info.Env(), 0);
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
      if (peers != nullptr) std::memcpy(&h.peer, reinterpret_cast<const uint8_t*>(peers) + (i / 2) * sizeof(Peer), sizeof(Peer));
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

// setRoute(clientIp): before start(). true: route: 'client-ip' (placement.h, PickByClient).
Napi::Value Acceptor::SetRoute(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(mutex_);
  route_by_client_ = info[0].ToBoolean();
  send_peers_ = route_by_client_ || proxy_.Enabled();
  return info.Env().Undefined();
}

// setProxyProtocol(timeoutMs, maxWaiting): before start(). Every connection must begin with
// a PROXY header (v1 or v2), read by the accept thread before the hand-off (proxy-reader.h).
Napi::Value Acceptor::SetProxyProtocol(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (running_) throw Napi::Error::New(info.Env(), "setProxyProtocol() must come before start()");
  uint32_t timeout_ms = info[0].As<Napi::Number>().Uint32Value();
  uint32_t capacity = info[1].As<Napi::Number>().Uint32Value();
  proxy_.Configure(epoll_fd_, timeout_ms, capacity < 1 ? 1 : capacity);
  send_peers_ = true;
  // A proxied client always speaks first (its header), so TCP listeners hand us a connection
  // only once data has come (TCP_DEFER_ACCEPT, 1 s, as nginx's `deferred`): the header is then
  // read at once, in the accept batch, with no epoll registration or extra wake-up. A silent
  // peer waits that second in the kernel (holding no fd of ours), then the rest of its
  // proxyTimeout here. Not for a proxyTimeout under 2 s, where the kernel's one-second steps
  // would blur it; best effort: without it, headers are read from the epoll set as they come.
  constexpr int kDeferS = 1;
  deferred_ms_.assign(listeners_.size(), 0);
  for (size_t i = 0; i < listeners_.size() && timeout_ms >= 2000; i++) {
    sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(listeners_[i], reinterpret_cast<sockaddr*>(&ss), &len) != 0) continue;
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) continue;
    int defer_s = kDeferS;
    if (setsockopt(listeners_[i], IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof(defer_s)) == 0) deferred_ms_[i] = kDeferS * 1000;
  }
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
  Napi::Object errors = Napi::Object::New(env);
  for (int e = 0; e < 256; e++) {
    uint64_t n = accept_errors_[e].load(std::memory_order_relaxed);
    if (n > 0) errors.Set(ErrnoName(e), Napi::Number::New(env, static_cast<double>(n)));
  }
  out.Set("acceptErrors", errors);
  Napi::Object proxy = Napi::Object::New(env);
  proxy.Set("accepted", num(proxy_.counters.accepted));
  proxy.Set("local", num(proxy_.counters.local));
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

// ---- accept thread -------------------------------------------------------------------

// The policy lives in placement.h (a pure function, unit-tested through pickForTest). Here we
// only gather what it needs: each worker's board (a few relaxed loads, no syscall) and our
// own count of what it has not read yet.
placement::WorkerView Acceptor::Observe(Worker& w, bool usable, MonotonicNow now) {
  placement::WorkerView v;
  uint32_t received = static_cast<uint32_t>(w.board->Load(kReceived));
  v.pending = static_cast<int32_t>(w.sent - received);
  // Connections unread since: the first send into an empty channel, or the last time the
  // worker read something (progress), whichever is later.
  if (received != w.seen_received || w.seen_pending <= 0) w.unread_since_us = now.us;
  w.seen_received = received;
  w.seen_pending = v.pending;
  if (w.sent != w.seen_sent) {
    w.seen_sent = w.sent;
    w.sent_at_us = now.us;
    w.sent_ever = true;
  }
  v.sent_at_us = w.sent_at_us;
  v.sent_ever = w.sent_ever;
  v.usable = usable;
  v.open = w.board->Load(kOpen);
  v.in_flight = w.board->Load(kInFlight);
  v.max_connections = w.board->Load(kMaxConnections);
  v.loop = static_cast<uint32_t>(w.board->Load(kLoopState));
  v.loop_since_ms = static_cast<uint32_t>(w.board->Load(kLoopSinceMs));
  v.unread_since_us = w.unread_since_us;
  return v;
}

int Acceptor::PickWorker(uint32_t, const std::vector<bool>& skip) {
  MonotonicNow now = Monotonic();
  size_t n = workers_.size();
  views_.resize(n);
  for (size_t i = 0; i < n; i++) {
    Worker& w = workers_[i];
    views_[i] = Observe(w, !(w.paused || w.full || skip[i]), now);
  }
  return placement::Pick(views_.data(), n, PlacementOptions(), {now.us, now.ms}, next_);
}

placement::Options Acceptor::PlacementOptions() const {
  placement::Options o;
  o.max_connections = max_connections_;
  o.avoid_us = steal_after_us_ > 0 && steal_after_us_ < kAvoidUs ? steal_after_us_ : kAvoidUs;
  return o;
}

// Right after PickWorker() (views_ fresh, `usable` already saying who was tried): the
// heaviest healthy worker for this client, or -1 (no address, or none healthy: the caller
// keeps the least-loaded choice).
int Acceptor::RouteByClient(const Peer& peer) {
  uint64_t client = placement::ClientHash(peer.family, peer.addr);
  if (client == 0) return -1;
  MonotonicNow now = Monotonic();
  return placement::PickByClient(views_.data(), keys_.data(), workers_.size(), client, PlacementOptions(), {now.us, now.ms},
                                 uint64_t{stall_ms_} * 1000);
}

// Reads back what worker `index` has not read and hands it to others. Each SEQPACKET record
// goes to exactly one reader, so a connection is either the worker's or ours, never both;
// what we read comes off `sent`, so sent - received stays exact. Returns connections taken.
// Record by record, and only while this process can install the fds a record carries: past
// RLIMIT_NOFILE the kernel would drop them (MSG_CTRUNC), and with them the connections, which
// are better left with the worker. (A record can still lose fds if another thread takes the
// last free ones between the peek and the read: counted in dropped.)
size_t Acceptor::StealFrom(size_t index) {
  Worker& w = workers_[index];
  std::vector<Handoff> taken;
  uint32_t announced = 0, malformed = 0;
  for (size_t r = 0; r < kStealMaxRecords; r++) {
    // Other threads of this process (the app's JS) open fds too, so no estimate will do:
    // each record is first peeked at with room for its fds (a steal is rare; this is cheap).
    if (PeekFits(w.worker_end) != 1) break;
    uint32_t records = announced + malformed;
    // An error leaves the rest where it is: the worker (or its exit) deals with it.
    if (ReceiveHandoffs(w.worker_end, 1, &taken, &announced, &malformed) != 0) break;
    if (announced + malformed == records) break;  // empty
  }
  w.sent -= announced;
  // Fds the kernel could not install all the same (another thread took the last ones).
  if (announced > taken.size()) dropped_.fetch_add(announced - taken.size(), std::memory_order_relaxed);
  if (announced == 0) return 0;
  steals_.fetch_add(1, std::memory_order_relaxed);
  stolen_.fetch_add(taken.size(), std::memory_order_relaxed);
  w.seen_pending = 0;  // re-dated on the next look
  for (const Handoff& h : taken)
    if (!Deliver(h, static_cast<int>(index))) waiting_.push_back(h);
  return taken.size();
}

// Called after every round of the accept thread. Takes connections back from a worker that
// has held them unread past stealAfter, if another worker is free or prompt to take them.
// Returns how long epoll_wait may sleep: -1 (forever) unless some worker holds unread
// connections, so an idle pool costs the thread nothing.
int Acceptor::StealStep() {
  if (steal_after_us_ == 0 || workers_.empty()) return -1;
  // client-ip: a client's connections leave its worker only once it is stalled (stall_ms_,
  // what PickByClient skips), not after every busy moment: each move can cost a session.
  uint32_t steal_after_us = steal_after_us_;
  if (route_by_client_ && steal_after_us < stall_ms_ * 1000u) steal_after_us = stall_ms_ * 1000u;
  MonotonicNow now = Monotonic();
  size_t n = workers_.size();
  views_.resize(n);
  for (size_t i = 0; i < n; i++) {
    Worker& w = workers_[i];
    views_[i] = Observe(w, !(w.paused || w.full), now);
  }
  placement::Options o;
  o.max_connections = max_connections_;
  o.avoid_us = steal_after_us_ < kAvoidUs ? steal_after_us_ : kAvoidUs;
  placement::Clock clock{now.us, now.ms};
  int64_t wait_us = -1;
  for (size_t i = 0; i < n; i++) {
    const placement::WorkerView& v = views_[i];
    if (workers_[i].worker_end < 0) continue;
    uint64_t in = placement::StealIn(v, clock, steal_after_us);
    if (in == UINT64_MAX) continue;
    if (in == 0) {
      bool taker = false;
      for (size_t j = 0; j < n && !taker; j++) {
        if (j == i) continue;
        placement::Tier t = placement::Assess(views_[j], o, clock).tier;
        taker = t == placement::Tier::kFree || t == placement::Tier::kPrompt;
      }
      if (taker && StealFrom(i) > 0) return 0;  // look again at once: the picture changed
      in = uint64_t{kStealRecheckMs} * 1000;    // nobody can take them yet
    }
    if (wait_us < 0 || static_cast<int64_t>(in) < wait_us) wait_us = static_cast<int64_t>(in);
  }
  if (wait_us < 0) return -1;
  return static_cast<int>((wait_us + 999) / 1000);
}

bool Acceptor::AnyWorkerIdle() {
  for (const Worker& w : workers_) {
    if (w.paused) continue;
    uint32_t pending = w.sent - static_cast<uint32_t>(w.board->Load(kReceived));
    if (pending == 0 && w.board->Load(kInFlight) <= 0) return true;
  }
  return false;
}

bool Acceptor::HasRoom(uint32_t now) {  // used while paused, to decide when to resume
  std::vector<bool> skip(workers_.size(), false);
  return PickWorker(now, skip) >= 0;
}

bool Acceptor::Deliver(const Handoff& handoff, int exclude) {
  uint32_t now = MonotonicMillis();
  std::vector<bool> tried(workers_.size(), false);
  if (exclude >= 0 && static_cast<size_t>(exclude) < tried.size()) tried[static_cast<size_t>(exclude)] = true;
  for (;;) {
    int i = PickWorker(now, tried);
    if (i < 0) return false;
    if (route_by_client_) {
      int sticky = RouteByClient(handoff.peer);
      if (sticky >= 0) i = sticky;
    }
    Worker& w = workers_[static_cast<size_t>(i)];
    int err = SendHandoffs(w.channel, &handoff.fd, 1, handoff.listener, handoff.accepted_ns, send_peers_ ? &handoff.peer : nullptr);
    if (err == 0) {
      w.sent++;
      next_ = static_cast<size_t>(i) + 1;
      // The record in flight holds its own reference to the socket, so ours can go now.
      // If the worker dies before reading it, the primary's copy of the worker's end
      // still holds the record: pool code drains it and calls dispatch() (re-dispatch).
      ::close(handoff.fd);
      handed_off_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    retries_.fetch_add(1, std::memory_order_relaxed);
    tried[static_cast<size_t>(i)] = true;
    if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) w.full = true;
    // Any other error (the channel broke) just means: try the next worker. Pool code
    // notices the worker's exit and removes it.
  }
}

void Acceptor::SendBatch(size_t index, uint32_t listener) {
  std::vector<int>& fds = batches_[index];
  std::vector<Peer>& peers = batch_peers_[index];
  Worker& w = workers_[index];
  uint64_t accepted_ns = batch_since_ns_[index];
  int err = SendHandoffs(w.channel, fds.data(), fds.size(), listener, accepted_ns, send_peers_ ? peers.data() : nullptr);
  if (err == 0) {
    for (int fd : fds) ::close(fd);  // see Deliver(): the record holds the sockets now
    handed_off_.fetch_add(fds.size(), std::memory_order_relaxed);
    next_ = index + 1;
    fds.clear();
    peers.clear();
    return;
  }
  // Undo the tentative count and hand the connections out one by one, elsewhere.
  w.sent -= static_cast<uint32_t>(fds.size());
  retries_.fetch_add(1, std::memory_order_relaxed);
  if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) w.full = true;
  for (size_t k = 0; k < fds.size(); k++) {
    Handoff h{fds[k], listener, accepted_ns};
    if (send_peers_) h.peer = peers[k];
    if (!Deliver(h)) waiting_.push_back(h);
  }
  fds.clear();
  peers.clear();
}

bool Acceptor::FlushWaiting() {
  while (!waiting_.empty()) {
    if (!Deliver(waiting_.front())) return false;
    waiting_.pop_front();
  }
  return true;
}

// Accepts up to kAcceptBatch connections, choosing a worker for each before accepting it
// (what cannot be handed off right away stays in the kernel's backlog). Connections for the
// same worker travel together, up to kMaxBatch per record.
Acceptor::Pause Acceptor::AcceptFrom(size_t index) {
  int listener = listeners_[index];
  batches_.resize(workers_.size());
  batch_since_ns_.resize(workers_.size());
  batch_peers_.resize(workers_.size());
  std::vector<bool> skip(workers_.size(), false);
  uint32_t now = MonotonicMillis();
  Pause result = Pause::kNone;
  int failures = 0;
  for (int i = 0; i < kAcceptBatch; i++) {
    if (proxy_.Enabled() && proxy_.Full()) {
      // Headers still to read fill the reader: leave the rest in the kernel's backlog.
      proxy_.counters.full.fetch_add(1, std::memory_order_relaxed);
      ArmListeners(false);
      break;
    }
    int chosen = PickWorker(now, skip);
    if (chosen < 0) {
      result = Pause::kBackpressure;
      break;
    }
    sockaddr_storage ss;
    socklen_t ss_len = sizeof(ss);
    int fd = accept4(listener, reinterpret_cast<sockaddr*>(&ss), &ss_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        drained_ = true;
        break;
      }
      if (err == EINTR) continue;
      accept_errors_[err & 255].fetch_add(1, std::memory_order_relaxed);
      // Level-triggered epoll would report the listener again at once: sleep instead of
      // spinning a core until fds are free.
      if (IsFdExhaustion(err)) {
        result = Pause::kFds;
        break;
      }
      if (IsDeadListener(err)) {
        ListenerFailed(index, err, "accept4");
        break;
      }
      // ECONNABORTED, EPROTO, ...: that client is gone, the next may not be. A whole batch
      // of nothing else is not bad luck: slow down rather than spin on it.
      if (++failures == kAcceptBatch) result = Pause::kErrors;
      continue;
    }
    accepted_.fetch_add(1, std::memory_order_relaxed);
    Peer peer;
    if (send_peers_) peer = PeerOf(ss, ss_len);
    if (proxy_.Enabled()) {
      // Its header usually came with the first segment: read now, routed and batched below.
      // If not, it waits in proxy_ and is routed once the header is whole (RunLoop).
      Handoff h{fd, static_cast<uint32_t>(index), MonotonicNanos(), peer};
      ProxyReader::Outcome outcome = proxy_.Take(&h, MonotonicMillis(), deferred_ms_[index]);
      if (outcome == ProxyReader::Outcome::kDropped) dropped_.fetch_add(1, std::memory_order_relaxed);
      if (outcome != ProxyReader::Outcome::kReady) continue;
      peer = h.peer;
    }
    if (route_by_client_) {
      int sticky = RouteByClient(peer);  // views_ are PickWorker's, a moment ago
      if (sticky >= 0) chosen = sticky;
    }
    size_t w = static_cast<size_t>(chosen);
    // The record is dated by its oldest connection: one clock read (vDSO) per record.
    if (batches_[w].empty()) batch_since_ns_[w] = MonotonicNanos();
    batches_[w].push_back(fd);
    if (send_peers_) batch_peers_[w].push_back(peer);
    workers_[w].sent++;  // tentatively, so that the next choice sees this worker's new load
    if (batches_[w].size() == kMaxBatch) SendBatch(w, static_cast<uint32_t>(index));
  }
  for (size_t w = 0; w < batches_.size(); w++)
    if (!batches_[w].empty()) SendBatch(w, static_cast<uint32_t>(index));
  if (!waiting_.empty()) result = Pause::kBackpressure;
  return result;
}

// Paused, the listeners' events wait (level-triggered: reported again), but PROXY headers
// keep arriving and their deadlines keep running: read what came, close whoever is late, so
// that a silent peer never holds its fd for as long as the pool stays full. Completed ones
// queue in waiting_ for the next worker with room. Returns the next deadline, as Expire.
int Acceptor::ReadHeadersWhilePaused(std::vector<Handoff>* ready) {
  epoll_event events[kMaxEvents];
  int n;
  do {
    n = epoll_wait(epoll_fd_, events, kMaxEvents, 0);
  } while (n < 0 && errno == EINTR);
  for (int i = 0; i < n; i++) {
    uint64_t tag = events[i].data.u64;
    if (tag == kWakeTag) DrainWake();
    else if ((tag & ProxyReader::kTagBit) != 0) proxy_.OnEvent(tag, events[i].events, ready);
  }
  for (const Handoff& h : *ready) waiting_.push_back(h);
  ready->clear();
  return proxy_.Expire(MonotonicMillis());
}

void Acceptor::DrainWake() {
  uint64_t count;
  while (read(wake_fd_, &count, sizeof(count)) < 0 && errno == EINTR) {
  }
  // Something changed (a worker came, went or was resumed): channels may have room again.
  for (Worker& w : workers_) w.full = false;
}

void Acceptor::Run() {
  // Named, so that top -H, perf and /proc/<pid>/task/*/comm can tell it apart.
  pthread_setname_np(pthread_self(), "herdless-accept");
  RunLoop();
  std::lock_guard<std::mutex> lock(mutex_);
  running_ = false;
  if (stopping_) return;  // stop() hands off or closes what waits
  // A fatal error ended the thread: what waits now would wait forever.
  for (Worker& w : workers_) w.full = false;
  FlushWaiting();
  dropped_.fetch_add(waiting_.size(), std::memory_order_relaxed);
  for (const Handoff& h : waiting_) ::close(h.fd);
  waiting_.clear();
}

// Removes a listener that can no longer accept from the set the thread waits on, and says
// so once. The fd stays open (its owner closes it with the dispatcher); the others go on.
void Acceptor::ListenerFailed(size_t index, int err, const char* syscall) {
  if (dead_[index]) return;
  dead_[index] = true;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listeners_[index], nullptr) != 0) {
    // Still watched, then: RunLoop() backs off each time it is reported instead of spinning.
  }
  Report(err, syscall, static_cast<int>(index));
}

// proxyProtocol: while the reader is full, the listeners stay in the epoll set without
// events (level-triggered, they would report their backlog at once, forever).
void Acceptor::ArmListeners(bool armed) {
  if (listeners_armed_ == armed) return;
  listeners_armed_ = armed;
  for (size_t i = 0; i < listeners_.size(); i++) {
    if (dead_[i]) continue;
    epoll_event ev{};
    ev.events = armed ? EPOLLIN | EPOLLRDHUP : 0;
    ev.data.u64 = i;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listeners_[i], &ev) != 0) {
      // Not watched as asked: if still armed, AcceptFrom() disarms again on the next event.
    }
  }
}

void Acceptor::RunLoop() {
  epoll_event events[kMaxEvents];
  Pause pause = Pause::kNone;
  Coalescer coalescer;
  uint32_t delay_us = 0;
  int steal_ms = -1;  // epoll timeout: only while some worker holds connections unread
  int proxy_ms = -1;  // ... or until the oldest PROXY header still awaited is due
  std::vector<Handoff> ready;  // connections whose PROXY header just completed
  for (;;) {
    if (delay_us > 0 && pause == Pause::kNone) {
      timespec ts{0, static_cast<long>(delay_us) * 1000};
      while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
      }
    }
    if (pause != Pause::kNone) {
      // Paused: wait without the listeners, for a wake-up (new worker, stop) or a timeout
      // after which we look at the scoreboard again. Never a busy loop.
      int ms = pause == Pause::kFds ? kFdExhaustedRetryMs : pause == Pause::kErrors ? kErrorRetryMs : kBackpressureRetryMs;
      pollfd p{wake_fd_, POLLIN, 0};
      uint32_t started = MonotonicMillis();
      int rc = poll(&p, 1, ms);
      if (rc < 0 && errno != EINTR) return ReportFatal(errno, "poll");
      if (pause != Pause::kErrors)
        (pause == Pause::kFds ? fd_pause_ms_ : backpressure_ms_).fetch_add(MonotonicMillis() - started);
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      if (rc > 0) DrainWake();
      if (proxy_.Enabled() && proxy_.Waiting() > 0) proxy_ms = ReadHeadersWhilePaused(&ready);
      for (Worker& w : workers_) w.full = false;
      // Not while fds run out: a record read back then could lose its fds (MSG_CTRUNC).
      steal_ms = pause == Pause::kFds ? 0 : StealStep();  // 0: look again once resumed
      pause = FlushWaiting() && HasRoom(MonotonicMillis()) ? Pause::kNone : Pause::kBackpressure;
      continue;
    }
    int timeout = steal_ms;
    if (proxy_ms >= 0 && (timeout < 0 || proxy_ms < timeout)) timeout = proxy_ms;
    int n = epoll_wait(epoll_fd_, events, kMaxEvents, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ReportFatal(errno, "epoll_wait");
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    uint64_t accepted_before = accepted_.load(std::memory_order_relaxed);
    for (int i = 0; i < n; i++) {
      // Edge-triggered: a header's event is never reported again, so none may be skipped.
      if ((events[i].data.u64 & ProxyReader::kTagBit) != 0 && events[i].data.u64 != kWakeTag) {
        proxy_.OnEvent(events[i].data.u64, events[i].events, &ready);
      } else if (pause != Pause::kNone) {
        continue;  // level-triggered: reported again
      } else if (events[i].data.u64 == kWakeTag) {
        DrainWake();
      } else if (!FlushWaiting()) {
        pause = Pause::kBackpressure;
      } else {
        size_t listener = static_cast<size_t>(events[i].data.u64);
        if (dead_[listener]) {
          pause = Pause::kErrors;  // given up, but it could not be removed from the epoll set
          continue;
        }
        drained_ = false;
        pause = AcceptFrom(listener);
        // Shut down: take what its backlog still holds, then stop watching it.
        if ((events[i].events & kHangup) != 0 && drained_) ListenerFailed(listener, ESHUTDOWN, "epoll_wait");
      }
    }
    if (proxy_.Enabled()) {
      // Their headers have been read: route (by the address they name) and hand off.
      for (const Handoff& h : ready)
        if (!Deliver(h)) waiting_.push_back(h);
      ready.clear();
      proxy_ms = proxy_.Expire(MonotonicMillis());
      if (!proxy_.Full()) ArmListeners(true);
    }
    if (pause == Pause::kNone && !FlushWaiting()) pause = Pause::kBackpressure;
    steal_ms = StealStep();
    NoteActivity();
    if (pause == Pause::kNone && !waiting_.empty()) pause = Pause::kBackpressure;
    if (pause == Pause::kBackpressure) backpressure_pauses_.fetch_add(1, std::memory_order_relaxed);
    if (pause == Pause::kFds) fd_pauses_.fetch_add(1, std::memory_order_relaxed);
    delay_us = coalescer.After(accepted_.load(std::memory_order_relaxed) - accepted_before);
    // Waiting only pays while every worker has work: an idle worker should get the next
    // connection the moment it arrives.
    if (delay_us > 0 && AnyWorkerIdle()) delay_us = 0;
  }
}

void Acceptor::ReportFatal(int err, const char* syscall) { Report(err, syscall, -1); }

// To JS, through the thread-safe function only: err.listener is the index of the listener
// that failed, or absent when the thread itself stopped. Never blocks (the queue is unbounded).
void Acceptor::Report(int err, const char* syscall, int listener) {
  if (!has_on_error_) return;
  on_error_.NonBlockingCall([err, syscall, listener](Napi::Env env, Napi::Function fn) {
    Napi::Error e = ErrnoError(env, err, syscall);
    if (listener >= 0) e.Set("listener", Napi::Number::New(env, listener));
    fn.Call({e.Value()});
  });
}

}  // namespace herdless
