// Turning a failed syscall into a JS error shaped like Node's own:
// err.code = 'EADDRINUSE', err.errno = -98, err.syscall = 'bind'.
#pragma once
#include <napi.h>
#include <string>

namespace herdless {

// Name of an errno value ("EMFILE"), as libuv spells it.
const char* ErrnoName(int err);

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& detail = "");

}  // namespace herdless
