// Indexing (index_select/add, gather/scatter_add, take/put_add), one-hot,
// index range checks, Philox dropout masks.
#include <deque>
#include <mutex>

#include "kernels/cuda/common.cuh"
#include "kernels/philox.h"

namespace bissl::cuda {

namespace {

// Kernels that read indices skip those out of range: a deferred check has
// queued the error, which the host reports at its next wait for the stream.
__device__ inline bool in_range(int64_t t, int64_t n) { return t >= 0 && t < n; }

template <class T>
__global__ void k_index_select(const T* x, const int64_t* idx, T* out, int64_t total, int64_t n, int64_t k,
                               int64_t inner) {
  BISSL_GRID_LOOP(q, total) {
    int64_t i = q % inner, j = (q / inner) % k, o = q / (inner * k), t = idx[j];
    out[q] = in_range(t, n) ? x[(o * n + t) * inner + i] : T(0);
  }
}
template <class T>
__global__ void k_index_add(const T* g, const int64_t* idx, T* out, int64_t total, int64_t n, int64_t k,
                            int64_t inner) {
  BISSL_GRID_LOOP(q, total) {
    int64_t i = q % inner, j = (q / inner) % k, o = q / (inner * k), t = idx[j];
    if (in_range(t, n)) atomicAdd(out + (o * n + t) * inner + i, g[q]);
  }
}
template <class T>
__global__ void k_gather(const T* x, const int64_t* idx, T* out, int64_t total, int64_t n, int64_t k,
                         int64_t inner) {
  BISSL_GRID_LOOP(q, total) {
    int64_t i = q % inner, o = q / (inner * k), t = idx[q];
    out[q] = in_range(t, n) ? x[(o * n + t) * inner + i] : T(0);
  }
}
template <class T>
__global__ void k_scatter_add(const T* g, const int64_t* idx, T* out, int64_t total, int64_t n, int64_t k,
                              int64_t inner) {
  BISSL_GRID_LOOP(q, total) {
    int64_t i = q % inner, o = q / (inner * k), t = idx[q];
    if (in_range(t, n)) atomicAdd(out + (o * n + t) * inner + i, g[q]);
  }
}
template <class T>
__global__ void k_gather_rows(const T* x, const int64_t* idx, T* out, int64_t total, int64_t n, int64_t k,
                              int64_t inner) {
  BISSL_GRID_LOOP(q, total) {
    int64_t i = q % inner, r = q / inner, o = r / k, t = idx[r];
    out[q] = in_range(t, n) ? x[(o * n + t) * inner + i] : T(0);
  }
}
template <class T>
__global__ void k_scatter_rows_add(const T* g, const int64_t* idx, T* out, int64_t total, int64_t n, int64_t k,
                                   int64_t inner) {
  BISSL_GRID_LOOP(q, total) {
    int64_t i = q % inner, r = q / inner, o = r / k, t = idx[r];
    if (in_range(t, n)) atomicAdd(out + (o * n + t) * inner + i, g[q]);
  }
}
template <class T>
__global__ void k_take(const T* x, const int64_t* idx, T* out, int64_t n, int64_t limit) {
  BISSL_GRID_LOOP(i, n) out[i] = in_range(idx[i], limit) ? x[idx[i]] : T(0);
}
template <class T>
__global__ void k_put_add(const T* g, const int64_t* idx, T* out, int64_t n, int64_t limit) {
  BISSL_GRID_LOOP(i, n) {
    if (in_range(idx[i], limit)) atomicAdd(out + idx[i], g[i]);
  }
}
__global__ void k_check(const int64_t* idx, int64_t n, int64_t hi, unsigned long long* bad) {
  BISSL_GRID_LOOP(i, n) {
    if (idx[i] < 0 || idx[i] >= hi) atomicMin(bad, (unsigned long long)i);
  }
}
template <class T>
__global__ void k_one_hot(const int64_t* idx, T* out, int64_t n, int64_t classes) {
  BISSL_GRID_LOOP(i, n * classes) out[i] = T(idx[i / classes] == i % classes);
}
template <class T>
__global__ void k_dropout(T* out, int64_t n, double p, T keep, uint64_t seed, uint64_t offset) {
  BISSL_GRID_LOOP(i, n) out[i] = philox_unit(philox_words(seed, offset, uint64_t(i))) >= p ? keep : T(0);
}

}  // namespace

template <class T>
void index_select(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner) {
  int64_t total = outer * k * inner;
  if (!total) return;
  k_index_select<T><<<blocks_for(total), kThreads, 0, stream()>>>(x, idx, out, total, n, k, inner);
  BISSL_LAUNCH_OK("index_select");
}
template <class T>
void index_add(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner) {
  int64_t total = outer * k * inner;
  if (!total) return;
  k_index_add<T><<<blocks_for(total), kThreads, 0, stream()>>>(g, idx, out, total, n, k, inner);
  BISSL_LAUNCH_OK("index_add");
}
template <class T>
void gather_mid(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner) {
  int64_t total = outer * k * inner;
  if (!total) return;
  k_gather<T><<<blocks_for(total), kThreads, 0, stream()>>>(x, idx, out, total, n, k, inner);
  BISSL_LAUNCH_OK("gather");
}
template <class T>
void scatter_add_mid(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner) {
  int64_t total = outer * k * inner;
  if (!total) return;
  k_scatter_add<T><<<blocks_for(total), kThreads, 0, stream()>>>(g, idx, out, total, n, k, inner);
  BISSL_LAUNCH_OK("scatter_add");
}
template <class T>
void gather_rows(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner) {
  int64_t total = outer * k * inner;
  if (!total) return;
  k_gather_rows<T><<<blocks_for(total), kThreads, 0, stream()>>>(x, idx, out, total, n, k, inner);
  BISSL_LAUNCH_OK("gather_rows");
}
template <class T>
void scatter_rows_add(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner) {
  int64_t total = outer * k * inner;
  if (!total) return;
  k_scatter_rows_add<T><<<blocks_for(total), kThreads, 0, stream()>>>(g, idx, out, total, n, k, inner);
  BISSL_LAUNCH_OK("scatter_rows_add");
}
template <class T>
void take_flat(const T* x, const int64_t* idx, T* out, int64_t n, int64_t limit) {
  if (!n) return;
  k_take<T><<<blocks_for(n), kThreads, 0, stream()>>>(x, idx, out, n, limit);
  BISSL_LAUNCH_OK("take");
}
template <class T>
void scatter_add_flat(const T* g, const int64_t* idx, T* out, int64_t n, int64_t limit) {
  if (!n) return;
  k_put_add<T><<<blocks_for(n), kThreads, 0, stream()>>>(g, idx, out, n, limit);
  BISSL_LAUNCH_OK("put_add");
}

bool indices_in_range(const int64_t* idx, int64_t n, int64_t hi, int64_t* bad) {
  if (!n) return true;
  struct Word {  // released on every path, exceptions included
    unsigned long long* p = static_cast<unsigned long long*>(alloc(sizeof(unsigned long long)));
    ~Word() { release(p); }
  } d;
  BISSL_CUDA_OK(cudaMemsetAsync(d.p, 0xFF, sizeof(unsigned long long), stream()), "index check (init)");
  k_check<<<blocks_for(n), kThreads, 0, stream()>>>(idx, n, hi, d.p);
  BISSL_LAUNCH_OK("index check");
  unsigned long long first = 0;
  copy_d2h(&first, d.p, sizeof first);
  if (first == ~0ull) return true;
  copy_d2h(bad, idx + first, sizeof(int64_t));
  return false;
}

// ---- deferred index checks ----
// One failure record on the device, written by the first failing check; a
// page-locked mirror, refreshed by an asynchronous copy queued after every
// check, which the host reads after its next wait for the stream. The
// record names the lowest failing position of that check and its value.
namespace {
constexpr unsigned long long kNone = ~0ull;
struct IndexFailure {
  unsigned long long seq;  // the failing check's number, kNone if none
  unsigned long long pos;  // its lowest bad position (kNone until found)
  long long value;         // the index there
};
__global__ void k_check_deferred(const int64_t* idx, int64_t n, int64_t hi, unsigned long long seq,
                                 IndexFailure* f) {
  const unsigned long long owner = f->seq;
  if (owner != kNone && owner != seq) return;  // an earlier check failed: that one is reported
  BISSL_GRID_LOOP(i, n) {
    const int64_t v = idx[i];
    if (v < 0 || v >= hi) {
      const unsigned long long was = atomicCAS(&f->seq, kNone, seq);
      if (was == kNone || was == seq) atomicMin(&f->pos, (unsigned long long)i);
      return;  // positions after i in this thread's stride cannot be lower
    }
  }
}
// One thread, after the check: the value at the lowest bad position.
__global__ void k_check_value(const int64_t* idx, unsigned long long seq, IndexFailure* f) {
  if (f->seq == seq) f->value = idx[f->pos];
}
struct PendingCheck {
  unsigned long long seq;
  const char* what;  // a string literal (kern::check_indices' callers)
  int64_t hi;
};
struct DeferredChecks {
  std::mutex mu;
  IndexFailure* dev = nullptr;
  IndexFailure* host = nullptr;
  unsigned long long next_seq = 0;
  std::deque<PendingCheck> pending;  // checks queued and not yet reported
  bool eager = false;
};
DeferredChecks& deferred() {
  static auto* d = new DeferredChecks();
  return *d;
}
// So many checks without a wait that their records should be cleared.
constexpr size_t kMaxPending = size_t(1) << 16;
}  // namespace

void set_eager_index_checks(bool on) { deferred().eager = on; }
bool eager_index_checks() { return deferred().eager; }

void check_indices_deferred(const int64_t* idx, int64_t n, int64_t hi, const char* what) {
  if (!n) return;
  auto& d = deferred();
  bool drain = false;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (!d.dev) {  // first use: both records, published once both exist
      auto* host = static_cast<IndexFailure*>(host_alloc(sizeof(IndexFailure)));
      host->seq = kNone;
      void* p = nullptr;
      BISSL_CUDA_OK(cudaMalloc(&p, sizeof(IndexFailure)), "index check (device record)");
      BISSL_CUDA_OK(cudaMemsetAsync(p, 0xFF, sizeof(IndexFailure), stream()), "index check (init)");
      d.host = host;
      d.dev = static_cast<IndexFailure*>(p);
    }
    const unsigned long long seq = d.next_seq++;
    k_check_deferred<<<blocks_for(n), kThreads, 0, stream()>>>(idx, n, hi, seq, d.dev);
    BISSL_LAUNCH_OK(std::string("index check (") + what + ")");
    k_check_value<<<1, 1, 0, stream()>>>(idx, seq, d.dev);
    BISSL_LAUNCH_OK(std::string("index check (") + what + ", value)");
    BISSL_CUDA_OK(cudaMemcpyAsync(d.host, d.dev, sizeof(IndexFailure), cudaMemcpyDeviceToHost, stream()),
                  "index check (record copy)");
    d.pending.push_back({seq, what, hi});
    drain = d.pending.size() >= kMaxPending;
  }
  if (drain) synchronize();  // reports, and clears the records
}

uint64_t index_check_mark() {
  std::lock_guard<std::mutex> lock(deferred().mu);
  return deferred().next_seq;
}

void report_index_errors(uint64_t mark) {
  auto& d = deferred();
  std::string msg;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (d.pending.empty() || d.pending.front().seq >= mark) return;
    // The stream has been waited for past every check before `mark`: the
    // mirror holds their outcome.
    const IndexFailure f = *d.host;
    const bool failed = f.seq != kNone && f.seq < mark;
    const char* what = "an index check";
    int64_t hi = -1;
    while (!d.pending.empty() && d.pending.front().seq < mark) {
      if (failed && d.pending.front().seq == f.seq) what = d.pending.front().what, hi = d.pending.front().hi;
      d.pending.pop_front();
    }
    if (!failed) return;
    msg = std::string(what) + ": index " + std::to_string(f.value) + " out of range [0, " + std::to_string(hi) +
          ") at position " + std::to_string(f.pos) +
          " (checked on the device; reported at the host's next wait for it)";
    d.host->seq = kNone;
    BISSL_CUDA_OK(cudaMemsetAsync(d.dev, 0xFF, sizeof(IndexFailure), stream()), "index check (reset)");
  }
  throw std::runtime_error(msg);
}

template <class T>
void one_hot(const int64_t* idx, T* out, int64_t n, int64_t classes) {
  if (!n) return;
  k_one_hot<T><<<blocks_for(n * classes), kThreads, 0, stream()>>>(idx, out, n, classes);
  BISSL_LAUNCH_OK("one_hot");
}

template <class T>
void dropout_mask(T* out, int64_t n, double p, uint64_t seed, uint64_t offset) {
  if (!n) return;
  k_dropout<T><<<blocks_for(n), kThreads, 0, stream()>>>(out, n, p, T(1.0 / (1.0 - p)), seed, offset);
  BISSL_LAUNCH_OK("dropout_mask");
}

#define INST(T)                                                                                       \
  template void index_select<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);    \
  template void index_add<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);       \
  template void gather_mid<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);      \
  template void scatter_add_mid<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void gather_rows<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);     \
  template void scatter_rows_add<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void take_flat<T>(const T*, const int64_t*, T*, int64_t, int64_t);                         \
  template void scatter_add_flat<T>(const T*, const int64_t*, T*, int64_t, int64_t);                  \
  template void one_hot<T>(const int64_t*, T*, int64_t, int64_t);                                     \
  template void dropout_mask<T>(T*, int64_t, double, uint64_t, uint64_t);
INST(float)
INST(double)
template void index_select<int64_t>(const int64_t*, const int64_t*, int64_t*, int64_t, int64_t, int64_t, int64_t);

}  // namespace bissl::cuda
