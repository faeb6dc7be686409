#pragma once
// Iteration over a shape with per-operand element strides: dims that can be
// merged are merged, the innermost dim runs as a tight loop, rows are split
// across threads.
#include <array>
#include <cstdint>
#include <vector>

namespace bissl::cpu {

template <int K>
struct StridedPlan {
  std::vector<int64_t> shape;
  std::array<std::vector<int64_t>, K> st;
};

template <int K>
StridedPlan<K> make_plan(const std::vector<int64_t>& shape, const std::array<const std::vector<int64_t>*, K>& st) {
  StridedPlan<K> p;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !p.shape.empty();
    for (int k = 0; k < K && merge; ++k) merge = p.st[k].back() == (*st[k])[d] * shape[d];
    if (merge) {
      p.shape.back() *= shape[d];
      for (int k = 0; k < K; ++k) p.st[k].back() = (*st[k])[d];
    } else {
      p.shape.push_back(shape[d]);
      for (int k = 0; k < K; ++k) p.st[k].push_back((*st[k])[d]);
    }
  }
  if (p.shape.empty()) {
    p.shape.push_back(1);
    for (int k = 0; k < K; ++k) p.st[k].push_back(0);
  }
  return p;
}

// f(offsets, inner_n, inner_strides) once per innermost row.
template <int K, class F>
void strided_for(const std::vector<int64_t>& shape, const std::array<const std::vector<int64_t>*, K>& st, F&& f) {
  auto p = make_plan<K>(shape, st);
  int nd = int(p.shape.size());
  int64_t inner = p.shape[nd - 1];
  int64_t rows = 1;
  for (int d = 0; d < nd - 1; ++d) rows *= p.shape[d];
  std::array<int64_t, K> ist;
  for (int k = 0; k < K; ++k) ist[k] = p.st[k][nd - 1];
#pragma omp parallel for schedule(static) if (rows * inner > 32768 && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    std::array<int64_t, K> off{};
    int64_t rem = r;
    for (int d = nd - 2; d >= 0; --d) {
      int64_t i = rem % p.shape[d];
      rem /= p.shape[d];
      for (int k = 0; k < K; ++k) off[k] += i * p.st[k][d];
    }
    f(off, inner, ist);
  }
}

}  // namespace bissl::cpu
