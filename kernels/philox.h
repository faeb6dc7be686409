#pragma once
// Philox 4x32-10, usable from host and device code, so that a seed gives the
// same numbers on every backend. Element i of a draw uses counter
// (offset + i) under key `seed`.
#include <array>
#include <cstdint>

#if defined(__CUDACC__)
#define BISSL_HD __host__ __device__
#else
#define BISSL_HD
#endif

namespace bissl {

struct Philox4 {
  uint32_t v[4];
};

BISSL_HD inline Philox4 philox_block(Philox4 ctr, uint32_t k0, uint32_t k1) {
  const uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = uint64_t(kM0) * ctr.v[0];
    uint64_t p1 = uint64_t(kM1) * ctr.v[2];
    uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// Four random words for element `index` of the stream (seed, offset).
BISSL_HD inline Philox4 philox_words(uint64_t seed, uint64_t offset, uint64_t index) {
  uint64_t c = offset + index;
  return philox_block(Philox4{{uint32_t(c), uint32_t(c >> 32), 0u, 0u}}, uint32_t(seed), uint32_t(seed >> 32));
}

// Uniform in [0, 1) with 53 random bits from words 2*pair, 2*pair+1.
BISSL_HD inline double philox_unit(const Philox4& w, int pair = 0) {
  uint64_t bits = (uint64_t(w.v[2 * pair]) << 32) | w.v[2 * pair + 1];
  return double(bits >> 11) * (1.0 / 9007199254740992.0);
}

// std::array forms for host code.
inline std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  Philox4 r = philox_block(Philox4{{ctr[0], ctr[1], ctr[2], ctr[3]}}, key[0], key[1]);
  return {r.v[0], r.v[1], r.v[2], r.v[3]};
}
inline std::array<uint32_t, 4> philox_at(uint64_t seed, uint64_t offset, uint64_t index) {
  Philox4 r = philox_words(seed, offset, index);
  return {r.v[0], r.v[1], r.v[2], r.v[3]};
}
inline double philox_uniform(const std::array<uint32_t, 4>& w, int pair = 0) {
  return philox_unit(Philox4{{w[0], w[1], w[2], w[3]}}, pair);
}

}  // namespace bissl
