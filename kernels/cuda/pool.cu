#include <cfloat>

#include "kernels/cuda/common.cuh"

namespace bissl::cuda {

namespace {

template <class T>
__global__ void k_max_pool(PoolShape s, const T* x, T* y, int64_t* idx) {
  BISSL_GRID_LOOP(q, s.n * s.ho * s.wo * s.c) {
    int64_t c = q % s.c, ow = (q / s.c) % s.wo, oh = (q / (s.c * s.wo)) % s.ho, n = q / (s.c * s.wo * s.ho);
    T best = T(-INFINITY);
    int64_t bi = -1;
    for (int64_t ki = 0; ki < s.k; ++ki) {
      int64_t ih = oh * s.stride - s.pad + ki;
      if (ih < 0 || ih >= s.h) continue;
      for (int64_t kj = 0; kj < s.k; ++kj) {
        int64_t iw = ow * s.stride - s.pad + kj;
        if (iw < 0 || iw >= s.w) continue;
        int64_t r = ((n * s.h + ih) * s.w + iw) * s.c + c;
        if (bi < 0 || x[r] > best) best = x[r], bi = r;
      }
    }
    y[q] = best;
    idx[q] = bi;
  }
}

struct Window {
  int64_t h0, h1, w0, w1, divisor;
};
__device__ inline Window window(const PoolShape& s, int64_t oh, int64_t ow, bool cip) {
  int64_t h0 = oh * s.stride - s.pad, w0 = ow * s.stride - s.pad;
  int64_t h1 = min(h0 + s.k, s.h + s.pad), w1 = min(w0 + s.k, s.w + s.pad);
  int64_t full = (h1 - h0) * (w1 - w0);
  h0 = max(h0, int64_t(0)), w0 = max(w0, int64_t(0));
  h1 = min(h1, s.h), w1 = min(w1, s.w);
  return {h0, h1, w0, w1, cip ? full : (h1 - h0) * (w1 - w0)};
}

template <class T>
__global__ void k_avg_pool(PoolShape s, const T* x, T* y, bool cip) {
  BISSL_GRID_LOOP(q, s.n * s.ho * s.wo * s.c) {
    int64_t c = q % s.c, ow = (q / s.c) % s.wo, oh = (q / (s.c * s.wo)) % s.ho, n = q / (s.c * s.wo * s.ho);
    Window w = window(s, oh, ow, cip);
    T acc = 0;
    for (int64_t ih = w.h0; ih < w.h1; ++ih)
      for (int64_t iw = w.w0; iw < w.w1; ++iw) acc += x[((n * s.h + ih) * s.w + iw) * s.c + c];
    y[q] = acc / T(w.divisor);
  }
}

// Gather form: each input element sums the windows that contain it.
template <class T>
__global__ void k_avg_pool_bwd(PoolShape s, const T* gy, T* gx, bool cip) {
  BISSL_GRID_LOOP(q, s.n * s.h * s.w * s.c) {
    int64_t c = q % s.c, iw = (q / s.c) % s.w, ih = (q / (s.c * s.w)) % s.h, n = q / (s.c * s.w * s.h);
    T acc = 0;
    int64_t oh0 = max(int64_t(0), (ih + s.pad - s.k + s.stride) / s.stride);
    int64_t ow0 = max(int64_t(0), (iw + s.pad - s.k + s.stride) / s.stride);
    for (int64_t oh = oh0; oh < s.ho && oh * s.stride - s.pad <= ih; ++oh)
      for (int64_t ow = ow0; ow < s.wo && ow * s.stride - s.pad <= iw; ++ow) {
        Window w = window(s, oh, ow, cip);
        if (ih < w.h0 || ih >= w.h1 || iw < w.w0 || iw >= w.w1) continue;
        acc += gy[((n * s.ho + oh) * s.wo + ow) * s.c + c] / T(w.divisor);
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

#define INST(T)                                                                   \
  template void max_pool2d<T>(const PoolShape&, const T*, T*, int64_t*);          \
  template void avg_pool2d<T>(const PoolShape&, const T*, T*, bool);              \
  template void avg_pool2d_backward<T>(const PoolShape&, const T*, T*, bool);
INST(float)
INST(double)

}  // namespace bissl::cuda
