#pragma once
// Philox 4x32-10: a counter-based generator. Element i of a draw uses counter
// (offset + i) under key `seed`, so a draw is the same on every device and in
// every thread order. A Generator is just (seed, offset).
#include <array>
#include <cstdint>

#include "kernels/philox.h"

namespace bissl {

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
