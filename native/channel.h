// The hand-off channel between the primary and one worker.
//
// Wire format: one SOCK_SEQPACKET record per connection, carrying exactly one fd in an
// SCM_RIGHTS control message and a 4-byte payload (the index of the listener that accepted
// it). SEQPACKET rather than STREAM because records keep their boundaries: a reader never
// sees half a record, and the kernel never merges two records' fds into one read, so there
// is no framing code to get wrong. The channel's send buffer bounds how many connections
// can wait for one worker; when it is full, sendmsg says EAGAIN and the dispatcher tries
// another worker.
#pragma once
#include <napi.h>

#include <cstdint>
#include <vector>

namespace herdless {

struct Handoff {
  int fd;
  uint32_t listener;
};

// Sends one connection. Returns 0, or an errno value (EAGAIN when the channel is full).
int SendHandoff(int channel, const Handoff& handoff);

// Reads up to `max` records without blocking. Returns 0 when the channel is merely empty,
// an errno on failure, or -1 at end of file (the other end is gone). Fds arrive CLOEXEC.
// Anything that is not one fd with a 4-byte payload is closed and counted in *malformed.
int ReceiveHandoffs(int channel, size_t max, std::vector<Handoff>* out, uint32_t* malformed);

void InitChannel(Napi::Env env, Napi::Object exports);

}  // namespace herdless
