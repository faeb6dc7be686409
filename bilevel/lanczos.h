#pragma once
// Lanczos with full reorthogonalisation over lists of parameter tensors: the
// extreme eigenvalues of a symmetric operator known only through products
// (the pretext Hessian H, via bissl::Linearization). Used to study when
// BiSSL's system I + H/(λ+δ) is indefinite (tools/bissl_cg_study.cpp).
#include <vector>

#include "bilevel/cg.h"

namespace bissl::bilevel {

struct LanczosResult {
  std::vector<double> alpha, beta;  // the tridiagonal T_k: diagonal (k), off-diagonal (k−1)
  std::vector<double> ritz;         // eigenvalues of T_k, ascending: estimates of A's extremes
  int steps = 0;                    // k (fewer than asked when the Krylov space is exhausted)
};

// k steps from `start` (normalised inside; any non-zero list of tensors of
// A's shapes). Full reorthogonalisation against all previous vectors (k
// vectors of A's size are kept). Stops early when β falls below 1e-12·‖T‖.
LanczosResult lanczos(const MatVec& A, const TensorList& start, int steps);

// Eigenvalues of a small dense symmetric matrix (row-major n×n), ascending,
// by cyclic Jacobi rotations (accurate to ~1e-14 relative for n ≲ 200).
std::vector<double> symmetric_eigenvalues(std::vector<double> a, int n);

}  // namespace bissl::bilevel
