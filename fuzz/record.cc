// libFuzzer target: the hand-off record decoder (ReceiveHandoffs, native/shared/channel.cc),
// fed real records over a real SOCK_SEQPACKET socketpair, as a worker reads them, under ASan
// and UBSan (fuzz/build.sh). The input describes up to 4 records, each: one byte of fd count
// (sent as SCM_RIGHTS copies of /dev/null: past kMaxBatch the kernel truncates, MSG_CTRUNC),
// one byte of payload length, then that many payload bytes (16-byte header + Peers, or junk).
// Besides memory errors it checks that:
//   - every fd the decoder returns is open, and nothing else it received stays open (no fd
//     leak, whatever the record: malformed, truncated or short);
//   - it never returns more connections than a record announced, nor more than arrived;
//   - a record announces at most kMaxBatch connections.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "shared/channel.h"

namespace {

constexpr int kFdScan = 256;  // fds checked for leaks: far more than one run can open

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Fixture {
  int send_end = -1, recv_end = -1, null_fd = -1;
  std::vector<bool> open_before;
  Fixture() {
    int sv[2];
    Check(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    send_end = sv[0];
    recv_end = sv[1];
    null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    Check(null_fd >= 0);
    open_before = OpenFds();
  }
  static std::vector<bool> OpenFds() {
    std::vector<bool> open(kFdScan);
    for (int fd = 0; fd < kFdScan; fd++) open[fd] = fcntl(fd, F_GETFD) >= 0;
    return open;
  }
};

// Sends one record: `nfds` copies of /dev/null (the kernel refuses more than 253) and `payload`.
bool SendRecord(const Fixture& f, size_t nfds, const uint8_t* payload, size_t len) {
  iovec iov{const_cast<uint8_t*>(payload), len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * (nfds ? nfds : 1)));
  if (nfds > 0) {
    msg.msg_control = control.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    for (size_t k = 0; k < nfds; k++) std::memcpy(CMSG_DATA(c) + k * sizeof(int), &f.null_fd, sizeof(int));
  }
  return sendmsg(f.send_end, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture f;
  size_t records = 0, fds_sent = 0;
  size_t at = 0;
  while (records < 4 && at + 2 <= size) {
    size_t nfds = data[at] % 24;     // up to kMaxBatch and a little past it
    size_t len = data[at + 1] * 2u;  // 0..510: a full record with Peers is 16 + 16 * 20 = 336
    at += 2;
    if (len > size - at) len = size - at;
    // A record with neither bytes nor fds reads as end of file; the decoder is right to stop there.
    if (len == 0 && nfds == 0) continue;
    if (!SendRecord(f, nfds, data + at, len)) break;
    at += len;
    records++;
    fds_sent += nfds;
  }
  std::vector<herdless::Handoff> out;
  uint32_t announced = 0, malformed = 0;
  int rc = 0;
  // One record per call, then several (recvmmsg takes up to kRecordsPerCall at once).
  for (size_t round = 0; round <= records && rc == 0; round++)
    rc = herdless::ReceiveHandoffs(f.recv_end, round % 2 == 0 ? 1 : 3, &out, &announced, &malformed);
  Check(rc == 0 || rc == -1);
  Check(out.size() <= fds_sent);
  Check(out.size() <= announced);
  Check(announced <= records * herdless::kMaxBatch);
  for (const herdless::Handoff& h : out) {
    Check(fcntl(h.fd, F_GETFD) >= 0);
    close(h.fd);
  }
  // Whatever is left in the channel (nothing, normally) is read and closed, then: no leak.
  char junk[1024];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253)];
  for (;;) {
    iovec iov{junk, sizeof(junk)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    if (recvmsg(f.recv_end, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0) break;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t k = 0; k < count; k++) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
        close(fd);
      }
    }
  }
  Check(Fixture::OpenFds() == f.open_before);
  return 0;
}
