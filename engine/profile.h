#pragma once
// NVTX ranges, so an Nsight Systems timeline reads like the model: one range
// per op forward ("conv2d"), per backward node ("conv2d:vjp") and wherever
// code opens a ScopedRange (modules, training phases). No-ops without CUDA.
#ifdef BISSL_WITH_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

#include <cstdint>
#include <string>

namespace bissl {

// Per-op wall time on the host, enabled by BISSL_PROFILE=1 in the
// environment (CPU work; on CUDA it measures launch time unless
// CUDA_LAUNCH_BLOCKING=1). The table is printed to stderr at exit.
bool op_profiling();
void op_profile_add(const std::string& name, double seconds, int64_t calls = 1);
std::string op_profile_table();

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
