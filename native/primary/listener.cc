// Listening sockets: created here so that the primary, not a worker, owns them.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "shared/errors.h"
#include "shared/fd.h"
#include "primary/listener.h"

namespace herdless {
namespace {

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;
  int family = AF_UNSPEC;
};

bool ParseIp(const std::string& host, int port, SockAddr* out) {
  auto* in4 = reinterpret_cast<sockaddr_in*>(&out->storage);
  if (inet_pton(AF_INET, host.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in);
    out->family = AF_INET;
    return true;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&out->storage);
  if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    out->len = sizeof(sockaddr_in6);
    out->family = AF_INET6;
    return true;
  }
  return false;
}

int SetIntOption(int fd, int level, int name, int value) { return setsockopt(fd, level, name, &value, sizeof(value)); }

// listenTcp(ip, port, backlog, reusePort, doListen) -> fd
// doListen=false binds without listening: the reuseport mode's primary holds the port
// that way, outside the kernel's reuseport group, which only counts listening sockets.
Napi::Value ListenTcp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string host = info[0].As<Napi::String>();
  int port = info[1].As<Napi::Number>().Int32Value();
  int backlog = info[2].As<Napi::Number>().Int32Value();
  bool reuse_port = info[3].As<Napi::Boolean>();
  bool do_listen = info[4].As<Napi::Boolean>();
  bool ipv6_only = info.Length() > 5 && info[5].ToBoolean();  // listen({ ipv6Only }) on "::"
  std::string where = host + ":" + std::to_string(port);

  SockAddr addr;
  if (!ParseIp(host, port, &addr)) {
    Napi::Error e = Napi::Error::New(env, "not a numeric IP address: " + host);
    e.Set("code", Napi::String::New(env, "ERR_HERDLESS_INVALID_OPTION"));
    throw e;
  }
  UniqueFd fd(socket(addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.Valid()) throw ErrnoError(env, errno, "socket", where);
  if (SetIntOption(fd.Get(), SOL_SOCKET, SO_REUSEADDR, 1) != 0)
    throw ErrnoError(env, errno, "setsockopt", "SO_REUSEADDR");
  if (reuse_port && SetIntOption(fd.Get(), SOL_SOCKET, SO_REUSEPORT, 1) != 0)
    throw ErrnoError(env, errno, "setsockopt", "SO_REUSEPORT");
  // Like Node: "::" accepts IPv4 too unless the system forbids it.
  if (addr.family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr.storage);
    int v6only = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) && !ipv6_only ? 0 : 1;
    if (SetIntOption(fd.Get(), IPPROTO_IPV6, IPV6_V6ONLY, v6only) != 0)
      throw ErrnoError(env, errno, "setsockopt", "IPV6_V6ONLY");
  }
  if (bind(fd.Get(), reinterpret_cast<sockaddr*>(&addr.storage), addr.len) != 0)
    throw ErrnoError(env, errno, "bind", where);
  if (do_listen && listen(fd.Get(), backlog) != 0) throw ErrnoError(env, errno, "listen", where);
  return Napi::Number::New(env, fd.Release());
}

// A socket file nobody answers on is stale (a crashed server's); one that answers is in use.
bool IsStaleSocketFile(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe.Valid()) return false;
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
  int rc;
  do rc = connect(probe.Get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun));
  while (rc != 0 && errno == EINTR);
  return rc != 0 && errno == ECONNREFUSED;
}

// listenUnix(path, backlog, mode) -> fd; mode < 0 keeps the umask's permissions.
Napi::Value ListenUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int backlog = info[1].As<Napi::Number>().Int32Value();
  int mode = info[2].As<Napi::Number>().Int32Value();

  sockaddr_un sun{};
  if (path.size() >= sizeof(sun.sun_path)) {
    Napi::Error e = Napi::Error::New(
        env, "listen.path is longer than " + std::to_string(sizeof(sun.sun_path) - 1) + " bytes: " + path);
    e.Set("code", Napi::String::New(env, "ERR_HERDLESS_INVALID_OPTION"));
    throw e;
  }
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path.data(), path.size());

  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.Valid()) throw ErrnoError(env, errno, "socket", path);
  if (IsStaleSocketFile(path) && unlink(path.c_str()) != 0 && errno != ENOENT)
    throw ErrnoError(env, errno, "unlink", path);
  // Linux creates the socket's file with the socket inode's mode less the umask: set on the
  // fd before bind(), the file never exists with more than `mode` (a chmod after bind left a
  // window with the umask's, often 0755 or 0777). Only a mode the umask narrowed is widened
  // afterwards, by a chmod that does not follow a symlink put in the socket's place.
  if (mode >= 0 && fchmod(fd.Get(), static_cast<mode_t>(mode)) != 0) throw ErrnoError(env, errno, "fchmod", path);
  if (bind(fd.Get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) throw ErrnoError(env, errno, "bind", path);
  if (mode >= 0) {
    struct stat st;
    int err = 0;
    if (fstatat(AT_FDCWD, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      err = errno;
    else if (!S_ISSOCK(st.st_mode))
      err = EEXIST;  // something else took the socket's place: not ours to chmod or unlink
    else if ((st.st_mode & 07777) != static_cast<mode_t>(mode) &&
             fchmodat(AT_FDCWD, path.c_str(), static_cast<mode_t>(mode), AT_SYMLINK_NOFOLLOW) != 0)
      err = errno;
    if (err != 0) {
      if (err != EEXIST) unlink(path.c_str());
      throw ErrnoError(env, err, "chmod", path);
    }
  }
  if (listen(fd.Get(), backlog) != 0) {
    int err = errno;
    unlink(path.c_str());
    throw ErrnoError(env, err, "listen", path);
  }
  return Napi::Number::New(env, fd.Release());
}

// socketInfo(fd) -> { type, listening, family, address, port, path }
// Used to check an inherited fd and to answer address().
Napi::Value SocketInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int type = 0, accepting = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) throw ErrnoError(env, errno, "getsockopt", "SO_TYPE");
  len = sizeof(accepting);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0)
    throw ErrnoError(env, errno, "getsockopt", "SO_ACCEPTCONN");
  sockaddr_storage ss{};
  len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) throw ErrnoError(env, errno, "getsockname");

  Napi::Object out = Napi::Object::New(env);
  out.Set("stream", Napi::Boolean::New(env, type == SOCK_STREAM));
  out.Set("listening", Napi::Boolean::New(env, accepting != 0));
  char text[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in4->sin_addr, text, sizeof(text));
    out.Set("family", "IPv4");
    out.Set("address", text);
    out.Set("port", ntohs(in4->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    out.Set("family", "IPv6");
    out.Set("address", text);
    out.Set("port", ntohs(in6->sin6_port));
  } else if (ss.ss_family == AF_UNIX) {
    auto* sun = reinterpret_cast<sockaddr_un*>(&ss);
    size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    out.Set("family", "unix");
    out.Set("path", std::string(sun->sun_path, strnlen(sun->sun_path, n)));
  } else {
    out.Set("family", "other");
  }
  return out;
}

const char* DomainName(int domain) {
  switch (domain) {
    case AF_UNIX: return "AF_UNIX";
    case AF_INET: return "AF_INET";
    case AF_INET6: return "AF_INET6";
    case AF_NETLINK: return "AF_NETLINK";
    case AF_PACKET: return "AF_PACKET";
    case AF_TIPC: return "AF_TIPC";
    case AF_BLUETOOTH: return "AF_BLUETOOTH";
    case AF_ALG: return "AF_ALG";
    case AF_VSOCK: return "AF_VSOCK";
    default: return nullptr;
  }
}

const char* TypeName(int type) {
  switch (type) {
    case SOCK_STREAM: return "SOCK_STREAM";
    case SOCK_DGRAM: return "SOCK_DGRAM";
    case SOCK_RAW: return "SOCK_RAW";
    case SOCK_RDM: return "SOCK_RDM";
    case SOCK_SEQPACKET: return "SOCK_SEQPACKET";
    default: return nullptr;
  }
}

const char* FileKind(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFSOCK: return "socket";
    case S_IFREG: return "regular file";
    case S_IFDIR: return "directory";
    case S_IFIFO: return "pipe";
    case S_IFCHR: return "character device";
    case S_IFBLK: return "block device";
    default: return "other";  // eventfd, epoll, memfd's anon inodes ...
  }
}

// inspectFd(fd) -> { kind, domain?, type?, protocol?, listening? }: what an inherited fd
// is, in words the caller's error message can use ('regular file'; 'AF_PACKET', 'SOCK_RAW').
Napi::Value InspectFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct stat st;
  if (fstat(fd, &st) != 0) throw ErrnoError(env, errno, "fstat", "fd " + std::to_string(fd));
  Napi::Object out = Napi::Object::New(env);
  out.Set("kind", FileKind(st.st_mode));
  if (!S_ISSOCK(st.st_mode)) return out;
  int domain = 0, type = 0, protocol = 0, accepting = 0;
  socklen_t len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0)
    throw ErrnoError(env, errno, "getsockopt", "SO_DOMAIN");
  len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) throw ErrnoError(env, errno, "getsockopt", "SO_TYPE");
  len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0)
    throw ErrnoError(env, errno, "getsockopt", "SO_PROTOCOL");
  len = sizeof(int);
  // Not every family answers SO_ACCEPTCONN; one that does not is not listening for us.
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0) accepting = 0;
  const char* domain_name = DomainName(domain);
  const char* type_name = TypeName(type);
  out.Set("domain", domain_name ? std::string(domain_name) : "address family " + std::to_string(domain));
  out.Set("type", type_name ? std::string(type_name) : "socket type " + std::to_string(type));
  out.Set("protocol", protocol);
  out.Set("listening", Napi::Boolean::New(env, accepting != 0));
  return out;
}

// adoptFd(fd) -> our own duplicate of an inherited listener, close-on-exec so it cannot
// leak into workers, non-blocking so it cannot stall the accept thread. (O_NONBLOCK belongs
// to the open file, so the caller's fd becomes non-blocking too; listeners are used that way.)
// The caller's fd is made close-on-exec as well: otherwise every worker we spawn would
// inherit the listener, and dispatch mode promises that no worker holds one.
Napi::Value AdoptFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int fdflags = fcntl(fd, F_GETFD);
  if (fdflags < 0 || fcntl(fd, F_SETFD, fdflags | FD_CLOEXEC) != 0) throw ErrnoError(env, errno, "fcntl", "FD_CLOEXEC");
  UniqueFd dup(fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!dup.Valid()) throw ErrnoError(env, errno, "fcntl", "F_DUPFD_CLOEXEC");
  int fl = fcntl(dup.Get(), F_GETFL);
  if (fl < 0 || fcntl(dup.Get(), F_SETFL, fl | O_NONBLOCK) != 0) throw ErrnoError(env, errno, "fcntl", "O_NONBLOCK");
  return Napi::Number::New(env, dup.Release());
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd >= 0) ::close(fd);
  return info.Env().Undefined();
}

}  // namespace

void InitListener(Napi::Env env, Napi::Object exports) {
  exports.Set("listenTcp", Napi::Function::New(env, ListenTcp));
  exports.Set("listenUnix", Napi::Function::New(env, ListenUnix));
  exports.Set("socketInfo", Napi::Function::New(env, SocketInfo));
  exports.Set("inspectFd", Napi::Function::New(env, InspectFd));
  exports.Set("adoptFd", Napi::Function::New(env, AdoptFd));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
}

}  // namespace herdless
