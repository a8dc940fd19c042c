// pickForTest(workers, now, options): the placement policy (placement.h) as a pure function,
// for test/placement.test.js. Not part of the public API.
//
//   workers: [{ awake, sinceUs, sinceMs, pending, open, inFlight, maxConnections,
//               unreadSinceUs, sentAtUs, usable }]   (what a scoreboard and the accept thread hold)
//   now:     { us, ms }
//   options: { maxConnections, avoidUs, stealAfterUs, start }
//   -> { pick: index or -1, tiers: ['free' | 'prompt' | 'slow' | 'suspect' | 'none'], steal: [bool] }
#include <napi.h>

#include <vector>

#include "placement.h"

namespace herdless {
namespace {

uint32_t U32(const Napi::Object& o, const char* key, uint32_t fallback = 0) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? static_cast<uint32_t>(v.As<Napi::Number>().Int64Value()) : fallback;
}

int32_t I32(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : 0;
}

Napi::Value PickForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array list = info[0].As<Napi::Array>();
  Napi::Object now_js = info[1].As<Napi::Object>();
  Napi::Object opts_js = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  std::vector<placement::WorkerView> views(list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Object w = list.Get(i).As<Napi::Object>();
    placement::WorkerView& v = views[i];
    Napi::Value usable = w.Get("usable");
    v.usable = usable.IsUndefined() ? true : usable.ToBoolean().Value();
    v.pending = I32(w, "pending");
    v.open = I32(w, "open");
    v.in_flight = I32(w, "inFlight");
    v.max_connections = I32(w, "maxConnections");
    v.loop = (U32(w, "sinceUs") & ~1u) | (w.Get("awake").ToBoolean().Value() ? 1u : 0u);
    v.loop_since_ms = U32(w, "sinceMs", U32(w, "sinceUs") / 1000);
    v.unread_since_us = U32(w, "unreadSinceUs");
    v.sent_ever = w.Get("sentAtUs").IsNumber();
    v.sent_at_us = U32(w, "sentAtUs");
  }
  placement::Clock now{U32(now_js, "us"), U32(now_js, "ms", U32(now_js, "us") / 1000)};
  placement::Options o;
  o.max_connections = I32(opts_js, "maxConnections");
  o.avoid_us = U32(opts_js, "avoidUs", o.avoid_us);
  uint32_t steal_after = U32(opts_js, "stealAfterUs", 5000);
  size_t start = U32(opts_js, "start");
  static const char* names[] = {"free", "prompt", "slow", "suspect", "none"};
  Napi::Array tiers = Napi::Array::New(env, views.size());
  Napi::Array steal = Napi::Array::New(env, views.size());
  for (uint32_t i = 0; i < views.size(); i++) {
    tiers.Set(i, names[static_cast<int>(placement::Assess(views[i], o, now).tier)]);
    steal.Set(i, placement::ShouldSteal(views[i], now, steal_after));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pick", placement::Pick(views.data(), views.size(), o, now, views.empty() ? 0 : start % views.size()));
  out.Set("tiers", tiers);
  out.Set("steal", steal);
  return out;
}

}  // namespace

void InitPlacement(Napi::Env env, Napi::Object exports) {
  exports.Set("pickForTest", Napi::Function::New(env, PickForTest));
}

}  // namespace herdless
