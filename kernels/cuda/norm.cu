// Batch norm (column statistics over [rows, c]) and layer norm (row
// statistics), forward and fused backward. Column sums use per-block partial
// sums in double and atomics.
#include "kernels/cuda/common.cuh"

namespace bissl::cuda {

namespace {

constexpr int kRowsPerBlock = 256;

// acc[j] += Σ_rows f(r, j) over a block of rows; threads walk columns.
template <class F>
__global__ void k_colsum(int64_t rows, int64_t c, double* acc, F f) {
  int64_t r0 = int64_t(blockIdx.y) * kRowsPerBlock, r1 = min(rows, r0 + kRowsPerBlock);
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < c; j += int64_t(gridDim.x) * blockDim.x) {
    double s = 0;
    for (int64_t r = r0; r < r1; ++r) s += f(r, j);
    atomicAdd(acc + j, s);
  }
}

template <class F>
void colsum(int64_t rows, int64_t c, double* acc, F f) {
  memset_zero(acc, size_t(c) * sizeof(double));
  dim3 grid(unsigned((c + 127) / 128), unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock));
  k_colsum<<<grid, 128, 0, stream()>>>(rows, c, acc, f);
  BISSL_LAUNCH_OK("column sums");
}

struct Scratch {
  double* p;
  explicit Scratch(int64_t n) : p(static_cast<double*>(alloc(size_t(n) * sizeof(double)))) {}
  ~Scratch() { release(p); }
};

template <class T>
__global__ void k_stats_finish(const double* s, const double* ss, T* mean, T* var, int64_t c, int64_t rows) {
  BISSL_GRID_LOOP(j, c) {
    mean[j] = T(s[j] / double(rows));
    var[j] = T(ss[j] / double(rows));
  }
}

template <class T>
__global__ void k_bn_finish(const T* mean, const T* var, T* invstd, T* rm, T* rv, int64_t c, double eps, double mom,
                            double unbias) {
  BISSL_GRID_LOOP(j, c) {
    invstd[j] = T(1.0 / sqrt(double(var[j]) + eps));
    if (rm && rv) {
      rm[j] = T((1 - mom) * double(rm[j]) + mom * double(mean[j]));
      rv[j] = T((1 - mom) * double(rv[j]) + mom * double(var[j]) * unbias);
    }
  }
}

template <class T>
__global__ void k_bn_apply(const T* x, const T* mean, const T* invstd, const T* gamma, const T* beta, T* y,
                           int64_t n, int64_t c) {
  BISSL_GRID_LOOP(q, n) {
    int64_t j = q % c;
    T sc = invstd[j] * (gamma ? gamma[j] : T(1));
    y[q] = (x[q] - mean[j]) * sc + (beta ? beta[j] : T(0));
  }
}

template <class T>
__global__ void k_bn_bwd(const T* gy, const T* x, const T* mean, const T* invstd, const T* gamma, const double* sg,
                         const double* sgx, T* gx, int64_t n, int64_t c, double inv_rows) {
  BISSL_GRID_LOOP(q, n) {
    int64_t j = q % c;
    double xhat = double(x[q] - mean[j]) * double(invstd[j]);
    double k = (gamma ? double(gamma[j]) : 1.0) * double(invstd[j]);
    gx[q] = T(k * (double(gy[q]) - sg[j] * inv_rows - xhat * sgx[j] * inv_rows));
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
    const T* p = x + r * c;
    double s = 0, ss = 0;
    for (int64_t j = 0; j < c; ++j) s += double(p[j]);
    double m = s / double(c);
    for (int64_t j = 0; j < c; ++j) ss += (double(p[j]) - m) * (double(p[j]) - m);
    double rs = 1.0 / sqrt(ss / double(c) + eps);
    mean[r] = T(m);
    rstd[r] = T(rs);
    for (int64_t j = 0; j < c; ++j)
      y[r * c + j] = T((double(p[j]) - m) * rs * (gamma ? double(gamma[j]) : 1.0) + (beta ? double(beta[j]) : 0.0));
  }
}

template <class T>
__global__ void k_ln_bwd(const T* gy, const T* x, const T* mean, const T* rstd, const T* gamma, T* gx, int64_t rows,
                         int64_t c) {
  BISSL_GRID_LOOP(r, rows) {
    double a = 0, b = 0;
    for (int64_t j = 0; j < c; ++j) {
      double d = double(gy[r * c + j]) * (gamma ? double(gamma[j]) : 1.0);
      double xhat = double(x[r * c + j] - mean[r]) * double(rstd[r]);
      a += d, b += d * xhat;
    }
    for (int64_t j = 0; j < c; ++j) {
      double d = double(gy[r * c + j]) * (gamma ? double(gamma[j]) : 1.0);
      double xhat = double(x[r * c + j] - mean[r]) * double(rstd[r]);
      gx[r * c + j] = T(double(rstd[r]) * (d - a / double(c) - xhat * b / double(c)));
    }
  }
}

}  // namespace

template <class T>
void batch_norm_stats(const T* x, int64_t rows, int64_t c, T* mean, T* var) {
  Scratch s(c), ss(c);
  colsum(rows, c, s.p, [=] __device__(int64_t r, int64_t j) { return double(x[r * c + j]); });
  // Two passes (mean first) for accuracy, as on the CPU.
  k_stats_finish<T><<<blocks_for(c), kThreads, 0, stream()>>>(s.p, s.p, mean, var, c, rows);
  BISSL_LAUNCH_OK("batch_norm mean");
  colsum(rows, c, ss.p, [=] __device__(int64_t r, int64_t j) {
    double d = double(x[r * c + j]) - double(mean[j]);
    return d * d;
  });
  k_stats_finish<T><<<blocks_for(c), kThreads, 0, stream()>>>(s.p, ss.p, mean, var, c, rows);
  BISSL_LAUNCH_OK("batch_norm var");
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
  colsum(rows, c, sg.p, [=] __device__(int64_t r, int64_t j) { return double(gy[r * c + j]); });
  colsum(rows, c, sgx.p, [=] __device__(int64_t r, int64_t j) {
    return double(gy[r * c + j]) * double(x[r * c + j] - mean[j]) * double(invstd[j]);
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

#define INST(T)                                                                                           \
  template void batch_norm_stats<T>(const T*, int64_t, int64_t, T*, T*);                                  \
  template void batch_norm_finish<T>(const T*, const T*, T*, T*, T*, int64_t, double, double, int64_t);   \
  template void batch_norm_apply<T>(const T*, const T*, const T*, const T*, const T*, T*, int64_t, int64_t); \
  template void batch_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, \
                                       int64_t);                                                          \
  template void layer_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, double); \
  template void layer_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, \
                                       int64_t);
INST(float)
INST(double)

}  // namespace bissl::cuda
