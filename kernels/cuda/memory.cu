// The stream-ordered pool, copies, the compute stream and the cuBLAS handle.
#include <algorithm>
#include <atomic>
#include <deque>
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

// ---- page-locked host memory, cached by size ----
// cudaFreeHost waits for the whole device, so blocks are never given back:
// a released block waits in the cache for the next request of its size class
// (the loader asks for the same few sizes over and over).
namespace {
struct HostCache {
  std::mutex mu;
  std::unordered_multimap<size_t, void*> free_blocks;  // size class -> block
  std::unordered_map<void*, size_t> size_of;           // every block made
  size_t total = 0;  // bytes made (cached or in use)
};
HostCache& host_cache() {
  static auto* c = new HostCache();  // lives until exit, like the blocks
  return *c;
}
size_t host_size_class(size_t bytes) {
  const size_t g = bytes <= (size_t(1) << 20) ? 4096 : (size_t(1) << 16);
  return (std::max<size_t>(bytes, 1) + g - 1) / g * g;
}
}  // namespace

void* host_alloc(size_t bytes) {
  auto& c = host_cache();
  const size_t n = host_size_class(bytes);
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks.find(n);
    if (it != c.free_blocks.end()) {
      void* p = it->second;
      c.free_blocks.erase(it);
      return p;
    }
  }
  void* p = nullptr;
  cudaError_t e = cudaHostAlloc(&p, n, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("cudaHostAlloc of " + std::to_string(bytes) + " page-locked bytes (" + std::to_string(host_pinned_bytes()) +
             " already page-locked)",
         cudaGetErrorString(e));
  }
  std::lock_guard<std::mutex> lock(c.mu);
  c.size_of[p] = n;
  c.total += n;
  return p;
}

void host_release(void* p) {
  if (!p) return;
  auto& c = host_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.size_of.find(p);
  if (it == c.size_of.end()) return;  // not ours: nothing to do (never happens)
  c.free_blocks.emplace(it->second, p);
}

size_t host_pinned_bytes() {
  std::lock_guard<std::mutex> lock(host_cache().mu);
  return host_cache().total;
}

namespace {
std::atomic<int64_t> g_host_syncs{0};

// Copies from page-locked memory still in flight: each holds its source
// until the event recorded after it has passed.
struct InFlight {
  cudaEvent_t done = nullptr;  // null: nothing to wait for (a copy that failed to queue)
  std::shared_ptr<void> keep;
  bool reserved = true;  // being queued: later entries wait behind it
};
struct Copies {
  std::mutex mu;
  std::deque<InFlight> in_flight;
  std::vector<cudaEvent_t> spare;
};
Copies& copies() {
  static auto* c = new Copies();
  return *c;
}

// Drops the sources of finished copies, asking each copy's event (also
// after a wait for the stream: a copy queued by another thread since then
// must keep its source). Sources are destroyed outside the lock.
void retire_copies() {
  auto& c = copies();
  std::vector<std::shared_ptr<void>> drop;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    while (!c.in_flight.empty()) {
      InFlight& f = c.in_flight.front();
      if (f.reserved) break;
      if (f.done) {
        cudaError_t e = cudaEventQuery(f.done);
        if (e == cudaErrorNotReady) {
          // Not an error; make sure no launch check mistakes it for one.
          if (cudaPeekAtLastError() == cudaErrorNotReady) cudaGetLastError();
          break;
        }
        if (e != cudaSuccess) break;  // a real fault: the next checked call reports it
        c.spare.push_back(f.done);
      }
      drop.push_back(std::move(f.keep));
      c.in_flight.pop_front();
    }
  }
}

// Waits for the stream (counted), then drops finished copies' sources and
// reports the deferred index checks queued before the wait.
void wait_for_stream(const char* what) {
  ++g_host_syncs;
  const uint64_t mark = index_check_mark();
  BISSL_CUDA_OK(cudaStreamSynchronize(stream()), what);
  retire_copies();
  report_index_errors(mark);
}
}  // namespace

void note_host_wait() { ++g_host_syncs; }

int64_t host_syncs() { return g_host_syncs.load(); }
size_t copies_in_flight() {
  std::lock_guard<std::mutex> lock(copies().mu);
  return copies().in_flight.size();
}

void copy_h2d(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  BISSL_CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()), "copy host->device");
  // The (pageable) host buffer may be freed or rewritten right after: wait.
  // Page-locked sources go through copy_h2d_async instead.
  wait_for_stream("copy host->device (sync)");
}
void copy_h2d_async(void* dst, const void* src, size_t bytes, std::shared_ptr<void> keep) {
  if (!bytes) return;
  retire_copies();
  auto& c = copies();
  // The event and the list entry exist before the copy is queued, so that
  // nothing after it can fail and drop `keep` while the copy still reads it.
  cudaEvent_t ev = nullptr;
  InFlight* slot = nullptr;  // deque: references survive pushes and pops of other entries
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (!c.spare.empty()) ev = c.spare.back(), c.spare.pop_back();
    c.in_flight.emplace_back();  // reserved: filled in below
    slot = &c.in_flight.back();
  }
  auto give_back = [&](cudaEvent_t e) {  // on failure: an empty entry, the event spare again
    std::lock_guard<std::mutex> lock(c.mu);
    slot->reserved = false;
    if (e) c.spare.push_back(e);
  };
  if (!ev && cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess) {
    cudaGetLastError();
    give_back(nullptr);
    fail("copy host->device (async)", "cudaEventCreate failed");
  }
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream());
  if (e == cudaSuccess) e = cudaEventRecord(ev, stream());
  if (e != cudaSuccess) {
    cudaGetLastError();
    cudaStreamSynchronize(stream());  // whatever was queued has finished with the source
    cudaGetLastError();
    give_back(ev);
    fail("copy host->device (async)", cudaGetErrorString(e));
  }
  std::lock_guard<std::mutex> lock(c.mu);
  slot->done = ev;
  slot->keep = std::move(keep);
  slot->reserved = false;
}
void copy_d2h(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  BISSL_CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()), "copy device->host");
  wait_for_stream("copy device->host (sync)");
}
void copy_d2d(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  BISSL_CUDA_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()), "copy device->device");
}
namespace {
template <class U>
__global__ void k_fill(U* p, int64_t n, U v) {
  BISSL_GRID_LOOP(i, n) p[i] = v;
}
}  // namespace

void fill_pattern(void* p, size_t elem_size, int64_t n, uint64_t pattern) {
  if (n <= 0) return;
  switch (elem_size) {
    case 2:
      k_fill<uint16_t><<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<uint16_t*>(p), n, uint16_t(pattern));
      break;
    case 4:
      k_fill<uint32_t><<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<uint32_t*>(p), n, uint32_t(pattern));
      break;
    case 8:
      k_fill<unsigned long long><<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<unsigned long long*>(p), n,
                                                                           (unsigned long long)pattern);
      break;
    default: fail("fill", "element size " + std::to_string(elem_size) + " is not 2, 4 or 8 bytes");
  }
  BISSL_LAUNCH_OK("fill");
}

void memset_zero(void* p, size_t bytes) {
  if (!bytes) return;
  BISSL_CUDA_OK(cudaMemsetAsync(p, 0, bytes, stream()), "memset");
}
void synchronize() { wait_for_stream("stream synchronize"); }

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
