// Adaptive coalescing of accept rounds, in the spirit of NAPI for network interrupts. At light
// load every connection is accepted the moment it arrives: a round that finds one connection
// (or none) asks for no delay. When a round finds a batch that formed on its own (two or more
// connections queued while we were away), arrivals are outpacing our wake-ups, so the next
// round waits a little first, doubling the wait while batches keep forming, up to kMaxUs, and
// halving it after a round that found less (so one thin round does not undo the batching).
// Each wake-up (a context switch) then serves several connections, and each sendmsg carries
// several fds. The worst cost is kMaxUs of added latency, and only under a load where
// connections queue anyway.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace herdless {

class Coalescer {
 public:
  static constexpr uint32_t kStartUs = 100;
  static constexpr uint32_t kMaxUs = 1000;

  // After a round that accepted `taken` connections: microseconds to wait before the next.
  uint32_t After(size_t taken) {
    if (taken < 2) return delay_us_ = delay_us_ / 2 < kStartUs ? 0 : delay_us_ / 2;
    return delay_us_ = delay_us_ == 0 ? kStartUs : std::min(delay_us_ * 2, kMaxUs);
  }

 private:
  uint32_t delay_us_ = 0;
};

}  // namespace herdless
