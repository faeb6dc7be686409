// softmax, log-softmax, cross-entropy (class indices with label smoothing,
// and soft targets), one-hot, L2 normalisation.
#include <cmath>

#include "engine/ops/common.h"

namespace bissl {
namespace ops {
namespace {

Tensor softmax_fwd(const Tensor& x, int64_t axis, bool log) {
  int64_t ax = normalize_axis(axis, x.dim(), log ? "log_softmax" : "softmax");
  Mid m = mid_of(x.shape(), ax);
  Tensor y = out_empty(x.shape(), x.dtype());
  BISSL_FLOAT_KERNEL(x.dtype(), "softmax",
                     kern::softmax_mid<scalar_t>(x.data<scalar_t>(), y.data<scalar_t>(), m.outer, m.n, m.inner, log));
  return y;
}

// (1 - ls)·onehot(t) + ls/C: the target distribution of cross_entropy.
Tensor smoothed_target(const Tensor& target, int64_t classes, double ls, DType dt) {
  Tensor q = one_hot(target, classes, dt);
  return ls == 0.0 ? q : add(mul(q, 1.0 - ls), ls / double(classes));
}

void check_logits(const Tensor& logits, const char* op) {
  BISSL_CHECK(logits.dim() == 2, op, ": expected logits [N, C], found ", shape_str(logits.shape()));
  BISSL_CHECK(logits.shape()[0] > 0, op, ": empty batch");
}

}  // namespace

void register_softmax_loss(OpRegistry& r) {
  {
    OpDef op = make_op("softmax", 1, 1, "softmax along an axis");
    op.attrs = {"axis: int"};
    op.save_outputs = {0};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      return std::vector<Tensor>{softmax_fwd(in[0], a.i("axis"), false)};
    };
    auto rule = [](const OpCtx& c, const Tensor& v) {  // y ⊙ (v - Σ v⊙y): the Jacobian is symmetric
      const Tensor& y = c.output(0);
      return mul(y, sub(v, sum(mul(v, y), {c.attrs.i("axis")}, true)));
    };
    op.vjp = [rule](const OpCtx& c, const std::vector<Tensor>& g) { return std::vector<Tensor>{rule(c, g[0])}; };
    op.jvp = [rule](const OpCtx& c, const std::vector<Tensor>& t) { return std::vector<Tensor>{rule(c, t[0])}; };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("log_softmax", 1, 1, "log-softmax along an axis");
    op.attrs = {"axis: int"};
    op.save_outputs = {0};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      return std::vector<Tensor>{softmax_fwd(in[0], a.i("axis"), true)};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      int64_t ax = c.attrs.i("axis");
      return std::vector<Tensor>{sub(g[0], mul(exp(c.output(0)), sum(g[0], {ax}, true)))};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      int64_t ax = c.attrs.i("axis");
      return std::vector<Tensor>{sub(t[0], sum(mul(exp(c.output(0)), t[0]), {ax}, true))};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("cross_entropy", 2, 1,
                       "mean over rows of -Σ q·log softmax(logits), q = (1-ls)·onehot(target) + ls/C; target i64 [N]");
    op.attrs = {"label_smoothing: float"};
    op.nondiff_inputs = {1};
    op.save_inputs = {0, 1};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor &z = in[0], &t = in[1];
      check_logits(z, "cross_entropy");
      BISSL_CHECK(t.dtype() == DType::I64 && t.shape() == Shape{z.shape()[0]}, "cross_entropy: expected i64 targets [",
                  z.shape()[0], "], found ", dtype_name(t.dtype()), " ", shape_str(t.shape()));
      int64_t c = z.shape()[1];
      const int64_t* tp = t.data<int64_t>();
      kern::check_indices(tp, t.numel(), c, "cross_entropy (targets)");
      double ls = a.f("label_smoothing");
      Tensor out = out_empty({}, z.dtype());
      BISSL_DISPATCH_FLOAT(z.dtype(), "cross_entropy", [&] {
        kern::cross_entropy<scalar_t>(z.data<scalar_t>(), tp, z.shape()[0], c, ls, out.data<scalar_t>());
      });
      return std::vector<Tensor>{out};
    };
    // d/dlogits = (softmax - q) / N.
    auto dlogits = [](const OpCtx& c) {
      const Tensor& z = c.input(0);
      Tensor q = smoothed_target(c.input(1), z.shape()[1], c.attrs.f("label_smoothing"), z.dtype());
      return mul(sub(softmax(z, 1), q), 1.0 / double(z.shape()[0]));
    };
    op.vjp = [dlogits](const OpCtx& c, const std::vector<Tensor>& g) {
      return std::vector<Tensor>{mul(dlogits(c), g[0]), Tensor()};
    };
    op.jvp = [dlogits](const OpCtx& c, const std::vector<Tensor>& t) {
      return std::vector<Tensor>{sum(mul(dlogits(c), t[0]))};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("cross_entropy_soft", 2, 1, "mean over rows of -Σ target·log softmax(logits); target [N, C]");
    op.save_inputs = {0, 1};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs&) {
      const Tensor &z = in[0], &t = in[1];
      check_logits(z, "cross_entropy_soft");
      BISSL_CHECK(t.shape() == z.shape(), "cross_entropy_soft: targets ", shape_str(t.shape()), " must match logits ",
                  shape_str(z.shape()));
      same_dtype("cross_entropy_soft", z, t);
      Tensor lp = log_softmax(z, 1);
      return std::vector<Tensor>{mul(sum(mul(t, lp)), -1.0 / double(z.shape()[0]))};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      const Tensor &z = c.input(0), &t = c.input(1);
      double inv_n = 1.0 / double(z.shape()[0]);
      Tensor gz, gt;
      if (c.needs_grad(0)) gz = mul(mul(sub(mul(softmax(z, 1), sum(t, {1}, true)), t), inv_n), g[0]);
      if (c.needs_grad(1)) gt = mul(mul(log_softmax(z, 1), -inv_n), g[0]);
      return std::vector<Tensor>{gz, gt};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& tan) {
      const Tensor &z = c.input(0), &t = c.input(1);
      double inv_n = 1.0 / double(z.shape()[0]);
      Tensor r0, r1;
      if (tan[0].defined()) r0 = sum(mul(mul(sub(mul(softmax(z, 1), sum(t, {1}, true)), t), inv_n), tan[0]));
      if (tan[1].defined()) r1 = sum(mul(mul(log_softmax(z, 1), -inv_n), tan[1]));
      return std::vector<Tensor>{add_opt(r0, r1)};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("one_hot", 1, 1, "i64 indices [...] -> [..., classes] of 0/1; not differentiable");
    op.attrs = {"classes: int", "dtype: int"};
    op.nondiff_inputs = {0};
    op.nondiff_outputs = {0};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor& idx = in[0];
      int64_t c = a.i("classes");
      BISSL_CHECK(idx.dtype() == DType::I64, "one_hot: expected i64 indices, found ", dtype_name(idx.dtype()));
      Shape s = idx.shape();
      s.push_back(c);
      Tensor y = out_empty(s, DType(a.i("dtype")));
      kern::check_indices(idx.data<int64_t>(), idx.numel(), c, "one_hot");
      BISSL_FLOAT_KERNEL(y.dtype(), "one_hot", kern::one_hot<scalar_t>(idx.data<int64_t>(), y.data<scalar_t>(), idx.numel(), c));
      return std::vector<Tensor>{y};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("l2_normalize", 1, 1, "x / max(‖x‖₂, eps) along an axis");
    op.attrs = {"axis: int", "eps: float"};
    op.save_inputs = {0};
    op.save_outputs = {0};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor& x = in[0];
      Tensor n = sqrt(sum(mul(x, x), {a.i("axis")}, true));
      Tensor d = where(compare(n, "gt", a.f("eps")), n, out_full({}, a.f("eps"), x.dtype()));
      return std::vector<Tensor>{div(x, d)};
    };
    // Jacobian (I - y yᵀ)/‖x‖ where ‖x‖ > eps, I/eps where clamped: symmetric.
    auto rule = [](const OpCtx& c, const Tensor& v) {
      const Tensor &x = c.input(0), &y = c.output(0);
      int64_t ax = c.attrs.i("axis");
      double eps = c.attrs.f("eps");
      Tensor n = sqrt(sum(mul(x, x), {ax}, true));
      Tensor live = compare(n, "gt", eps);
      Tensor d = where(live, n, full({}, eps, x.dtype(), x.device()));
      return div(sub(v, mul(mul(y, sum(mul(v, y), {ax}, true)), live)), d);
    };
    op.vjp = [rule](const OpCtx& c, const std::vector<Tensor>& g) { return std::vector<Tensor>{rule(c, g[0])}; };
    op.jvp = [rule](const OpCtx& c, const std::vector<Tensor>& t) { return std::vector<Tensor>{rule(c, t[0])}; };
    r.add(std::move(op));
  }
}

}  // namespace ops

Tensor softmax(const Tensor& x, int64_t axis) {
  static const OpDef& op = OpRegistry::get().op("softmax");
  return call_op(op, {x}, {{"axis", normalize_axis(axis, x.dim(), "softmax")}})[0];
}
Tensor log_softmax(const Tensor& x, int64_t axis) {
  static const OpDef& op = OpRegistry::get().op("log_softmax");
  return call_op(op, {x}, {{"axis", normalize_axis(axis, x.dim(), "log_softmax")}})[0];
}
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing) {
  static const OpDef& op = OpRegistry::get().op("cross_entropy");
  BISSL_CHECK(label_smoothing >= 0 && label_smoothing <= 1, "cross_entropy: label_smoothing must be in [0, 1], found ",
              label_smoothing);
  return call_op(op, {logits, target}, {{"label_smoothing", label_smoothing}})[0];
}
Tensor cross_entropy_soft(const Tensor& logits, const Tensor& target) {
  static const OpDef& op = OpRegistry::get().op("cross_entropy_soft");
  return call_op(op, {logits, target})[0];
}
Tensor one_hot(const Tensor& index, int64_t classes, DType t) {
  static const OpDef& op = OpRegistry::get().op("one_hot");
  return call_op(op, {index}, {{"classes", classes}, {"dtype", int64_t(t)}})[0];
}
Tensor l2_normalize(const Tensor& x, int64_t axis, double eps) {
  static const OpDef& op = OpRegistry::get().op("l2_normalize");
  return call_op(op, {x}, {{"axis", normalize_axis(axis, x.dim(), "l2_normalize")}, {"eps", eps}})[0];
}

}  // namespace bissl
