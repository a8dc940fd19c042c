// The accept thread runs for a few microseconds per wake-up, and it is on the path of every
// new connection: each microsecond it waits for a CPU after the kernel woke it is a
// microsecond of a client's latency, and at light load that wait was most of the hop (one
// client, Connection: close: p50 +25 µs, p99 3x on 2 cores, from /proc/<tid>/schedstat).
// Since Linux 6.12, EEVDF lets a SCHED_OTHER thread ask for a shorter slice
// (sched_attr.sched_runtime, 0.1-100 ms), without privilege: the scheduler then picks it
// sooner when it wakes, and preempts it sooner if it ever ran long. Its share of the CPU is
// unchanged (nice stays as it was), unlike a negative nice or a real-time policy, which
// would need CAP_SYS_NICE and could starve the workers. Older kernels ignore the field.
#include "primary/short-slice.h"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

namespace herdless {
namespace {

// The kernel's struct sched_attr (uapi/linux/sched/types.h); glibc has no wrapper.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
  uint32_t sched_util_min;
  uint32_t sched_util_max;
};

constexpr uint64_t kSliceNs = 100000;  // the shortest the kernel allows

}  // namespace

bool RequestShortSlice() {
#if defined(SYS_sched_getattr) && defined(SYS_sched_setattr)
  SchedAttr attr;
  std::memset(&attr, 0, sizeof(attr));
  if (syscall(SYS_sched_getattr, 0, &attr, sizeof(attr), 0) != 0) return false;
  // Someone chose another policy for this process (chrt): theirs to keep.
  if (attr.sched_policy != SCHED_OTHER) return false;
  attr.size = sizeof(attr);
  attr.sched_runtime = kSliceNs;
  attr.sched_flags = 0;  // util clamps and the like stay as they are (no flag: not touched)
  if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) return false;
  // Older kernels take the call and ignore the field: only a slice read back counts.
  SchedAttr now;
  std::memset(&now, 0, sizeof(now));
  return syscall(SYS_sched_getattr, 0, &now, sizeof(now), 0) == 0 && now.sched_runtime == kSliceNs;
#else
  return false;
#endif
}

}  // namespace herdless
