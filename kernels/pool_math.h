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

// Max pooling of channels [c0, c0 + nc) at output pixel (image n, (oh, ow)):
// best[k] / best_index[k] for channel c0 + k, the largest input in the window
// and its flat NHWC index (the first one on ties; -1 and `lowest` for a window
// with no input cell). Taps outside, channels inside: the CPU runs all
// channels of a pixel at once (vectorisable), a CUDA thread one channel.
template <class T>
BISSL_HD inline void max_pool_cells(const kern::PoolShape& s, const T* x, int64_t n, int64_t oh, int64_t ow,
                                    int64_t c0, int64_t nc, T lowest, T* best, int64_t* best_index) {
  for (int64_t k = 0; k < nc; ++k) best[k] = lowest, best_index[k] = -1;
  for (int64_t ki = 0; ki < s.k; ++ki) {
    const int64_t ih = oh * s.stride - s.pad + ki;
    if (ih < 0 || ih >= s.h) continue;
    for (int64_t kj = 0; kj < s.k; ++kj) {
      const int64_t iw = ow * s.stride - s.pad + kj;
      if (iw < 0 || iw >= s.w) continue;
      const int64_t q = ((n * s.h + ih) * s.w + iw) * s.c + c0;
      for (int64_t k = 0; k < nc; ++k)
        if (best_index[k] < 0 || x[q + k] > best[k]) best[k] = x[q + k], best_index[k] = q + k;
    }
  }
}

// The first output row (or column) whose window can contain input row `i`
// (gather form of the average-pooling gradient).
BISSL_HD inline int64_t first_window_over(const kern::PoolShape& s, int64_t i) {
  return imax(0, (i + s.pad - s.k + s.stride) / s.stride);
}

// Max pooling's gradient at channels [c0, c0 + nc) of input pixel (image n,
// (ih, iw)), in gather form: acc[k] is the sum of gy over the windows whose
// argmax is that element, in increasing window order — deterministic, no
// atomics, and the same order in which a scatter over outputs would add.
template <class T>
BISSL_HD inline void max_pool_input_grads(const kern::PoolShape& s, const T* gy, const int64_t* idx, int64_t n,
                                          int64_t ih, int64_t iw, int64_t c0, int64_t nc, T* acc) {
  const int64_t q = ((n * s.h + ih) * s.w + iw) * s.c + c0;
  for (int64_t k = 0; k < nc; ++k) acc[k] = T(0);
  for (int64_t oh = first_window_over(s, ih); oh < s.ho && oh * s.stride - s.pad <= ih; ++oh)
    for (int64_t ow = first_window_over(s, iw); ow < s.wo && ow * s.stride - s.pad <= iw; ++ow) {
      const int64_t o = ((n * s.ho + oh) * s.wo + ow) * s.c + c0;
      for (int64_t k = 0; k < nc; ++k)
        if (idx[o + k] == q + k) acc[k] += gy[o + k];
    }
}

}  // namespace bissl::kern_math
