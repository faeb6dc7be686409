#pragma once
// Deterministic parallel sums: work is cut into one fixed chunk per thread and
// the partial sums are added in thread order, so a result does not depend on
// thread timing (exact resume and reproducible runs need this; OpenMP's
// reduction clause combines partials in arrival order).
#include <omp.h>

#include <cstdint>
#include <vector>

namespace bissl::cpu {

inline int threads_for(int64_t work) { return work < 65536 ? 1 : omp_get_max_threads(); }

// Σ_{i<n} f(i) in double.
template <class F>
double det_sum(int64_t n, F f) {
  int nt = threads_for(n);
  std::vector<double> part(static_cast<size_t>(nt), 0.0);
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num();
    int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
    double s = 0;
    for (int64_t i = lo; i < hi; ++i) s += f(i);
    part[size_t(t)] = s;
  }
  double s = 0;
  for (double p : part) s += p;
  return s;
}

// acc[j] = Σ_{r<rows} f(r, j) for j < c, in double.
template <class F>
void det_column_sums(int64_t rows, int64_t c, std::vector<double>& acc, F f) {
  int nt = threads_for(rows * c);
  std::vector<std::vector<double>> part(static_cast<size_t>(nt), std::vector<double>(static_cast<size_t>(c), 0.0));
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num();
    int64_t lo = rows * t / nt, hi = rows * (t + 1) / nt;
    auto& local = part[size_t(t)];
    for (int64_t r = lo; r < hi; ++r)
      for (int64_t j = 0; j < c; ++j) local[size_t(j)] += f(r, j);
  }
  acc.assign(static_cast<size_t>(c), 0.0);
  for (auto& p : part)
    for (int64_t j = 0; j < c; ++j) acc[size_t(j)] += p[size_t(j)];
}

}  // namespace bissl::cpu
