#pragma once
// Device dispatch for kernels: `kern::X<T>(...)` runs cpu::X or cuda::X for
// the device of the op being run. call_op sets that device around each
// forward (DeviceScope); optimisers set it per parameter.
#include <utility>

#include "engine/dtype.h"
#include "engine/error.h"
#include "kernels/cpu/kernels.h"
#ifdef BISSL_WITH_CUDA
#include "kernels/cuda/kernels.h"
#endif

namespace bissl::kern {

Device current();
class DeviceScope {
 public:
  explicit DeviceScope(Device d);
  ~DeviceScope();

 private:
  Device prev_;
};

[[noreturn]] inline void no_cuda(const char* fn) {
  throw Error(str(fn, ": this build has no CUDA backend (configure with the CUDA toolkit present)"));
}

#ifdef BISSL_WITH_CUDA
#define BISSL_KERN_T(fn)                                                     \
  template <class T, class... A>                                            \
  auto fn(A&&... a) {                                                       \
    if (current() == Device::CPU) return cpu::fn<T>(std::forward<A>(a)...); \
    return cuda::fn<T>(std::forward<A>(a)...);                              \
  }
#define BISSL_KERN(fn)                                                    \
  template <class... A>                                                  \
  auto fn(A&&... a) {                                                    \
    if (current() == Device::CPU) return cpu::fn(std::forward<A>(a)...); \
    return cuda::fn(std::forward<A>(a)...);                              \
  }
#else
#define BISSL_KERN_T(fn)                                                     \
  template <class T, class... A>                                            \
  auto fn(A&&... a) {                                                       \
    if (current() != Device::CPU) no_cuda(#fn);                             \
    return cpu::fn<T>(std::forward<A>(a)...);                               \
  }
#define BISSL_KERN(fn)                                                    \
  template <class... A>                                                  \
  auto fn(A&&... a) {                                                    \
    if (current() != Device::CPU) no_cuda(#fn);                          \
    return cpu::fn(std::forward<A>(a)...);                               \
  }
#endif

BISSL_KERN_T(unary)
BISSL_KERN_T(binary)
BISSL_KERN_T(where)
BISSL_KERN(strided_copy)
BISSL_KERN_T(convert)
BISSL_KERN(convert_to_bf16)
BISSL_KERN(convert_to_i64)
BISSL_KERN_T(sum_mid)
BISSL_KERN_T(max_mid)
BISSL_KERN_T(logsumexp_mid)
BISSL_KERN_T(softmax_mid)
BISSL_KERN_T(cross_entropy)
BISSL_KERN_T(index_select)
BISSL_KERN_T(index_add)
BISSL_KERN_T(gather_mid)
BISSL_KERN_T(scatter_add_mid)
BISSL_KERN_T(gather_rows)
BISSL_KERN_T(scatter_rows_add)
BISSL_KERN_T(take_flat)
BISSL_KERN_T(scatter_add_flat)
BISSL_KERN_T(one_hot)
BISSL_KERN_T(dropout_mask)
BISSL_KERN_T(gemm)
BISSL_KERN_T(conv2d_forward)
BISSL_KERN_T(conv2d_input_grad)
BISSL_KERN_T(conv2d_weight_grad)
BISSL_KERN_T(max_pool2d)
BISSL_KERN_T(max_pool2d_backward)
BISSL_KERN_T(avg_pool2d)
BISSL_KERN_T(avg_pool2d_backward)
BISSL_KERN_T(batch_norm_stats)
BISSL_KERN_T(batch_norm_finish)
BISSL_KERN_T(batch_norm_apply)
BISSL_KERN_T(batch_norm_backward)
BISSL_KERN_T(batch_norm_jvp)
BISSL_KERN_T(batch_norm_backward_jvp)
BISSL_KERN_T(layer_norm_forward)
BISSL_KERN_T(layer_norm_backward)
BISSL_KERN_T(layer_norm_jvp)
BISSL_KERN_T(layer_norm_backward_jvp)
BISSL_KERN_T(sgd_update)
BISSL_KERN_T(lars_update)
BISSL_KERN_T(adamw_update)
BISSL_KERN_T(sum_squares)
BISSL_KERN_T(sum_squares_into)
BISSL_KERN_T(scale_inplace)

#undef BISSL_KERN_T
#undef BISSL_KERN

// Index bounds check on either device: throws `what: index v out of range
// [0, hi)`. On the CPU at once; on CUDA at the host's next wait for the device
// (cuda_set_eager_index_checks(true): at once, waiting). `what` must be a
// string literal.
void check_indices(const int64_t* idx, int64_t n, int64_t hi, const char* what);

}  // namespace bissl::kern
