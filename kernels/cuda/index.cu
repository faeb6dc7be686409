// Indexing (index_select/add, gather/scatter_add, take/put_add), one-hot,
// index range checks, Philox dropout masks.
#include "kernels/cuda/common.cuh"
#include "kernels/philox.h"

namespace bissl::cuda {

namespace {

template <class T>
__global__ void k_index_select(const T* x, const int64_t* idx, T* out, int64_t total, int64_t n, int64_t k,
                               int64_t inner) {
  BISSL_GRID_LOOP(q, total) {
    int64_t i = q % inner, j = (q / inner) % k, o = q / (inner * k);
    out[q] = x[(o * n + idx[j]) * inner + i];
  }
}
template <class T>
__global__ void k_index_add(const T* g, const int64_t* idx, T* out, int64_t total, int64_t n, int64_t k,
                            int64_t inner) {
  BISSL_GRID_LOOP(q, total) {
    int64_t i = q % inner, j = (q / inner) % k, o = q / (inner * k);
    atomicAdd(out + (o * n + idx[j]) * inner + i, g[q]);
  }
}
template <class T>
__global__ void k_gather(const T* x, const int64_t* idx, T* out, int64_t total, int64_t n, int64_t k,
                         int64_t inner) {
  BISSL_GRID_LOOP(q, total) {
    int64_t i = q % inner, o = q / (inner * k);
    out[q] = x[(o * n + idx[q]) * inner + i];
  }
}
template <class T>
__global__ void k_scatter_add(const T* g, const int64_t* idx, T* out, int64_t total, int64_t n, int64_t k,
                              int64_t inner) {
  BISSL_GRID_LOOP(q, total) {
    int64_t i = q % inner, o = q / (inner * k);
    atomicAdd(out + (o * n + idx[q]) * inner + i, g[q]);
  }
}
template <class T>
__global__ void k_take(const T* x, const int64_t* idx, T* out, int64_t n) {
  BISSL_GRID_LOOP(i, n) out[i] = x[idx[i]];
}
template <class T>
__global__ void k_put_add(const T* g, const int64_t* idx, T* out, int64_t n) {
  BISSL_GRID_LOOP(i, n) atomicAdd(out + idx[i], g[i]);
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
void take_flat(const T* x, const int64_t* idx, T* out, int64_t n) {
  if (!n) return;
  k_take<T><<<blocks_for(n), kThreads, 0, stream()>>>(x, idx, out, n);
  BISSL_LAUNCH_OK("take");
}
template <class T>
void scatter_add_flat(const T* g, const int64_t* idx, T* out, int64_t n) {
  if (!n) return;
  k_put_add<T><<<blocks_for(n), kThreads, 0, stream()>>>(g, idx, out, n);
  BISSL_LAUNCH_OK("put_add");
}

bool indices_in_range(const int64_t* idx, int64_t n, int64_t hi, int64_t* bad) {
  if (!n) return true;
  auto* d = static_cast<unsigned long long*>(alloc(sizeof(unsigned long long)));
  unsigned long long none = ~0ull;
  copy_h2d(d, &none, sizeof none);
  k_check<<<blocks_for(n), kThreads, 0, stream()>>>(idx, n, hi, d);
  BISSL_LAUNCH_OK("index check");
  unsigned long long first = 0;
  copy_d2h(&first, d, sizeof first);
  release(d);
  if (first == ~0ull) return true;
  copy_d2h(bad, idx + first, sizeof(int64_t));
  return false;
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
  template void take_flat<T>(const T*, const int64_t*, T*, int64_t);                                  \
  template void scatter_add_flat<T>(const T*, const int64_t*, T*, int64_t);                           \
  template void one_hot<T>(const int64_t*, T*, int64_t, int64_t);                                     \
  template void dropout_mask<T>(T*, int64_t, double, uint64_t, uint64_t);
INST(float)
INST(double)
template void index_select<int64_t>(const int64_t*, const int64_t*, int64_t*, int64_t, int64_t, int64_t, int64_t);

}  // namespace bissl::cuda
