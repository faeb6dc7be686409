#pragma once
// Shared by the .cu files: status checks, the compute stream, launch sizes,
// strided index arithmetic.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/kernels.h"

namespace bissl::cuda {

[[noreturn]] void fail(const std::string& what, const std::string& detail);

#define BISSL_CUDA_OK(expr, what)                                                            \
  do {                                                                                       \
    cudaError_t e_ = (expr);                                                                 \
    if (e_ != cudaSuccess) ::bissl::cuda::fail(what, cudaGetErrorString(e_));                \
  } while (0)
#define BISSL_CUBLAS_OK(expr, what)                                                          \
  do {                                                                                       \
    cublasStatus_t s_ = (expr);                                                              \
    if (s_ != CUBLAS_STATUS_SUCCESS) ::bissl::cuda::fail(what, cublasGetStatusString(s_));   \
  } while (0)
// After a launch: catches bad configurations at once (asynchronous faults
// surface at the next synchronising call, also checked).
#define BISSL_LAUNCH_OK(what) BISSL_CUDA_OK(cudaGetLastError(), what)

cudaStream_t stream();
cublasHandle_t cublas();
// Counts a host wait for the stream made outside memory.cu (autotuning).
void note_host_wait();
// Deferred index checks (index.cu): the number the next check will get, and
// the report after a wait for the stream: throws the first failed check
// numbered below `mark` (those the wait covered), and forgets them all.
uint64_t index_check_mark();
void report_index_errors(uint64_t mark);

constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > 65535 * 32 ? 65535 * 32 : b));
}

// Shapes and strides passed by value (up to 8 dims after merging).
constexpr int kMaxDims = 8;
template <int K>
struct StridedArgs {
  int nd;
  int64_t shape[kMaxDims];
  int64_t st[K][kMaxDims];
};

// Merges dims and fills StridedArgs; throws past kMaxDims.
template <int K>
StridedArgs<K> make_strided(const Dims& shape, const Dims* const* st, const char* what);

template <int K>
__device__ inline void strided_offsets(const StridedArgs<K>& a, int64_t i, int64_t* off) {
  for (int k = 0; k < K; ++k) off[k] = 0;
  for (int d = a.nd - 1; d >= 0; --d) {
    int64_t idx = i % a.shape[d];
    i /= a.shape[d];
    for (int k = 0; k < K; ++k) off[k] += idx * a.st[k][d];
  }
}

#define BISSL_GRID_LOOP(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(blockDim.x) * gridDim.x)

}  // namespace bissl::cuda
