// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. Node has no AF_UNIX
// SOCK_DGRAM socket, so this tiny function sends it; the policy (what, when) is in
// src/cli/notify.ts.
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "shared/errors.h"
#include "shared/fd.h"

namespace herdless {
namespace {

// sdNotify(socket, message): socket is a path, or "@name" for an abstract name (the '@'
// stands for the leading NUL byte in sun_path). Throws an errno error on failure.
Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string where = info[0].As<Napi::String>();
  std::string message = info[1].As<Napi::String>();

  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  // An abstract name is exactly its bytes (no terminator), so the address length must end
  // at its last byte; a path may use all but the terminating NUL.
  size_t limit = where[0] == '@' ? sizeof(sun.sun_path) : sizeof(sun.sun_path) - 1;
  if (where.empty() || where.size() > limit || (where[0] != '@' && where[0] != '/')) {
    Napi::Error e = Napi::Error::New(env, "NOTIFY_SOCKET must be an absolute path or an @abstract name of at most " +
                                              std::to_string(limit) + " bytes, got \"" + where + "\"");
    e.Set("code", Napi::String::New(env, "ERR_HERDLESS_INVALID_OPTION"));
    throw e;
  }
  std::memcpy(sun.sun_path, where.data(), where.size());
  if (where[0] == '@') sun.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + where.size() + (where[0] == '@' ? 0 : 1));

  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.Valid()) throw ErrnoError(env, errno, "socket", "AF_UNIX SOCK_DGRAM");
  ssize_t sent;
  do sent = sendto(fd.Get(), message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sun), len);
  while (sent < 0 && errno == EINTR);
  if (sent < 0) throw ErrnoError(env, errno, "sendto", where);
  // A datagram is sent whole or not at all; a short count would be a kernel surprise.
  if (static_cast<size_t>(sent) != message.size()) throw ErrnoError(env, EMSGSIZE, "sendto", where);
  return env.Undefined();
}

}  // namespace

void InitNotify(Napi::Env env, Napi::Object exports) { exports.Set("sdNotify", Napi::Function::New(env, SdNotify)); }

}  // namespace herdless
