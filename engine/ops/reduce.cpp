// Reductions: sum, mean, var, max (values + indices), logsumexp, and the
// broadcast pair expand / sum_to.
#include "engine/ops/common.h"

namespace bissl {
namespace ops {

Tensor gather_axes(const Tensor& x, const std::vector<int64_t>& axes, Mid& mid) {
  const Shape& s = x.shape();
  bool adjacent = axes.empty() || axes.back() - axes.front() + 1 == int64_t(axes.size());
  if (adjacent) {
    mid = {};
    for (int64_t i = 0; i < int64_t(s.size()); ++i) {
      bool red = std::binary_search(axes.begin(), axes.end(), i);
      if (red) mid.n *= s[size_t(i)];
      else if (axes.empty() || i < axes.front()) mid.outer *= s[size_t(i)];
      else mid.inner *= s[size_t(i)];
    }
    return x;
  }
  std::vector<int64_t> perm;
  for (int64_t i = 0; i < int64_t(s.size()); ++i)
    if (!std::binary_search(axes.begin(), axes.end(), i)) perm.push_back(i);
  for (auto a : axes) perm.push_back(a);
  Tensor p = permute(x, perm);
  mid = {numel(s) / reduced_count(s, axes), reduced_count(s, axes), 1};
  return p;
}

namespace {

Tensor sum_impl(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim, double scale) {
  Mid m;
  Tensor xs = gather_axes(x, axes, m);
  Tensor y = out_empty(reduced_shape(x.shape(), axes, keepdim), x.dtype());
  BISSL_FLOAT_KERNEL(x.dtype(), "sum",
                     kern::sum_mid<scalar_t>(xs.data<scalar_t>(), y.data<scalar_t>(), m.outer, m.n, m.inner, scale));
  return y;
}

std::vector<int64_t> axes_attr(const Attrs& a, const Shape& s, const char* op) {
  return norm_axes(a.ints("axes"), int64_t(s.size()), op);
}

// Gradient of a reduction broadcast back over the reduced axes.
Tensor unreduce(const Tensor& g, const Shape& in, const std::vector<int64_t>& axes) {
  return expand(reshape(g, keepdim_shape(in, axes)), in);
}

}  // namespace

void register_reduce(OpRegistry& r) {
  {
    OpDef op = make_op("sum", 1, 1, "sum over axes (empty = all)");
    op.attrs = {"axes: ints", "keepdim: bool"};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      return std::vector<Tensor>{sum_impl(in[0], axes_attr(a, in[0].shape(), "sum"), a.b("keepdim"), 1.0)};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      return std::vector<Tensor>{unreduce(g[0], c.input_shape(0), axes_attr(c.attrs, c.input_shape(0), "sum"))};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return std::vector<Tensor>{sum(t[0], c.attrs.ints("axes"), c.attrs.b("keepdim"))};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("mean", 1, 1, "mean over axes (empty = all)");
    op.attrs = {"axes: ints", "keepdim: bool"};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      auto axes = axes_attr(a, in[0].shape(), "mean");
      int64_t n = reduced_count(in[0].shape(), axes);
      return std::vector<Tensor>{sum_impl(in[0], axes, a.b("keepdim"), n ? 1.0 / double(n) : 0.0)};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      auto axes = axes_attr(c.attrs, c.input_shape(0), "mean");
      double n = double(reduced_count(c.input_shape(0), axes));
      return std::vector<Tensor>{mul(unreduce(g[0], c.input_shape(0), axes), 1.0 / n)};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return std::vector<Tensor>{mean(t[0], c.attrs.ints("axes"), c.attrs.b("keepdim"))};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("var", 1, 1, "variance over axes, divisor n - correction");
    op.attrs = {"axes: ints", "correction: int", "keepdim: bool"};
    op.save_inputs = {0};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor& x = in[0];
      auto axes = axes_attr(a, x.shape(), "var");
      int64_t n = reduced_count(x.shape(), axes);
      int64_t dof = n - a.i("correction");
      BISSL_CHECK(dof > 0, "var: ", n, " elements with correction ", a.i("correction"), " leave no degrees of freedom");
      Tensor d = sub(x, mean(x, axes, true));
      return std::vector<Tensor>{sum_impl(mul(d, d), axes, a.b("keepdim"), 1.0 / double(dof))};
    };
    auto centered = [](const OpCtx& c, std::vector<int64_t>& axes, double& dof) {
      const Tensor& x = c.input(0);
      axes = axes_attr(c.attrs, x.shape(), "var");
      dof = double(reduced_count(x.shape(), axes) - c.attrs.i("correction"));
      return sub(x, mean(x, axes, true));
    };
    op.vjp = [centered](const OpCtx& c, const std::vector<Tensor>& g) {
      std::vector<int64_t> axes;
      double dof;
      Tensor d = centered(c, axes, dof);
      return std::vector<Tensor>{mul(mul(reshape(g[0], keepdim_shape(c.input_shape(0), axes)), d), 2.0 / dof)};
    };
    op.jvp = [centered](const OpCtx& c, const std::vector<Tensor>& t) {
      std::vector<int64_t> axes;
      double dof;
      Tensor d = centered(c, axes, dof);
      return std::vector<Tensor>{mul(sum(mul(d, t[0]), axes, c.attrs.b("keepdim")), 2.0 / dof)};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("max", 1, 2, "max along one axis: (values, i64 indices)");
    op.attrs = {"axis: int", "keepdim: bool"};
    op.nondiff_outputs = {1};
    op.save_outputs = {1};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor& x = in[0];
      int64_t axis = normalize_axis(a.i("axis"), x.dim(), "max");
      BISSL_CHECK(x.shape()[size_t(axis)] > 0, "max: axis ", axis, " is empty");
      Mid m = mid_of(x.shape(), axis);
      Shape os = reduced_shape(x.shape(), {axis}, a.b("keepdim"));
      Tensor v = out_empty(os, x.dtype()), idx = out_empty(os, DType::I64);
      BISSL_FLOAT_KERNEL(x.dtype(), "max",
                         kern::max_mid<scalar_t>(x.data<scalar_t>(), v.data<scalar_t>(), idx.data<int64_t>(),
                                                m.outer, m.n, m.inner));
      return std::vector<Tensor>{v, idx};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      const Shape& in = c.input_shape(0);
      int64_t axis = normalize_axis(c.attrs.i("axis"), int64_t(in.size()), "max");
      Shape ks = keepdim_shape(in, {axis});
      Tensor gi = call_op("scatter_add", {reshape(g[0], ks), reshape(c.output(1), ks)},
                          {{"axis", axis}, {"shape", in}})[0];
      return std::vector<Tensor>{gi};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      const Shape& in = c.input_shape(0);
      int64_t axis = normalize_axis(c.attrs.i("axis"), int64_t(in.size()), "max");
      Tensor idx = reshape(c.output(1), keepdim_shape(in, {axis}));
      return std::vector<Tensor>{reshape(gather(t[0], axis, idx), c.output(0).shape()), Tensor()};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("logsumexp", 1, 1, "log Σ exp over axes, stabilised");
    op.attrs = {"axes: ints", "keepdim: bool"};
    op.save_inputs = {0};
    op.save_outputs = {0};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor& x = in[0];
      auto axes = axes_attr(a, x.shape(), "logsumexp");
      Mid m;
      Tensor xs = gather_axes(x, axes, m);
      Tensor y = out_empty(reduced_shape(x.shape(), axes, a.b("keepdim")), x.dtype());
      BISSL_FLOAT_KERNEL(x.dtype(), "logsumexp",
                         kern::logsumexp_mid<scalar_t>(xs.data<scalar_t>(), y.data<scalar_t>(), m.outer, m.n, m.inner));
      return std::vector<Tensor>{y};
    };
    auto weights = [](const OpCtx& c, std::vector<int64_t>& axes) {  // softmax over the reduced axes
      axes = axes_attr(c.attrs, c.input_shape(0), "logsumexp");
      return exp(sub(c.input(0), reshape(c.output(0), keepdim_shape(c.input_shape(0), axes))));
    };
    op.vjp = [weights](const OpCtx& c, const std::vector<Tensor>& g) {
      std::vector<int64_t> axes;
      Tensor w = weights(c, axes);
      return std::vector<Tensor>{mul(w, reshape(g[0], keepdim_shape(c.input_shape(0), axes)))};
    };
    op.jvp = [weights](const OpCtx& c, const std::vector<Tensor>& t) {
      std::vector<int64_t> axes;
      Tensor w = weights(c, axes);
      return std::vector<Tensor>{sum(mul(w, t[0]), axes, c.attrs.b("keepdim"))};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("expand", 1, 1, "broadcast-materialise to a shape");
    op.attrs = {"shape: ints"};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor& x = in[0];
      const Shape& out = a.ints("shape");
      Shape chk = broadcast_shapes(x.shape(), out, "expand");
      BISSL_CHECK(chk == out, "expand: cannot expand ", shape_str(x.shape()), " to ", shape_str(out));
      Tensor y = out_empty(out, x.dtype());
      kern::strided_copy(y.raw(), contiguous_strides(out), x.raw(), broadcast_strides(x.shape(), out), out,
                        int64_t(dtype_size(x.dtype())));
      return std::vector<Tensor>{y};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      return std::vector<Tensor>{sum_to(g[0], c.input_shape(0))};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return std::vector<Tensor>{expand(t[0], c.attrs.ints("shape"))};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("sum_to", 1, 1, "sum down to a shape that broadcasts to the input (adjoint of expand)");
    op.attrs = {"shape: ints"};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor& x = in[0];
      const Shape& to = a.ints("shape");
      BISSL_CHECK(broadcast_shapes(to, x.shape(), "sum_to") == x.shape(), "sum_to: ", shape_str(to),
                  " does not broadcast to ", shape_str(x.shape()));
      size_t lead = x.shape().size() - to.size();
      std::vector<int64_t> axes;
      for (size_t i = 0; i < x.shape().size(); ++i)
        if (i < lead || (to[i - lead] == 1 && x.shape()[i] != 1)) axes.push_back(int64_t(i));
      if (axes.empty()) return std::vector<Tensor>{reshape(x, to).clone()};
      return std::vector<Tensor>{reshape(sum_impl(x, axes, true, 1.0), to)};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      return std::vector<Tensor>{expand(g[0], c.input_shape(0))};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return std::vector<Tensor>{sum_to(t[0], c.attrs.ints("shape"))};
    };
    r.add(std::move(op));
  }
}

}  // namespace ops

namespace {
const OpDef& op_named(const char* n) { return OpRegistry::get().op(n); }
}  // namespace

Tensor sum(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  static const OpDef& op = op_named("sum");
  return call_op(op, {x}, {{"axes", axes}, {"keepdim", keepdim}})[0];
}
Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  static const OpDef& op = op_named("mean");
  return call_op(op, {x}, {{"axes", axes}, {"keepdim", keepdim}})[0];
}
Tensor var(const Tensor& x, std::vector<int64_t> axes, int64_t correction, bool keepdim) {
  static const OpDef& op = op_named("var");
  return call_op(op, {x}, {{"axes", axes}, {"correction", correction}, {"keepdim", keepdim}})[0];
}
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t axis, bool keepdim) {
  static const OpDef& op = op_named("max");
  auto r = call_op(op, {x}, {{"axis", axis}, {"keepdim", keepdim}});
  return {r[0], r[1]};
}
Tensor logsumexp(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  static const OpDef& op = op_named("logsumexp");
  return call_op(op, {x}, {{"axes", axes}, {"keepdim", keepdim}})[0];
}
Tensor expand(const Tensor& x, const Shape& shape) {
  static const OpDef& op = op_named("expand");
  if (x.shape() == shape) return x;
  return call_op(op, {x}, {{"shape", shape}})[0];
}
Tensor sum_to(const Tensor& x, const Shape& shape) {
  static const OpDef& op = op_named("sum_to");
  if (x.shape() == shape) return x;
  return call_op(op, {x}, {{"shape", shape}})[0];
}

}  // namespace bissl
