#include "engine/backend.h"

#include <omp.h>

#include "engine/error.h"
#ifdef BISSL_WITH_CUDA
#include "kernels/cuda/device.h"
#endif

namespace bissl {

bool cuda_built() {
#ifdef BISSL_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef BISSL_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

std::string backend_summary() {
  std::string s = str("cpu (", omp_get_max_threads(), " threads)");
#ifdef BISSL_WITH_CUDA
  s += str("; cuda runtime ", cuda::runtime_version(), ": ", cuda::device_summary(0));
#else
  s += "; cuda: not built";
#endif
  return s;
}

}  // namespace bissl
