#include "engine/tensor.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/kern.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bissl {

namespace {

std::shared_ptr<Storage> cpu_alloc(size_t nbytes) {
  auto s = std::make_shared<Storage>();
  size_t n = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;
  s->data = std::aligned_alloc(64, n);
  BISSL_CHECK(s->data, "out of memory: could not allocate ", nbytes, " bytes on the cpu");
  s->nbytes = nbytes;
  s->device = Device::CPU;
  s->deleter = [](void* p) { std::free(p); };
  return s;
}

AllocFn& allocator(Device d) {
  static AllocFn fns[kNumDevices] = {cpu_alloc, device_allocator(Device::CUDA)};
  return fns[int(d)];
}

double read_elem(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F64: return static_cast<const double*>(p)[i];
    case DType::I64: return double(static_cast<const int64_t*>(p)[i]);
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  }
  return 0;
}
void write_elem(void* p, DType t, int64_t i, double v) {
  switch (t) {
    case DType::F32: static_cast<float*>(p)[i] = float(v); break;
    case DType::F64: static_cast<double*>(p)[i] = v; break;
    case DType::I64: static_cast<int64_t*>(p)[i] = int64_t(v); break;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(float(v)); break;
  }
}

// A CPU copy of t (t itself when already on the CPU).
Tensor host(const Tensor& t) { return t.device() == Device::CPU ? t : t.to(Device::CPU); }

void require_cpu(const Tensor& t, const char* what) {
  BISSL_CHECK(t.device() == Device::CPU, what, ": expected a cpu tensor, found one on ", device_name(t.device()));
}

}  // namespace

void set_allocator(Device d, AllocFn fn) { allocator(d) = std::move(fn); }

int64_t Tensor::size(int64_t axis) const {
  return shape()[normalize_axis(axis, dim(), "size")];
}

double Tensor::item() const {
  BISSL_CHECK(numel() == 1, "item: expected a tensor with one element, found shape ", shape_str(shape()));
  return flat(0);
}

double Tensor::at(std::initializer_list<int64_t> idx) const {
  BISSL_CHECK(int64_t(idx.size()) == dim(), "at: expected ", dim(), " indices, found ", idx.size());
  auto st = contiguous_strides(shape());
  int64_t off = 0, k = 0;
  for (auto i : idx) {
    BISSL_CHECK(i >= 0 && i < shape()[k], "at: index ", i, " out of range for dim ", k, " of size ", shape()[k]);
    off += i * st[k++];
  }
  return flat(off);
}

double Tensor::flat(int64_t i) const {
  BISSL_CHECK(i >= 0 && i < numel(), "flat: index ", i, " out of range for ", numel(), " elements");
  if (device() != Device::CPU) {  // one element back from the device
    Tensor one = bissl::empty({}, dtype());
    size_t es = dtype_size(dtype());
    copy_bytes(one.raw(), Device::CPU, static_cast<const char*>(raw()) + size_t(i) * es, device(), es);
    return read_elem(one.raw(), dtype(), 0);
  }
  return read_elem(raw(), dtype(), i);
}

void Tensor::set_flat(int64_t i, double v) {
  require_cpu(*this, "set_flat (build the tensor on the cpu, then .to(device))");
  BISSL_CHECK(i >= 0 && i < numel(), "set_flat: index ", i, " out of range for ", numel(), " elements");
  write_elem(raw(), dtype(), i, v);
}

std::vector<double> Tensor::to_vector() const {
  Tensor h = host(*this);
  std::vector<double> v(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) v[size_t(i)] = read_elem(h.raw(), dtype(), i);
  return v;
}

Tensor& Tensor::requires_grad_(bool on) {
  BISSL_CHECK(!on || is_floating(dtype()), "requires_grad: only f32/f64 tensors can require grad, found ",
              dtype_name(dtype()));
  BISSL_CHECK(is_leaf(), "requires_grad: only leaf tensors can be marked; this one has tape history");
  impl().requires_grad = on;
  return *this;
}

void Tensor::set_tangent(const Tensor& t) {
  if (!t.defined()) {
    impl().tangent.reset();
    return;
  }
  BISSL_CHECK(t.shape() == shape() && t.dtype() == dtype(), "set_tangent: expected ", shape_str(shape()), " ",
              dtype_name(dtype()), ", found ", shape_str(t.shape()), " ", dtype_name(t.dtype()));
  impl().tangent = t.detach().impl_ptr();
}

Tensor Tensor::detach() const {
  auto p = std::make_shared<TensorImpl>();
  p->storage = impl().storage;
  p->offset = impl().offset;
  p->shape = impl().shape;
  p->dtype = impl().dtype;
  return Tensor(p);
}

Tensor Tensor::clone() const {
  Tensor r = empty(shape(), dtype(), device());
  r.copy_(*this);
  return r;
}

void Tensor::copy_(const Tensor& src) {
  BISSL_CHECK(src.shape() == shape() && src.dtype() == dtype(), "copy_: expected ", shape_str(shape()), " ",
              dtype_name(dtype()), ", found ", shape_str(src.shape()), " ", dtype_name(src.dtype()));
  if (raw() == src.raw()) return;
  if (device() != Device::CPU && src.device() == Device::CPU && src.is_pinned())
    copy_to_device_async(raw(), device(), src.raw(), src.impl().storage, nbytes());
  else
    copy_bytes(raw(), device(), src.raw(), src.device(), nbytes());
}

Tensor& Tensor::fill_(double v) {
  if (device() != Device::CPU) {
    // One element's bits, written by a device kernel: no host wait (ones()
    // seeds every backward pass, batch norm's running variance starts at 1).
    uint64_t pattern = 0;  // little-endian: the element sits in the low bytes
    write_elem(&pattern, dtype(), 0, v);
    fill_elements(raw(), device(), dtype_size(dtype()), numel(), pattern);
    return *this;
  }
  for (int64_t i = 0; i < numel(); ++i) write_elem(raw(), dtype(), i, v);
  return *this;
}

Tensor Tensor::to(DType t) const { return t == dtype() ? *this : cast(*this, t); }

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  // Not recorded on the tape: models and batches move once, before training.
  Tensor r = bissl::empty(shape(), dtype(), d);
  r.copy_(*this);
  return r;
}

Tensor Tensor::reshape(const Shape& s) const { return bissl::reshape(*this, s); }
Tensor Tensor::sum() const { return bissl::sum(*this); }
Tensor Tensor::mean() const { return bissl::mean(*this); }

std::string Tensor::str(int max_elems) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(" << shape_str(shape()) << ", " << dtype_name(dtype()) << ", " << device_name(device());
  if (grad_fn()) os << ", grad_fn=" << grad_fn()->op->name;
  else if (requires_grad()) os << ", requires_grad";
  os << ")";
  Tensor h = host(*this);
  os << " [" << std::setprecision(6);
  int64_t n = std::min<int64_t>(numel(), max_elems);
  for (int64_t i = 0; i < n; ++i) os << (i ? ", " : "") << h.flat(i);
  if (numel() > n) os << ", ...";
  os << "]";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

Tensor empty(const Shape& s, DType t, Device d) {
  for (auto x : s) BISSL_CHECK(x >= 0, "empty: negative dimension in shape ", shape_str(s));
  auto& fn = allocator(d);
  BISSL_CHECK(fn, "empty: no ", device_name(d), " device: ", backend_summary());
  auto p = std::make_shared<TensorImpl>();
  p->storage = fn(size_t(numel(s)) * dtype_size(t));
  p->shape = s;
  p->dtype = t;
  return Tensor(p);
}

Tensor empty_pinned(const Shape& s, DType t) {
  for (auto x : s) BISSL_CHECK(x >= 0, "empty_pinned: negative dimension in shape ", shape_str(s));
  AllocFn fn = pinned_allocator();
  if (!fn) return empty(s, t);
  auto p = std::make_shared<TensorImpl>();
  p->storage = fn(size_t(numel(s)) * dtype_size(t));
  p->shape = s;
  p->dtype = t;
  return Tensor(p);
}

Tensor to_device_staged(const Tensor& t, Device d) {
  if (d == t.device() || d == Device::CPU || t.device() != Device::CPU) return t.to(d);
  Tensor p = empty_pinned(t.shape(), t.dtype());
  if (t.nbytes()) std::memcpy(p.raw(), t.raw(), t.nbytes());
  return p.to(d);
}

Tensor full(const Shape& s, double v, DType t, Device d) {
  Tensor r = empty(s, t, d);
  if (v == 0.0) {
    zero_bytes(r.raw(), d, r.nbytes());
    return r;
  }
  return r.fill_(v);
}
Tensor zeros(const Shape& s, DType t, Device d) { return full(s, 0.0, t, d); }
Tensor ones(const Shape& s, DType t, Device d) { return full(s, 1.0, t, d); }
Tensor scalar_tensor(double v, DType t) { return full({}, v, t); }
Tensor zeros_like(const Tensor& x) { return zeros(x.shape(), x.dtype(), x.device()); }
Tensor ones_like(const Tensor& x) { return ones(x.shape(), x.dtype(), x.device()); }

Tensor arange(double start, double end, double step, DType t) {
  BISSL_CHECK(step != 0, "arange: expected a non-zero step, found 0");
  int64_t n = std::max<int64_t>(0, int64_t(std::ceil((end - start) / step)));
  Tensor r = empty({n}, t);
  for (int64_t i = 0; i < n; ++i) write_elem(r.raw(), t, i, start + double(i) * step);
  return r;
}

Tensor from_vector(const std::vector<double>& v, const Shape& s, DType t) {
  BISSL_CHECK(int64_t(v.size()) == numel(s), "from_vector: shape ", shape_str(s), " needs ", numel(s),
              " values, found ", v.size());
  Tensor r = empty(s, t);
  for (size_t i = 0; i < v.size(); ++i) write_elem(r.raw(), t, int64_t(i), v[i]);
  return r;
}

Tensor from_ints(const std::vector<int64_t>& v, const Shape& s) {
  BISSL_CHECK(int64_t(v.size()) == numel(s), "from_ints: shape ", shape_str(s), " needs ", numel(s),
              " values, found ", v.size());
  Tensor r = empty(s, DType::I64);
  std::memcpy(r.raw(), v.data(), v.size() * 8);
  return r;
}

Tensor rand(const Shape& s, Generator& g, DType t, double lo, double hi) {
  Tensor r = empty(s, t);
  int64_t n = r.numel();
  uint64_t base = g.advance(uint64_t(n)), seed = g.seed();
  void* p = r.raw();
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) write_elem(p, t, i, lo + (hi - lo) * philox_uniform(philox_at(seed, base, i)));
  return r;
}

Tensor randn(const Shape& s, Generator& g, DType t, double mean, double std) {
  Tensor r = empty(s, t);
  int64_t n = r.numel();
  uint64_t base = g.advance(uint64_t(n)), seed = g.seed();
  void* p = r.raw();
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    auto w = philox_at(seed, base, i);
    double u1 = 1.0 - philox_uniform(w, 0);  // (0, 1]
    double u2 = philox_uniform(w, 1);
    double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    write_elem(p, t, i, mean + std * z);
  }
  return r;
}

Tensor randint(const Shape& s, int64_t lo, int64_t hi, Generator& g) {
  BISSL_CHECK(hi > lo, "randint: expected hi > lo, found [", lo, ", ", hi, ")");
  Tensor r = empty(s, DType::I64);
  int64_t n = r.numel();
  uint64_t base = g.advance(uint64_t(n)), seed = g.seed();
  auto* p = r.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    auto w = philox_at(seed, base, i);
    uint64_t bits = (uint64_t(w[0]) << 32) | w[1];
    p[i] = lo + int64_t(bits % uint64_t(hi - lo));
  }
  return r;
}

}  // namespace bissl
