// pickForTest(workers, now, options): the placement policy (placement.h) as a pure function,
// for test/placement.test.js. Not part of the public API.
//
//   workers: [{ awake, sinceUs, sinceMs, pending, open, inFlight, maxConnections,
//               unreadSinceUs, sentAtUs, servedSinceSent, usable }]   (what a scoreboard and the accept thread hold)
//   now:     { us, ms }
//   options: { maxConnections, avoidUs, stealAfterUs, light, hedge, start }
//   -> { pick: index or -1, tiers: ['free' | 'prompt' | 'slow' | 'suspect' | 'none'], steal: [bool],
//        stealCount: [how many of its unread connections a steal would take back now],
//        hedgeIn: [µs until the light-load hedge would take its unread connections back, or null] }
//
// pickByClientForTest(workers, keys, address, now, options): client-ip routing (PickByClient).
//   keys: each worker's stable key (its slot); address: an IPv4 or IPv6 address string;
//   options: as above, plus stallUs and secret (the pool's key, 32 hex digits; default
//   zeros) -> index of the worker for that client, or -1.
// clientHashForTest(address, secret?) -> the client's hash as a hex string ('0': not an address).
#include <arpa/inet.h>
#include <napi.h>

#include <cstdio>
#include <string>

#include <vector>

#include "primary/placement.h"
#include "primary/route-hash.h"
#include "primary/steal-policy.h"

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

std::vector<placement::WorkerView> Views(const Napi::Array& list) {
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
    v.served_since_sent = w.Get("servedSinceSent").ToBoolean();
    Napi::Value closes = w.Get("recentCloses");
    v.recent_closes = closes.IsNumber() ? closes.As<Napi::Number>().Int64Value() : -1;
    v.progressing = w.Get("progressing").ToBoolean();
  }
  return views;
}

Napi::Value PickForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array list = info[0].As<Napi::Array>();
  Napi::Object now_js = info[1].As<Napi::Object>();
  Napi::Object opts_js = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  std::vector<placement::WorkerView> views = Views(list);
  placement::Clock now{U32(now_js, "us"), U32(now_js, "ms", U32(now_js, "us") / 1000)};
  placement::Options o;
  o.max_connections = I32(opts_js, "maxConnections");
  o.avoid_us = U32(opts_js, "avoidUs", o.avoid_us);
  o.light = opts_js.Get("light").ToBoolean();
  o.hedge = opts_js.Get("hedge").ToBoolean();
  uint32_t steal_after = U32(opts_js, "stealAfterUs", 5000);
  size_t start = U32(opts_js, "start");
  static const char* names[] = {"free", "prompt", "slow", "suspect", "none"};
  Napi::Array tiers = Napi::Array::New(env, views.size());
  Napi::Array steal = Napi::Array::New(env, views.size());
  Napi::Array steal_count = Napi::Array::New(env, views.size());
  Napi::Array hedge_in = Napi::Array::New(env, views.size());
  for (uint32_t i = 0; i < views.size(); i++) {
    tiers.Set(i, names[static_cast<int>(placement::Assess(views[i], o, now).tier)]);
    steal.Set(i, placement::ShouldSteal(views[i], now, steal_after));
    steal_count.Set(i, static_cast<double>(placement::StealCount(views.data(), views.size(), i, o, now)));
    uint64_t hedge = placement::HedgeIn(views.data(), views.size(), i, now);
    hedge_in.Set(i, hedge == UINT64_MAX ? env.Null() : Napi::Number::New(env, static_cast<double>(hedge)));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pick", placement::Pick(views.data(), views.size(), o, now, views.empty() ? 0 : start % views.size()));
  out.Set("tiers", tiers);
  out.Set("steal", steal);
  out.Set("stealCount", steal_count);
  out.Set("hedgeIn", hedge_in);
  return out;
}

// A 16-byte secret as 32 hex digits (k0 then k1, little-endian bytes); anything else: zeros.
placement::RouteKey KeyOf(const Napi::Value& v) {
  placement::RouteKey key;
  if (!v.IsString()) return key;
  std::string hex = v.As<Napi::String>().Utf8Value();
  if (hex.size() != 32) return key;
  uint8_t bytes[16];
  for (size_t i = 0; i < 16; i++) bytes[i] = static_cast<uint8_t>(std::stoul(hex.substr(i * 2, 2), nullptr, 16));
  for (size_t i = 0; i < 8; i++) {
    key.k0 |= uint64_t{bytes[i]} << (8 * i);
    key.k1 |= uint64_t{bytes[8 + i]} << (8 * i);
  }
  return key;
}

uint64_t HashOf(const std::string& text, const placement::RouteKey& key) {
  uint8_t addr[16];
  if (inet_pton(AF_INET, text.c_str(), addr) == 1) return placement::ClientHash(key, 4, addr);
  if (inet_pton(AF_INET6, text.c_str(), addr) == 1) return placement::ClientHash(key, 6, addr);
  return 0;
}

Napi::Value PickByClientForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<placement::WorkerView> views = Views(info[0].As<Napi::Array>());
  Napi::Array keys_js = info[1].As<Napi::Array>();
  std::vector<uint32_t> keys(views.size());
  for (uint32_t i = 0; i < keys.size() && i < keys_js.Length(); i++)
    keys[i] = keys_js.Get(i).As<Napi::Number>().Uint32Value();
  Napi::Object now_js = info.Length() > 3 && info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
  Napi::Object opts_js = info.Length() > 4 && info[4].IsObject() ? info[4].As<Napi::Object>() : Napi::Object::New(env);
  uint64_t client = HashOf(info[2].As<Napi::String>().Utf8Value(), KeyOf(opts_js.Get("secret")));
  placement::Clock now{U32(now_js, "us"), U32(now_js, "ms", U32(now_js, "us") / 1000)};
  placement::Options o;
  o.max_connections = I32(opts_js, "maxConnections");
  o.avoid_us = U32(opts_js, "avoidUs", o.avoid_us);
  o.light = opts_js.Get("light").ToBoolean();
  o.hedge = opts_js.Get("hedge").ToBoolean();
  uint64_t stall_us = U32(opts_js, "stallUs", 100000);
  return Napi::Number::New(env,
                           placement::PickByClient(views.data(), keys.data(), views.size(), client, o, now, stall_us));
}

Napi::Value ClientHashForTest(const Napi::CallbackInfo& info) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%llx",
                static_cast<unsigned long long>(HashOf(info[0].As<Napi::String>().Utf8Value(), KeyOf(info[1]))));
  return Napi::String::New(info.Env(), hex);
}

}  // namespace

void InitPlacement(Napi::Env env, Napi::Object exports) {
  exports.Set("pickForTest", Napi::Function::New(env, PickForTest));
  exports.Set("pickByClientForTest", Napi::Function::New(env, PickByClientForTest));
  exports.Set("clientHashForTest", Napi::Function::New(env, ClientHashForTest));
}

}  // namespace herdless
