// The accept thread: epoll over the listeners, batched accept4, placement, hand-off.
// Nothing here calls into JS except through the thread-safe function (Report).
#include "primary/acceptor.h"

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

#include "primary/coalesce.h"
#include "primary/short-slice.h"
#include "shared/errors.h"
#include "shared/fd.h"

namespace herdless {
namespace {

constexpr int kMaxEvents = 16;
constexpr int kAcceptBatch = 64;          // per listener per wake-up, so listeners share fairly
constexpr int kBackpressureRetryMs = 2;   // workers free room without telling us: look again soon
constexpr int kFdExhaustedRetryMs = 100;  // EMFILE/ENFILE: give the process time to close fds
constexpr int kErrorRetryMs = 100;        // a whole batch of failed accepts: something is wrong, slow down

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

Acceptor::Pause Acceptor::AcceptFrom(size_t index) {
  int listener = listeners_[index];
  batches_.resize(workers_.size());
  batch_since_ns_.resize(workers_.size());
  batch_peers_.resize(workers_.size());
  std::vector<bool> skip(workers_.size(), false);
  MarkIneligible(static_cast<uint32_t>(index), &skip);
  uint32_t now = MonotonicMillis();
  Pause result = Pause::kNone;
  int failures = 0;
  for (int i = 0; i < kAcceptBatch; i++) {
    if (proxy_.Enabled() && proxy_.Full()) {
      // Headers still to read fill the reader: leave the rest in the kernel's backlog.
      ArmListeners(false);
      break;
    }
    // Light load: the last round found at most one connection, and this is this round's first.
    light_load_ = i == 0 && last_round_taken_ <= 1;
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
      // Only a worker that listens on this listener (an app-opened one has members only).
      if (sticky >= 0 && Eligible(static_cast<size_t>(sticky), static_cast<uint32_t>(index))) chosen = sticky;
    }
    size_t w = static_cast<size_t>(chosen);
    // The record is dated by its oldest connection: one clock read (vDSO) per record.
    if (batches_[w].empty()) batch_since_ns_[w] = MonotonicNanos();
    batches_[w].push_back(fd);
    if (send_peers_) batch_peers_[w].push_back(peer);
    workers_[w].sent++;  // tentatively, so that the next choice sees this worker's new load
    if (batches_[w].size() == kMaxBatch) SendBatch(w, static_cast<uint32_t>(index));
  }
  light_load_ = false;  // other paths place connections that waited: not light load
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
    if (tag == kWakeTag)
      DrainWake();
    else if ((tag & ProxyReader::kTagBit) != 0)
      proxy_.OnEvent(tag, events[i].events, ready);
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
  short_slice_.store(RequestShortSlice(), std::memory_order_relaxed);
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
  // Counted here, once per pause, whichever path saw the reader fill first.
  if (!armed) proxy_.counters.full.fetch_add(1, std::memory_order_relaxed);
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

// The one rule for the listeners' arming, applied at the end of every round, paused or not:
// armed exactly when the PROXY reader has room. Each pause reason (no worker with room, fds
// exhausted, accept errors) only decides how long to wait; none of them owns the arming, so
// no order of pauses can leave a listener disarmed with room in the reader.
void Acceptor::ArmForReader() {
  if (proxy_.Enabled()) ArmListeners(!proxy_.Full());
}

void Acceptor::RunLoop() {
  epoll_event events[kMaxEvents];
  Pause pause = Pause::kNone;
  Coalescer coalescer;
  uint32_t delay_us = 0;
  int steal_ms = -1;           // epoll timeout: only while some worker holds connections unread
  int proxy_ms = -1;           // ... or until the oldest PROXY header still awaited is due
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
      int ms = pause == Pause::kFds      ? kFdExhaustedRetryMs
               : pause == Pause::kErrors ? kErrorRetryMs
                                         : kBackpressureRetryMs;
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
      steal_ms = pause == Pause::kFds ? 0 : StealStep(false);  // 0: look again once resumed
      pause = FlushWaiting() && HasRoom(MonotonicMillis()) ? Pause::kNone : Pause::kBackpressure;
      // Headers may have completed or timed out meanwhile: the reader's room decides, on this
      // way out of the pause as on every other (a pause that began while the reader was full
      // must not resume into epoll_wait(-1) with the listeners still disarmed).
      ArmForReader();
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
        if (listener >= listeners_.size() || listeners_[listener] < 0) continue;  // removed since epoll_wait
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
    }
    if (pause == Pause::kNone && !FlushWaiting()) pause = Pause::kBackpressure;
    // Light load, for the hedge: this round took at most one connection.
    steal_ms = StealStep(accepted_.load(std::memory_order_relaxed) - accepted_before <= 1);
    NoteActivity();
    if (pause == Pause::kNone && !waiting_.empty()) pause = Pause::kBackpressure;
    if (pause == Pause::kBackpressure) backpressure_pauses_.fetch_add(1, std::memory_order_relaxed);
    if (pause == Pause::kFds) fd_pauses_.fetch_add(1, std::memory_order_relaxed);
    ArmForReader();
    last_round_taken_ = accepted_.load(std::memory_order_relaxed) - accepted_before;
    delay_us = coalescer.After(last_round_taken_);
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
