// Reductions over [outer, n, inner] (accumulating in double), softmax,
// cross-entropy, squared norms.
#include <math_constants.h>

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "kernels/cuda/common.cuh"

namespace bissl::cuda {

namespace {

__device__ inline double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}
// Block-wide sum; every thread gets the result.
__device__ inline double block_sum(double v) {
  __shared__ double part[32];
  __shared__ double total;
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) part[w] = v;
  __syncthreads();
  if (w == 0) {
    double s = lane < int((blockDim.x + 31) >> 5) ? part[lane] : 0.0;
    s = warp_sum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  double r = total;
  __syncthreads();
  return r;
}

// inner == 1: one block per row.
template <class T>
__global__ void k_row_sum(const T* x, T* out, int64_t n, double scale) {
  const T* p = x + int64_t(blockIdx.x) * n;
  double acc = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc += double(p[j]);
  acc = block_sum(acc);
  if (threadIdx.x == 0) out[blockIdx.x] = T(acc * scale);
}

// inner > 1: one thread per (outer, inner) column, coalesced along inner.
template <class T>
__global__ void k_col_sum(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, double scale) {
  BISSL_GRID_LOOP(q, outer * inner) {
    int64_t o = q / inner, i = q % inner;
    const T* p = x + o * n * inner + i;
    double acc = 0;
    for (int64_t j = 0; j < n; ++j) acc += double(p[j * inner]);
    out[q] = T(acc * scale);
  }
}

template <class T>
__global__ void k_max(const T* x, T* out, int64_t* idx, int64_t outer, int64_t n, int64_t inner) {
  BISSL_GRID_LOOP(q, outer * inner) {
    int64_t o = q / inner, i = q % inner;
    const T* p = x + o * n * inner + i;
    T best = p[0];
    int64_t bi = 0;
    for (int64_t j = 1; j < n; ++j) {
      T v = p[j * inner];
      if (v > best || (isnan(v) && !isnan(best))) best = v, bi = j;
    }
    out[q] = best;
    if (idx) idx[q] = bi;
  }
}

template <class T>
__global__ void k_lse(const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
  BISSL_GRID_LOOP(q, outer * inner) {
    int64_t o = q / inner, i = q % inner;
    const T* p = x + o * n * inner + i;
    double m = -DBL_MAX;
    for (int64_t j = 0; j < n; ++j) m = fmax(m, double(p[j * inner]));
    if (isinf(m) || m == -DBL_MAX) {
      out[q] = T(m == -DBL_MAX ? -INFINITY : m);
      continue;
    }
    double acc = 0;
    for (int64_t j = 0; j < n; ++j) acc += exp(double(p[j * inner]) - m);
    out[q] = T(m + log(acc));
  }
}

template <class T>
__global__ void k_softmax(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, bool logp) {
  BISSL_GRID_LOOP(q, outer * inner) {
    int64_t o = q / inner, i = q % inner;
    const T* p = x + o * n * inner + i;
    T* r = out + o * n * inner + i;
    double m = -DBL_MAX;
    for (int64_t j = 0; j < n; ++j) m = fmax(m, double(p[j * inner]));
    double acc = 0;
    for (int64_t j = 0; j < n; ++j) acc += exp(double(p[j * inner]) - m);
    if (logp) {
      double lse = log(acc);
      for (int64_t j = 0; j < n; ++j) r[j * inner] = T(double(p[j * inner]) - m - lse);
    } else {
      for (int64_t j = 0; j < n; ++j) r[j * inner] = T(exp(double(p[j * inner]) - m) / acc);
    }
  }
}

template <class T>
__global__ void k_ce_rows(const T* z, const int64_t* t, double* row_loss, int64_t rows, int64_t c, double ls) {
  BISSL_GRID_LOOP(r, rows) {
    const T* p = z + r * c;
    const int64_t tr = t[r];
    if (tr < 0 || tr >= c) {  // a deferred index check reports it
      row_loss[r] = CUDART_NAN;
      continue;
    }
    double m = -DBL_MAX, acc = 0, sum_z = 0;
    for (int64_t j = 0; j < c; ++j) m = fmax(m, double(p[j]));
    for (int64_t j = 0; j < c; ++j) acc += exp(double(p[j]) - m), sum_z += double(p[j]);
    double lse = m + log(acc);
    double nll = lse - double(p[tr]);
    row_loss[r] = ls > 0 ? (1.0 - ls) * nll + ls * (lse - sum_z / double(c)) : nll;  // -inf logits: see cpu
  }
}

template <class T>
__global__ void k_sumsq(const T* x, int64_t n, double* part) {
  double acc = 0;
  BISSL_GRID_LOOP(i, n) acc += double(x[i]) * double(x[i]);
  acc = block_sum(acc);
  if (threadIdx.x == 0) part[blockIdx.x] = acc;  // per block; summed in order after (no atomics)
}

// One block: out[0] = T(scale · Σx), a fixed summation order (deterministic).
template <class T>
__global__ void k_sum_double_to(const double* x, int64_t n, double scale, T* out) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += x[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) out[0] = T(acc * scale);
}

template <class T>
__global__ void k_scale(T* x, int64_t n, double s) {
  BISSL_GRID_LOOP(i, n) x[i] = T(double(x[i]) * s);
}

// Per-block partial sums in device memory, released with the scope.
struct PartialSums {
  double* p;
  explicit PartialSums(int64_t n) : p(static_cast<double*>(alloc(size_t(n > 0 ? n : 1) * sizeof(double)))) {}
  ~PartialSums() { release(p); }
};

// A device double, read back to the host.
struct DeviceScalar {
  double* p = nullptr;
  DeviceScalar() {
    p = static_cast<double*>(alloc(sizeof(double)));
    memset_zero(p, sizeof(double));
  }
  ~DeviceScalar() { release(p); }
  double get() const {
    double v = 0;
    copy_d2h(&v, p, sizeof(double));
    return v;
  }
};

}  // namespace

// Few long columns (batch-norm statistics: [N·H·W, C]): the reduced axis is
// cut into chunks, each chunk's column sums go to a partial buffer, and a
// second pass adds the partials in order — parallel and deterministic.
template <class T>
__global__ void k_col_sum_partial(const T* x, double* part, int64_t outer, int64_t n, int64_t inner, int64_t chunk) {
  int64_t cols = outer * inner, c0 = int64_t(blockIdx.y) * chunk, c1 = min(n, c0 + chunk);
  for (int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; q < cols; q += int64_t(gridDim.x) * blockDim.x) {
    int64_t o = q / inner, i = q % inner;
    const T* p = x + o * n * inner + i;
    double acc = 0;
    for (int64_t j = c0; j < c1; ++j) acc += double(p[j * inner]);
    part[int64_t(blockIdx.y) * cols + q] = acc;
  }
}
template <class T>
__global__ void k_sum_partials(const double* part, T* out, int64_t cols, int64_t chunks, double scale) {
  BISSL_GRID_LOOP(q, cols) {
    double acc = 0;
    for (int64_t k = 0; k < chunks; ++k) acc += part[k * cols + q];
    out[q] = T(acc * scale);
  }
}

template <class T>
void sum_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, double scale) {
  int64_t cols = outer * inner;
  if (cols == 0) return;
  if (inner == 1 && outer >= 64) {
    k_row_sum<T><<<unsigned(outer), kThreads, 0, stream()>>>(x, out, n, scale);
  } else if (cols >= 16384 || n <= 512) {
    k_col_sum<T><<<blocks_for(cols), kThreads, 0, stream()>>>(x, out, outer, n, inner, scale);
  } else {
    int64_t chunks = std::min<int64_t>((n + 255) / 256, std::max<int64_t>(1, 65536 / std::max<int64_t>(cols, 1)));
    chunks = std::max<int64_t>(1, std::min<int64_t>(chunks, 4096));
    int64_t chunk = (n + chunks - 1) / chunks;
    chunks = (n + chunk - 1) / chunk;
    auto* part = static_cast<double*>(alloc(size_t(chunks * cols) * sizeof(double)));
    dim3 grid(unsigned((cols + kThreads - 1) / kThreads), unsigned(chunks));
    k_col_sum_partial<T><<<grid, kThreads, 0, stream()>>>(x, part, outer, n, inner, chunk);
    BISSL_LAUNCH_OK("sum (partials)");
    k_sum_partials<T><<<blocks_for(cols), kThreads, 0, stream()>>>(part, out, cols, chunks, scale);
    release(part);
  }
  BISSL_LAUNCH_OK("sum");
}

template <class T>
void max_mid(const T* x, T* out, int64_t* idx, int64_t outer, int64_t n, int64_t inner) {
  if (outer * inner == 0) return;
  k_max<T><<<blocks_for(outer * inner), kThreads, 0, stream()>>>(x, out, idx, outer, n, inner);
  BISSL_LAUNCH_OK("max");
}

template <class T>
void logsumexp_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
  if (outer * inner == 0) return;
  k_lse<T><<<blocks_for(outer * inner), kThreads, 0, stream()>>>(x, out, outer, n, inner);
  BISSL_LAUNCH_OK("logsumexp");
}

template <class T>
void softmax_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, bool logp) {
  if (outer * inner == 0) return;
  k_softmax<T><<<blocks_for(outer * inner), kThreads, 0, stream()>>>(x, out, outer, n, inner, logp);
  BISSL_LAUNCH_OK("softmax");
}

template <class T>
void cross_entropy(const T* z, const int64_t* t, int64_t rows, int64_t c, double ls, T* out) {
  double* rl = static_cast<double*>(alloc(size_t(std::max<int64_t>(rows, 1)) * sizeof(double)));
  if (rows > 0) {
    k_ce_rows<T><<<blocks_for(rows), kThreads, 0, stream()>>>(z, t, rl, rows, c, ls);
    BISSL_LAUNCH_OK("cross_entropy");
  }
  // The mean stays on the device: no host read of the loss.
  // No rows: NaN, the CPU's 0/0.
  k_sum_double_to<T><<<1, kThreads, 0, stream()>>>(rl, rows, rows > 0 ? 1.0 / double(rows) : std::nan(""), out);
  BISSL_LAUNCH_OK("cross_entropy (mean)");
  release(rl);
}

template <class T>
void sum_squares_into(const T* x, int64_t n, double* out) {
  if (n == 0) return memset_zero(out, sizeof(double));
  const unsigned nb = std::min<unsigned>(blocks_for(n), 1024);
  PartialSums part(nb);
  k_sumsq<T><<<nb, kThreads, 0, stream()>>>(x, n, part.p);
  BISSL_LAUNCH_OK("sum_squares");
  k_sum_double_to<double><<<1, kThreads, 0, stream()>>>(part.p, nb, 1.0, out);
  BISSL_LAUNCH_OK("sum_squares (blocks)");
}

template <class T>
double sum_squares(const T* x, int64_t n) {
  DeviceScalar s;
  if (n > 0) sum_squares_into(x, n, s.p);
  return s.get();
}

template <class T>
__global__ void k_lars_sums(const T* p, const T* g, int64_t n, double wd, double* part) {
  double a = 0, b = 0;
  BISSL_GRID_LOOP(i, n) {
    const double pi = double(p[i]), u = double(g[i]) + wd * pi;
    a += pi * pi;
    b += u * u;
  }
  a = block_sum(a);
  b = block_sum(b);
  if (threadIdx.x == 0) part[blockIdx.x] = a, part[gridDim.x + blockIdx.x] = b;  // summed in order after
}

template <class T>
void lars_sums(const T* p, const T* g, int64_t n, double wd, double* out) {
  if (n == 0) return memset_zero(out, 2 * sizeof(double));
  const unsigned nb = std::min<unsigned>(blocks_for(n), 1024);
  PartialSums part(2 * int64_t(nb));
  k_lars_sums<T><<<nb, kThreads, 0, stream()>>>(p, g, n, wd, part.p);
  BISSL_LAUNCH_OK("lars_sums");
  k_sum_double_to<double><<<1, kThreads, 0, stream()>>>(part.p, nb, 1.0, out);
  k_sum_double_to<double><<<1, kThreads, 0, stream()>>>(part.p + nb, nb, 1.0, out + 1);
  BISSL_LAUNCH_OK("lars_sums (blocks)");
}

template <class T>
void scale_inplace(T* x, int64_t n, double s) {
  if (n == 0) return;
  k_scale<T><<<blocks_for(n), kThreads, 0, stream()>>>(x, n, s);
  BISSL_LAUNCH_OK("scale_inplace");
}

#define INST(T)                                                                  \
  template void sum_mid<T>(const T*, T*, int64_t, int64_t, int64_t, double);     \
  template void max_mid<T>(const T*, T*, int64_t*, int64_t, int64_t, int64_t);   \
  template void logsumexp_mid<T>(const T*, T*, int64_t, int64_t, int64_t);       \
  template void softmax_mid<T>(const T*, T*, int64_t, int64_t, int64_t, bool);   \
  template void cross_entropy<T>(const T*, const int64_t*, int64_t, int64_t, double, T*); \
  template double sum_squares<T>(const T*, int64_t);                             \
  template void sum_squares_into<T>(const T*, int64_t, double*);                 \
  template void lars_sums<T>(const T*, const T*, int64_t, double, double*);      \
  template void scale_inplace<T>(T*, int64_t, double);
INST(float)
INST(double)

}  // namespace bissl::cuda
