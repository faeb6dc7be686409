#include <cmath>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/parallel.h"
#include "kernels/optim_math.h"

namespace bissl::cpu {

template <class T>
void sgd_update(T* p, const T* g, T* mom, int64_t n, double lr, double momentum, double wd, bool nesterov,
                bool first_step) {
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) kern_math::sgd_element(p, g, mom, i, lr, momentum, wd, nesterov, first_step);
}

template <class T>
void lars_update(T* p, const T* g, T* mom, int64_t n, double lr, double momentum, double wd, double eta) {
  const double sp = det_sum(n, [&](int64_t i) { return double(p[i]) * double(p[i]); });
  const double su = det_sum(n, [&](int64_t i) {
    const double u = double(g[i]) + wd * double(p[i]);
    return u * u;
  });
  const double trust = kern_math::lars_trust(sp, su, eta);
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) kern_math::lars_element(p, g, mom, i, lr, momentum, wd, trust);
}

template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, double lr, double b1, double b2, double eps, double wd,
                  int64_t step) {
  const double bc1 = 1.0 - std::pow(b1, double(step)), bc2 = 1.0 - std::pow(b2, double(step));
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) kern_math::adamw_element(p, g, m, v, i, lr, b1, b2, eps, wd, bc1, bc2);
}

#define INST(T)                                                                                           \
  template void sgd_update<T>(T*, const T*, T*, int64_t, double, double, double, bool, bool);             \
  template void lars_update<T>(T*, const T*, T*, int64_t, double, double, double, double);                \
  template void adamw_update<T>(T*, const T*, T*, T*, int64_t, double, double, double, double, double, int64_t);
INST(float)
INST(double)

}  // namespace bissl::cpu
