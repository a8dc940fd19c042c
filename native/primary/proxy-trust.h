// proxyFrom: which peers may name a client in a PROXY header. Decided once per connection, at
// accept, from the address accept4 reported (no syscall): a handful of masked compares.
// Rules come from JS (src/primary/proxy-from.ts) as 18-byte records { family 0|4|6, prefix,
// addr[16] }; family 0 matches peers on unix sockets. An IPv4-mapped IPv6 peer (a dual-stack
// listener's IPv4 client) is compared as the IPv4 address it is. Pure, header-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "shared/channel.h"

namespace herdless {

class ProxyTrust {
 public:
  static constexpr size_t kRuleBytes = 18;

  // `all`: every peer is trusted ('*'). Else the rules in `data` (len / 18 of them).
  void Configure(bool all, const uint8_t* data, size_t len) {
    all_ = all;
    rules_.clear();
    for (size_t at = 0; data != nullptr && at + kRuleBytes <= len; at += kRuleBytes) {
      Rule r;
      r.family = data[at];
      r.prefix = data[at + 1];
      std::memcpy(r.addr, data + at + 2, 16);
      size_t bits = r.family == 4 ? 32 : r.family == 6 ? 128 : 0;
      if (r.family != 0 && r.family != 4 && r.family != 6) continue;
      if (r.prefix > bits) r.prefix = static_cast<uint8_t>(bits);
      rules_.push_back(r);
    }
  }

  bool Trusted(const Peer& peer) const {
    if (all_) return true;
    uint8_t family = peer.family;
    const uint8_t* addr = peer.addr;
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family == 6 && std::memcmp(addr, kMapped, 12) == 0) {
      family = 4;
      addr += 12;
    }
    for (const Rule& r : rules_) {
      if (r.family != family) continue;
      if (family == 0 || Matches(r, addr)) return true;
    }
    return false;
  }

 private:
  struct Rule {
    uint8_t family = 0;
    uint8_t prefix = 0;
    uint8_t addr[16] = {};
  };

  static bool Matches(const Rule& r, const uint8_t* addr) {
    size_t whole = r.prefix / 8, rest = r.prefix % 8;
    if (std::memcmp(r.addr, addr, whole) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (r.addr[whole] & mask) == (addr[whole] & mask);
  }

  bool all_ = true;
  std::vector<Rule> rules_;
};

}  // namespace herdless
