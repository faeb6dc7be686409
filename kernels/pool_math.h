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

// Max pooling of channels [c0, c0 + nc) at output pixel (image n, (oh, ow)),
// nc <= CB: best[k] / best_index[k] for channel c0 + k, the largest input in
// the window and its flat NHWC index (the first one on ties, in row-major
// tap order; a NaN counts only as the first tap; -1 and `lowest` for a
// window with no input cell). Taps outside, channels inside: the CPU runs a
// block of a pixel's channels at once, a CUDA thread one channel (CB = 1).
// The running maximum and its tap's offset from the window's first cell
// (type Off: int32_t where k·w·c fits, which keeps the CPU's f32 lanes and
// offset lanes the same width) live in local arrays; every update is a
// select written as masks, which compilers vectorise over the channels.
// The flat index is formed once at the end.
template <int CB, class Off, class T>
BISSL_HD inline void max_pool_cells(const kern::PoolShape& s, const T* x, int64_t n, int64_t oh, int64_t ow,
                                    int64_t c0, int64_t nc, T lowest, T* best, int64_t* best_index) {
  const int64_t h0 = oh * s.stride - s.pad, w0 = ow * s.stride - s.pad;
  const int64_t ih0 = imax(h0, 0), ih1 = imin(h0 + s.k, s.h), iw0 = imax(w0, 0), iw1 = imin(w0 + s.k, s.w);
  if (ih0 >= ih1 || iw0 >= iw1) {
    for (int64_t k = 0; k < nc; ++k) best[k] = lowest, best_index[k] = -1;
    return;
  }
  const int64_t origin = ((n * s.h + ih0) * s.w + iw0) * s.c + c0;
  T v[CB];
  Off at[CB];
  for (int64_t k = 0; k < nc; ++k) v[k] = x[origin + k], at[k] = 0;
  for (int64_t ih = ih0; ih < ih1; ++ih)
    for (int64_t iw = iw0; iw < iw1; ++iw) {
      const Off r = Off(((ih - ih0) * s.w + (iw - iw0)) * s.c);
      const T* xp = x + origin + r;
      for (int64_t k = 0; k < nc; ++k) {
        const T a = xp[k], b = v[k];
        const Off m = -Off(a > b);  // strict: the first of equal values stays
        v[k] = a > b ? a : b;
        at[k] = (at[k] & ~m) | (r & m);
      }
    }
  for (int64_t k = 0; k < nc; ++k) best[k] = v[k], best_index[k] = origin + int64_t(at[k]) + k;
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
