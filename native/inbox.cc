#include "inbox.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"

namespace herdless {
namespace {

constexpr size_t kReadBatch = 64;         // per wake-up, so a flood cannot starve the loop
constexpr uint64_t kFdExhaustedRetryMs = 100;

template <typename Handle>
void CloseAndFree(Handle* handle) {
  uv_close(reinterpret_cast<uv_handle_t*>(handle), [](uv_handle_t* h) { delete reinterpret_cast<Handle*>(h); });
}

// A hand-off must be a connected stream socket; anything else (a file, a listening socket,
// a datagram socket) would confuse net.Socket, so it is closed and counted.
bool IsConnectedStream(int fd) {
  int type = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return false;
  sockaddr_storage peer;
  len = sizeof(peer);
  return getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0;
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

// close(): stop reading. The fd itself belongs to the caller.
Napi::Value Inbox::Close(const Napi::CallbackInfo& info) {
  if (!closed_) {
    Shutdown();
    Unref();
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
  }
  if (consumed > 0 || hangup) self->Deliver(handoffs, consumed, hangup);
}

void Inbox::OnResume(uv_timer_t* timer) {
  auto* self = static_cast<Inbox*>(timer->data);
  if (self == nullptr || self->closed_) return;
  uv_poll_start(self->poll_, UV_READABLE, OnPoll);
}

size_t Inbox::Collect(std::vector<Handoff>* out, bool* hangup) {
  uint32_t announced = 0, malformed = 0;
  std::vector<Handoff> received;
  int rc = ReceiveHandoffs(fd_, kReadBatch, &received, &announced, &malformed);
  if (rc != 0) *hangup = true;  // EOF (-1) or a broken channel
  rejected_ += malformed;
  for (const Handoff& h : received) {
    if (IsConnectedStream(h.fd)) {
      out->push_back(h);
    } else {
      ::close(h.fd);
      rejected_++;
    }
  }
  return announced;
}

// Herd and reuseport modes: accept until EAGAIN, as libuv does for net.Server. A wake-up
// that finds nothing is the herd's cost (another process took the connection).
void Inbox::AcceptAll(std::vector<Handoff>* out) {
  wakeups_++;
  for (size_t i = 0; i < kReadBatch; i++) {
    int fd = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      out->push_back(Handoff{fd, 0});
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      accept_errors_++;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        uv_poll_stop(poll_);
        uv_timer_start(timer_, OnResume, kFdExhaustedRetryMs, 0);
      }
    }
    break;
  }
  if (out->empty()) empty_wakeups_++;
}

void Inbox::Deliver(const std::vector<Handoff>& handoffs, size_t consumed, bool hangup) {
  Napi::Env env = callback_.Env();
  Napi::HandleScope scope(env);
  Napi::Value arg;
  if (hangup && consumed == 0) {
    arg = env.Null();
  } else {
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
    callback_.MakeCallback(env.Global(), {arg, count}, *context_);
    if (hangup && consumed > 0) callback_.MakeCallback(env.Global(), {env.Null(), Napi::Number::New(env, 0)}, *context_);
  } catch (const Napi::Error& e) {
    // No JS frame is below us: surface it as an uncaught exception, like any callback.
    napi_fatal_exception(env, e.Value());
  }
}

void InitInbox(Napi::Env env, Napi::Object exports) { Inbox::Init(env, exports); }

}  // namespace herdless
