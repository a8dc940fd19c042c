// Process-level knobs that Node does not expose.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>

#include "errors.h"

namespace herdless {
namespace {

// setParentDeathSignal(signal): the kernel signals this worker when the primary dies,
// even by SIGKILL, so no worker outlives it.
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sig = info[0].As<Napi::Number>().Int32Value();
  if (prctl(PR_SET_PDEATHSIG, sig) != 0) throw ErrnoError(env, errno, "prctl", "PR_SET_PDEATHSIG");
  return env.Undefined();
}

}  // namespace

void InitProcess(Napi::Env env, Napi::Object exports) {
  exports.Set("setParentDeathSignal", Napi::Function::New(env, SetParentDeathSignal));
}

}  // namespace herdless
