// The accept thread's PROXY header reader (proxyProtocol: true). A new connection waits here,
// in the accept thread's own epoll set (edge-triggered: woken by each new segment, never
// spinning on a partial header), until its header has arrived whole; only then is it routed
// and handed off. Nothing blocks: each wake-up peeks (MSG_PEEK) at what has arrived and
// consumes exactly the header's bytes once it is complete, so the first application byte is
// the worker's. A connection with no valid header within the timeout, or a malformed one, is
// closed and counted. At most `capacity` connections wait at once (the caller stops
// accepting while Full(), leaving the rest in the kernel's backlog), so a flood of silent
// peers cannot take the primary's fds.
//
// Accept thread only (under the acceptor's mutex), except the counters.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "primary/proxy-trust.h"
#include "shared/channel.h"

namespace herdless {

class ProxyReader {
 public:
  static constexpr uint64_t kTagBit = uint64_t{1} << 62;  // epoll tags of waiting connections

  struct Counters {
    std::atomic<uint64_t> accepted{0};   // valid headers (LOCAL and UNKNOWN included)
    std::atomic<uint64_t> local{0};      // of which v2 LOCAL
    std::atomic<uint64_t> untrusted{0};  // of which from a peer outside proxyFrom: read, ignored
    std::atomic<uint64_t> malformed{0};  // closed: not a PROXY header (or closed before one)
    std::atomic<uint64_t> timed_out{0};  // closed: no whole header within the timeout
    std::atomic<uint64_t> full{0};       // times accepting paused because `capacity` waited
  };

  ProxyReader() = default;
  ProxyReader(const ProxyReader&) = delete;
  ProxyReader& operator=(const ProxyReader&) = delete;
  ~ProxyReader() { CloseAll(); }

  void Configure(int epoll_fd, uint32_t timeout_ms, size_t capacity);
  ProxyTrust& Trust() { return trust_; }  // proxyFrom; every peer until configured
  bool Enabled() const { return epoll_fd_ >= 0; }
  uint32_t TimeoutMs() const { return timeout_ms_; }
  bool Full() const { return waiting_ >= slots_.size(); }
  size_t Waiting() const { return waiting_; }

  enum class Outcome { kReady, kWaiting, kClosed, kDropped };
  // A connection just accepted (h->peer: the address accept4 reported). Its header is read at
  // once if it is all there (the usual case: a proxy sends it with its first segment), which
  // costs no epoll registration: kReady, h->peer is now the client's. Else it waits (kWaiting),
  // or it was closed: kClosed (malformed, counted here), kDropped (it could not wait: the
  // reader full, or epoll_ctl failed; the caller counts it).
  // `waited_ms`: how long a connection that brings no data at all has already waited in the
  // kernel (a TCP_DEFER_ACCEPT listener hands over a silent one only after its deferral),
  // taken off its timeout so that a silent peer is closed about proxyTimeout after connecting.
  Outcome Take(Handoff* h, uint32_t now_ms, uint32_t waited_ms = 0);
  // An epoll event for `tag`: a connection whose header is complete goes to *ready.
  void OnEvent(uint64_t tag, uint32_t events, std::vector<Handoff>* ready);
  // Closes connections past the timeout; returns ms until the next one expires, -1 if none.
  int Expire(uint32_t now_ms);
  // Closes every waiting connection; returns how many.
  size_t CloseAll();

  Counters counters;

 private:
  struct Slot {
    int fd = -1;
    uint32_t listener = 0;
    uint32_t generation = 0;  // tags from a slot's previous occupant are ignored
    uint32_t deadline_ms = 0;
    size_t heap_pos = 0;  // where it is in deadlines_, while waiting
    Peer own{};
    bool trusted = false;      // own is inside proxyFrom: its header may name the client
    uint64_t accepted_ns = 0;  // kept for the dispatch wait the worker measures
  };
  bool Add(const Slot& probe, uint32_t deadline_ms);  // false: fd closed
  void Release(size_t slot);
  bool TryParse(Slot& s, bool hangup, Handoff* out);  // false: wait for more

  int epoll_fd_ = -1;
  ProxyTrust trust_;
  uint32_t timeout_ms_ = 3000;
  std::vector<Slot> slots_;
  std::vector<size_t> free_;
  size_t waiting_ = 0;
  // Waiting slots, a binary min-heap by deadline. Not a FIFO: a peer that already waited in the
  // kernel (TCP_DEFER_ACCEPT) is due sooner than one accepted before it. A slot leaves the heap
  // when it leaves the reader, so the heap never holds more than `capacity`, however long
  // proxyTimeout is.
  std::vector<size_t> deadlines_;
  bool Earlier(size_t a, size_t b) const {
    return static_cast<int32_t>(slots_[a].deadline_ms - slots_[b].deadline_ms) < 0;
  }
  void HeapSwap(size_t i, size_t j);
  void HeapUp(size_t pos);
  void HeapDown(size_t pos);
  void HeapRemove(size_t pos);
  std::vector<uint8_t> scratch_;  // one v2 header at its largest
  ssize_t last_peek_ = 0;         // what TryParse's first peek returned
};

}  // namespace herdless
