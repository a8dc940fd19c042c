#include "worker/inbox.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "shared/errors.h"

namespace herdless {
namespace {

constexpr size_t kReadBatch = 64;  // per wake-up, so a flood cannot starve the loop
constexpr uint64_t kFdExhaustedRetryMs = 100;
constexpr uint64_t kFdRoomRetryMs = 50;
constexpr uint32_t kEmptyWakeupsBeforePause = 64;  // near the fd limit: look again once some connections closed

// [i, address, port, family, ...] for the connections that came with a PROXY header's
// address (proxyProtocol), or undefined when none did: the common case costs nothing.
Napi::Value ProxiedPeers(Napi::Env env, const std::vector<Handoff>& handoffs) {
  Napi::Array out;
  uint32_t k = 0;
  for (size_t i = 0; i < handoffs.size(); i++) {
    const Peer& p = handoffs[i].peer;
    if ((p.flags & kPeerProxied) == 0 || (p.family != 4 && p.family != 6)) continue;
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(p.family == 4 ? AF_INET : AF_INET6, p.addr, text, sizeof(text)) == nullptr) continue;
    if (k == 0) out = Napi::Array::New(env);
    out.Set(k++, Napi::Number::New(env, static_cast<double>(i)));
    out.Set(k++, Napi::String::New(env, text));
    out.Set(k++, Napi::Number::New(env, p.port));
    out.Set(k++, Napi::String::New(env, p.family == 4 ? "IPv4" : "IPv6"));
  }
  return k == 0 ? env.Undefined() : Napi::Value(out);
}

template <typename Handle>
void CloseAndFree(Handle* handle) {
  uv_close(reinterpret_cast<uv_handle_t*>(handle), [](uv_handle_t* h) { delete reinterpret_cast<Handle*>(h); });
}

}  // namespace

void Inbox::Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Inbox", DefineClass(env, "Inbox",
                                   {
                                       InstanceMethod<&Inbox::Close>("close"),
                                       InstanceMethod<&Inbox::Counters>("counters"),
                                   }));
}

Inbox::Inbox(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Inbox>(info) {
  Napi::Env env = info.Env();
  fd_ = info[0].As<Napi::Number>().Int32Value();
  listener_ = info[1].As<Napi::String>().Utf8Value() == "listener";
  callback_ = Napi::Persistent(info[2].As<Napi::Function>());
  if (info.Length() > 4 && info[4].IsNumber()) listener_index_ = info[4].As<Napi::Number>().Uint32Value();
  if (info.Length() > 3 && info[3].IsArrayBuffer()) {
    Napi::ArrayBuffer board = info[3].As<Napi::ArrayBuffer>();
    if (board.ByteLength() >= kScoreboardBytes) {
      board_ = static_cast<Scoreboard*>(board.Data());
      board_ref_ = Napi::Persistent(board);  // the mapping lives as long as we write to it
    }
  }
  context_ = new Napi::AsyncContext(env, "herdless.Inbox");

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no libuv loop");
  poll_ = new uv_poll_t;
  int rc = uv_poll_init(loop, poll_, fd_);
  if (rc != 0) {
    delete poll_;
    poll_ = nullptr;
    throw ErrnoError(env, -rc, "uv_poll_init");
  }
  poll_->data = this;
  timer_ = new uv_timer_t;
  uv_timer_init(loop, timer_);
  timer_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
  int events = UV_READABLE | (listener_ ? 0 : UV_DISCONNECT);
  rc = uv_poll_start(poll_, events, OnPoll);
  if (rc != 0) {
    Shutdown();
    throw ErrnoError(env, -rc, "uv_poll_start");
  }
  Ref();  // alive while polling, whatever JS holds
}

Inbox::~Inbox() {
  Shutdown();
  delete context_;
}

void Inbox::Shutdown() {
  if (closed_) return;
  closed_ = true;
  if (poll_ != nullptr) {
    poll_->data = nullptr;
    CloseAndFree(poll_);
    poll_ = nullptr;
  }
  if (timer_ != nullptr) {
    timer_->data = nullptr;
    CloseAndFree(timer_);
    timer_ = nullptr;
  }
}

// close(closeListener?): stop reading. A channel's fd belongs to the caller. A listener's fd
// is closed when asked (a retiring reuseport worker: as long as its listener is open the
// kernel keeps queueing connections on it, which closing later would reset), after taking
// what is already in its queue.
Napi::Value Inbox::Close(const Napi::CallbackInfo& info) {
  if (closed_) return info.Env().Undefined();
  bool close_listener = listener_ && info.Length() > 0 && info[0].ToBoolean();
  Shutdown();
  Unref();
  if (close_listener) {
    std::vector<Handoff> handoffs;
    AcceptAll(&handoffs);
    ::close(fd_);
    fd_ = -1;
    if (!handoffs.empty()) Deliver(handoffs, handoffs.size(), false);
  }
  return info.Env().Undefined();
}

Napi::Value Inbox::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("wakeups", wakeups_);
  out.Set("emptyWakeups", empty_wakeups_);
  out.Set("rejected", rejected_);
  out.Set("acceptErrors", accept_errors_);
  out.Set("fdRoomStalls", fd_room_stalls_);
  return out;
}

void Inbox::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<Inbox*>(handle->data);
  if (self == nullptr || self->closed_) return;
  std::vector<Handoff> handoffs;
  bool hangup = false;
  size_t consumed = 0;
  if (self->listener_) {
    self->AcceptAll(&handoffs);
    consumed = handoffs.size();
  } else {
    consumed = self->Collect(&handoffs, &hangup);
    // Read what is left first, then report the hang-up.
    if (status < 0 || ((events & UV_DISCONNECT) && handoffs.empty())) hangup = true;
    self->RecordWaits(handoffs);
  }
  if (consumed > 0 || hangup) self->Deliver(handoffs, consumed, hangup);
}

void Inbox::OnResume(uv_timer_t* timer) {
  auto* self = static_cast<Inbox*>(timer->data);
  if (self == nullptr || self->closed_) return;
  uv_poll_start(self->poll_, UV_READABLE | (self->listener_ ? 0 : UV_DISCONNECT), OnPoll);
}

void Inbox::PauseFor(uint64_t ms) {
  uv_poll_stop(poll_);
  uv_timer_start(timer_, OnResume, ms, 0);
}

// How long each connection waited, from the primary's accept to now: Deliver() wraps them
// into the app's sockets right after, in the same call. One clock read per wake-up; the
// primary's clock is ours (CLOCK_MONOTONIC is one clock per machine).
void Inbox::RecordWaits(const std::vector<Handoff>& handoffs) {
  if (board_ == nullptr || handoffs.empty()) return;
  uint64_t now = MonotonicNanos();
  for (const Handoff& h : handoffs) {
    // A time in the future cannot come from our primary: read it as no wait.
    uint64_t wait_us = h.accepted_ns < now ? (now - h.accepted_ns) / 1000 : 0;
    board_->wait.Record(wait_us, 1);
  }
}

// One more of `field` in the scoreboard, which every inbox of this worker adds to (herd
// statistics): written as it happens, so no timer has to copy them there.
void Inbox::Count(ScoreField field) {
  if (board_ != nullptr) board_->field[field].fetch_add(1, std::memory_order_relaxed);
}

void Inbox::Publish(ScoreField field, double value) {
  if (board_ != nullptr)
    board_->field[field].store(static_cast<int32_t>(static_cast<uint32_t>(value)), std::memory_order_relaxed);
}

// Reads records while the fds they carry can be installed. Near the fd limit it stops and
// looks again later: connections then wait in the channel, whose growing backlog steers
// the dispatcher elsewhere, instead of being dropped by the kernel. The fds are not checked
// (no syscall per connection): only the primary writes to this channel, and it sends only
// what accept4() returned on listeners it checked at start.
size_t Inbox::Collect(std::vector<Handoff>* out, bool* hangup) {
  uint32_t announced = 0, malformed = 0;
  // Once per read: the app runs on this thread, so it opens nothing while we read.
  bool roomy = room_.TableLooksRoomy(kMaxBatch);
  size_t left = kReadBatch;
  while (left > 0) {
    if (!roomy || !room_.SurelyEnough(kMaxBatch)) {
      // Near the limit: count what is free and look at how many fds the next record holds.
      uint32_t next = 0;
      if (PeekHandoffCount(fd_, &next) == 0 && next > 0 && !room_.Enough(next)) {
        fd_room_stalls_++;
        Publish(kFdRoomStalls, fd_room_stalls_);
        PauseFor(kFdRoomRetryMs);
        break;
      }
      roomy = true;  // just counted: the estimate is exact again until the app runs
    }
    // As many records as the estimate has room for (each may carry kMaxBatch fds), at least
    // one: the check above made room for that one.
    size_t want = room_.SurelyEnough(kRecordsPerCall * kMaxBatch) ? kRecordsPerCall : 1;
    if (want > left) want = left;
    size_t before = out->size(), records = 0;
    int rc = ReceiveHandoffs(fd_, want, out, &announced, &malformed, &records);
    room_.Took(out->size() - before);
    left -= records;
    if (rc != 0) {
      *hangup = true;  // EOF (-1) or a broken channel
      break;
    }
    if (records < want) break;  // empty
  }
  if (malformed > 0) {
    rejected_ += malformed;
    Publish(kRejected, rejected_);
  }
  return announced;
}

// Herd and reuseport modes: accept until EAGAIN, as libuv does for net.Server. A wake-up
// that finds nothing is the herd's cost (another process took the connection).
void Inbox::AcceptAll(std::vector<Handoff>* out) {
  wakeups_++;
  Count(kWakeups);
  for (size_t i = 0; i < kReadBatch; i++) {
    int fd = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      out->push_back(Handoff{fd, listener_index_, 0});  // no primary: no dispatch wait
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      accept_errors_++;
      // Fd exhaustion, or a listener its owner shut down (EINVAL forever): level-triggered
      // polling would report it again at once, so look again later instead of spinning.
      if (!closed_) PauseFor(kFdExhaustedRetryMs);
    }
    break;
  }
  if (!out->empty()) {
    empty_in_a_row_ = 0;
    return;
  }
  empty_wakeups_++;
  Count(kEmptyWakeups);
  // A herd's losers wake to an empty queue now and then; dozens of times in a row means the
  // listener reports readable with nothing to accept (a unix listener its owner shut down).
  if (++empty_in_a_row_ >= kEmptyWakeupsBeforePause && !closed_) {
    empty_in_a_row_ = 0;
    PauseFor(kFdExhaustedRetryMs);
  }
}

void Inbox::Deliver(const std::vector<Handoff>& handoffs, size_t consumed, bool hangup) {
  Napi::Env env = callback_.Env();
  Napi::HandleScope scope(env);
  Napi::Value arg;
  Napi::Value peers = env.Undefined();
  if (hangup && consumed == 0) {
    arg = env.Null();
  } else {
    peers = ProxiedPeers(env, handoffs);
    Napi::Array list = Napi::Array::New(env, handoffs.size() * 2);
    for (size_t i = 0; i < handoffs.size(); i++) {
      list.Set(static_cast<uint32_t>(2 * i), handoffs[i].fd);
      list.Set(static_cast<uint32_t>(2 * i + 1), handoffs[i].listener);
    }
    arg = list;
  }
  if (hangup) {
    uv_poll_stop(poll_);
  }
  try {
    Napi::Value count = Napi::Number::New(env, static_cast<double>(consumed));
    callback_.MakeCallback(env.Global(), {arg, count, peers}, *context_);
    if (hangup && consumed > 0)
      callback_.MakeCallback(env.Global(), {env.Null(), Napi::Number::New(env, 0)}, *context_);
  } catch (const Napi::Error& e) {
    // No JS frame is below us: surface it as an uncaught exception, like any callback.
    napi_fatal_exception(env, e.Value());
  }
}

void InitInbox(Napi::Env env, Napi::Object exports) { Inbox::Init(env, exports); }

}  // namespace herdless
