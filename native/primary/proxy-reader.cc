#include "primary/proxy-reader.h"

#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "primary/proxy-header.h"

namespace herdless {
namespace {

constexpr size_t kV2Largest = proxy::kV2Fixed + 65535;

ssize_t Recv(int fd, void* buf, size_t len, int flags) {
  ssize_t n;
  do {
    n = recv(fd, buf, len, flags | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  return n;
}

// Slot index and generation in one epoll tag.
uint64_t Tag(size_t slot, uint32_t generation) { return ProxyReader::kTagBit | uint64_t{generation} << 32 | slot; }

}  // namespace

void ProxyReader::Configure(int epoll_fd, uint32_t timeout_ms, size_t capacity) {
  epoll_fd_ = epoll_fd;
  timeout_ms_ = timeout_ms;
  slots_.assign(capacity, Slot{});
  free_.clear();
  for (size_t i = capacity; i > 0; i--) free_.push_back(i - 1);
  scratch_.resize(kV2Largest);
  deadlines_.clear();
  deadlines_.reserve(capacity);
}

ProxyReader::Outcome ProxyReader::Take(Handoff* h, uint32_t now_ms, uint32_t waited_ms) {
  Slot probe;
  probe.fd = h->fd;
  probe.listener = h->listener;
  probe.own = h->peer;
  probe.accepted_ns = h->accepted_ns;
  probe.trusted = trust_.Trusted(h->peer);  // the peer accept4 reported: decided once, here
  Handoff out{-1, 0};
  if (!TryParse(probe, false, &out)) {
    uint32_t timeout = timeout_ms_;
    if (last_peek_ < 0 && waited_ms > 0) timeout = waited_ms < timeout ? timeout - waited_ms : 1;  // silent so far
    return Add(probe, now_ms + timeout) ? Outcome::kWaiting : Outcome::kDropped;
  }
  if (out.fd < 0) {
    ::close(h->fd);
    return Outcome::kClosed;
  }
  *h = out;
  return Outcome::kReady;
}

bool ProxyReader::Add(const Slot& probe, uint32_t deadline_ms) {
  int fd = probe.fd;
  if (free_.empty()) {  // the caller checks Full() before accepting; never leak regardless
    ::close(fd);
    return false;
  }
  size_t i = free_.back();
  Slot& s = slots_[i];
  epoll_event ev{};
  // Edge-triggered: each new segment wakes us once; a partial header does not spin the loop.
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = Tag(i, s.generation);
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    ::close(fd);  // ENOMEM/ENOSPC (max_user_watches): this one cannot wait
    return false;
  }
  free_.pop_back();
  s.fd = fd;
  s.listener = probe.listener;
  s.own = probe.own;
  s.trusted = probe.trusted;
  s.accepted_ns = probe.accepted_ns;
  s.deadline_ms = deadline_ms;
  waiting_++;
  s.heap_pos = deadlines_.size();
  deadlines_.push_back(i);
  HeapUp(s.heap_pos);
  // Bytes that came between Take()'s peek and now are reported by the registration itself
  // (epoll_ctl checks readiness), so the next epoll_wait picks them up.
  return true;
}

void ProxyReader::Release(size_t i) {
  Slot& s = slots_[i];
  // Closing removes it from the epoll set; an explicit DEL first, as the fd may have been
  // handed on (the record holds another reference to the socket, which would keep it there).
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, s.fd, nullptr);
  HeapRemove(s.heap_pos);
  s.fd = -1;
  s.generation++;
  free_.push_back(i);
  waiting_--;
}

bool ProxyReader::TryParse(Slot& s, bool hangup, Handoff* out) {
  uint8_t* buf = scratch_.data();
  ssize_t n = Recv(s.fd, buf, proxy::kFirstPeek, MSG_PEEK);
  last_peek_ = n;
  if (n < 0) {
    if ((errno == EAGAIN || errno == EWOULDBLOCK) && !hangup) return false;  // a spurious wake-up
    counters.malformed++;  // reset by the peer, or closed before sending anything
    return true;
  }
  proxy::Result r = proxy::Parse(buf, static_cast<size_t>(n));
  if (r.status == proxy::Status::kNeedMore && r.want > static_cast<size_t>(n)) {
    // A v2 header with TLVs past the first peek. Peek at all of it only once it has all come:
    // a header trickled in small segments would otherwise be copied again on each one
    // (quadratic, up to 64 KiB a time). SIOCINQ (FIONREAD) counts the bytes queued: O(1).
    int queued = 0;
    if (!hangup && ioctl(s.fd, FIONREAD, &queued) == 0 && queued >= 0 && static_cast<size_t>(queued) < r.want)
      return false;
    n = Recv(s.fd, buf, r.want, MSG_PEEK);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      counters.malformed++;
      return true;
    }
    r = n < 0 ? r : proxy::Parse(buf, static_cast<size_t>(n));
  }
  if (r.status == proxy::Status::kNeedMore) {
    // Part of a header: wait, unless the peer closed before it was whole (n == 0: EOF).
    if (!hangup && n != 0) return false;
    counters.malformed++;
    return true;
  }
  if (r.status == proxy::Status::kMalformed) {
    counters.malformed++;
    return true;
  }
  // Take exactly the header off the socket: it was all there a moment ago, and only we read.
  ssize_t got = Recv(s.fd, buf, r.consumed, 0);
  if (got != static_cast<ssize_t>(r.consumed)) {
    counters.malformed++;
    return true;
  }
  counters.accepted++;
  if (r.local) counters.local++;
  // Consumed either way (the app must not see it), but only a trusted peer names the client.
  if (!s.trusted) counters.untrusted++;
  out->fd = s.fd;
  out->listener = s.listener;
  out->accepted_ns = s.accepted_ns;
  out->peer = r.status == proxy::Status::kProxied && s.trusted ? r.peer : s.own;
  return true;
}

void ProxyReader::OnEvent(uint64_t tag, uint32_t events, std::vector<Handoff>* ready) {
  size_t i = static_cast<size_t>(tag & 0xffffffffu);
  uint32_t generation = static_cast<uint32_t>((tag & ~kTagBit) >> 32);
  if (i >= slots_.size() || slots_[i].fd < 0 || slots_[i].generation != generation) return;  // stale
  Slot& s = slots_[i];
  bool hangup = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
  Handoff h{-1, 0};
  if (!TryParse(s, hangup, &h)) return;
  int fd = s.fd;
  Release(i);
  if (h.fd >= 0) {
    ready->push_back(h);
  } else {
    ::close(fd);
  }
}

int ProxyReader::Expire(uint32_t now_ms) {
  while (!deadlines_.empty()) {
    size_t i = deadlines_.front();
    int32_t left = static_cast<int32_t>(slots_[i].deadline_ms - now_ms);
    if (left > 0) return left;
    int fd = slots_[i].fd;
    Release(i);  // takes it off the heap
    // Counted before the close: the peer sees the close at once, and whoever it tells may
    // read the counters the next moment.
    counters.timed_out++;
    ::close(fd);
  }
  return -1;
}

void ProxyReader::HeapSwap(size_t a, size_t b) {
  std::swap(deadlines_[a], deadlines_[b]);
  slots_[deadlines_[a]].heap_pos = a;
  slots_[deadlines_[b]].heap_pos = b;
}

void ProxyReader::HeapUp(size_t pos) {
  while (pos > 0) {
    size_t parent = (pos - 1) / 2;
    if (!Earlier(deadlines_[pos], deadlines_[parent])) return;
    HeapSwap(pos, parent);
    pos = parent;
  }
}

void ProxyReader::HeapDown(size_t pos) {
  for (;;) {
    size_t first = pos, l = 2 * pos + 1, r = l + 1;
    if (l < deadlines_.size() && Earlier(deadlines_[l], deadlines_[first])) first = l;
    if (r < deadlines_.size() && Earlier(deadlines_[r], deadlines_[first])) first = r;
    if (first == pos) return;
    HeapSwap(pos, first);
    pos = first;
  }
}

void ProxyReader::HeapRemove(size_t pos) {
  if (pos >= deadlines_.size()) return;
  size_t last = deadlines_.size() - 1;
  if (pos != last) HeapSwap(pos, last);
  deadlines_.pop_back();
  if (pos < deadlines_.size()) {
    HeapUp(pos);
    HeapDown(pos);
  }
}

size_t ProxyReader::CloseAll() {
  size_t closed = 0;
  for (size_t i = 0; i < slots_.size(); i++) {
    if (slots_[i].fd < 0) continue;
    int fd = slots_[i].fd;
    Release(i);
    ::close(fd);
    closed++;
  }
  return closed;
}

}  // namespace herdless
