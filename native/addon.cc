// The addon's surface; src/binding.ts types it and is the only JS that loads it.
#include <napi.h>

#ifdef HERDLESS_LINUX
#include "primary/acceptor.h"
#include "shared/channel.h"
#include "worker/inbox.h"
#include "primary/listener.h"
#include "shared/scoreboard.h"

namespace herdless {
void InitPeerCredentials(Napi::Env env, Napi::Object exports);
void InitProcess(Napi::Env env, Napi::Object exports);
void InitLoopState(Napi::Env env, Napi::Object exports);
void InitPlacement(Napi::Env env, Napi::Object exports);
void InitListenQueue(Napi::Env env, Napi::Object exports);
void InitNotify(Napi::Env env, Napi::Object exports);
}  // namespace herdless
#endif

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#ifdef HERDLESS_LINUX
  herdless::InitListener(env, exports);
  herdless::InitPeerCredentials(env, exports);
  herdless::InitChannel(env, exports);
  herdless::InitScoreboard(env, exports);
  herdless::InitInbox(env, exports);
  herdless::InitProcess(env, exports);
  herdless::InitLoopState(env, exports);
  herdless::InitPlacement(env, exports);
  herdless::InitListenQueue(env, exports);
  herdless::InitNotify(env, exports);
  herdless::Acceptor::Init(env, exports);
  exports.Set("supported", Napi::Boolean::New(env, true));
#else
  // Other systems lack epoll and accept4: the package loads, Dispatcher.start() explains.
  exports.Set("supported", Napi::Boolean::New(env, false));
#endif
  return exports;
}

NODE_API_MODULE(herdless, Init)
