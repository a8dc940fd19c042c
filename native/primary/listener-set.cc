// The set of listeners the accept thread watches, and who may take their connections.
// Listeners given to the constructor serve every worker. Those the app opens in a worker
// (listen(), src/primary/app-listeners.ts) come and go while the thread runs, and serve only
// the workers that joined them. An index is never reused: hand-off records in flight name it.
#include "primary/acceptor.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "shared/errors.h"

namespace herdless {

void Acceptor::DeferAccept(size_t i) {
  constexpr int kDeferS = 1;
  if (listeners_[i] < 0 || proxy_.TimeoutMs() < 2000) return;
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(listeners_[i], reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return;
  int defer_s = kDeferS;
  if (setsockopt(listeners_[i], IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof(defer_s)) == 0)
    deferred_ms_[i] = kDeferS * 1000;
}

// addListener(fd) -> index: a listener the app opened in a worker (listen()), watched from
// now on, running or not. Its connections go only to the workers that join it.
Napi::Value Acceptor::AddListener(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  size_t index;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (epoll_fd_ < 0) throw Napi::Error::New(env, "the acceptor was stopped");
    index = listeners_.size();
    epoll_event ev{};
    ev.events = listeners_armed_ ? EPOLLIN | EPOLLRDHUP : 0;
    ev.data.u64 = index;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0)
      throw ErrnoError(env, errno, "epoll_ctl", "listener fd " + std::to_string(fd));
    listeners_.push_back(fd);
    dead_.push_back(false);
    open_to_all_.push_back(false);
    members_.emplace_back();
    if (proxy_.Enabled()) {
      deferred_ms_.push_back(0);
      DeferAccept(index);
    }
  }
  return Napi::Number::New(env, static_cast<double>(index));
}

// removeListener(index): stop watching an app-opened listener. After this returns the thread
// never touches its fd again (the caller closes it); connections of it still waiting here go
// to its members if any remain, else are closed.
Napi::Value Acceptor::RemoveListener(const Napi::CallbackInfo& info) {
  uint32_t index = info[0].As<Napi::Number>().Uint32Value();
  std::lock_guard<std::mutex> lock(mutex_);
  if (index >= listeners_.size() || listeners_[index] < 0) return Napi::Boolean::New(info.Env(), false);
  if (!dead_[index] && epoll_fd_ >= 0 && epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listeners_[index], nullptr) != 0) {
    // Not in the set (it failed earlier): nothing to remove.
  }
  listeners_[index] = -1;
  dead_[index] = true;
  return Napi::Boolean::New(info.Env(), true);
}

// joinListener(index, workerId, joined): the worker's app listens on this listener (or no
// longer does). A worker may join before addWorker() (it listens while its app loads).
Napi::Value Acceptor::JoinListener(const Napi::CallbackInfo& info) {
  uint32_t index = info[0].As<Napi::Number>().Uint32Value();
  int id = info[1].As<Napi::Number>().Int32Value();
  bool joined = info[2].ToBoolean();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (index >= members_.size()) throw Napi::RangeError::New(info.Env(), "no such listener");
    std::vector<int>& m = members_[index];
    auto it = std::find(m.begin(), m.end(), id);
    if (joined && it == m.end()) m.push_back(id);
    if (!joined && it != m.end()) m.erase(it);
  }
  Wake();  // its backlog may have waited for a member
  return info.Env().Undefined();
}

bool Acceptor::Eligible(size_t worker, uint32_t listener) const {
  if (listener >= open_to_all_.size() || open_to_all_[listener]) return true;
  const std::vector<int>& m = members_[listener];
  return std::find(m.begin(), m.end(), workers_[worker].id) != m.end();
}

void Acceptor::MarkIneligible(uint32_t listener, std::vector<bool>* skip) const {
  if (listener >= open_to_all_.size() || open_to_all_[listener]) return;
  for (size_t i = 0; i < workers_.size(); i++)
    if (!Eligible(i, listener)) (*skip)[i] = true;
}

// Worth keeping a connection of `listener` for: it is still open (a member may come), or some
// worker still listens on it. Otherwise nobody ever will take it.
bool Acceptor::AnyEligible(uint32_t listener) const {
  if (listener >= open_to_all_.size() || open_to_all_[listener] || listeners_[listener] >= 0) return true;
  for (size_t i = 0; i < workers_.size(); i++)
    if (Eligible(i, listener)) return true;
  return false;
}

}  // namespace herdless
