// Choosing a worker for each connection and sending it the fds: placement (policy in
// placement.h), client-ip routing, stealing back from a stalled worker, batched sends.
// Runs on the accept thread only.
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
#include <algorithm>
#include <cstring>
#include <ctime>
#include <string>

#include "primary/coalesce.h"
#include "primary/steal-policy.h"
#include "shared/errors.h"
#include "shared/fd.h"

namespace herdless {
namespace {

constexpr uint32_t kAvoidUs = 2000;        // a loop awake this long gets nothing while another can take it
constexpr int kStealRecheckMs = 2;         // a stalled worker holds connections but nobody is free yet
constexpr size_t kStealMaxRecords = 64;    // per worker per step, like a worker's own read batch
constexpr uint32_t kCloseWindowMs = 1000;  // closes are counted per window of this long (RecentCloses)

}  // namespace

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
  uint32_t requests = static_cast<uint32_t>(w.board->Load(kRequests));
  if (w.sent != w.seen_sent) {
    w.seen_sent = w.sent;
    w.sent_at_us = now.us;
    w.sent_ever = true;
    w.requests_at_send = requests;
  }
  v.served_since_sent = requests != w.requests_at_send;
  v.sent_at_us = w.sent_at_us;
  v.sent_ever = w.sent_ever;
  v.usable = usable;
  v.open = w.board->Load(kOpen);
  v.recent_closes = RecentCloses(w, received, v.open, now.ms);
  v.in_flight = w.board->Load(kInFlight);
  v.max_connections = w.board->Load(kMaxConnections);
  v.loop = static_cast<uint32_t>(w.board->Load(kLoopState));
  // Progress within an awake span: a loop held in one long handler reads and answers nothing.
  if (v.loop != w.span_loop) {
    w.span_loop = v.loop;
    w.span_received = received;
    w.span_requests = requests;
  }
  v.progressing = (v.loop & 1u) != 0 && (received != w.span_received || requests != w.span_requests);
  v.loop_since_ms = static_cast<uint32_t>(w.board->Load(kLoopSinceMs));
  v.unread_since_us = w.unread_since_us;
  return v;
}

// Connections worker `w` closed in the last one to two seconds (received - open, counted in
// windows of kCloseWindowMs), or -1 when its board makes no sense. Read at each look, so it
// costs nothing when nothing arrives; a window that ended long ago counts at its average rate.
int64_t Acceptor::RecentCloses(Worker& w, uint32_t received, int32_t open, uint32_t now_ms) {
  if (open < 0) return -1;
  uint32_t closed = received - static_cast<uint32_t>(open);
  if (!w.close_window_set) {
    w.close_window_set = true;
    w.close_window_ms = now_ms;
    w.closed_at_window = closed;
    w.closes_before = 0;
  }
  uint32_t elapsed = now_ms - w.close_window_ms;
  uint32_t during = closed - w.closed_at_window;
  if (during >= (1u << 31) || elapsed >= (1u << 31)) {
    // Counted backwards (its board lies), or unseen for longer than the ms clock can tell
    // (~25 days idle): start afresh, and say nothing this once.
    w.close_window_ms = now_ms;
    w.closed_at_window = closed;
    w.closes_before = 0;
    return -1;
  }
  if (elapsed >= kCloseWindowMs) {
    w.closes_before = static_cast<uint32_t>(uint64_t{during} * kCloseWindowMs / elapsed);
    w.close_window_ms = now_ms;
    w.closed_at_window = closed;
    during = 0;
  }
  return int64_t{w.closes_before} + during;
}

// A channel that said EAGAIN (the kernel queues at most net.unix.max_dgram_qlen records,
// often 10) has room again as soon as its worker reads: a worker that was full during a
// burst must not stay excluded until the next pause or wake-up, which may never come while
// another worker keeps taking everything (issue #19: a pool halved for good).
void Acceptor::MarkFull(Worker& w) {
  w.full = true;
  w.full_received = static_cast<uint32_t>(w.board->Load(kReceived));
}

bool Acceptor::Usable(Worker& w, bool skip) {
  if (w.full && static_cast<uint32_t>(w.board->Load(kReceived)) != w.full_received) w.full = false;
  return !(w.paused || w.full || skip);
}

int Acceptor::PickWorker(uint32_t, const std::vector<bool>& skip) {
  MonotonicNow now = Monotonic();
  size_t n = workers_.size();
  views_.resize(n);
  for (size_t i = 0; i < n; i++) {
    Worker& w = workers_[i];
    views_[i] = Observe(w, Usable(w, skip[i]), now);
  }
  placement::Options opts = PlacementOptions();
  placement::Clock clock{now.us, now.ms};
  int chosen = placement::Pick(views_.data(), n, opts, clock, next_);
  if (chosen < 0) return -1;
  // A worker left out only because its channel is full (a burst outran its reads: the kernel
  // queues about 10 records) is a better place for the next connection than a loop held
  // past avoid_us, where it would wait for the stall to end or be stolen back: keep it in
  // the backlog for one back-pressure pause (2 ms) instead. Bounded: a full worker that
  // stops reading is held (slow) itself after avoid_us, and is then no better.
  placement::Tier tier = placement::Assess(views_[static_cast<size_t>(chosen)], opts, clock).tier;
  if (tier >= placement::Tier::kSlow) {
    for (size_t i = 0; i < n; i++) {
      Worker& w = workers_[i];
      if (!w.full || w.paused || skip[i]) continue;
      placement::WorkerView v = views_[i];
      v.usable = true;
      if (placement::Assess(v, opts, clock).tier < tier) return -1;
    }
  }
  return chosen;
}

placement::Options Acceptor::PlacementOptions() const {
  placement::Options o;
  o.max_connections = max_connections_;
  o.avoid_us = steal_after_us_ > 0 && steal_after_us_ < kAvoidUs ? steal_after_us_ : kAvoidUs;
  o.light = light_load_;
  o.hedge = Hedging();
  return o;
}

// Whether StealStep takes back at light load what a worker left unread for kHedgeUs. Not
// with client-ip routing (a client's connections leave its worker only once it stalls), nor
// when stealing is off or already as quick.
bool Acceptor::Hedging() const { return !route_by_client_ && steal_after_us_ > placement::kHedgeUs; }

// Right after PickWorker() (views_ fresh, `usable` already saying who was tried): the
// heaviest healthy worker for this client, or -1 (no address, or none healthy: the caller
// keeps the least-loaded choice).
int Acceptor::RouteByClient(const Peer& peer) {
  uint64_t client = placement::ClientHash(route_key_, peer.family, peer.addr);
  if (client == 0) return -1;
  MonotonicNow now = Monotonic();
  return placement::PickByClient(views_.data(), keys_.data(), workers_.size(), client, PlacementOptions(),
                                 {now.us, now.ms}, uint64_t{stall_ms_} * 1000);
}

// Reads back what worker `index` has not read and hands it to others. Each SEQPACKET record
// goes to exactly one reader, so a connection is either the worker's or ours, never both;
// what we read comes off `sent`, so sent - received stays exact. Returns connections taken.
// Record by record, and only while this process can install the fds a record carries: past
// RLIMIT_NOFILE the kernel would drop them (MSG_CTRUNC), and with them the connections, which
// are better left with the worker. (A record can still lose fds if another thread takes the
// last free ones between the peek and the read: counted in dropped.)
size_t Acceptor::StealFrom(size_t index, size_t most) {
  Worker& w = workers_[index];
  std::vector<Handoff> taken;
  uint32_t announced = 0, malformed = 0;
  for (size_t r = 0; r < kStealMaxRecords && announced < most; r++) {
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
int Acceptor::StealStep(bool light) {
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
    views_[i] = Observe(w, Usable(w, false), now);
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
    if (light && Hedging() && in != 0) {
      uint64_t hedge = placement::HedgeIn(views_.data(), n, i, clock);
      if (hedge < in) in = hedge;
    }
    if (in == UINT64_MAX) continue;
    if (in == 0) {
      int64_t cap = placement::StealCount(views_.data(), n, i, o, clock);
      if (cap > 0 && StealFrom(i, static_cast<size_t>(cap)) > 0) return 0;  // look again at once: the picture changed
      in = uint64_t{kStealRecheckMs} * 1000;                                // nobody can take them yet
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
  if (!AnyEligible(handoff.listener)) {
    // Its listener closed with no worker left on it: as the kernel resets a closed backlog.
    dropped_.fetch_add(1, std::memory_order_relaxed);  // before the close its peer sees
    ::close(handoff.fd);
    return true;
  }
  std::vector<bool> tried(workers_.size(), false);
  MarkIneligible(handoff.listener, &tried);
  if (exclude >= 0 && static_cast<size_t>(exclude) < tried.size()) tried[static_cast<size_t>(exclude)] = true;
  for (;;) {
    int i = PickWorker(now, tried);
    if (i < 0) return false;
    if (route_by_client_) {
      int sticky = RouteByClient(handoff.peer);
      // Never one this listener does not reach, nor one already tried for this connection.
      if (sticky >= 0 && !tried[static_cast<size_t>(sticky)]) i = sticky;
    }
    Worker& w = workers_[static_cast<size_t>(i)];
    // Counted before the send (undone if it fails): the worker may answer the client before
    // this thread runs again, and the client may read the counters then.
    handed_off_.fetch_add(1, std::memory_order_relaxed);
    int err = SendHandoffs(w.channel, &handoff.fd, 1, handoff.listener, handoff.accepted_ns,
                           send_peers_ ? &handoff.peer : nullptr);
    if (err == 0) {
      w.sent++;
      next_ = static_cast<size_t>(i) + 1;
      // The record in flight holds its own reference to the socket, so ours can go now.
      // If the worker dies before reading it, the primary's copy of the worker's end
      // still holds the record: pool code drains it and calls dispatch() (re-dispatch).
      ::close(handoff.fd);
      return true;
    }
    handed_off_.fetch_sub(1, std::memory_order_relaxed);
    retries_.fetch_add(1, std::memory_order_relaxed);
    // A full channel leaves the worker out until it reads (Usable), not as one tried: so
    // PickWorker() still knows it is only full, and holds the connection for it rather than
    // sending it to a loop that is held. Any other error (the channel broke) just means: try
    // the next worker. Pool code notices the worker's exit and removes it.
    if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS)
      MarkFull(w);
    else
      tried[static_cast<size_t>(i)] = true;
  }
}

void Acceptor::SendBatch(size_t index, uint32_t listener) {
  std::vector<int>& fds = batches_[index];
  std::vector<Peer>& peers = batch_peers_[index];
  Worker& w = workers_[index];
  uint64_t accepted_ns = batch_since_ns_[index];
  handed_off_.fetch_add(fds.size(), std::memory_order_relaxed);  // before the send: see Deliver()
  int err =
      SendHandoffs(w.channel, fds.data(), fds.size(), listener, accepted_ns, send_peers_ ? peers.data() : nullptr);
  if (err == 0) {
    for (int fd : fds) ::close(fd);  // see Deliver(): the record holds the sockets now
    next_ = index + 1;
    fds.clear();
    peers.clear();
    return;
  }
  // Undo the tentative counts and hand the connections out one by one, elsewhere.
  handed_off_.fetch_sub(fds.size(), std::memory_order_relaxed);
  w.sent -= static_cast<uint32_t>(fds.size());
  retries_.fetch_add(1, std::memory_order_relaxed);
  if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) MarkFull(w);
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
}  // namespace herdless
