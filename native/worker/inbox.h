// The worker's side: where connections come in, driven by the worker's own libuv loop.
//
//   new Inbox(fd, 'channel', cb, board)   reads hand-offs from the dispatcher (mode 'dispatch')
//   new Inbox(fd, 'listener', cb)  accepts on a listening socket itself ('herd', 'reuseport')
//
// Either way JS gets cb([fd, listenerIndex, ...], consumed, proxied?) once per wake-up, with fds already
// trusted to be connected stream sockets (consumed also counts records the kernel truncated, so
// the dispatcher's "sent but not yet received" figure stays exact), or cb(null, 0) once when
// a channel hangs up (the primary is gone). proxied: [i, address, port, family, ...] for the
// connections whose client a PROXY header named, else undefined. Keeping both sources behind one interface makes the
// comparison modes differ only in who calls accept(), which is exactly what the benchmarks compare.
#pragma once
#include <napi.h>
#include <uv.h>

#include <vector>

#include "shared/channel.h"
#include "worker/fd-room.h"
#include "shared/scoreboard.h"

namespace herdless {

class Inbox : public Napi::ObjectWrap<Inbox> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit Inbox(const Napi::CallbackInfo& info);
  ~Inbox() override;

 private:
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnResume(uv_timer_t* timer);
  size_t Collect(std::vector<Handoff>* out, bool* hangup);  // returns records consumed
  void AcceptAll(std::vector<Handoff>* out);
  void Deliver(const std::vector<Handoff>& handoffs, size_t consumed, bool hangup);
  void Shutdown();
  void PauseFor(uint64_t ms);
  void Count(ScoreField field);
  void Publish(ScoreField field, double value);            // into this worker's scoreboard, if given
  void RecordWaits(const std::vector<Handoff>& handoffs);  // dispatch-wait histogram, if a board

  int fd_;
  bool listener_;
  uint32_t listener_index_ = 0;  // a listener inbox: the index its connections report
  bool closed_ = false;
  uv_poll_t* poll_ = nullptr;    // heap-allocated: freed by uv_close's callback, which may
  uv_timer_t* timer_ = nullptr;  // run after this object is gone
  Napi::FunctionReference callback_;
  Napi::AsyncContext* context_ = nullptr;
  // Counters read by JS (herd statistics and fd checks)
  double wakeups_ = 0, empty_wakeups_ = 0, rejected_ = 0, accept_errors_ = 0, fd_room_stalls_ = 0;
  FdRoom room_;
  uint32_t empty_in_a_row_ = 0;
  Scoreboard* board_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> board_ref_;
};

void InitInbox(Napi::Env env, Napi::Object exports);

}  // namespace herdless
