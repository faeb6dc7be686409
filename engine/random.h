#pragma once
// Philox 4x32-10: a counter-based generator. Element i of a draw uses counter
// (offset + i) under key `seed`, so a draw is the same on every device and in
// every thread order. A Generator is just (seed, offset).
#include <array>
#include <cstdint>

namespace bissl {

inline std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = uint64_t(kM0) * ctr[0];
    uint64_t p1 = uint64_t(kM1) * ctr[2];
    uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
    key[0] += kW0;
    key[1] += kW1;
  }
  return ctr;
}

// Four random 32-bit words for element `index` of a stream (seed, offset).
inline std::array<uint32_t, 4> philox_at(uint64_t seed, uint64_t offset, uint64_t index) {
  uint64_t c = offset + index;
  return philox4x32_10({uint32_t(c), uint32_t(c >> 32), 0u, 0u}, {uint32_t(seed), uint32_t(seed >> 32)});
}

// Uniform in [0, 1) with 53 random bits.
inline double philox_uniform(const std::array<uint32_t, 4>& w, int pair = 0) {
  uint64_t bits = (uint64_t(w[2 * pair]) << 32) | w[2 * pair + 1];
  return double(bits >> 11) * (1.0 / 9007199254740992.0);
}

class Generator {
 public:
  explicit Generator(uint64_t seed = 0, uint64_t offset = 0) : seed_(seed), offset_(offset) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves n counters and returns the first.
  uint64_t advance(uint64_t n) {
    uint64_t o = offset_;
    offset_ += n;
    return o;
  }
  double uniform() { return philox_uniform(philox_at(seed_, advance(1), 0)); }

 private:
  uint64_t seed_, offset_;
};

}  // namespace bissl
