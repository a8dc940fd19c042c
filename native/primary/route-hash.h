// Client-ip routing (route: 'client-ip'), a pure function like placement.h's Pick, which it
// falls back to when no worker is healthy for the client. Header-only for the same reason: the
// accept thread and the test binding (pickByClientForTest) run the same code.
#pragma once

#include <cstddef>
#include <cstdint>

#include "primary/placement.h"

namespace herdless {
namespace placement {

// Client-ip routing (route: 'client-ip'): every connection from one client address goes to
// the same worker while that worker is healthy. Rendezvous (highest-random-weight) hashing:
// each worker's weight for a client is a hash of (client address, the worker's own key: its
// slot, 0..max-1, which a replacement takes over), and the heaviest healthy worker wins.
// Adding or removing one worker changes only that worker's weights, so only the clients it
// wins (or won) move: about 1/(n+1) of them, the least any mapping can move. No table, no
// state, O(n) per pick.
//
// The client's hash is keyed with the pool's secret (RouteKey: 128 random bits chosen at
// start, kept across reload and upgrade): without it, anyone who can choose source addresses
// (or, through a trusted proxy, the addresses its headers name) could compute offline which
// worker each address lands on and aim all their connections at one worker. SipHash-2-4 is
// a PRF built for exactly this (hash-flooding resistance); an address is one or two blocks.

// splitmix64's finalizer: every input bit moves every output bit.
inline uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

struct RouteKey {
  uint64_t k0 = 0, k1 = 0;
};

// SipHash-2-4 (Aumasson & Bernstein) of `len` bytes under `key`.
inline uint64_t SipHash24(const RouteKey& key, const uint8_t* in, size_t len) {
  auto rotl = [](uint64_t x, int b) { return (x << b) | (x >> (64 - b)); };
  uint64_t v0 = 0x736f6d6570736575ull ^ key.k0, v1 = 0x646f72616e646f6dull ^ key.k1;
  uint64_t v2 = 0x6c7967656e657261ull ^ key.k0, v3 = 0x7465646279746573ull ^ key.k1;
  auto round = [&]() {
    v0 += v1;
    v1 = rotl(v1, 13);
    v1 ^= v0;
    v0 = rotl(v0, 32);
    v2 += v3;
    v3 = rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = rotl(v1, 17);
    v1 ^= v2;
    v2 = rotl(v2, 32);
  };
  auto le64 = [](const uint8_t* p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= uint64_t{p[i]} << (8 * i);
    return v;
  };
  size_t whole = len - len % 8;
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m = le64(in + i, 8);
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
  uint64_t b = uint64_t{len} << 56 | le64(in + whole, len % 8);
  v3 ^= b;
  round();
  round();
  v0 ^= b;
  v2 ^= 0xff;
  for (int i = 0; i < 4; i++) round();
  return v0 ^ v1 ^ v2 ^ v3;
}

// The keyed hash of a client address (the address only, never the port). family: 4 or 6;
// addr: 4 or 16 bytes. An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack
// listener reports for an IPv4 client) hashes as the IPv4 address it is. Returns 0 for no address.
inline uint64_t ClientHash(const RouteKey& key, int family, const uint8_t* addr) {
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  size_t len = family == 4 ? 4 : family == 6 ? 16 : 0;
  if (len == 0) return 0;
  if (len == 16) {
    bool mapped = true;
    for (size_t i = 0; i < 12 && mapped; i++) mapped = addr[i] == kMapped[i];
    if (mapped) {
      addr += 12;
      len = 4;
    }
  }
  uint8_t block[17];
  block[0] = static_cast<uint8_t>(len);  // the family is part of it: ::1 is not 0.0.0.1
  for (size_t i = 0; i < len; i++) block[1 + i] = addr[i];
  return SipHash24(key, block, 1 + len) | 1;  // never 0: 0 means "no address"
}

// A worker's weight for a client: depends on the pair only, never on the pool's order or size.
inline uint64_t Weight(uint64_t client, uint32_t worker_key) {
  return Mix64(client ^ Mix64(0x9e3779b97f4a7c15ull * (uint64_t{worker_key} + 1)));
}

// Healthy for sticky routing: usable (not draining, not full, not already tried), under its
// caps, a sane board, and its loop not held past `stall_us` (stalled: skipped for this
// connection only; the client comes back once it is healthy again).
inline bool Healthy(const WorkerView& w, const Options& o, Clock now, uint64_t stall_us) {
  Assessment a = Assess(w, o, now);
  if (a.tier == Tier::kFree || a.tier == Tier::kPrompt) return true;
  return a.tier == Tier::kSlow && a.held_us < stall_us;
}

// Index of the heaviest healthy worker for `client`, or -1 (none healthy, or no address:
// the caller falls back to Pick). keys[i]: worker i's stable key.
inline int PickByClient(const WorkerView* workers, const uint32_t* keys, size_t n, uint64_t client, const Options& o,
                        Clock now, uint64_t stall_us) {
  if (client == 0) return -1;
  int best = -1;
  uint64_t best_w = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t w = Weight(client, keys[i]);
    // Weigh first (cheap), judge health only for a worker that would win.
    if (best >= 0 && (w < best_w || (w == best_w && keys[i] > keys[best]))) continue;
    if (!Healthy(workers[i], o, now, stall_us)) continue;
    best = static_cast<int>(i);
    best_w = w;
  }
  return best;
}

}  // namespace placement
}  // namespace herdless
