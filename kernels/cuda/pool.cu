#include <cfloat>

#include "kernels/cuda/common.cuh"
#include "kernels/pool_math.h"

namespace bissl::cuda {

namespace {

using kern_math::pool_window;
using kern_math::PoolWindow;

template <class T>
__global__ void k_max_pool(PoolShape s, const T* x, T* y, int64_t* idx) {
  BISSL_GRID_LOOP(q, s.n * s.ho * s.wo * s.c) {
    int64_t c = q % s.c, ow = (q / s.c) % s.wo, oh = (q / (s.c * s.wo)) % s.ho, n = q / (s.c * s.wo * s.ho);
    T best;  // in registers, stored once
    int64_t bi;
    kern_math::max_pool_cells<1, int64_t>(s, x, n, oh, ow, c, 1, T(-INFINITY), &best, &bi);
    y[q] = best;
    idx[q] = bi;
  }
}

template <class T>
__global__ void k_avg_pool(PoolShape s, const T* x, T* y, bool cip) {
  BISSL_GRID_LOOP(q, s.n * s.ho * s.wo * s.c) {
    int64_t c = q % s.c, ow = (q / s.c) % s.wo, oh = (q / (s.c * s.wo)) % s.ho, n = q / (s.c * s.wo * s.ho);
    PoolWindow w = pool_window(s, oh, ow, cip);
    T acc = 0;
    for (int64_t ih = w.h0; ih < w.h1; ++ih)
      for (int64_t iw = w.w0; iw < w.w1; ++iw) acc += x[((n * s.h + ih) * s.w + iw) * s.c + c];
    y[q] = acc * (T(1) / T(w.divisor));  // as the CPU: times the reciprocal
  }
}

// Gather form (deterministic): each input element sums the windows whose
// argmax it is.
template <class T>
__global__ void k_max_pool_bwd(PoolShape s, const T* gy, const int64_t* idx, T* gx) {
  BISSL_GRID_LOOP(q, s.n * s.h * s.w * s.c) {
    int64_t c = q % s.c, iw = (q / s.c) % s.w, ih = (q / (s.c * s.w)) % s.h, n = q / (s.c * s.w * s.h);
    T acc;
    kern_math::max_pool_input_grads(s, gy, idx, n, ih, iw, c, 1, &acc);
    gx[q] = acc;
  }
}

// Gather form: each input element sums the windows that contain it.
template <class T>
__global__ void k_avg_pool_bwd(PoolShape s, const T* gy, T* gx, bool cip) {
  BISSL_GRID_LOOP(q, s.n * s.h * s.w * s.c) {
    int64_t c = q % s.c, iw = (q / s.c) % s.w, ih = (q / (s.c * s.w)) % s.h, n = q / (s.c * s.w * s.h);
    T acc = 0;
    const int64_t oh0 = kern_math::first_window_over(s, ih), ow0 = kern_math::first_window_over(s, iw);
    for (int64_t oh = oh0; oh < s.ho && oh * s.stride - s.pad <= ih; ++oh)
      for (int64_t ow = ow0; ow < s.wo && ow * s.stride - s.pad <= iw; ++ow) {
        PoolWindow w = pool_window(s, oh, ow, cip);
        if (ih < w.h0 || ih >= w.h1 || iw < w.w0 || iw >= w.w1) continue;
        acc += gy[((n * s.ho + oh) * s.wo + ow) * s.c + c] * (T(1) / T(w.divisor));
      }
    gx[q] = acc;
  }
}

}  // namespace

template <class T>
void max_pool2d(const PoolShape& s, const T* x, T* y, int64_t* idx) {
  int64_t n = s.n * s.ho * s.wo * s.c;
  if (!n) return;
  k_max_pool<T><<<blocks_for(n), kThreads, 0, stream()>>>(s, x, y, idx);
  BISSL_LAUNCH_OK("max_pool2d");
}
template <class T>
void avg_pool2d(const PoolShape& s, const T* x, T* y, bool cip) {
  int64_t n = s.n * s.ho * s.wo * s.c;
  if (!n) return;
  k_avg_pool<T><<<blocks_for(n), kThreads, 0, stream()>>>(s, x, y, cip);
  BISSL_LAUNCH_OK("avg_pool2d");
}
template <class T>
void avg_pool2d_backward(const PoolShape& s, const T* gy, T* gx, bool cip) {
  int64_t n = s.n * s.h * s.w * s.c;
  if (!n) return;
  k_avg_pool_bwd<T><<<blocks_for(n), kThreads, 0, stream()>>>(s, gy, gx, cip);
  BISSL_LAUNCH_OK("avg_pool2d_backward");
}

template <class T>
void max_pool2d_backward(const PoolShape& s, const T* gy, const int64_t* idx, T* gx) {
  int64_t n = s.n * s.h * s.w * s.c;
  if (!n) return;
  k_max_pool_bwd<T><<<blocks_for(n), kThreads, 0, stream()>>>(s, gy, idx, gx);
  BISSL_LAUNCH_OK("max_pool2d_backward");
}

#define INST(T)                                                                   \
  template void max_pool2d<T>(const PoolShape&, const T*, T*, int64_t*);          \
  template void max_pool2d_backward<T>(const PoolShape&, const T*, const int64_t*, T*); \
  template void avg_pool2d<T>(const PoolShape&, const T*, T*, bool);              \
  template void avg_pool2d_backward<T>(const PoolShape&, const T*, T*, bool);
INST(float)
INST(double)

}  // namespace bissl::cuda
