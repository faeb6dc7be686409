#pragma once
// NVTX ranges, so an Nsight Systems timeline reads like the model: one range
// per op forward ("conv2d"), per backward node ("conv2d:vjp") and wherever
// code opens a ScopedRange (modules, training phases). No-ops without CUDA.
#ifdef BISSL_WITH_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace bissl {

class ScopedRange {
 public:
  explicit ScopedRange(const char* name) {
#ifdef BISSL_WITH_CUDA
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  ~ScopedRange() {
#ifdef BISSL_WITH_CUDA
    nvtxRangePop();
#endif
  }
  ScopedRange(const ScopedRange&) = delete;
  ScopedRange& operator=(const ScopedRange&) = delete;
};

}  // namespace bissl
