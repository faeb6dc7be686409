#pragma once
// A content digest: FNV-1a 64 over bytes fed in pieces, with their count;
// its text "9c1f0a2b3c4d5e6f-48213" (16 hex digits, then the byte count) is
// what stage stamps compare (a file's bytes, a loaded image set's pixels
// and labels). Not cryptographic: it tells changed inputs from unchanged
// ones, it does not defend against crafted collisions.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace bissl {

struct Digest {
  uint64_t hash = 1469598103934665603ull;
  uint64_t bytes = 0;

  void add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    uint64_t h = hash;
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
    hash = h;
    bytes += n;
  }
  template <class T>
  void add_value(const T& v) {
    add(&v, sizeof v);
  }
  void add_text(const std::string& s) {
    add_value(uint64_t(s.size()));
    add(s.data(), s.size());
  }
  std::string text() const {
    char b[48];
    std::snprintf(b, sizeof b, "%016llx-%llu", (unsigned long long)hash, (unsigned long long)bytes);
    return b;
  }
};

}  // namespace bissl
