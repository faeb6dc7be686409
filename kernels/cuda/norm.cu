// Batch norm (column statistics over [rows, c]) and layer norm (row
// statistics), forward and fused backward. Column reductions go in two
// steps: per chunk of kRowsPerBlock rows a partial result per column (in
// double), then an ordered merge over the chunks per column — no atomics, so
// the results are the same bits run after run. The statistics are one pass
// over x (Welford within a chunk, Chan's merge across chunks).
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/norm_math.h"

namespace bissl::cuda {

namespace {

constexpr int kRowsPerBlock = 256;

struct Scratch {
  double* p;
  explicit Scratch(int64_t n) : p(static_cast<double*>(alloc(size_t(n > 0 ? n : 1) * sizeof(double)))) {}
  ~Scratch() { release(p); }
};

int64_t row_chunks(int64_t rows) { return rows > 0 ? (rows + kRowsPerBlock - 1) / kRowsPerBlock : 1; }
// 128 columns per block along x; chunks along y, at most 65535 (the kernels
// stride over the rest).
dim3 chunk_grid(int64_t c, int64_t chunks) {
  return dim3(unsigned((c + 127) / 128), unsigned(std::min<int64_t>(chunks, 65535)));
}

// part[k·c + j] = Σ over the rows of chunk k of f(r, j); threads walk columns
// (consecutive threads read consecutive columns of a row: coalesced).
// Chunks walk grid.y with a stride (grids are at most 65535 high).
template <class F>
__global__ void k_colsum_part(int64_t rows, int64_t c, int64_t chunks, double* part, F f) {
  for (int64_t k = blockIdx.y; k < chunks; k += gridDim.y) {
    const int64_t r0 = k * kRowsPerBlock, r1 = min(rows, r0 + kRowsPerBlock);
    for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < c; j += int64_t(gridDim.x) * blockDim.x) {
      double s = 0;
      for (int64_t r = r0; r < r1; ++r) s += f(r, j);
      part[k * c + j] = s;
    }
  }
}

__global__ void k_colsum_merge(const double* part, int64_t chunks, int64_t c, double* acc) {
  BISSL_GRID_LOOP(j, c) {
    double s = 0;
    for (int64_t k = 0; k < chunks; ++k) s += part[k * c + j];
    acc[j] = s;
  }
}

// acc[j] = Σ_rows f(r, j), deterministic.
template <class F>
void colsum(int64_t rows, int64_t c, double* acc, F f) {
  if (c == 0) return;
  const int64_t chunks = row_chunks(rows);
  Scratch part(chunks * c);
  k_colsum_part<<<chunk_grid(c, chunks), 128, 0, stream()>>>(rows, c, chunks, part.p, f);
  BISSL_LAUNCH_OK("column sums (chunks)");
  k_colsum_merge<<<blocks_for(c), kThreads, 0, stream()>>>(part.p, chunks, c, acc);
  BISSL_LAUNCH_OK("column sums (merge)");
}

// K column sums in one pass over the rows: f(r, j) returns K summands.
// Each sum is ordered exactly as colsum's (same chunks, same merge).
template <int K>
struct Sums {
  double v[K];
};
template <int K, class F>
__global__ void k_colsums_part(int64_t rows, int64_t c, int64_t chunks, double* part, F f) {
  for (int64_t k = blockIdx.y; k < chunks; k += gridDim.y) {
    const int64_t r0 = k * kRowsPerBlock, r1 = min(rows, r0 + kRowsPerBlock);
    for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < c; j += int64_t(gridDim.x) * blockDim.x) {
      Sums<K> s{};
      for (int64_t r = r0; r < r1; ++r) {
        const Sums<K> e = f(r, j);
        for (int i = 0; i < K; ++i) s.v[i] += e.v[i];
      }
      for (int i = 0; i < K; ++i) part[(i * chunks + k) * c + j] = s.v[i];
    }
  }
}
// acc[i][j] = Σ_rows f(r, j).v[i], deterministic; acc[i] may be null (not wanted).
template <int K, class F>
void colsums(int64_t rows, int64_t c, double* const (&acc)[K], F f) {
  if (c == 0) return;
  const int64_t chunks = row_chunks(rows);
  Scratch part(K * chunks * c);
  k_colsums_part<K><<<chunk_grid(c, chunks), 128, 0, stream()>>>(rows, c, chunks, part.p, f);
  BISSL_LAUNCH_OK("column sums (chunks)");
  for (int i = 0; i < K; ++i) {
    if (!acc[i]) continue;
    k_colsum_merge<<<blocks_for(c), kThreads, 0, stream()>>>(part.p + i * chunks * c, chunks, c, acc[i]);
    BISSL_LAUNCH_OK("column sums (merge)");
  }
}

// Per chunk and column: Welford's running mean and M2 (Σ (x − mean)²).
template <class T>
__global__ void k_welford_part(const T* x, int64_t rows, int64_t c, int64_t chunks, double* pmean, double* pm2) {
  for (int64_t k = blockIdx.y; k < chunks; k += gridDim.y) {
    const int64_t r0 = k * kRowsPerBlock, r1 = min(rows, r0 + kRowsPerBlock);
    for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < c; j += int64_t(gridDim.x) * blockDim.x) {
      kern_math::Moments m;
      for (int64_t r = r0; r < r1; ++r) kern_math::welford_add(m, double(x[r * c + j]));
      pmean[k * c + j] = m.mean;
      pm2[k * c + j] = m.m2;
    }
  }
}

// Chan et al.'s pairwise merge of the chunks, in chunk order: the biased
// variance M2 / rows.
template <class T>
__global__ void k_welford_merge(const double* pmean, const double* pm2, int64_t rows, int64_t c, T* mean, T* var) {
  BISSL_GRID_LOOP(j, c) {
    kern_math::Moments m;
    int64_t k = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += kRowsPerBlock, ++k)
      kern_math::chan_merge(m, double(min(rows - r0, int64_t(kRowsPerBlock))), pmean[k * c + j], pm2[k * c + j]);
    mean[j] = T(m.mean);
    var[j] = T(m.m2 / double(rows));
  }
}

template <class T>
__global__ void k_bn_finish(const T* mean, const T* var, T* invstd, T* rm, T* rv, int64_t c, double eps, double mom,
                            double unbias) {
  BISSL_GRID_LOOP(j, c) {
    kern_math::bn_finish_channel(mean[j], var[j], eps, mom, unbias, invstd[j], rm ? rm + j : nullptr,
                                 rv ? rv + j : nullptr);
  }
}

template <class T>
__global__ void k_bn_apply(const T* x, const T* mean, const T* invstd, const T* gamma, const T* beta, T* y,
                           int64_t n, int64_t c) {
  BISSL_GRID_LOOP(q, n) {
    const int64_t j = q % c;
    const kern_math::BnAffine<T> a = kern_math::bn_affine(mean[j], invstd[j], gamma, beta, j);
    y[q] = x[q] * a.scale + a.shift;
  }
}

template <class T>
__global__ void k_bn_bwd(const T* gy, const T* x, const T* mean, const T* invstd, const T* gamma, const double* sg,
                         const double* sgx, T* gx, int64_t n, int64_t c, double inv_rows) {
  BISSL_GRID_LOOP(q, n) {
    const int64_t j = q % c;
    gx[q] = kern_math::bn_input_grad(gy[q], x[q], mean[j], invstd[j], gamma, j, sg[j], sgx[j], inv_rows);
  }
}

template <class T>
__global__ void k_bn_jvp_stats(const T* invstd, const double* a, const double* b, T* tmean, T* tinvstd, int64_t c,
                               double inv_rows) {
  BISSL_GRID_LOOP(j, c) { kern_math::bn_stat_tangents(invstd[j], a[j], b[j], inv_rows, tmean[j], tinvstd[j]); }
}

template <class T>
__global__ void k_bn_jvp(const T* x, const T* mean, const T* invstd, const T* gamma, const T* tx, const T* tgamma,
                         const T* tbeta, const double* a, const double* b, T* ty, int64_t n, int64_t c,
                         double inv_rows) {
  BISSL_GRID_LOOP(q, n) {
    const int64_t j = q % c;
    ty[q] = kern_math::bn_output_tangent<T>(tx ? double(tx[q]) : 0.0, tx != nullptr,
                                            kern_math::bn_xhat(x[q], mean[j], invstd[j]), double(invstd[j]), gamma,
                                            tgamma, tbeta, j, a ? a[j] : 0.0, b ? b[j] : 0.0, inv_rows);
  }
}

template <class T>
__global__ void k_bn_bwd_jvp(const T* gy, const T* x, const T* mean, const T* invstd, const T* gamma, const T* tgy,
                             const T* tx, const T* tmean, const T* tinvstd, const T* tgamma, const double* sg,
                             const double* sgx, const double* p, const double* q, T* tdx, int64_t n, int64_t c,
                             double inv_rows) {
  BISSL_GRID_LOOP(k, n) {
    const int64_t j = k % c;
    tdx[k] = kern_math::bn_input_grad_tangent<T>(
        double(gy[k]), tgy ? double(tgy[k]) : 0.0, kern_math::bn_xhat(x[k], mean[j], invstd[j]),
        kern_math::bn_xhat_tangent(x[k], mean[j], invstd[j], tx, tmean, tinvstd, k, j), double(invstd[j]), gamma,
        tgamma, tinvstd, j, sg[j], sgx[j], p[j], q[j], inv_rows);
  }
}

template <class T>
__global__ void k_copy_cols(const double* a, T* out, int64_t c) {
  BISSL_GRID_LOOP(j, c) out[j] = T(a[j]);
}

template <class T>
__global__ void k_ln_fwd(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows, int64_t c,
                         double eps) {
  BISSL_GRID_LOOP(r, rows) {
    kern_math::layer_norm_row(x + r * c, gamma, beta, y + r * c, c, eps, mean[r], rstd[r]);
  }
}

template <class T>
__global__ void k_ln_bwd(const T* gy, const T* x, const T* mean, const T* rstd, const T* gamma, T* gx, int64_t rows,
                         int64_t c) {
  BISSL_GRID_LOOP(r, rows) {
    kern_math::layer_norm_row_backward(gy + r * c, x + r * c, mean[r], rstd[r], gamma, gx + r * c, c);
  }
}

template <class T>
__global__ void k_ln_jvp(const T* x, const T* mean, const T* rstd, const T* gamma, const T* tx, const T* tgamma,
                         const T* tbeta, T* ty, T* tmean, T* trstd, int64_t rows, int64_t c) {
  BISSL_GRID_LOOP(r, rows) {
    kern_math::layer_norm_row_jvp(x + r * c, mean[r], rstd[r], gamma, tx ? tx + r * c : nullptr, tgamma, tbeta,
                                  ty + r * c, tx ? tmean + r : nullptr, tx ? trstd + r : nullptr, c);
  }
}

template <class T>
__global__ void k_ln_bwd_jvp(const T* gy, const T* x, const T* mean, const T* rstd, const T* gamma, const T* tgy,
                             const T* tx, const T* tmean, const T* trstd, const T* tgamma, T* tdx, int64_t rows,
                             int64_t c) {
  BISSL_GRID_LOOP(r, rows) {
    kern_math::layer_norm_row_backward_jvp(gy + r * c, x + r * c, mean[r], rstd[r], gamma,
                                           tgy ? tgy + r * c : nullptr, tx ? tx + r * c : nullptr,
                                           tmean ? tmean + r : nullptr, trstd ? trstd + r : nullptr, tgamma,
                                           tdx + r * c, c);
  }
}

}  // namespace

template <class T>
void batch_norm_stats(const T* x, int64_t rows, int64_t c, T* mean, T* var) {
  if (c == 0) return;
  // One pass over x (the CPU takes two; both accumulate in double).
  const int64_t chunks = row_chunks(rows);
  Scratch pm(chunks * c), pm2(chunks * c);
  k_welford_part<T><<<chunk_grid(c, chunks), 128, 0, stream()>>>(x, rows, c, chunks, pm.p, pm2.p);
  BISSL_LAUNCH_OK("batch_norm statistics (chunks)");
  k_welford_merge<T><<<blocks_for(c), kThreads, 0, stream()>>>(pm.p, pm2.p, rows, c, mean, var);
  BISSL_LAUNCH_OK("batch_norm statistics (merge)");
}

template <class T>
void batch_norm_finish(const T* mean, const T* var, T* invstd, T* rm, T* rv, int64_t c, double eps, double mom,
                       int64_t rows) {
  k_bn_finish<T><<<blocks_for(c), kThreads, 0, stream()>>>(mean, var, invstd, rm, rv, c, eps, mom,
                                                            double(rows) / double(rows - 1));
  BISSL_LAUNCH_OK("batch_norm finish");
}

template <class T>
void batch_norm_apply(const T* x, const T* mean, const T* invstd, const T* gamma, const T* beta, T* y, int64_t rows,
                      int64_t c) {
  int64_t n = rows * c;
  if (!n) return;
  k_bn_apply<T><<<blocks_for(n), kThreads, 0, stream()>>>(x, mean, invstd, gamma, beta, y, n, c);
  BISSL_LAUNCH_OK("batch_norm apply");
}

template <class T>
void batch_norm_backward(const T* gy, const T* x, const T* mean, const T* invstd, const T* gamma, T* gx, T* ggamma,
                         T* gbeta, int64_t rows, int64_t c) {
  Scratch sg(c), sgx(c);
  double* const sums[2] = {sg.p, sgx.p};
  colsums<2>(rows, c, sums, [=] __device__(int64_t r, int64_t j) {
    const double g = double(gy[r * c + j]);
    return Sums<2>{{g, g * double(x[r * c + j] - mean[j]) * double(invstd[j])}};
  });
  if (gbeta) k_copy_cols<T><<<blocks_for(c), kThreads, 0, stream()>>>(sg.p, gbeta, c);
  if (ggamma) k_copy_cols<T><<<blocks_for(c), kThreads, 0, stream()>>>(sgx.p, ggamma, c);
  BISSL_LAUNCH_OK("batch_norm_backward sums");
  if (gx && rows * c) {
    k_bn_bwd<T><<<blocks_for(rows * c), kThreads, 0, stream()>>>(gy, x, mean, invstd, gamma, sg.p, sgx.p, gx, rows * c,
                                                                  c, 1.0 / double(rows));
    BISSL_LAUNCH_OK("batch_norm_backward");
  }
}

template <class T>
void batch_norm_jvp(const T* x, const T* mean, const T* invstd, const T* gamma, const T* tx, const T* tgamma,
                    const T* tbeta, T* ty, T* tmean, T* tinvstd, int64_t rows, int64_t c) {
  const double inv_rows = 1.0 / double(rows);
  Scratch a(tx ? c : 0), b(tx ? c : 0);
  if (tx) {
    double* const sums[2] = {a.p, b.p};
    colsums<2>(rows, c, sums, [=] __device__(int64_t r, int64_t j) {
      const double t = double(tx[r * c + j]);
      return Sums<2>{{t, t * kern_math::bn_xhat(x[r * c + j], mean[j], invstd[j])}};
    });
    k_bn_jvp_stats<T><<<blocks_for(c), kThreads, 0, stream()>>>(invstd, a.p, b.p, tmean, tinvstd, c, inv_rows);
    BISSL_LAUNCH_OK("batch_norm jvp (statistics)");
  }
  if (rows * c) {
    k_bn_jvp<T><<<blocks_for(rows * c), kThreads, 0, stream()>>>(x, mean, invstd, gamma, tx, tgamma, tbeta,
                                                                  tx ? a.p : nullptr, tx ? b.p : nullptr, ty,
                                                                  rows * c, c, inv_rows);
    BISSL_LAUNCH_OK("batch_norm jvp");
  }
}

template <class T>
void batch_norm_backward_jvp(const T* gy, const T* x, const T* mean, const T* invstd, const T* gamma, const T* tgy,
                             const T* tx, const T* tmean, const T* tinvstd, const T* tgamma, T* tdx, T* tdgamma,
                             T* tdbeta, int64_t rows, int64_t c) {
  const double inv_rows = 1.0 / double(rows);
  Scratch sg(c), sgx(c), p(c), q(c);
  double* const sums[4] = {sg.p, sgx.p, p.p, q.p};
  colsums<4>(rows, c, sums, [=] __device__(int64_t r, int64_t j) {
    const int64_t k = r * c + j;
    const double g = double(gy[k]), tg = tgy ? double(tgy[k]) : 0.0;
    const double xh = kern_math::bn_xhat(x[k], mean[j], invstd[j]);
    const double txh = kern_math::bn_xhat_tangent(x[k], mean[j], invstd[j], tx, tmean, tinvstd, k, j);
    return Sums<4>{{g, g * xh, tg, kern_math::bn_backward_tangent_term(g, tg, xh, txh)}};
  });
  if (tdbeta) k_copy_cols<T><<<blocks_for(c), kThreads, 0, stream()>>>(p.p, tdbeta, c);
  if (tdgamma) k_copy_cols<T><<<blocks_for(c), kThreads, 0, stream()>>>(q.p, tdgamma, c);
  BISSL_LAUNCH_OK("batch_norm_backward jvp sums");
  if (tdx && rows * c) {
    k_bn_bwd_jvp<T><<<blocks_for(rows * c), kThreads, 0, stream()>>>(gy, x, mean, invstd, gamma, tgy, tx, tmean,
                                                                      tinvstd, tgamma, sg.p, sgx.p, p.p, q.p, tdx,
                                                                      rows * c, c, inv_rows);
    BISSL_LAUNCH_OK("batch_norm_backward jvp");
  }
}

template <class T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows, int64_t c,
                        double eps) {
  if (!rows) return;
  k_ln_fwd<T><<<blocks_for(rows), kThreads, 0, stream()>>>(x, gamma, beta, y, mean, rstd, rows, c, eps);
  BISSL_LAUNCH_OK("layer_norm");
}

template <class T>
void layer_norm_backward(const T* gy, const T* x, const T* mean, const T* rstd, const T* gamma, T* gx, T* ggamma,
                         T* gbeta, int64_t rows, int64_t c) {
  if (ggamma || gbeta) {
    Scratch sg(c), sgx(c);
    colsum(rows, c, sg.p, [=] __device__(int64_t r, int64_t j) { return double(gy[r * c + j]); });
    colsum(rows, c, sgx.p, [=] __device__(int64_t r, int64_t j) {
      return double(gy[r * c + j]) * double(x[r * c + j] - mean[r]) * double(rstd[r]);
    });
    if (gbeta) k_copy_cols<T><<<blocks_for(c), kThreads, 0, stream()>>>(sg.p, gbeta, c);
    if (ggamma) k_copy_cols<T><<<blocks_for(c), kThreads, 0, stream()>>>(sgx.p, ggamma, c);
    BISSL_LAUNCH_OK("layer_norm_backward sums");
  }
  if (gx && rows) {
    k_ln_bwd<T><<<blocks_for(rows), kThreads, 0, stream()>>>(gy, x, mean, rstd, gamma, gx, rows, c);
    BISSL_LAUNCH_OK("layer_norm_backward");
  }
}

template <class T>
void layer_norm_jvp(const T* x, const T* mean, const T* rstd, const T* gamma, const T* tx, const T* tgamma,
                    const T* tbeta, T* ty, T* tmean, T* trstd, int64_t rows, int64_t c) {
  if (!rows) return;
  k_ln_jvp<T><<<blocks_for(rows), kThreads, 0, stream()>>>(x, mean, rstd, gamma, tx, tgamma, tbeta, ty, tmean, trstd,
                                                            rows, c);
  BISSL_LAUNCH_OK("layer_norm jvp");
}

template <class T>
void layer_norm_backward_jvp(const T* gy, const T* x, const T* mean, const T* rstd, const T* gamma, const T* tgy,
                             const T* tx, const T* tmean, const T* trstd, const T* tgamma, T* tdx, T* tdgamma,
                             T* tdbeta, int64_t rows, int64_t c) {
  if (tdgamma || tdbeta) {
    Scratch p(c), q(c);
    double* const sums[2] = {p.p, q.p};
    colsums<2>(rows, c, sums, [=] __device__(int64_t r, int64_t j) {
      const int64_t k = r * c + j;
      const double g = double(gy[k]), tg = tgy ? double(tgy[k]) : 0.0;
      const double xh = kern_math::bn_xhat(x[k], mean[r], rstd[r]);
      const double txh = kern_math::ln_xhat_tangent(x[k], mean[r], rstd[r], tx ? double(tx[k]) : 0.0,
                                                    tmean ? tmean + r : nullptr, trstd ? trstd + r : nullptr);
      return Sums<2>{{tg, kern_math::bn_backward_tangent_term(g, tg, xh, txh)}};
    });
    if (tdbeta) k_copy_cols<T><<<blocks_for(c), kThreads, 0, stream()>>>(p.p, tdbeta, c);
    if (tdgamma) k_copy_cols<T><<<blocks_for(c), kThreads, 0, stream()>>>(q.p, tdgamma, c);
    BISSL_LAUNCH_OK("layer_norm_backward jvp sums");
  }
  if (tdx && rows) {
    k_ln_bwd_jvp<T><<<blocks_for(rows), kThreads, 0, stream()>>>(gy, x, mean, rstd, gamma, tgy, tx, tmean, trstd,
                                                                  tgamma, tdx, rows, c);
    BISSL_LAUNCH_OK("layer_norm_backward jvp");
  }
}

#define INST(T)                                                                                           \
  template void batch_norm_stats<T>(const T*, int64_t, int64_t, T*, T*);                                  \
  template void batch_norm_finish<T>(const T*, const T*, T*, T*, T*, int64_t, double, double, int64_t);   \
  template void batch_norm_apply<T>(const T*, const T*, const T*, const T*, const T*, T*, int64_t, int64_t); \
  template void batch_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, \
                                       int64_t);                                                          \
  template void batch_norm_jvp<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*, T*, T*, T*, \
                                  int64_t, int64_t);                                                      \
  template void batch_norm_backward_jvp<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*,     \
                                           const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t);            \
  template void layer_norm_jvp<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*, T*, T*, T*, \
                                  int64_t, int64_t);                                                      \
  template void layer_norm_backward_jvp<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*,     \
                                           const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t);            \
  template void layer_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, double); \
  template void layer_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, \
                                       int64_t);
INST(float)
INST(double)

}  // namespace bissl::cuda
