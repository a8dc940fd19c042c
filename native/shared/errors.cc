#include "shared/errors.h"

#include <uv.h>

namespace herdless {

const char* ErrnoName(int err) {
  // libuv's error codes are negated errno values on Unix.
  return uv_err_name(-err);
}

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& detail) {
  std::string message = std::string(syscall) + " " + ErrnoName(err) + ": " + uv_strerror(-err);
  if (!detail.empty()) message += " " + detail;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

}  // namespace herdless
