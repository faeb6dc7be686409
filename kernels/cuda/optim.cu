// Fused optimiser updates. LARS computes its trust ratio on the device (two
// squared norms into a device buffer, read by the update kernel): no host
// synchronisation. (One norm pass + one update pass per tensor; a
// multi-tensor version would save launches.)
#include "kernels/cuda/common.cuh"
#include "kernels/optim_math.h"

namespace bissl::cuda {

namespace {

template <class T>
__global__ void k_sgd(T* p, const T* g, T* mom, int64_t n, double lr, double m, double wd, bool nesterov, bool first) {
  BISSL_GRID_LOOP(i, n) kern_math::sgd_element(p, g, mom, i, lr, m, wd, nesterov, first);
}

// sums = {Σp², Σ(g + wd·p)²} from lars_sums: the trust ratio is computed on
// the device, so the update needs no host synchronisation.
template <class T>
__global__ void k_lars(T* p, const T* g, T* mom, int64_t n, double lr, double m, double wd, double eta,
                       const double* sums) {
  const double trust = kern_math::lars_trust(sums[0], sums[1], eta);
  BISSL_GRID_LOOP(i, n) kern_math::lars_element(p, g, mom, i, lr, m, wd, trust);
}

template <class T>
__global__ void k_adamw(T* p, const T* g, T* m, T* v, int64_t n, double lr, double b1, double b2, double eps,
                        double wd, double bc1, double bc2) {
  BISSL_GRID_LOOP(i, n) kern_math::adamw_element(p, g, m, v, i, lr, b1, b2, eps, wd, bc1, bc2);
}

}  // namespace

template <class T>
void sgd_update(T* p, const T* g, T* mom, int64_t n, double lr, double momentum, double wd, bool nesterov,
                bool first_step) {
  if (!n) return;
  k_sgd<T><<<blocks_for(n), kThreads, 0, stream()>>>(p, g, mom, n, lr, momentum, wd, nesterov, first_step);
  BISSL_LAUNCH_OK("sgd_update");
}

template <class T>
void lars_update(T* p, const T* g, T* mom, int64_t n, double lr, double momentum, double wd, double eta) {
  if (!n) return;
  double* sums = static_cast<double*>(alloc(2 * sizeof(double)));
  lars_sums<T>(p, g, n, wd, sums);
  k_lars<T><<<blocks_for(n), kThreads, 0, stream()>>>(p, g, mom, n, lr, momentum, wd, eta, sums);
  BISSL_LAUNCH_OK("lars_update");
  release(sums);  // stream-ordered: freed after the kernel has read it
}

template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, double lr, double b1, double b2, double eps, double wd,
                  int64_t step) {
  if (!n) return;
  double bc1 = 1.0 - pow(b1, double(step)), bc2 = 1.0 - pow(b2, double(step));
  k_adamw<T><<<blocks_for(n), kThreads, 0, stream()>>>(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
  BISSL_LAUNCH_OK("adamw_update");
}

#define INST(T)                                                                                           \
  template void sgd_update<T>(T*, const T*, T*, int64_t, double, double, double, bool, bool);             \
  template void lars_update<T>(T*, const T*, T*, int64_t, double, double, double, double);                \
  template void adamw_update<T>(T*, const T*, T*, T*, int64_t, double, double, double, double, double, int64_t);
INST(float)
INST(double)

}  // namespace bissl::cuda
