#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/parallel.h"

namespace bissl::cpu {

namespace {
// BLAS rejects k == 0 (and some builds m or n == 0); those are trivial here.
template <class T>
bool trivial(int64_t m, int64_t n, int64_t k, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return true;
  if (k > 0) return false;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
  return true;
}
// Portable numerics (engine/numerics.h). OpenBLAS cuts a product among its
// threads by their number, and its edge kernels round otherwise than its
// main ones, so a product's bits move with the thread count (measured with
// OpenBLAS 0.3.21: 19 % of a 25088x64x576 convolution's outputs differ at 1
// and 2 threads). Here the product is cut along its longer output side into
// tiles fixed by the shape alone (about 16, a multiple of 16 rows or
// columns), each one single-threaded OpenBLAS call (OpenBLAS runs one thread
// inside an active OpenMP region, and we hold the thread count at 1 around
// the calls otherwise), the tiles spread over our threads.
template <class T, class Call>
void portable_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                   int64_t ldb, T* c, int64_t ldc, Call call) {
  const bool split_m = m >= n;
  const int64_t dim = split_m ? m : n;
  const int64_t tile = std::max<int64_t>(16, (dim + 16 * 16 - 1) / (16 * 16) * 16);
  const int64_t tiles = (dim + tile - 1) / tile;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);  // a call outside an active region: OpenBLAS reads omp_get_max_threads()
  const int nt = m * n * k >= 32768 ? std::min<int>(threads, int(tiles)) : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t lo = t * tile, len = std::min(tile, dim - lo);
    if (split_m)  // rows lo.. of op(A) and C
      call(len, n, ta ? a + lo : a + lo * lda, b, c + lo * ldc);
    else  // columns lo.. of op(B) and C
      call(m, len, a, tb ? b + lo * ldb : b + lo, c + lo);
  }
  omp_set_num_threads(threads);
}

// One BLAS call per element type.
void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
              alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}
void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
               const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
              alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

template <class T>
void gemm_impl(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
               int64_t ldb, T beta, T* c, int64_t ldc) {
  if (trivial(m, n, k, beta, c, ldc)) return;
  auto call = [&](int64_t mm, int64_t nn, const T* aa, const T* bb, T* cc) {
    blas_gemm(ta, tb, mm, nn, k, alpha, aa, lda, bb, ldb, beta, cc, ldc);
  };
  if (portable_numerics.load(std::memory_order_relaxed))
    portable_gemm(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, call);
  else
    call(m, n, a, b, c);
}

}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm_impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <>
void gemm<double>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                  const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  gemm_impl(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace bissl::cpu
