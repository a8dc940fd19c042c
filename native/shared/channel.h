// The hand-off channel between the primary and one worker.
//
// Wire format: one SOCK_SEQPACKET record per batch of connections from one listener: 1 to
// kMaxBatch fds in one SCM_RIGHTS control message, and a 16-byte payload { listener index,
// fd count, accept time }. The count travels in the payload so that the reader knows how many
// connections a record carried even if the kernel had to drop some (MSG_CTRUNC). The accept
// time (CLOCK_MONOTONIC ns, one clock for every process on the machine) is that of the
// record's oldest connection: the worker measures how long connections waited for it.
// SEQPACKET rather than STREAM because records keep their boundaries: a reader never sees
// half a record, and the kernel never merges two records' fds into one read, so there is no
// framing code to get wrong. Batching matters under load: the accept loop often takes
// several connections per wake-up, and one sendmsg/recvmsg pair then moves them all. The
// channel's send buffer bounds how many connections can wait for one worker; when it is
// full, sendmsg says EAGAIN and the dispatcher tries another worker.
//
// Peer block (optional, appended after the payload): one Peer per fd, in fd order, sent when
// the primary routes by client address or reads PROXY headers. A record is either payload
// alone or payload + count Peers; the reader tells them apart by the record's length.
#pragma once
// HERDLESS_NO_NAPI: the record format alone, without the JS face (fuzz/record.cc builds it so).
#ifndef HERDLESS_NO_NAPI
#include <napi.h>
#endif

#include <cstddef>
#include <cstdint>
#include <vector>

namespace herdless {

constexpr size_t kMaxBatch = 16;       // fds per record; the kernel allows 253 (SCM_MAX_FD)
constexpr size_t kRecordsPerCall = 8;  // records per recvmmsg (a read of more makes more calls)

// A connection's client address, as the primary knows it (accept4, or a PROXY header).
struct Peer {
  uint8_t family = 0;  // 0 unknown (unix socket, PROXY UNKNOWN/LOCAL), 4 or 6
  uint8_t flags = 0;   // kPeerProxied: from a PROXY header; the worker presents it as the remote address
  uint16_t port = 0;   // host order
  uint8_t addr[16] = {};
};
static_assert(sizeof(Peer) == 20, "Peer is part of the wire format");
constexpr uint8_t kPeerProxied = 1;

struct Handoff {
  int fd;
  uint32_t listener;
  uint64_t accepted_ns = 0;  // CLOCK_MONOTONIC: kept through re-dispatch and stealing
  Peer peer{};
};

// CLOCK_MONOTONIC now, ns (vDSO: no syscall). The clock of every accept time.
uint64_t MonotonicNanos();

// Sends `count` (1..kMaxBatch) connections accepted on `listener` as one record, dated
// `accepted_ns` (the oldest one's accept time), with their Peers (count of them) when `peers`
// is not null. Returns 0, or an errno value (EAGAIN when the channel is full).
int SendHandoffs(int channel, const int* fds, size_t count, uint32_t listener, uint64_t accepted_ns,
                 const Peer* peers = nullptr);

// Reads up to `max` records without blocking, appending each connection to *out and adding
// the number of connections the records announced to *announced. Returns 0 when the channel
// is merely empty, an errno on failure, or -1 at end of file (the other end is gone). Fds
// arrive CLOEXEC. A record that is not well formed is closed and counted in *malformed.
// *records (if given): how many records it took; fewer than `max` means the channel was
// found empty (or at its end), and no further call is needed to know it.
int ReceiveHandoffs(int channel, size_t max, std::vector<Handoff>* out, uint32_t* announced, uint32_t* malformed,
                    size_t* records = nullptr);

// How many connections the next record announces, without taking it (MSG_PEEK with no room
// for control data: the fds stay with the record). Returns 0 and sets *count (0 if the
// channel is empty), or an errno value.
int PeekHandoffCount(int channel, uint32_t* count);

// Whether the fds of the next record can be installed in this process right now: peeks at
// it with room for its fds (the kernel installs copies, which are closed at once). The
// record stays in the channel either way. Returns 1 (they fit), 0 (the kernel had to drop
// some: MSG_CTRUNC), or -1 (the channel is empty or failed).
int PeekFits(int channel);

#ifndef HERDLESS_NO_NAPI
void InitChannel(Napi::Env env, Napi::Object exports);
#endif

}  // namespace herdless
