// The accept thread: the only place in a herdless process tree that calls accept().
//
// Life cycle: JS constructs it with the listening fds, adds workers as they become ready,
// calls start(). The thread waits in epoll_wait, accepts in batches until EAGAIN, and
// sends each connection to the least-loaded worker. JS may add, pause or remove workers
// at any time (under mutex_); after removeWorker() returns the thread will not touch that
// worker's channel or scoreboard again. stop() joins the thread; connections given back
// with dispatch() after that are delivered or closed at once. The thread never calls into
// JS; it reports a listener it had to give up (once each) and fatal errors through a
// thread-safe function.
#pragma once
#include <napi.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "shared/channel.h"
#include "primary/placement.h"
#include "primary/route-hash.h"
#include "primary/proxy-reader.h"
#include "shared/scoreboard.h"

namespace herdless {

class Acceptor : public Napi::ObjectWrap<Acceptor> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit Acceptor(const Napi::CallbackInfo& info);
  ~Acceptor() override;

 private:
  // epoll tag of the eventfd that wakes the thread (listeners use their index, PROXY peers kTagBit).
  static constexpr uint64_t kWakeTag = UINT64_MAX;

  struct Worker {
    int id;
    int channel;              // primary's end of the socketpair (not owned: JS closes it)
    int worker_end = -1;      // our copy of the worker's end, to take back what it has not read (not owned)
    const Scoreboard* board;  // our own read-only mapping, unmapped on removal
    uint32_t sent = 0;        // connections sent (less those taken back), compared with board->received
    bool paused = false;
    bool full = false;           // last send hit EAGAIN; retried after a short pause, or once it reads
    uint32_t full_received = 0;  // its board's received count when it was found full
    // What we last saw, to date the oldest connection it has not read (our clock, trusted).
    uint32_t seen_received = 0;
    int32_t seen_pending = 0;
    uint32_t unread_since_us = 0;
    uint32_t seen_sent = 0;
    uint32_t sent_at_us = 0;  // when we saw `sent` grow: the accept thread looks after every round
    bool sent_ever = false;
    uint32_t requests_at_send = 0;  // its board's requests answered when we saw `sent` grow
    // Connections it closed lately (received - open): the closes of the window under way and
    // those of the one before, for placement's "lasting" (placement.h, 5. Spread).
    bool close_window_set = false;
    uint32_t close_window_ms = 0;
    uint32_t closed_at_window = 0;
    uint32_t closes_before = 0;
    // The awake span we last saw (its loop state word) and its counts when we first saw it.
    uint32_t span_loop = 0;
    uint32_t span_received = 0;
    uint32_t span_requests = 0;
  };

  enum class Pause { kNone, kBackpressure, kFds, kErrors };

  // JS methods
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value AddWorker(const Napi::CallbackInfo& info);
  Napi::Value RemoveWorker(const Napi::CallbackInfo& info);
  Napi::Value PauseWorker(const Napi::CallbackInfo& info);
  Napi::Value Dispatch(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value SetMaxConnections(const Napi::CallbackInfo& info);
  Napi::Value SetStealAfter(const Napi::CallbackInfo& info);
  Napi::Value WatchActivity(const Napi::CallbackInfo& info);
  Napi::Value SetRoute(const Napi::CallbackInfo& info);
  Napi::Value SetProxyProtocol(const Napi::CallbackInfo& info);
  Napi::Value AddListener(const Napi::CallbackInfo& info);
  Napi::Value RemoveListener(const Napi::CallbackInfo& info);
  Napi::Value JoinListener(const Napi::CallbackInfo& info);
  void NoteActivity();
  void DeferAccept(size_t listener);  // proxyProtocol: TCP_DEFER_ACCEPT where it helps

  // Accept thread
  void Run();
  void RunLoop();
  void ListenerFailed(size_t listener, int err, const char* syscall);
  Pause AcceptFrom(size_t listener);
  void DrainWake();
  int ReadHeadersWhilePaused(std::vector<Handoff>* ready);
  // false: every worker is full, caller keeps it. `exclude`: a worker not to send it to.
  bool Deliver(const Handoff& handoff, int exclude = -1);
  int RouteByClient(const Peer& peer);  // client-ip: the worker for this client, or -1
  void ArmListeners(bool armed);        // proxyProtocol: stop accepting while headers fill the reader
  void ArmForReader();                  // armed exactly when the reader has room (every round's end)
  placement::Options PlacementOptions() const;
  static int64_t RecentCloses(Worker& w, uint32_t received, int32_t open, uint32_t now_ms);
  void SendBatch(size_t worker, uint32_t listener);
  bool FlushWaiting();  // false: some connections still wait
  int PickWorker(uint32_t now, const std::vector<bool>& skip);
  placement::WorkerView Observe(Worker& w, bool usable, MonotonicNow now);
  void MarkFull(Worker& w);
  bool Usable(Worker& w, bool skip);
  int StealStep(bool light);  // takes back from stalled workers (and hedges at light load); returns epoll timeout, ms
  bool Hedging() const;
  size_t StealFrom(size_t worker, size_t most);  // most: connections to take, roughly (whole records)
  bool HasRoom(uint32_t now);
  bool AnyWorkerIdle();  // nothing waiting for it, no request in flight
  // A connection of `listener` may go to workers_[worker]: every worker for a listener given
  // to the constructor, only its members for one an app opened (addListener).
  bool Eligible(size_t worker, uint32_t listener) const;
  bool AnyEligible(uint32_t listener) const;
  void MarkIneligible(uint32_t listener, std::vector<bool>* skip) const;
  void Wake();
  void StopThread();
  void CloseFds();
  void ReportFatal(int err, const char* syscall);
  void Report(int err, const char* syscall, int listener);

  std::vector<int> listeners_;  // -1: removed (its index is never reused: records in flight name it)
  // Per listener: served by every worker (configured), or only by `members_` (opened by the app).
  std::vector<bool> open_to_all_;
  std::vector<std::vector<int>> members_;  // worker ids
  std::vector<bool> dead_;                 // per listener: failed, no longer watched (accept thread only)
  bool drained_ = false;                   // the last AcceptFrom() reached EAGAIN (accept thread only)
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  Napi::ThreadSafeFunction on_error_;
  bool has_on_error_ = false;

  std::mutex mutex_;  // guards everything below that JS touches
  bool stopping_ = false;
  bool running_ = false;  // the accept thread is there to deliver what waits
  std::vector<Worker> workers_;
  std::deque<Handoff> waiting_;            // accepted or re-dispatched, not yet handed off (bounded)
  std::vector<std::vector<int>> batches_;  // per worker, filled and emptied within AcceptFrom
  std::vector<uint64_t> batch_since_ns_;   // per worker: accept time of its batch's first fd
  size_t next_ = 0;                        // round-robin start for breaking ties
  bool light_load_ = false;                // the last round took at most one connection, and none yet this one
  uint64_t last_round_taken_ = 0;          // connections the last accept round took (light load: <= 1)
  int32_t max_connections_ = 0;            // per worker; 0 = unlimited
  uint32_t stall_ms_ = 100;      // unused since placement reads the loop state (kept for the constructor's signature)
  uint32_t steal_after_us_ = 0;  // take back connections a worker has held unread this long; 0 = never
  std::vector<placement::WorkerView> views_;  // scratch for PickWorker, reused
  // route: 'client-ip'. Each worker's stable routing key (its slot: a replacement keeps its
  // clients), parallel to workers_, and the pool's secret that keys the client hash.
  bool route_by_client_ = false;
  std::vector<uint32_t> keys_;
  placement::RouteKey route_key_;
  // Peers travel with the fds (channel.h) when routing by client or reading PROXY headers.
  bool send_peers_ = false;
  std::vector<std::vector<Peer>> batch_peers_;  // parallel to batches_
  ProxyReader proxy_;                           // proxyProtocol: connections whose header has not arrived yet
  bool listeners_armed_ = true;                 // false while proxy_ is full
  std::vector<uint32_t> deferred_ms_;           // per listener: its TCP_DEFER_ACCEPT, ms (0: none)
  // watchActivity(cb): cb() once, on the next accepted connection (the supervisor sleeps
  // longer while nothing happens, and wakes at once when load arrives).
  Napi::ThreadSafeFunction on_activity_;
  bool has_on_activity_ = false;
  bool activity_armed_ = false;
  uint64_t activity_seen_ = 0;

  // Counters written by the accept thread, read by stats()
  std::atomic<uint64_t> accepted_{0}, handed_off_{0}, retries_{0}, redispatched_{0}, stolen_{0}, steals_{0};
  std::atomic<uint64_t> dropped_{0};      // closed undelivered: stopped, or no worker had room
  std::atomic<bool> short_slice_{false};  // RequestShortSlice() took (short-slice.cc)
  std::atomic<uint64_t> backpressure_ms_{0}, fd_pause_ms_{0}, backpressure_pauses_{0}, fd_pauses_{0};
  std::atomic<uint64_t> accept_errors_[256] = {};
};

}  // namespace herdless
