// The stream-ordered pool, copies, the compute stream and the cuBLAS handle.
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/common.cuh"

namespace bissl::cuda {

void fail(const std::string& what, const std::string& detail) {
  throw std::runtime_error("cuda: " + what + " failed: " + detail);
}

namespace {
struct State {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  std::mutex mu;
  std::unordered_map<void*, size_t> sizes;
  size_t in_use = 0, peak = 0;
  bool poison = false;
  bool tf32 = false;
  State() {
    BISSL_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    BISSL_CUBLAS_OK(cublasCreate(&cublas), "cublasCreate");
    BISSL_CUBLAS_OK(cublasSetStream(cublas, stream), "cublasSetStream");
    // Keep freed memory in the pool instead of returning it at every sync.
    cudaMemPool_t pool;
    int dev = 0;
    BISSL_CUDA_OK(cudaGetDevice(&dev), "cudaGetDevice");
    BISSL_CUDA_OK(cudaDeviceGetDefaultMemPool(&pool, dev), "cudaDeviceGetDefaultMemPool");
    uint64_t threshold = UINT64_MAX;
    BISSL_CUDA_OK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), "cudaMemPoolSetAttribute");
  }
};
State& st() {
  static State* s = new State();  // lives until exit; CUDA objects die with the context
  return *s;
}
}  // namespace

cudaStream_t stream() { return st().stream; }
cublasHandle_t cublas() { return st().cublas; }

void* alloc(size_t bytes) {
  auto& s = st();
  void* p = nullptr;
  size_t n = bytes ? bytes : 1;
  cudaError_t e = cudaMallocAsync(&p, n, s.stream);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("cudaMallocAsync of " + std::to_string(bytes) + " bytes (in use " + std::to_string(s.in_use) +
             ", peak " + std::to_string(s.peak) + ")",
         cudaGetErrorString(e));
  }
  if (s.poison) BISSL_CUDA_OK(cudaMemsetAsync(p, 0xFF, n, s.stream), "poison memset");
  std::lock_guard<std::mutex> lock(s.mu);
  s.sizes[p] = n;
  s.in_use += n;
  if (s.in_use > s.peak) s.peak = s.in_use;
  return p;
}

void release(void* p) {
  if (!p) return;
  auto& s = st();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.sizes.find(p);
    if (it != s.sizes.end()) s.in_use -= it->second, s.sizes.erase(it);
  }
  cudaFreeAsync(p, s.stream);  // errors here would only be reported from a destructor; ignore
}

size_t bytes_in_use() { return st().in_use; }
size_t peak_bytes() { return st().peak; }
void reset_peak_bytes() { st().peak = st().in_use; }
void set_poison(bool on) { st().poison = on; }
void set_tf32(bool on) {
  st().tf32 = on;
  BISSL_CUBLAS_OK(cublasSetMathMode(st().cublas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
                  "cublasSetMathMode");
}
bool tf32() { return st().tf32; }

namespace {
std::atomic<int64_t> g_host_syncs{0};
}
int64_t host_syncs() { return g_host_syncs.load(); }

void copy_h2d(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  ++g_host_syncs;
  BISSL_CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()), "copy host->device");
  // The host buffer may be freed right after: wait (pinned staging comes with the loader).
  BISSL_CUDA_OK(cudaStreamSynchronize(stream()), "copy host->device (sync)");
}
void copy_d2h(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  ++g_host_syncs;
  BISSL_CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()), "copy device->host");
  BISSL_CUDA_OK(cudaStreamSynchronize(stream()), "copy device->host (sync)");
}
void copy_d2d(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  BISSL_CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()), "copy device->device");
}
void memset_zero(void* p, size_t bytes) {
  if (!bytes) return;
  BISSL_CUDA_OK(cudaMemsetAsync(p, 0, bytes, stream()), "memset");
}
void synchronize() {
  ++g_host_syncs;
  BISSL_CUDA_OK(cudaStreamSynchronize(stream()), "stream synchronize");
}

template <int K>
StridedArgs<K> make_strided(const Dims& shape, const Dims* const* st, const char* what) {
  StridedArgs<K> a{};
  std::vector<int64_t> sh;
  std::vector<std::vector<int64_t>> ss(K);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !sh.empty();
    for (int k = 0; k < K && merge; ++k) merge = ss[k].back() == (*st[k])[d] * shape[d];
    if (merge) {
      sh.back() *= shape[d];
      for (int k = 0; k < K; ++k) ss[k].back() = (*st[k])[d];
    } else {
      sh.push_back(shape[d]);
      for (int k = 0; k < K; ++k) ss[k].push_back((*st[k])[d]);
    }
  }
  if (sh.empty()) {
    sh.push_back(1);
    for (int k = 0; k < K; ++k) ss[k].push_back(0);
  }
  if (int(sh.size()) > kMaxDims) fail(what, "more than 8 non-mergeable dims");
  a.nd = int(sh.size());
  for (int d = 0; d < a.nd; ++d) {
    a.shape[d] = sh[size_t(d)];
    for (int k = 0; k < K; ++k) a.st[k][d] = ss[size_t(k)][size_t(d)];
  }
  return a;
}
template StridedArgs<2> make_strided<2>(const Dims&, const Dims* const*, const char*);
template StridedArgs<3> make_strided<3>(const Dims&, const Dims* const*, const char*);
template StridedArgs<4> make_strided<4>(const Dims&, const Dims* const*, const char*);

}  // namespace bissl::cuda
