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
  bool SurelyEnough(size_t need) const { return ever_counted_ && counted_ + since_count_ + need + kReserve <= limit_; }
  // Our estimate (last count plus fds received since) missed fds the app opened: a leaking
  // app filled the table behind it and the kernel dropped the next record's fds. Two cheap
  // looks, no fd made: the limit as it is now (an operator may lower it: prlimit), and
  // whether fd M = limit - need - reserve is free. The kernel hands out the lowest free fd,
  // so a leak fills the table from the bottom: M free means a leak has not reached the top
  // (and the lowest free fd is at most M). M taken means an exact count.
  // (A probe that made an fd at M, F_DUPFD, would grow the kernel's fd table to the limit in
  // every worker: 8 MB of kernel memory each under a 1M-fd limit.)
  bool TableLooksRoomy(size_t need) {
    rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return false;
    limit_ = lim.rlim_cur == RLIM_INFINITY ? SIZE_MAX / 2 : lim.rlim_cur;
    if (need + kReserve >= limit_) return false;
    size_t m = limit_ - need - kReserve;
    if (m > static_cast<size_t>(INT32_MAX)) return true;  // no fd number gets that high: only the estimate counts
    return fcntl(static_cast<int>(m), F_GETFD) < 0 && errno == EBADF;
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
    ever_counted_ = true;
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

  size_t limit_ = 0;
  bool ever_counted_ = false;  // the estimate starts from a count
  size_t counted_ = 0;
  size_t since_count_ = 0;
};

}  // namespace herdless
