#include <cmath>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/parallel.h"

namespace bissl::cpu {

template <class T>
void sgd_update(T* p, const T* g, T* mom, int64_t n, double lr, double momentum, double wd, bool nesterov,
                bool first_step) {
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    double d = double(g[i]) + wd * double(p[i]);
    if (momentum != 0.0) {
      // PyTorch: the buffer starts as the first gradient (no dampening).
      double b = first_step ? d : momentum * double(mom[i]) + d;
      mom[i] = T(b);
      d = nesterov ? d + momentum * b : b;
    }
    p[i] = T(double(p[i]) - lr * d);
  }
}

template <class T>
void lars_update(T* p, const T* g, T* mom, int64_t n, double lr, double momentum, double wd, double eta) {
  double pn = std::sqrt(det_sum(n, [&](int64_t i) { return double(p[i]) * double(p[i]); }));
  double un = std::sqrt(det_sum(n, [&](int64_t i) {
    double u = double(g[i]) + wd * double(p[i]);
    return u * u;
  }));
  double trust = (pn > 0.0 && un > 0.0) ? eta * pn / un : 1.0;
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    double u = (double(g[i]) + wd * double(p[i])) * trust;
    double m = momentum * double(mom[i]) + u;
    mom[i] = T(m);
    p[i] = T(double(p[i]) - lr * m);
  }
}

template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, double lr, double b1, double b2, double eps, double wd,
                  int64_t step) {
  double bc1 = 1.0 - std::pow(b1, double(step)), bc2 = 1.0 - std::pow(b2, double(step));
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    double pi = double(p[i]) * (1.0 - lr * wd);
    double mi = b1 * double(m[i]) + (1.0 - b1) * double(g[i]);
    double vi = b2 * double(v[i]) + (1.0 - b2) * double(g[i]) * double(g[i]);
    m[i] = T(mi), v[i] = T(vi);
    p[i] = T(pi - lr * (mi / bc1) / (std::sqrt(vi / bc2) + eps));
  }
}

#define INST(T)                                                                                           \
  template void sgd_update<T>(T*, const T*, T*, int64_t, double, double, double, bool, bool);             \
  template void lars_update<T>(T*, const T*, T*, int64_t, double, double, double, double);                \
  template void adamw_update<T>(T*, const T*, T*, T*, int64_t, double, double, double, double, double, int64_t);
INST(float)
INST(double)

}  // namespace bissl::cpu
