// Whether this process can take more fds, so that a worker reads its hand-off channel only
// while the connections in the next record can be installed. Past RLIMIT_NOFILE the kernel
// does not fail recvmsg: it drops the fds it cannot install (MSG_CTRUNC), and with them the
// connections. Counting /proc/self/fd costs a few syscalls, so it is done only when our own
// estimate (the last count plus every fd received since) comes near the limit; far from it,
// the check is free.
#pragma once
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace herdless {

class FdRoom {
 public:
  // Room for `need` more fds, with a reserve for what the app and libuv open meanwhile.
  bool Enough(size_t need) { return Free() >= need; }
  // Whether the cheap estimate says there is room for `need` (no syscall). It cannot see fds
  // the app opens: check TableLooksRoomy() too, once per read.
  bool SurelyEnough(size_t need) const { return counted_ + since_count_ + need + kReserve <= limit_; }
  // Our estimate (last count plus fds received since) missed fds the app opened: a leaking
  // app filled the table behind it and the kernel dropped the next record's fds. The table
  // itself says whether it is filling: the kernel hands out the lowest free fd, so a leak
  // fills it from the bottom, leaving its lowest free fd near the limit, and fills the top
  // last. Both are probed (two fcntl, two close); either near the limit means an exact count.
  bool TableLooksRoomy(int anchor, size_t need) const {
    if (limit_ == 0 || need + kReserve >= limit_) return false;
    int lowest = fcntl(anchor, F_DUPFD_CLOEXEC, 0);
    if (lowest < 0) return false;  // EMFILE: no room at all
    close(lowest);
    if (static_cast<size_t>(lowest) + need + kReserve > limit_) return false;
    if (limit_ > static_cast<size_t>(INT32_MAX)) return true;  // unlimited: only the estimate counts
    int top = fcntl(anchor, F_DUPFD_CLOEXEC, static_cast<int>(limit_ - need - kReserve));
    if (top < 0) return false;  // the top of the table is full
    close(top);
    return true;
  }
  // Fds that can still be taken, counted now.
  size_t Free() {
    Recount();
    return counted_ + kReserve >= limit_ ? 0 : limit_ - counted_ - kReserve;
  }
  void Took(size_t n) { since_count_ += n; }

  static constexpr size_t kReserve = 16;

 private:
  void Recount() {
    rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) limit_ = lim.rlim_cur == RLIM_INFINITY ? SIZE_MAX / 2 : lim.rlim_cur;
    since_count_ = 0;
    DIR* dir = opendir("/proc/self/fd");
    if (dir == nullptr) {
      // Out of fds ourselves: no room at all. No /proc: trust the limit alone.
      counted_ = errno == EMFILE || errno == ENFILE ? limit_ : 0;
      return;
    }
    size_t n = 0;
    while (dirent* e = readdir(dir))
      if (e->d_name[0] != '.') n++;
    closedir(dir);
    counted_ = n > 0 ? n - 1 : 0;  // the directory's own fd
  }

  size_t limit_ = 0;  // 0 forces a count on first use
  size_t counted_ = 0;
  size_t since_count_ = 0;
};

}  // namespace herdless
