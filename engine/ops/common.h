#pragma once
// Helpers shared by the op registrations (engine/ops/*.cpp).
#include <algorithm>
#include <numeric>

#include "engine/autograd.h"
#include "engine/op_registry.h"
#include "engine/ops.h"
#include "engine/kern.h"

namespace bissl::ops {

// Outputs of a forward live on the device the op runs on.
inline Tensor out_empty(const Shape& s, DType t) { return empty(s, t, kern::current()); }
inline Tensor out_zeros(const Shape& s, DType t) { return zeros(s, t, kern::current()); }
inline Tensor out_full(const Shape& s, double v, DType t) { return full(s, v, t, kern::current()); }

inline void same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  BISSL_CHECK(a.dtype() == b.dtype(), op, ": operands have dtypes ", dtype_name(a.dtype()), " and ",
              dtype_name(b.dtype()), "; convert one with .to()");
}

// x's shape viewed as [outer, shape[axis], inner].
struct Mid {
  int64_t outer = 1, n = 1, inner = 1;
};
inline Mid mid_of(const Shape& s, int64_t axis) {
  Mid m;
  for (int64_t i = 0; i < int64_t(s.size()); ++i) {
    if (i < axis) m.outer *= s[size_t(i)];
    else if (i == axis) m.n = s[size_t(i)];
    else m.inner *= s[size_t(i)];
  }
  return m;
}

// Sorted, unique, non-negative axes; empty means all.
inline std::vector<int64_t> norm_axes(std::vector<int64_t> axes, int64_t ndim, const char* op) {
  if (axes.empty()) {
    axes.resize(size_t(ndim));
    std::iota(axes.begin(), axes.end(), 0);
  }
  for (auto& a : axes) a = normalize_axis(a, ndim, op);
  std::sort(axes.begin(), axes.end());
  axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
  return axes;
}
inline Shape keepdim_shape(const Shape& s, const std::vector<int64_t>& axes) {
  Shape r = s;
  for (auto a : axes) r[size_t(a)] = 1;
  return r;
}
inline Shape reduced_shape(const Shape& s, const std::vector<int64_t>& axes, bool keepdim) {
  if (keepdim) return keepdim_shape(s, axes);
  Shape r;
  for (int64_t i = 0; i < int64_t(s.size()); ++i)
    if (!std::binary_search(axes.begin(), axes.end(), i)) r.push_back(s[size_t(i)]);
  return r;
}
inline int64_t reduced_count(const Shape& s, const std::vector<int64_t>& axes) {
  int64_t n = 1;
  for (auto a : axes) n *= s[size_t(a)];
  return n;
}

// Brings the reduced axes of x together as one middle block: returns a
// contiguous tensor and its [outer, n, inner] view. Permutes (copies) only
// when the reduced axes are not already adjacent.
Tensor gather_axes(const Tensor& x, const std::vector<int64_t>& axes, Mid& mid);

// Expands t (a tangent or gradient) to `shape` if it is smaller.
inline Tensor bcast(const Tensor& t, const Shape& shape) { return t.shape() == shape ? t : expand(t, shape); }
inline Tensor tan_or_zero(const Tensor& t, const Shape& s, DType d, Device dev) {
  return t.defined() ? t : zeros(s, d, dev);
}
// a + b where either may be undefined (= zero).
inline Tensor add_opt(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return add(a, b);
}

inline OpDef make_op(const std::string& name, int nin, int nout, const std::string& doc) {
  OpDef d;
  d.name = name;
  d.num_inputs = nin;
  d.num_outputs = nout;
  d.doc = doc;
  return d;
}

// The dtype-dispatch for kernels of floating ops.
#define BISSL_FLOAT_KERNEL(DT, OP, ...) BISSL_DISPATCH_FLOAT(DT, OP, [&] { __VA_ARGS__; })

// Batch norm's and layer norm's JVPs by their unfused composites (engine/ops/norm.cpp): what the
// fused closed-form rules must equal (tests). Inputs and tangents as the ops'.
std::vector<Tensor> batch_norm_train_jvp_composite(const std::vector<Tensor>& in, const std::vector<Tensor>& t,
                                                   double eps);
std::vector<Tensor> batch_norm_backward_jvp_composite(const std::vector<Tensor>& in, const std::vector<Tensor>& t);
// The same for layer norm: (x, gamma, beta) and (gy, x, mean, rstd, gamma, beta).
std::vector<Tensor> layer_norm_jvp_composite(const std::vector<Tensor>& in, const std::vector<Tensor>& t, double eps);
std::vector<Tensor> layer_norm_backward_jvp_composite(const std::vector<Tensor>& in, const std::vector<Tensor>& t);

}  // namespace bissl::ops
