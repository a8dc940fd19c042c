// A shorter scheduler time slice for the calling thread; see short-slice.cc.
#pragma once

namespace herdless {

// Asks for a short EEVDF slice for this thread. True if the kernel took it; false leaves
// the thread as it was (older kernel, another policy, seccomp).
bool RequestShortSlice();

}  // namespace herdless
