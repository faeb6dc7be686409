#pragma once
// The per-element optimiser updates, one definition for the CPU loops
// (kernels/cpu/optim.cpp) and the CUDA kernels (kernels/cuda/optim.cu).
// Arithmetic in double whatever the storage type T.
#include <math.h>

#include <cstdint>

#include "kernels/philox.h"  // BISSL_HD

namespace bissl::kern_math {

// SGD (PyTorch's, no dampening): d = g + wd·p; with momentum the buffer is
// d on the first step, else m·buf + d; Nesterov uses d + m·buf. mom is read
// and written only when momentum != 0.
template <class T>
BISSL_HD inline void sgd_element(T* p, const T* g, T* mom, int64_t i, double lr, double momentum, double wd,
                                 bool nesterov, bool first_step) {
  double d = double(g[i]) + wd * double(p[i]);
  if (momentum != 0.0) {
    const double b = first_step ? d : momentum * double(mom[i]) + d;
    mom[i] = T(b);
    d = nesterov ? d + momentum * b : b;
  }
  p[i] = T(double(p[i]) - lr * d);
}

// LARS's trust ratio (BISSL_SPEC.md): η‖p‖/‖g + wd·p‖ from the two squared
// norms, 1 when either norm is 0.
BISSL_HD inline double lars_trust(double sum_p2, double sum_u2, double eta) {
  const double pn = sqrt(sum_p2), un = sqrt(sum_u2);
  return (pn > 0.0 && un > 0.0) ? eta * pn / un : 1.0;
}

// LARS: u = (g + wd·p)·trust; buf = m·buf + u; p −= lr·buf.
template <class T>
BISSL_HD inline void lars_element(T* p, const T* g, T* mom, int64_t i, double lr, double momentum, double wd,
                                  double trust) {
  const double u = (double(g[i]) + wd * double(p[i])) * trust;
  const double b = momentum * double(mom[i]) + u;
  mom[i] = T(b);
  p[i] = T(double(p[i]) - lr * b);
}

// AdamW (decoupled decay first, then the bias-corrected Adam step);
// bc1 = 1 − β1^t, bc2 = 1 − β2^t.
template <class T>
BISSL_HD inline void adamw_element(T* p, const T* g, T* m, T* v, int64_t i, double lr, double b1, double b2,
                                   double eps, double wd, double bc1, double bc2) {
  const double pi = double(p[i]) * (1.0 - lr * wd);
  const double gi = double(g[i]);
  const double mi = b1 * double(m[i]) + (1.0 - b1) * gi;
  const double vi = b2 * double(v[i]) + (1.0 - b2) * gi * gi;
  m[i] = T(mi), v[i] = T(vi);
  p[i] = T(pi - lr * (mi / bc1) / (sqrt(vi / bc2) + eps));
}

}  // namespace bissl::kern_math
