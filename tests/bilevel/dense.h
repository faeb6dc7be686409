#pragma once
// Dense f64 linear algebra for the bilevel tests: the independent reference
// that CG and the implicit gradient are checked against.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/error.h"
#include "engine/ops.h"
#include "engine/tensor.h"

namespace bissl::testdense {

using Vec = std::vector<double>;
using Mat = std::vector<Vec>;  // row-major, square

inline Vec flat(const std::vector<Tensor>& ts) {
  Vec r;
  for (auto& t : ts) {
    auto v = t.to_vector();
    r.insert(r.end(), v.begin(), v.end());
  }
  return r;
}

// Splits a flat vector into f64 tensors of the given shapes.
inline std::vector<Tensor> unflat(const Vec& v, const std::vector<Shape>& shapes) {
  std::vector<Tensor> r;
  size_t o = 0;
  for (auto& s : shapes) {
    size_t n = size_t(numel(s));
    BISSL_CHECK(o + n <= v.size(), "unflat: vector too short");
    r.push_back(from_vector(Vec(v.begin() + o, v.begin() + o + n), s, DType::F64));
    o += n;
  }
  BISSL_CHECK(o == v.size(), "unflat: vector too long");
  return r;
}

inline Vec matvec(const Mat& A, const Vec& x) {
  Vec y(A.size(), 0.0);
  for (size_t i = 0; i < A.size(); ++i)
    for (size_t j = 0; j < x.size(); ++j) y[i] += A[i][j] * x[j];
  return y;
}

// Gaussian elimination with partial pivoting.
inline Vec gauss_solve(Mat A, Vec b) {
  const size_t n = A.size();
  for (size_t k = 0; k < n; ++k) {
    size_t p = k;
    for (size_t i = k + 1; i < n; ++i)
      if (std::abs(A[i][k]) > std::abs(A[p][k])) p = i;
    std::swap(A[k], A[p]);
    std::swap(b[k], b[p]);
    BISSL_CHECK(A[k][k] != 0, "gauss_solve: singular matrix");
    for (size_t i = k + 1; i < n; ++i) {
      double f = A[i][k] / A[k][k];
      for (size_t j = k; j < n; ++j) A[i][j] -= f * A[k][j];
      b[i] -= f * b[k];
    }
  }
  Vec x(n);
  for (size_t k = n; k-- > 0;) {
    double s = b[k];
    for (size_t j = k + 1; j < n; ++j) s -= A[k][j] * x[j];
    x[k] = s / A[k][k];
  }
  return x;
}

// Cholesky A = L Lᵀ; returns false (and leaves L partial) if A is not
// positive definite. min_pivot: the smallest L_kk² seen.
inline bool cholesky(const Mat& A, Mat& L, double& min_pivot) {
  const size_t n = A.size();
  L.assign(n, Vec(n, 0.0));
  min_pivot = INFINITY;
  for (size_t j = 0; j < n; ++j) {
    double s = A[j][j];
    for (size_t k = 0; k < j; ++k) s -= L[j][k] * L[j][k];
    min_pivot = std::min(min_pivot, s);
    if (!(s > 0)) return false;
    L[j][j] = std::sqrt(s);
    for (size_t i = j + 1; i < n; ++i) {
      double t = A[i][j];
      for (size_t k = 0; k < j; ++k) t -= L[i][k] * L[j][k];
      L[i][j] = t / L[j][j];
    }
  }
  return true;
}

inline Vec cholesky_solve(const Mat& L, Vec b) {
  const size_t n = L.size();
  for (size_t i = 0; i < n; ++i) {  // L y = b
    for (size_t k = 0; k < i; ++k) b[i] -= L[i][k] * b[k];
    b[i] /= L[i][i];
  }
  for (size_t i = n; i-- > 0;) {  // Lᵀ x = y
    for (size_t k = i + 1; k < n; ++k) b[i] -= L[k][i] * b[k];
    b[i] /= L[i][i];
  }
  return b;
}

inline double max_abs_diff(const Vec& a, const Vec& b) {
  BISSL_CHECK(a.size() == b.size(), "max_abs_diff: sizes ", a.size(), " and ", b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

inline double norm(const Vec& a) {
  double s = 0;
  for (double x : a) s += x * x;
  return std::sqrt(s);
}

// ‖a − b‖ / ‖b‖.
inline double rel_error(const Vec& a, const Vec& b) {
  Vec d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return norm(d) / norm(b);
}

// A random SPD matrix MᵀM/n + shift·I from Philox normals.
inline Mat random_spd(size_t n, Generator& g, double shift) {
  auto m = randn({int64_t(n), int64_t(n)}, g, DType::F64).to_vector();
  Mat A(n, Vec(n, 0.0));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      for (size_t k = 0; k < n; ++k) A[i][j] += m[k * n + i] * m[k * n + j];
      A[i][j] /= double(n);
    }
  for (size_t i = 0; i < n; ++i) A[i][i] += shift;
  return A;
}

inline Tensor mat_tensor(const Mat& A) {
  Vec v;
  for (auto& row : A) v.insert(v.end(), row.begin(), row.end());
  return from_vector(v, {int64_t(A.size()), int64_t(A[0].size())}, DType::F64);
}

// v ↦ A·concat(v) split back into v's shapes, written with engine ops.
inline std::vector<Tensor> block_product(const Tensor& A, const std::vector<Tensor>& v) {
  std::vector<Tensor> parts;
  for (auto& t : v) parts.push_back(reshape(t, {t.numel()}));
  Tensor all = reshape(matmul(A, reshape(concat(parts, 0), {A.size(1), 1})), {A.size(0)});
  std::vector<Tensor> out;
  int64_t o = 0;
  for (auto& t : v) {
    out.push_back(reshape(slice(all, 0, o, o + t.numel()), t.shape()));
    o += t.numel();
  }
  return out;
}

}  // namespace bissl::testdense
