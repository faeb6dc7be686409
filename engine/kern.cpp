#include "engine/kern.h"

namespace bissl::kern {

namespace {
thread_local Device t_device = Device::CPU;
}

Device current() { return t_device; }
DeviceScope::DeviceScope(Device d) : prev_(t_device) { t_device = d; }
DeviceScope::~DeviceScope() { t_device = prev_; }

void check_indices(const int64_t* idx, int64_t n, int64_t hi, const char* what) {
  int64_t bad = 0;
  bool ok;
  if (current() == Device::CPU) {
    ok = cpu::indices_in_range(idx, n, hi, &bad);
  } else {
#ifdef BISSL_WITH_CUDA
    // Deferred by default: no wait for the device inside a training step.
    if (!cuda::eager_index_checks()) return cuda::check_indices_deferred(idx, n, hi, what);
    ok = cuda::indices_in_range(idx, n, hi, &bad);
#else
    no_cuda(what);
#endif
  }
  BISSL_CHECK(ok, what, ": index ", bad, " out of range [0, ", hi, ")");
}

}  // namespace bissl::kern
