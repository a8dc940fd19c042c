// How full a listener's accept queue is: connections the kernel has completed that nobody
// has accepted yet, and the most it will hold (the listen(2) backlog, capped by somaxconn).
// Read on demand (a stats() call), never polled.
//
//   TCP:  getsockopt(TCP_INFO). For a socket in LISTEN state the kernel reports the accept
//         queue's length in tcpi_unacked and its limit in tcpi_sacked.
//   unix: no TCP_INFO. The sock_diag netlink interface (what `ss -xl` uses) answers for one
//         socket by inode: UNIX_DIAG_RQLEN gives the queue length and the limit. One netlink
//         socket per call; where the kernel lacks unix_diag the answer is null.
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "shared/errors.h"
#include "shared/fd.h"

namespace herdless {
namespace {

constexpr uint8_t kTcpListen = 10;  // TCP_LISTEN in the kernel's state numbering

struct Queue {
  uint32_t queued;
  uint32_t backlog;
};

// 0 and *out, or an errno value (ENOPROTOOPT: not a TCP socket).
int TcpQueue(int fd, Queue* out) {
  tcp_info ti{};
  socklen_t len = sizeof(ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return errno;
  if (ti.tcpi_state != kTcpListen) return EINVAL;
  *out = {ti.tcpi_unacked, ti.tcpi_sacked};
  return 0;
}

// 0 and *out, or an errno value (the kernel has no unix_diag: ENOENT or EPROTONOSUPPORT).
int UnixQueue(int fd, Queue* out) {
  struct stat st;
  if (fstat(fd, &st) != 0) return errno;
  UniqueFd nl(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl.Valid()) return errno;
  struct {
    nlmsghdr nlh;
    unix_diag_req req;
  } request{};
  request.nlh.nlmsg_len = sizeof(request);
  request.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request.nlh.nlmsg_flags = NLM_F_REQUEST;  // one socket, by inode: no dump
  request.req.sdiag_family = AF_UNIX;
  request.req.udiag_states = 1u << kTcpListen;
  request.req.udiag_ino = static_cast<uint32_t>(st.st_ino);
  request.req.udiag_show = UDIAG_SHOW_RQLEN;
  request.req.udiag_cookie[0] = request.req.udiag_cookie[1] = ~0u;  // INET_DIAG_NOCOOKIE: any
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t n;
  do {
    n = sendto(nl.Get(), &request, sizeof(request), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  // The kernel answers within sendto(): the reply is already queued.
  alignas(nlmsghdr) char buf[1024];
  do {
    n = recv(nl.Get(), buf, sizeof(buf), MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
    if (h->nlmsg_type == NLMSG_ERROR) {
      auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
      return e->error != 0 ? -e->error : ENOENT;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg))) continue;
    auto* msg = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
    if (msg->udiag_ino != request.req.udiag_ino) continue;
    int left = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*msg)));
    for (auto* a = reinterpret_cast<nlattr*>(msg + 1);
         left >= static_cast<int>(sizeof(nlattr)) && a->nla_len >= sizeof(nlattr) && a->nla_len <= left;
         left -= NLA_ALIGN(a->nla_len),
               a = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(a) + NLA_ALIGN(a->nla_len))) {
      if ((a->nla_type & NLA_TYPE_MASK) != UNIX_DIAG_RQLEN || a->nla_len < NLA_HDRLEN + sizeof(unix_diag_rqlen))
        continue;
      unix_diag_rqlen rq;
      std::memcpy(&rq, reinterpret_cast<char*>(a) + NLA_HDRLEN, sizeof(rq));
      *out = {rq.udiag_rqueue, rq.udiag_wqueue};  // a listener: queue length, backlog
      return 0;
    }
  }
  return ENOENT;
}

// listenQueue(fd) -> { queued, backlog } | null: null when this kernel cannot tell (a unix
// listener without unix_diag, or a socket that is no longer listening).
Napi::Value ListenQueue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) throw ErrnoError(env, errno, "getsockname");
  Queue q{};
  int err = ss.ss_family == AF_UNIX ? UnixQueue(fd, &q) : TcpQueue(fd, &q);
  if (err != 0) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  out.Set("queued", q.queued);
  out.Set("backlog", q.backlog);
  return out;
}

}  // namespace

void InitListenQueue(Napi::Env env, Napi::Object exports) {
  exports.Set("listenQueue", Napi::Function::New(env, ListenQueue));
}

}  // namespace herdless
