#pragma once
// Running moments for batch-norm statistics, shared by host and device code
// (kernels/cuda/norm.cu; tested on the host in tests/engine/test_kernel_math.cpp).
#include "kernels/philox.h"  // BISSL_HD

namespace bissl::kern_math {

// Count, mean and M2 = Σ (x − mean)² of the values seen so far.
struct Moments {
  double n = 0, mean = 0, m2 = 0;
};

// Welford's update with one more value.
BISSL_HD inline void welford_add(Moments& a, double v) {
  a.n += 1;
  const double d = v - a.mean;
  a.mean += d / a.n;
  a.m2 += d * (v - a.mean);
}

// Chan, Golub and LeVeque's merge of a group (nb values, mean mb, M2 m2b)
// into a. A group of 0 values leaves a unchanged.
BISSL_HD inline void chan_merge(Moments& a, double nb, double mb, double m2b) {
  if (nb <= 0) return;
  const double nab = a.n + nb, d = mb - a.mean;
  a.mean += d * (nb / nab);
  a.m2 += m2b + d * d * (a.n * nb / nab);
  a.n = nab;
}

}  // namespace bissl::kern_math
