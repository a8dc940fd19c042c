// Who is on the other end of a Unix socket, as the kernel recorded it at connect(2): the
// control socket refuses other users by this, not by anything the peer says about itself.
#include <sys/socket.h>
#include <sys/types.h>

#include <cerrno>

#include "shared/errors.h"

namespace herdless {
namespace {

// peerCredentials(fd) -> { pid, uid, gid } of the process that connected.
Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(env, "peerCredentials(fd): fd must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    throw ErrnoError(env, errno, "getsockopt", "SO_PEERCRED");
  if (len != sizeof(cred)) throw ErrnoError(env, EINVAL, "getsockopt", "SO_PEERCRED: short answer");
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

}  // namespace

void InitPeerCredentials(Napi::Env env, Napi::Object exports) {
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials));
}

}  // namespace herdless
