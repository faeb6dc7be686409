#pragma once
// Generic derivative checks over an OpCase, in f64:
//   vjp_identity   ⟨J u, w⟩ = ⟨u, Jᵀ w⟩ (JVP against VJP)
//   vjp_fd         reverse gradient vs central differences of the objective
//   jvp_fd         forward tangents vs central differences of the outputs
//   hvp_symmetry   ⟨u, H v⟩ = ⟨v, H u⟩ (forward-over-reverse)
//   hvp_fd         H v vs (∇L(x+εv) − ∇L(x−εv)) / 2ε
//   hvp_rev        forward-over-reverse H v = reverse-over-reverse H v
// The objective is L(x) = Σ_k ⟨w_k, y_k(x)⟩ with fixed random w_k.
// On several ranks (dist::current_group() larger than one), each rank holds
// its own inputs, directions and weights (seed them by rank), and every inner
// product, norm and objective value is summed over the ranks: the checks are
// then those of the whole job's function (tests/dist/). Every rank must call
// check_case with the same case shapes, in the same order.
#include <string>
#include <vector>

#include "engine/check/op_table.h"

namespace bissl::check {

struct CheckResult {
  std::string check;
  double error = 0;  // relative error (see kRelFloor)
  double bound = 0;
  bool passed() const { return error <= bound; }
};

constexpr double kGradTol = 1e-6;  // relative error bound in f64
// Relative errors divide by max(|a|, |b|, kRelFloor) so that two values that
// are both ~0 compare absolutely.
constexpr double kRelFloor = 1e-3;

double rel_error(double a, double b);
double rel_error(const std::vector<double>& a, const std::vector<double>& b);

std::vector<CheckResult> check_case(const OpCase& c, uint64_t seed, double tol = kGradTol);

}  // namespace bissl::check
