#pragma once
// Exact t-SNE (van der Maaten & Hinton 2008) as scikit-learn's
// method="exact": O(n²) time and memory per iteration, fine for n ≤ ~2000.
#include <array>
#include <cstdint>
#include <vector>

namespace bissl::evalstats {

struct TsneOptions {
  double perplexity = 30;
  int iterations = 750;  // in total, the exaggeration stage included (sklearn's max_iter)
  double learning_rate = 200;
  double early_exaggeration = 12;
  int exaggeration_iters = 250;
  uint64_t seed = 0;
};

// x: n × d, row-major. Returns one 2-D point per row. Deterministic for a
// given seed (no threads, own Gaussian sampler).
std::vector<std::array<double, 2>> tsne(const std::vector<float>& x, int64_t n, int64_t d,
                                        const TsneOptions& o = {});

}  // namespace bissl::evalstats
