#include "bilevel/lanczos.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace bissl::bilevel {

namespace {

TensorList axpy(const TensorList& y, double a, const TensorList& x) {  // y + a·x
  TensorList r(y.size());
  for (size_t i = 0; i < y.size(); ++i) r[i] = add(y[i], mul(x[i], a));
  return r;
}

TensorList scale(const TensorList& x, double a) {
  TensorList r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = mul(x[i], a);
  return r;
}

}  // namespace

std::vector<double> symmetric_eigenvalues(std::vector<double> a, int n) {
  BISSL_CHECK(n >= 0 && a.size() == size_t(n) * size_t(n), "symmetric_eigenvalues: expected ", n, "x", n,
              " entries, found ", a.size());
  auto at = [&](int i, int j) -> double& { return a[size_t(i) * size_t(n) + size_t(j)]; };
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, total = 0;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) (i == j ? total : off) += at(i, j) * at(i, j);
    if (off <= 1e-30 * (total + off) || off == 0) break;
    for (int p = 0; p < n - 1; ++p)
      for (int q = p + 1; q < n; ++q) {
        const double apq = at(p, q);
        if (apq == 0) continue;
        // The rotation that zeroes a_pq (Golub & Van Loan, symmetric Schur).
        const double tau = (at(q, q) - at(p, p)) / (2 * apq);
        const double t = (tau >= 0 ? 1.0 : -1.0) / (std::abs(tau) + std::sqrt(1 + tau * tau));
        const double c = 1 / std::sqrt(1 + t * t), s = t * c;
        for (int k = 0; k < n; ++k) {  // columns p, q
          const double akp = at(k, p), akq = at(k, q);
          at(k, p) = c * akp - s * akq;
          at(k, q) = s * akp + c * akq;
        }
        for (int k = 0; k < n; ++k) {  // rows p, q
          const double apk = at(p, k), aqk = at(q, k);
          at(p, k) = c * apk - s * aqk;
          at(q, k) = s * apk + c * aqk;
        }
      }
  }
  std::vector<double> ev(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ev[size_t(i)] = at(i, i);
  std::sort(ev.begin(), ev.end());
  return ev;
}

LanczosResult lanczos(const MatVec& A, const TensorList& start, int steps) {
  BISSL_CHECK(steps >= 1, "lanczos: expected at least one step, found ", steps);
  BISSL_CHECK(!start.empty(), "lanczos: expected a start vector, found an empty list");
  NoGradGuard ng;
  NoForwardADGuard nf;
  TensorList q;
  for (auto& t : start) q.push_back(t.detach());
  const double n0 = std::sqrt(list_dot(q, q));
  BISSL_CHECK(n0 > 0 && std::isfinite(n0), "lanczos: the start vector has norm ", n0);
  q = scale(q, 1 / n0);
  std::vector<TensorList> Q{q};
  LanczosResult r;
  for (int k = 0; k < steps; ++k) {
    TensorList w;
    {
      // The product runs with the caller's autodiff modes (hvp sets its own).
      EnableGradGuard eg(true);
      NoForwardADGuard on(false);
      w = A(Q.back());
    }
    for (auto& t : w) t = t.detach();
    const double a = list_dot(w, Q.back());
    r.alpha.push_back(a);
    // Full reorthogonalisation (twice is enough: "twice is enough", Parlett).
    for (int pass = 0; pass < 2; ++pass)
      for (auto& qi : Q) w = axpy(w, -list_dot(w, qi), qi);
    ++r.steps;
    if (k + 1 == steps) break;
    const double b = std::sqrt(list_dot(w, w));
    double tnorm = 0;
    for (double x : r.alpha) tnorm = std::max(tnorm, std::abs(x));
    for (double x : r.beta) tnorm = std::max(tnorm, std::abs(x));
    if (!(b > 1e-12 * std::max(tnorm, 1e-300))) break;  // invariant subspace found (or NaN)
    r.beta.push_back(b);
    Q.push_back(scale(w, 1 / b));
  }
  const int m = r.steps;
  std::vector<double> T(size_t(m) * size_t(m), 0.0);
  for (int i = 0; i < m; ++i) T[size_t(i) * size_t(m) + size_t(i)] = r.alpha[size_t(i)];
  for (int i = 0; i + 1 < m; ++i)
    T[size_t(i) * size_t(m) + size_t(i + 1)] = T[size_t(i + 1) * size_t(m) + size_t(i)] = r.beta[size_t(i)];
  r.ritz = symmetric_eigenvalues(T, m);
  return r;
}

}  // namespace bissl::bilevel
