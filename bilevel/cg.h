#pragma once
// Conjugate gradient over lists of parameter tensors (BISSL_SPEC.md,
// "Conjugate gradient"): solves A x = b where x and b are lists of tensors
// (one per parameter) and A is given only through its product with a list.
//
// Two step-size rules, both from x₀ = 0 with no preconditioner:
//   layer-wise (the reference's default): every tensor l has its own α_l and
//     β_l computed from its own slices of r, d and A·d, while A·d is the full
//     coupled product of the whole list. This is *not* textbook CG on the
//     joint system (it is CG only when A is block diagonal), but it is what
//     the reference runs.
//   global: one α and one β from inner products over all tensors, i.e.
//     textbook CG on the concatenated vector.
// ε = 1e-12 in both denominators (kCgEps), as the reference; with r_l = 0
// it gives α_l = β_l = 0 instead of 0/0. The ε is absolute, so it also sets
// an accuracy floor: once d·Ad is no longer large against ε the steps shrink
// and CG stalls (on the tests' O(1) systems around ‖r‖ ~ 1e-8). Irrelevant
// for the spec's 5 iterations; `epsilon = 0` gives textbook CG for tests
// that need full f64 convergence (and divides 0/0 if a residual is exactly 0).
//
// All arithmetic is engine ops under NoGradGuard + NoForwardADGuard, so the
// tensors may live on any device (the only host reads are one residual norm
// per iteration and the NaN count at the end). The matrix–vector product is
// called with the caller's autodiff modes (bissl::hvp switches on what it
// needs itself).
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/schema.h"
#include "engine/tensor.h"

namespace bissl::bilevel {

using TensorList = std::vector<Tensor>;
// v ↦ A v. Must return one tensor per input tensor, of the same shape and
// dtype; A is assumed symmetric (positive definite for the CG guarantees).
using MatVec = std::function<TensorList(const TensorList&)>;

constexpr double kCgEps = 1e-12;

struct CgOptions {
  int iterations = 5;      // maximum number of iterations (the spec runs exactly 5)
  bool layerwise = true;   // per-tensor α_l, β_l (reference default) or one global α, β
  double tolerance = 0.0;  // stop once ‖r‖ ≤ tolerance·‖b‖; 0 = never stop early (the spec)
  double epsilon = kCgEps; // added to both denominators (the reference's guard)
  // After NaN → 0, also ±inf → ±(the dtype's largest finite value), as the
  // reference's torch.nan_to_num (audit item F); off: ±inf are kept and the
  // caller's finiteness check stops the run.
  bool nan_to_num = false;

  template <class V>
  void fields(V& v) {
    v("iterations", iterations, schema::ge(1), "CG iterations per solve (the spec: 5)");
    v("layerwise", layerwise, schema::any(), "per-tensor step sizes as the reference (true) or textbook global CG");
    v("tolerance", tolerance, schema::ge(0), "stop once the residual is <= tolerance x the right-hand side; 0 = never early");
    v("epsilon", epsilon, schema::ge(0), "added to CG's denominators (the reference's 1e-12 guard)");
    v("nan_to_num", nan_to_num, schema::any(),
      "the reference's nan_to_num on u: ±inf become ±max finite (then the upper clip zeroes that step) instead of an "
      "error naming the alternation and step");
  }
};

struct CgResult {
  TensorList x;                   // the solution, NaNs replaced by 0
  std::vector<double> residuals;  // recurrence ‖r_k‖ over all tensors: [0] = ‖b‖, [k] after iteration k
  int iterations = 0;             // iterations run (= residuals.size() - 1)
  int64_t nan_replaced = 0;       // elements of x that were NaN and were set to 0
  int64_t inf_replaced = 0;       // elements that were ±inf and were set to ±max finite (nan_to_num)
  // (d·Ad)/(d·d) over all tensors for each search direction d: the Rayleigh
  // quotient of A along d. A negative value proves A is not positive
  // definite (CG's guarantees are then void and residuals may grow).
  std::vector<double> curvature;
};

// Solves A x = b. b: one or more f32/f64 tensors, all of one dtype and on
// one device, read only (detached); x has b's shapes, dtype and device. The
// residuals are the recurrence's r, not recomputed: in the global variant
// that is b − A x (exact arithmetic); in the layer-wise variant it is not
// (x moves by α_l d_l per tensor but r by α_l (Ad)_l, and A(α∘d) ≠ α∘(Ad)
// when A couples tensors), so a small layer-wise ‖r‖ does not mean a small
// true residual. Costs `iterations` products with A.
CgResult conjugate_gradient(const MatVec& A, const TensorList& b, const CgOptions& opts = {});

// Σ_l ⟨a_l, b_l⟩ over two lists of the same shapes, read back to the host
// once (not once per tensor).
double list_dot(const TensorList& a, const TensorList& b);

}  // namespace bissl::bilevel
