// The PROXY protocol header (HAProxy's spec, versions 1 and 2), parsed from bytes peeked at
// the start of a connection. Pure, header-only: the accept thread's reader (proxy-reader.*)
// peeks and consumes; this only says what the bytes are and how many belong to the header.
//
//   v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" (also TCP6; "PROXY UNKNOWN ...\r\n"),
//       107 bytes at most, CRLF included.
//   v2: the 12-byte signature \r\n\r\n\0\r\nQUIT\n, version/command, family/protocol, a
//       big-endian length, then the addresses and TLVs (skipped): 16 + length bytes.
#pragma once

#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "shared/channel.h"

namespace herdless {
namespace proxy {

constexpr size_t kV1Max = 107;
constexpr size_t kV2Fixed = 16;
constexpr size_t kFirstPeek = kV2Fixed + 216;  // v1 whole, or v2 up to its largest address block
constexpr uint8_t kV2Signature[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

enum class Status {
  kNeedMore,   // a valid header so far: wait for more bytes (`want`: how many in all, if known)
  kMalformed,  // not a PROXY header: close the connection
  kProxied,    // `peer` is the real client
  kOwn,        // valid, but use the connection's own address (v1 UNKNOWN, v2 LOCAL or another family)
};

struct Result {
  Status status = Status::kNeedMore;
  size_t consumed = 0;  // header bytes, to take off the socket (kProxied, kOwn)
  size_t want = 0;      // kNeedMore: total bytes the header needs, 0 if not known yet
  bool local = false;   // v2 LOCAL (a health check from the proxy itself)
  Peer peer{};
};

inline bool PrefixOf(const uint8_t* buf, size_t n, const void* expected, size_t len) {
  return std::memcmp(buf, expected, n < len ? n : len) == 0;
}

// A decimal port, 0..65535, no sign, no empty string.
inline bool ParsePort(const char* s, size_t len, uint16_t* out) {
  if (len == 0 || len > 5) return false;
  uint32_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + static_cast<uint32_t>(s[i] - '0');
  }
  if (v > 65535) return false;
  *out = static_cast<uint16_t>(v);
  return true;
}

// One v1 line, CRLF excluded.
inline Result ParseV1Line(const char* line, size_t len, size_t consumed) {
  Result r;
  r.status = Status::kMalformed;
  // Fields separated by single spaces: PROXY, family, src, dst, sport, dport.
  const char* field[6];
  size_t flen[6];
  size_t count = 0, start = 0;
  for (size_t i = 0; i <= len && count < 6; i++) {
    if (i == len || line[i] == ' ') {
      field[count] = line + start;
      flen[count] = i - start;
      count++;
      start = i + 1;
    }
  }
  if (count < 2 || flen[0] != 5 || std::memcmp(field[0], "PROXY", 5) != 0) return r;
  if (flen[1] == 7 && std::memcmp(field[1], "UNKNOWN", 7) == 0) {  // anything may follow
    r.status = Status::kOwn;
    r.consumed = consumed;
    return r;
  }
  bool v4 = flen[1] == 4 && std::memcmp(field[1], "TCP4", 4) == 0;
  bool v6 = flen[1] == 4 && std::memcmp(field[1], "TCP6", 4) == 0;
  if ((!v4 && !v6) || count != 6 || start != len + 1) return r;  // exactly six fields
  char text[64];
  uint8_t dst[16];
  for (int k = 2; k <= 3; k++) {
    if (flen[k] == 0 || flen[k] >= sizeof(text)) return r;
    std::memcpy(text, field[k], flen[k]);
    text[flen[k]] = '\0';
    if (inet_pton(v4 ? AF_INET : AF_INET6, text, k == 2 ? r.peer.addr : dst) != 1) return r;
  }
  uint16_t sport, dport;
  if (!ParsePort(field[4], flen[4], &sport) || !ParsePort(field[5], flen[5], &dport)) return r;
  r.peer.family = v4 ? 4 : 6;
  r.peer.port = sport;
  r.peer.flags = kPeerProxied;
  r.status = Status::kProxied;
  r.consumed = consumed;
  return r;
}

// `buf` holds the first `n` bytes the connection sent (peeked, not consumed).
inline Result Parse(const uint8_t* buf, size_t n) {
  Result r;
  if (n == 0) return r;
  if (buf[0] == kV2Signature[0] && PrefixOf(buf, n, kV2Signature, sizeof(kV2Signature))) {
    if (n < kV2Fixed) return r;
    uint8_t version = buf[12] >> 4, command = buf[12] & 0x0f;
    // The spec defines families 0-3 and protocols 0-2 only; anything else "must be rejected
    // as invalid by receivers", whatever the command.
    uint8_t family = buf[13] >> 4, protocol = buf[13] & 0x0f;
    if (version != 2 || command > 1 || family > 3 || protocol > 2) {
      r.status = Status::kMalformed;
      return r;
    }
    size_t len = size_t{buf[14]} << 8 | buf[15];
    size_t total = kV2Fixed + len;
    if (n < total) {
      r.want = total;
      return r;
    }
    r.consumed = total;
    r.status = Status::kOwn;
    if (command == 0) {  // LOCAL: the proxy's own connection; the addresses (if any) mean nothing
      r.local = true;
      return r;
    }
    const uint8_t* a = buf + kV2Fixed;
    if (family == 1 && len < 12) r.status = Status::kMalformed;
    if (family == 2 && len < 36) r.status = Status::kMalformed;
    // Only TCP over IPv4/IPv6 names a client we can present; anything else (UNSPEC, unix,
    // datagrams) is valid and keeps the connection's own address, as the spec asks.
    if (r.status == Status::kMalformed || protocol != 1 || (family != 1 && family != 2)) return r;
    size_t alen = family == 1 ? 4 : 16;
    std::memcpy(r.peer.addr, a, alen);
    const uint8_t* port = a + 2 * alen;  // source port, then destination port
    r.peer.port = static_cast<uint16_t>(port[0] << 8 | port[1]);
    r.peer.family = family == 1 ? 4 : 6;
    r.peer.flags = kPeerProxied;
    r.status = Status::kProxied;
    return r;
  }
  static const char kV1Prefix[] = "PROXY ";
  if (!PrefixOf(buf, n, kV1Prefix, 6)) {
    r.status = Status::kMalformed;
    return r;
  }
  size_t limit = n < kV1Max ? n : kV1Max;
  for (size_t i = 0; i + 1 < limit; i++) {
    if (buf[i] == '\r' && buf[i + 1] == '\n') return ParseV1Line(reinterpret_cast<const char*>(buf), i, i + 2);
    if (buf[i] == '\n' || buf[i] == '\0') break;  // a bare LF or a NUL: not v1
  }
  // No CRLF in the first 107 bytes, or a stray LF/NUL: malformed; else wait for more.
  bool stray = std::memchr(buf, '\n', limit) != nullptr || std::memchr(buf, '\0', limit) != nullptr;
  if (n >= kV1Max || stray) r.status = Status::kMalformed;
  return r;
}

}  // namespace proxy
}  // namespace herdless
