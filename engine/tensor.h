#pragma once
// Tensor: a shared handle to contiguous row-major storage plus the autodiff
// state (tape node, accumulated gradient, forward-mode tangent).
// `reshape` is the only view; every other movement op copies.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/error.h"
#include "engine/shape.h"

namespace bissl {

class Generator;
struct Node;
class Tensor;

// Raw bytes on one device. Allocation is owned by the backend that made it.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device = Device::CPU;
  // CPU storage in page-locked memory (empty_pinned): copies from it to the
  // GPU are queued without waiting for the device.
  bool pinned = false;
  std::function<void(void*)> deleter;
  ~Storage() {
    if (data && deleter) deleter(data);
  }
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  size_t offset = 0;  // bytes
  Shape shape;
  DType dtype = DType::F32;
  // autodiff
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // producer on the tape (null for leaves)
  int output_nr = 0;              // which output of grad_fn this is
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<TensorImpl> tangent;  // forward-mode tangent (null = zero)
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t dim() const { return int64_t(impl().shape.size()); }
  int64_t size(int64_t axis) const;
  int64_t numel() const { return bissl::numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device; }
  bool is_pinned() const { return impl().storage->pinned; }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype()); }

  void* raw() const { return static_cast<char*>(impl().storage->data) + impl().offset; }
  template <class T>
  T* data() const {
    return static_cast<T*>(raw());
  }

  // Element access for tests and small tools (CPU only, slow).
  double item() const;
  double at(std::initializer_list<int64_t> idx) const;
  double flat(int64_t i) const;
  void set_flat(int64_t i, double v);
  std::vector<double> to_vector() const;

  // Autodiff state.
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const { return Tensor(impl().grad); }
  void set_grad(const Tensor& g) { impl().grad = g.impl_; }
  void zero_grad() { impl().grad.reset(); }
  Tensor tangent() const { return Tensor(impl().tangent); }
  void set_tangent(const Tensor& t);
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }

  // A new handle to the same storage with no tape history and no tangent.
  Tensor detach() const;
  Tensor clone() const;  // deep copy, no history
  Tensor to(DType t) const;  // differentiable dtype conversion
  Tensor to(Device d) const;
  // In-place data copy, not recorded. From a pinned CPU tensor to the GPU it
  // is asynchronous: the source's storage is held until the copy is done,
  // but the source must not be written before then (drop it or synchronize).
  void copy_(const Tensor& src);
  Tensor& fill_(double v);        // in-place, not recorded

  // Common ops as methods (defined in ops.h / ops.cpp).
  Tensor reshape(const Shape& s) const;
  Tensor sum() const;
  Tensor mean() const;

  std::string str(int max_elems = 64) const;

  TensorImpl& impl() const {
    BISSL_CHECK(impl_, "tensor: expected a defined tensor, found an empty handle");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// ---- creation ----
Tensor empty(const Shape& s, DType t = DType::F32, Device d = Device::CPU);
// A CPU tensor in page-locked memory when a GPU is present (a plain CPU
// tensor otherwise): staging for asynchronous host-to-device copies.
Tensor empty_pinned(const Shape& s, DType t = DType::F32);
// A CPU tensor on device d, copied through pinned staging so that the copy
// does not wait for the device (small per-step constants: masks, indices).
Tensor to_device_staged(const Tensor& t, Device d);
Tensor zeros(const Shape& s, DType t = DType::F32, Device d = Device::CPU);
Tensor ones(const Shape& s, DType t = DType::F32, Device d = Device::CPU);
Tensor full(const Shape& s, double v, DType t = DType::F32, Device d = Device::CPU);
Tensor scalar_tensor(double v, DType t = DType::F32);
Tensor arange(double start, double end, double step = 1.0, DType t = DType::F32);
Tensor from_vector(const std::vector<double>& v, const Shape& s, DType t = DType::F32);
Tensor from_ints(const std::vector<int64_t>& v, const Shape& s);
Tensor zeros_like(const Tensor& x);
Tensor ones_like(const Tensor& x);
// Uniform [lo, hi) and normal(mean, std) from the given Philox generator.
Tensor rand(const Shape& s, Generator& g, DType t = DType::F32, double lo = 0.0, double hi = 1.0);
Tensor randn(const Shape& s, Generator& g, DType t = DType::F32, double mean = 0.0, double std = 1.0);
// Integers uniform in [lo, hi).
Tensor randint(const Shape& s, int64_t lo, int64_t hi, Generator& g);

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Allocator hook per device (the CUDA backend installs its own).
using AllocFn = std::function<std::shared_ptr<Storage>(size_t nbytes)>;
void set_allocator(Device d, AllocFn fn);

}  // namespace bissl
