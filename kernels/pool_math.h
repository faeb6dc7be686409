#pragma once
// Pooling window arithmetic, one definition for the CPU loops
// (kernels/cpu/pool.cpp) and the CUDA kernels (kernels/cuda/pool.cu).
// NHWC, PyTorch's rules (ceil_mode off).
#include <cstdint>

#include "kernels/common.h"  // PoolShape
#include "kernels/philox.h"  // BISSL_HD

namespace bissl::kern_math {

BISSL_HD inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
BISSL_HD inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// The input rows [h0, h1) and columns [w0, w1) of output (oh, ow), and the
// divisor of average pooling (the padded window size with
// count_include_pad, else the number of input cells).
struct PoolWindow {
  int64_t h0, h1, w0, w1, divisor;
};
BISSL_HD inline PoolWindow pool_window(const kern::PoolShape& s, int64_t oh, int64_t ow, bool count_include_pad) {
  int64_t h0 = oh * s.stride - s.pad, w0 = ow * s.stride - s.pad;
  int64_t h1 = imin(h0 + s.k, s.h + s.pad), w1 = imin(w0 + s.k, s.w + s.pad);
  const int64_t full = (h1 - h0) * (w1 - w0);
  h0 = imax(h0, 0), w0 = imax(w0, 0);
  h1 = imin(h1, s.h), w1 = imin(w1, s.w);
  return {h0, h1, w0, w1, count_include_pad ? full : (h1 - h0) * (w1 - w0)};
}

// Max pooling of one output element (image n, output (oh, ow), channel c):
// the largest input in the window and its flat NHWC index (the first one on
// ties; -1 and `lowest` for a window with no input cell).
template <class T>
BISSL_HD inline void max_pool_cell(const kern::PoolShape& s, const T* x, int64_t n, int64_t oh, int64_t ow,
                                   int64_t c, T lowest, T& best, int64_t& best_index) {
  best = lowest;
  best_index = -1;
  for (int64_t ki = 0; ki < s.k; ++ki) {
    const int64_t ih = oh * s.stride - s.pad + ki;
    if (ih < 0 || ih >= s.h) continue;
    for (int64_t kj = 0; kj < s.k; ++kj) {
      const int64_t iw = ow * s.stride - s.pad + kj;
      if (iw < 0 || iw >= s.w) continue;
      const int64_t q = ((n * s.h + ih) * s.w + iw) * s.c + c;
      if (best_index < 0 || x[q] > best) best = x[q], best_index = q;
    }
  }
}

// The first output row (or column) whose window can contain input row `i`
// (gather form of the average-pooling gradient).
BISSL_HD inline int64_t first_window_over(const kern::PoolShape& s, int64_t i) {
  return imax(0, (i + s.pad - s.k + s.stride) / s.stride);
}

// Max pooling's gradient at one input element (flat NHWC index q = image n,
// row ih, column iw, channel c), in gather form: the sum of gy over the
// windows whose argmax is q, in increasing window order — deterministic, no
// atomics, and the same order in which a scatter over outputs would add.
template <class T>
BISSL_HD inline T max_pool_input_grad(const kern::PoolShape& s, const T* gy, const int64_t* idx, int64_t n,
                                      int64_t ih, int64_t iw, int64_t c, int64_t q) {
  T acc = T(0);
  for (int64_t oh = first_window_over(s, ih); oh < s.ho && oh * s.stride - s.pad <= ih; ++oh)
    for (int64_t ow = first_window_over(s, iw); ow < s.wo && ow * s.stride - s.pad <= iw; ++ow) {
      const int64_t o = ((n * s.ho + oh) * s.wo + ow) * s.c + c;
      if (idx[o] == q) acc += gy[o];
    }
  return acc;
}

}  // namespace bissl::kern_math
