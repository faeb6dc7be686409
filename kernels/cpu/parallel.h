#pragma once
// Deterministic parallel sums: work is cut into one fixed chunk per thread and
// the partial sums are added in thread order, so a result does not depend on
// thread timing (exact resume and reproducible runs need this; OpenMP's
// reduction clause combines partials in arrival order). With portable
// numerics (engine/numerics.h) the chunks are fixed by the size alone, so
// the result does not depend on the thread count either.
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

namespace bissl::cpu {

// Portable numerics (engine/numerics.h): fixed-chunk sums here, fixed GEMM
// tiles in gemm.cpp. Set by bissl::set_numerics.
inline std::atomic<bool> portable_numerics{false};

inline int threads_for(int64_t work) { return work < 65536 ? 1 : omp_get_max_threads(); }

// The chunk count of a sum over `work` elements: one per thread, or (fixed
// chunks) one per 16384 elements, at most 256, whatever the threads.
inline int64_t sum_chunks(int64_t work, int threads) {
  if (!portable_numerics.load(std::memory_order_relaxed)) return threads;
  return std::clamp<int64_t>(work / 16384, 1, 256);
}

// Scratch of at least `elems` T for this thread, 64-byte aligned, kept and
// grown (the old one released first), not zeroed. Tag keeps the users
// apart: each tag has its own buffer per thread.
template <class Tag, class T>
T* thread_scratch(size_t elems) {
  thread_local std::unique_ptr<T, void (*)(void*)> buf(nullptr, std::free);
  thread_local size_t cap = 0;
  if (elems > cap) {
    buf.reset();
    const size_t bytes = (elems * sizeof(T) + 63) / 64 * 64;
    buf.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
    if (!buf) throw std::bad_alloc();
    cap = elems;
  }
  return buf.get();
}

// Σ_{i<n} f(i) in double.
template <class F>
double det_sum(int64_t n, F f) {
  const int nt = threads_for(n);
  const int64_t nc = sum_chunks(n, nt);
  std::vector<double> part(static_cast<size_t>(nc), 0.0);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < nc; ++t) {
    int64_t lo = n * t / nc, hi = n * (t + 1) / nc;
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) s += f(i);
    part[size_t(t)] = s;
  }
  double s = 0;
  for (double p : part) s += p;
  return s;
}

// K column sums in one pass over the rows: (*acc[k])[j] = Σ_{r<rows} f(r, j)[k],
// in double, f returning std::array<double, K>. One fixed chunk of rows per
// thread (or fixed by size: portable numerics), partials added in chunk
// order. Sum k gets the same additions in the same order whatever K and
// the other terms, so fusing sums changes no bit; it reads the rows once
// and opens one parallel region for all K.
template <size_t K, class F>
void det_column_sums_fused(int64_t rows, int64_t c, const std::array<std::vector<double>*, K>& acc, F f) {
  const int nt = threads_for(rows * c);
  // Fixed chunks: at most 64 partial rows (and no more than rows), so the partials stay small.
  const int64_t nc = portable_numerics.load(std::memory_order_relaxed)
                         ? std::clamp<int64_t>(rows * c / 16384, 1, std::max<int64_t>(1, std::min<int64_t>(rows, 64)))
                         : nt;
  const size_t kc = K * static_cast<size_t>(c);
  std::vector<std::vector<double>> part(static_cast<size_t>(nc), std::vector<double>(kc, 0.0));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < nc; ++t) {
    int64_t lo = rows * t / nc, hi = rows * (t + 1) / nc;
    double* local = part[size_t(t)].data();
    for (int64_t r = lo; r < hi; ++r)
      for (int64_t j = 0; j < c; ++j) {
        const std::array<double, K> v = f(r, j);
        for (size_t k = 0; k < K; ++k) local[k * size_t(c) + size_t(j)] += v[k];
      }
  }
  for (size_t k = 0; k < K; ++k) {
    acc[k]->assign(static_cast<size_t>(c), 0.0);
    for (auto& p : part)
      for (int64_t j = 0; j < c; ++j) (*acc[k])[size_t(j)] += p[k * size_t(c) + size_t(j)];
  }
}

// acc[j] = Σ_{r<rows} f(r, j) for j < c, in double.
template <class F>
void det_column_sums(int64_t rows, int64_t c, std::vector<double>& acc, F f) {
  det_column_sums_fused<1>(rows, c, {&acc}, [&](int64_t r, int64_t j) { return std::array<double, 1>{f(r, j)}; });
}

}  // namespace bissl::cpu
