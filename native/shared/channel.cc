#include "shared/channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#ifndef HERDLESS_NO_NAPI
#include "shared/errors.h"
#endif

namespace herdless {

namespace {

struct Payload {
  uint32_t listener;
  uint32_t count;
  uint64_t accepted_ns;  // CLOCK_MONOTONIC accept time of the record's oldest connection
};
static_assert(sizeof(Payload) == 16, "hand-off payload layout");

// The buffers for reading one record: its payload, and room for kMaxBatch fds.
struct Incoming {
  Payload payload{0, 0, 0};
  Peer peers[kMaxBatch];
  iovec iov[2] = {{&payload, sizeof(payload)}, {peers, sizeof(peers)}};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxBatch)] = {};
  msghdr msg{};

  Incoming() {
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
  }
  Incoming(const Incoming&) = delete;
  Incoming& operator=(const Incoming&) = delete;

  ssize_t Receive(int channel, int flags) {
    ssize_t n;
    do {
      n = recvmsg(channel, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | flags);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  // Calls f(fd) for every fd the record brought (already installed in this process).
  template <typename F>
  void ForEachFd(F f) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t k = 0; k < count; k++) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
        f(fd);
      }
    }
  }
};

}  // namespace

uint64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

int SendHandoffs(int channel, const int* fds, size_t count, uint32_t listener, uint64_t accepted_ns,
                 const Peer* peers) {
  Payload payload{listener, static_cast<uint32_t>(count), accepted_ns};
  iovec iov[2] = {{&payload, sizeof(payload)}, {const_cast<Peer*>(peers), sizeof(Peer) * count}};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxBatch)];
  std::memset(control, 0, sizeof(control));
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = peers != nullptr ? 2 : 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * count);
  std::memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * count);
  for (;;) {
    ssize_t n = sendmsg(channel, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

namespace {

// One record, as recvmsg or recvmmsg left it in `in` (n bytes of payload): its connections
// are appended to *out. Returns false at end of file.
bool TakeRecord(Incoming& in, ssize_t n, std::vector<Handoff>* out, uint32_t* announced, uint32_t* malformed) {
  if (n == 0 && in.msg.msg_controllen == 0) return false;
  const Payload& payload = in.payload;
  size_t first = out->size();
  in.ForEachFd([&](int fd) { out->push_back(Handoff{fd, payload.listener, payload.accepted_ns}); });
  size_t got = out->size() - first;
  bool counted = payload.count >= 1 && payload.count <= kMaxBatch;
  bool with_peers = counted && static_cast<size_t>(n) == sizeof(payload) + sizeof(Peer) * payload.count;
  bool well_formed = counted && (n == sizeof(payload) || with_peers);
  // Fds arrive in the order they were sent; the kernel drops from the end (MSG_CTRUNC).
  if (well_formed && with_peers)
    for (size_t k = first; k < out->size(); k++) (*out)[k].peer = in.peers[k - first];
  if (!well_formed || got > payload.count) {
    // Not from our dispatcher: close whatever came with it.
    for (size_t k = first; k < out->size(); k++) ::close((*out)[k].fd);
    out->resize(first);
    (*malformed)++;
    return true;
  }
  // got < count: the kernel dropped fds it could not install (MSG_CTRUNC, fd limit).
  if (got < payload.count) (*malformed)++;
  *announced += payload.count;
  return true;
}

}  // namespace

// Up to kRecordsPerCall records per recvmmsg: a call that returns fewer found the channel
// empty, so a reader that takes one record (the usual case at light load) makes one syscall,
// not a recvmsg and then another that says EAGAIN.
int ReceiveHandoffs(int channel, size_t max, std::vector<Handoff>* out, uint32_t* announced, uint32_t* malformed,
                    size_t* records) {
  size_t taken = 0;
  int rc = 0;
  while (taken < max) {
    size_t want = max - taken < kRecordsPerCall ? max - taken : kRecordsPerCall;
    Incoming in[kRecordsPerCall];
    mmsghdr batch[kRecordsPerCall];
    for (size_t i = 0; i < want; i++) batch[i] = mmsghdr{in[i].msg, 0};
    int n;
    do {
      n = recvmmsg(channel, batch, static_cast<unsigned>(want), MSG_DONTWAIT | MSG_CMSG_CLOEXEC, nullptr);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) rc = errno;
      break;
    }
    bool eof = false;
    for (int i = 0; i < n && !eof; i++) {
      in[i].msg = batch[i].msg_hdr;  // the kernel's msg_controllen and msg_flags
      if (TakeRecord(in[i], static_cast<ssize_t>(batch[i].msg_len), out, announced, malformed))
        taken++;
      else
        eof = true;
    }
    if (eof) {
      rc = -1;
      break;
    }
    if (static_cast<size_t>(n) < want) break;  // the channel is empty now
  }
  if (records != nullptr) *records = taken;
  return rc;
}

int PeekHandoffCount(int channel, uint32_t* count) {
  Payload payload{0, 0, 0};
  iovec iov{&payload, sizeof(payload)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  for (;;) {
    ssize_t n = recvmsg(channel, &msg, MSG_DONTWAIT | MSG_PEEK);
    if (n >= 0) {
      *count = n == sizeof(payload) && payload.count <= kMaxBatch ? payload.count : kMaxBatch;
      if (n == 0) *count = 0;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *count = 0;
      return 0;
    }
    return errno;
  }
}

int PeekFits(int channel) {
  Incoming in;
  ssize_t n = in.Receive(channel, MSG_PEEK);
  if (n < 0 || (n == 0 && in.msg.msg_controllen == 0)) return -1;  // empty, failed, or EOF
  in.ForEachFd([](int fd) { ::close(fd); });
  return (in.msg.msg_flags & MSG_CTRUNC) != 0 ? 0 : 1;
}

#ifndef HERDLESS_NO_NAPI
namespace {

// socketpair() -> [primaryEnd, workerEnd], both non-blocking and close-on-exec; the
// worker's end reaches the worker through spawn's stdio mapping, which clears CLOEXEC
// on the child's copy only.
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
    throw ErrnoError(env, errno, "socketpair");
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, sv[0]);
  out.Set(1u, sv[1]);
  return out;
}

// drainChannel(fd, acceptedAt?) -> [fd, listener, fd, listener, ...]: what a dead worker
// never read, read back through the primary's own copy of the worker's end. With an array
// acceptedAt, each connection's accept time (CLOCK_MONOTONIC ns) is appended to it, for
// dispatch() to keep: a re-dispatched connection has waited since it was first accepted.
// With .peers: their client addresses, one 20-byte Peer each, when the records carried them.
Napi::Value DrainChannel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int channel = info[0].As<Napi::Number>().Int32Value();
  std::vector<Handoff> handoffs;
  uint32_t announced = 0, malformed = 0;
  int rc = ReceiveHandoffs(channel, SIZE_MAX, &handoffs, &announced, &malformed);
  if (rc > 0) {
    for (const Handoff& h : handoffs) ::close(h.fd);
    throw ErrnoError(env, rc, "recvmsg");
  }
  Napi::Array out = Napi::Array::New(env, handoffs.size() * 2);
  for (size_t i = 0; i < handoffs.size(); i++) {
    out.Set(static_cast<uint32_t>(i * 2), handoffs[i].fd);
    out.Set(static_cast<uint32_t>(i * 2 + 1), handoffs[i].listener);
  }
  if (info.Length() > 1 && info[1].IsArray()) {
    Napi::Array times = info[1].As<Napi::Array>();
    uint32_t base = times.Length();
    // A double holds ns exactly for 104 days of uptime, to a few ns after that: plenty.
    for (size_t i = 0; i < handoffs.size(); i++)
      times.Set(base + static_cast<uint32_t>(i), static_cast<double>(handoffs[i].accepted_ns));
  }
  // Their Peers (client addresses) ride along as out.peers, for dispatch() to put back.
  bool any = false;
  for (const Handoff& h : handoffs) any = any || h.peer.family != 0 || h.peer.flags != 0;
  if (any) {
    Napi::Buffer<uint8_t> peers = Napi::Buffer<uint8_t>::New(env, handoffs.size() * sizeof(Peer));
    for (size_t i = 0; i < handoffs.size(); i++)
      std::memcpy(peers.Data() + i * sizeof(Peer), &handoffs[i].peer, sizeof(Peer));
    out.Set("peers", peers);
  }
  return out;
}

}  // namespace

void InitChannel(Napi::Env env, Napi::Object exports) {
  exports.Set("socketpair", Napi::Function::New(env, SocketPair));
  exports.Set("drainChannel", Napi::Function::New(env, DrainChannel));
}

#endif  // HERDLESS_NO_NAPI

}  // namespace herdless
