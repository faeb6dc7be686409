#include "engine/backend.h"

#include <omp.h>

#include <cstring>

#include "engine/error.h"
#include "engine/threads.h"
#include "kernels/cpu/conv_onednn.h"
#include "kernels/cpu/norm_onednn.h"
#ifdef BISSL_WITH_CUDA
#include "kernels/cuda/device.h"
#include "kernels/cuda/kernels.h"
#endif

namespace bissl {

namespace {
// CUDA-layer failures (std::runtime_error, e.g. a deferred index error
// reported at a wait) reach callers as bissl::Error, one line as they are.
template <class F>
void as_error(F f) {
  try {
    f();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(e.what());
  }
}
}  // namespace

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
  const std::string why = thread_budget_summary();
  std::string s = str("cpu (", omp_get_max_threads(), " threads", why.empty() ? "" : ", from " + why, ", ",
                      wait_policy_summary(),
                      "; f32 convolutions: ", cpu_conv_path(), ", f32 batch norm: ", cpu_bn_path(),
                      cpu::onednn_available() ? "" : ", oneDNN not in this build", ")");
#ifdef BISSL_WITH_CUDA
  s += str("; cuda runtime ", cuda::runtime_version(), ": ", cuda::device_summary(0));
#else
  s += "; cuda: not built";
#endif
  return s;
}

AllocFn device_allocator(Device d) {
  if (d == Device::CPU) return nullptr;  // tensor.cpp owns the CPU allocator
#ifdef BISSL_WITH_CUDA
  if (cuda::device_count() == 0) return nullptr;
  return [](size_t nbytes) {
    auto s = std::make_shared<Storage>();
    try {
      s->data = cuda::alloc(nbytes);
    } catch (const std::exception& e) {
      throw Error(str("out of GPU memory: ", e.what()));
    }
    s->nbytes = nbytes;
    s->device = Device::CUDA;
    s->deleter = [](void* p) { cuda::release(p); };
    return s;
  };
#else
  return nullptr;
#endif
}

AllocFn pinned_allocator() {
#ifdef BISSL_WITH_CUDA
  static const bool gpu = cuda::device_count() > 0;
  if (!gpu) return nullptr;
  return [](size_t nbytes) {
    auto s = std::make_shared<Storage>();
    as_error([&] { s->data = cuda::host_alloc(nbytes); });
    s->nbytes = nbytes;
    s->device = Device::CPU;
    s->pinned = true;
    s->deleter = [](void* p) { cuda::host_release(p); };
    return s;
  };
#else
  return nullptr;
#endif
}

void copy_to_device_async(void* dst, Device dd, const void* src, std::shared_ptr<Storage> src_owner,
                          size_t bytes) {
  BISSL_CHECK(src_owner && src_owner->pinned && src_owner->device == Device::CPU,
              "copy_to_device_async: expected a pinned cpu source");
  BISSL_CHECK(dd != Device::CPU, "copy_to_device_async: expected a device destination, found the cpu");
#ifdef BISSL_WITH_CUDA
  as_error([&] { cuda::copy_h2d_async(dst, src, bytes, std::move(src_owner)); });
#else
  (void)dst, (void)src, (void)bytes;
  throw Error("copy: a cuda tensor in a build without the CUDA backend");
#endif
}

void copy_bytes(void* dst, Device dd, const void* src, Device sd, size_t bytes) {
  if (!bytes) return;
  if (dd == Device::CPU && sd == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef BISSL_WITH_CUDA
  as_error([&] {
    if (dd == Device::CUDA && sd == Device::CPU) cuda::copy_h2d(dst, src, bytes);
    else if (dd == Device::CPU && sd == Device::CUDA) cuda::copy_d2h(dst, src, bytes);
    else cuda::copy_d2d(dst, src, bytes);
  });
#else
  throw Error("copy: a cuda tensor in a build without the CUDA backend");
#endif
}

void fill_elements(void* dst, Device d, size_t elem_size, int64_t n, uint64_t pattern) {
  if (d == Device::CPU) {
    for (int64_t i = 0; i < n; ++i) std::memcpy(static_cast<char*>(dst) + size_t(i) * elem_size, &pattern, elem_size);
    return;
  }
#ifdef BISSL_WITH_CUDA
  as_error([&] { cuda::fill_pattern(dst, elem_size, n, pattern); });
#else
  (void)dst, (void)elem_size, (void)n, (void)pattern;
  throw Error("fill: a cuda tensor in a build without the CUDA backend");
#endif
}

void zero_bytes(void* dst, Device d, size_t bytes) {
  if (d == Device::CPU) {
    std::memset(dst, 0, bytes);
    return;
  }
#ifdef BISSL_WITH_CUDA
  as_error([&] { cuda::memset_zero(dst, bytes); });
#else
  throw Error("zero: a cuda tensor in a build without the CUDA backend");
#endif
}

size_t cuda_peak_bytes() {
#ifdef BISSL_WITH_CUDA
  return cuda_device_count() ? cuda::peak_bytes() : 0;
#else
  return 0;
#endif
}
void cuda_reset_peak_bytes() {
#ifdef BISSL_WITH_CUDA
  if (cuda_device_count()) cuda::reset_peak_bytes();
#endif
}
void cuda_synchronize() {
#ifdef BISSL_WITH_CUDA
  if (cuda_device_count()) as_error([] { cuda::synchronize(); });
#endif
}

int64_t cuda_host_syncs() {
#ifdef BISSL_WITH_CUDA
  return cuda_device_count() ? cuda::host_syncs() : 0;
#else
  return 0;
#endif
}

size_t cuda_pinned_bytes() {
#ifdef BISSL_WITH_CUDA
  return cuda_device_count() ? cuda::host_pinned_bytes() : 0;
#else
  return 0;
#endif
}

void cuda_set_eager_index_checks(bool on) {
#ifdef BISSL_WITH_CUDA
  cuda::set_eager_index_checks(on);
#endif
  (void)on;
}

void cuda_set_poison(bool on) {
#ifdef BISSL_WITH_CUDA
  if (cuda_device_count()) cuda::set_poison(on);
#endif
  (void)on;
}
void cuda_set_cudnn(bool on) {
#ifdef BISSL_WITH_CUDA
  cuda::set_cudnn(on);
#endif
  (void)on;
}
void cuda_set_deterministic(bool on) {
#ifdef BISSL_WITH_CUDA
  cuda::set_cudnn_deterministic(on);
  // A timed choice (cuDNN vs im2col) could differ from run to run: off while
  // deterministic, back on after. Either switch forgets the earlier choices
  // only when its setting changes (every stage sets it again).
  cuda::set_conv_autotune(!on);
#endif
  (void)on;
}
void cuda_set_conv_autotune(bool on) {
#ifdef BISSL_WITH_CUDA
  cuda::set_conv_autotune(on);
#endif
  (void)on;
}
void cpu_set_conv_path(const std::string& path) {
  if (path == "auto") return cpu::set_conv_path(cpu::ConvPath::Auto);
  if (path == "onednn") return cpu::set_conv_path(cpu::ConvPath::OneDNN);
  if (path == "im2col") return cpu::set_conv_path(cpu::ConvPath::Im2col);
  throw Error(str("CPU convolutions: expected auto, onednn or im2col, found '", path, "'"));
}
std::string cpu_conv_path() { return cpu::conv_path_name(cpu::conv_path()); }
std::string cpu_bn_path() { return cpu::bn_path_name(cpu::bn_path()); }
std::string cpu_conv_choices() { return cpu::onednn_conv_choices(); }

std::string cuda_conv_choices() {
#ifdef BISSL_WITH_CUDA
  return cuda::conv_choices();
#else
  return "no CUDA backend";
#endif
}
void cuda_set_tf32(bool on) {
#ifdef BISSL_WITH_CUDA
  if (cuda_device_count()) cuda::set_tf32(on);
#endif
  (void)on;
}

}  // namespace bissl
