// Process-level knobs that Node does not expose.
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "shared/errors.h"

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

// watchParent(parentPid, graceMs): the backstop for PR_SET_PDEATHSIG. The SIGTERM it sends
// is handled by JS, which cannot run while a request blocks the event loop; this thread
// needs no JS. Once the parent is gone it gives JS `graceMs` to finish, then ends the
// process. It sleeps in poll() on a pidfd of the parent, so an idle worker is not woken;
// where pidfd_open is missing (Linux < 5.3) it looks at getppid() every 50 ms.
void AwaitParentExit(pid_t parent) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, parent, 0));
  // Still our parent after the open: the pidfd is that process's, not a reused pid's.
  if (pidfd >= 0 && getppid() == parent) {
    pollfd p{pidfd, POLLIN, 0};
    int rc;
    while ((rc = poll(&p, 1, -1)) < 0 && errno == EINTR) {
    }
    ::close(pidfd);
    if (rc > 0) return;
    pidfd = -1;  // poll failed: fall back to looking
  }
  if (pidfd >= 0) ::close(pidfd);
  while (getppid() == parent) std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

Napi::Value WatchParent(const Napi::CallbackInfo& info) {
  pid_t parent = static_cast<pid_t>(info[0].As<Napi::Number>().Int32Value());
  int grace_ms = info[1].As<Napi::Number>().Int32Value();
  std::thread([parent, grace_ms] {
    AwaitParentExit(parent);
    std::this_thread::sleep_for(std::chrono::milliseconds(grace_ms));
    _exit(0);
  }).detach();
  return info.Env().Undefined();
}

// raiseFdLimit() -> the new soft RLIMIT_NOFILE. A worker holds one fd per connection and
// the kernel silently drops fds that arrive over SCM_RIGHTS past the limit (MSG_CTRUNC), so
// workers take all the fds the hard limit allows, as nginx (worker_rlimit_nofile) and Go do.
Napi::Value RaiseFdLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) throw ErrnoError(env, errno, "getrlimit", "RLIMIT_NOFILE");
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  return Napi::Number::New(env, static_cast<double>(lim.rlim_cur));
}

}  // namespace

void InitProcess(Napi::Env env, Napi::Object exports) {
  exports.Set("setParentDeathSignal", Napi::Function::New(env, SetParentDeathSignal));
  exports.Set("raiseFdLimit", Napi::Function::New(env, RaiseFdLimit));
  exports.Set("watchParent", Napi::Function::New(env, WatchParent));
}

}  // namespace herdless
