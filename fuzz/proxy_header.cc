// libFuzzer target: the PROXY header parser (native/primary/proxy-header.h), under ASan and
// UBSan (fuzz/build.sh). Besides memory errors it checks what the reader relies on:
//   - a complete header never claims more bytes than it was given, nor none;
//   - kNeedMore's `want`, when known, is more than it was given (else the reader spins);
//   - a complete header parses the same from exactly its own bytes (the bytes after it are
//     the application's and must not change it), and every shorter prefix of it says
//     "need more", never "malformed" (a header arriving in pieces is not rejected early);
//   - a named client is IPv4 or IPv6 and flagged as proxied.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "primary/proxy-header.h"

using herdless::proxy::Parse;
using herdless::proxy::Result;
using herdless::proxy::Status;

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

// A copy of exactly n bytes on the heap, so that ASan sees any read past them.
Result ParseCopy(const uint8_t* data, size_t n) {
  std::vector<uint8_t> copy(data, data + n);
  return Parse(copy.data(), n);
}

bool Same(const Result& a, const Result& b) {
  return a.status == b.status && a.consumed == b.consumed && a.local == b.local &&
         std::memcmp(&a.peer, &b.peer, sizeof(a.peer)) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result r = Parse(data, size);
  switch (r.status) {
    case Status::kNeedMore:
      Check(r.want == 0 || r.want > size);
      Check(r.want <= herdless::proxy::kV2Fixed + 65535);
      break;
    case Status::kMalformed: break;
    case Status::kProxied:
      Check(r.peer.family == 4 || r.peer.family == 6);
      Check(r.peer.flags == herdless::kPeerProxied);
      [[fallthrough]];
    case Status::kOwn: {
      Check(r.consumed > 0 && r.consumed <= size);
      if (r.status == Status::kOwn) Check(r.peer.family == 0 && r.peer.flags == 0);
      Check(Same(r, ParseCopy(data, r.consumed)));
      // Every prefix: at most a few hundred of them are checked, spread over the header.
      size_t step = r.consumed > 256 ? r.consumed / 256 : 1;
      for (size_t p = 0; p < r.consumed; p += step) Check(ParseCopy(data, p).status == Status::kNeedMore);
      break;
    }
  }
  return 0;
}
