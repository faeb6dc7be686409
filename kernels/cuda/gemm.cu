// Row-major GEMM on cuBLAS (column-major): C = A·B row-major is Cᵀ = Bᵀ·Aᵀ
// column-major, so operands swap and the transposes stay.
#include "kernels/cuda/common.cuh"

namespace bissl::cuda {

namespace {
cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

void gemm_call(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, const float* beta, float* c, int64_t ldc) {
  BISSL_CUBLAS_OK(cublasSgemm(cublas(), op(tb), op(ta), int(n), int(m), int(k), alpha, b, int(ldb), a, int(lda), beta,
                              c, int(ldc)),
                  "cublasSgemm");
}
void gemm_call(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* alpha, const double* a, int64_t lda,
               const double* b, int64_t ldb, const double* beta, double* c, int64_t ldc) {
  BISSL_CUBLAS_OK(cublasDgemm(cublas(), op(tb), op(ta), int(n), int(m), int(k), alpha, b, int(ldb), a, int(lda), beta,
                              c, int(ldc)),
                  "cublasDgemm");
}
void batched_call(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* alpha, const float* a, int64_t lda,
                  int64_t sa, const float* b, int64_t ldb, int64_t sb, const float* beta, float* c, int64_t ldc,
                  int64_t sc, int64_t batch) {
  BISSL_CUBLAS_OK(cublasSgemmStridedBatched(cublas(), op(tb), op(ta), int(n), int(m), int(k), alpha, b, int(ldb), sb,
                                            a, int(lda), sa, beta, c, int(ldc), sc, int(batch)),
                  "cublasSgemmStridedBatched");
}
void batched_call(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* alpha, const double* a,
                  int64_t lda, int64_t sa, const double* b, int64_t ldb, int64_t sb, const double* beta, double* c,
                  int64_t ldc, int64_t sc, int64_t batch) {
  BISSL_CUBLAS_OK(cublasDgemmStridedBatched(cublas(), op(tb), op(ta), int(n), int(m), int(k), alpha, b, int(ldb), sb,
                                            a, int(lda), sa, beta, c, int(ldc), sc, int(batch)),
                  "cublasDgemmStridedBatched");
}
}  // namespace

template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // C = beta·C
    if (beta == T(0)) {
      for (int64_t i = 0; i < m; ++i) memset_zero(c + i * ldc, size_t(n) * sizeof(T));
    } else {
      for (int64_t i = 0; i < m; ++i) scale_inplace<T>(c + i * ldc, n, double(beta));
    }
    return;
  }
  gemm_call(ta, tb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc);
}

template <class T>
void gemm_strided_batched(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, int64_t sa,
                          const T* b, int64_t ldb, int64_t sb, T* c, int64_t ldc, int64_t sc, int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  T one = 1, zero = 0;
  if (k == 0) {
    memset_zero(c, size_t(sc * (batch - 1) + m * ldc) * sizeof(T));
    return;
  }
  batched_call(ta, tb, m, n, k, &one, a, lda, sa, b, ldb, sb, &zero, c, ldc, sc, batch);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);
template void gemm_strided_batched<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, int64_t,
                                          const float*, int64_t, int64_t, float*, int64_t, int64_t, int64_t);
template void gemm_strided_batched<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t, int64_t,
                                           const double*, int64_t, int64_t, double*, int64_t, int64_t, int64_t);

}  // namespace bissl::cuda
