#pragma once
#include <napi.h>

namespace herdless {
void InitListener(Napi::Env env, Napi::Object exports);
}
