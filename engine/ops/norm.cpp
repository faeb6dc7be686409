// Batch norm (train: batch statistics, eval: running statistics) and layer
// norm, each with a fused backward op. All four ops have closed-form fused
// JVPs (kern::batch_norm_jvp, batch_norm_backward_jvp, layer_norm_jvp,
// layer_norm_backward_jvp; formulas in kernels/norm_math.h): forward-over-
// reverse through the statistics costs two passes per op instead of the
// unfused composites' dozens of ops. The composites give every VJP of a VJP
// (and, in the tests, the reference the fused JVPs must equal).
#include <cmath>
#include <utility>

#include "engine/ops/common.h"
#include "engine/profile.h"
#include "kernels/cpu/norm_onednn.h"

namespace bissl {
namespace ops {
namespace {

// All axes but the last: batch norm's reduction axes for [..., C].
std::vector<int64_t> stat_axes(int64_t ndim) {
  std::vector<int64_t> a;
  for (int64_t i = 0; i + 1 < ndim; ++i) a.push_back(i);
  return a;
}

// Unfused batch-norm train forward: (y, mean, invstd).
std::vector<Tensor> bn_composite(const std::vector<Tensor>& in, double eps) {
  const Tensor &x = in[0], &gamma = in[1], &beta = in[2];
  auto axes = stat_axes(x.dim());
  Tensor m = mean(x, axes);
  Tensor xc = sub(x, m);
  Tensor invstd = rsqrt(add(mean(mul(xc, xc), axes), eps));
  Tensor y = mul(xc, invstd);
  if (gamma.defined()) y = mul(y, gamma);
  if (beta.defined()) y = add(y, beta);
  return {y, m, invstd};
}

// Unfused batch-norm backward: (dx, dgamma, dbeta) from (gy, x, mean, invstd, gamma).
std::vector<Tensor> bn_backward_composite(const std::vector<Tensor>& in) {
  const Tensor &gy = in[0], &x = in[1], &m = in[2], &invstd = in[3], &gamma = in[4];
  auto axes = stat_axes(x.dim());
  double n = double(x.numel() / x.shape().back());
  Tensor xhat = mul(sub(x, m), invstd);
  Tensor sg = sum(gy, axes);
  Tensor sgx = sum(mul(gy, xhat), axes);
  Tensor inner = sub(sub(gy, mul(sg, 1.0 / n)), mul(xhat, mul(sgx, 1.0 / n)));
  Tensor k = gamma.defined() ? mul(gamma, invstd) : invstd;
  return {mul(inner, k), sgx, sg};
}

std::vector<Tensor> ln_composite(const std::vector<Tensor>& in, double eps) {
  const Tensor &x = in[0], &gamma = in[1], &beta = in[2];
  Tensor m = mean(x, {-1}, true);
  Tensor xc = sub(x, m);
  Tensor rstd = rsqrt(add(mean(mul(xc, xc), {-1}, true), eps));
  Tensor y = mul(xc, rstd);
  if (gamma.defined()) y = mul(y, gamma);
  if (beta.defined()) y = add(y, beta);
  Shape rs(x.shape().begin(), x.shape().end() - 1);
  return {y, reshape(m, rs), reshape(rstd, rs)};
}

std::vector<Tensor> ln_backward_composite(const std::vector<Tensor>& in) {
  const Tensor &gy = in[0], &x = in[1], &gamma = in[4];
  Shape ks = x.shape();
  ks.back() = 1;
  Tensor m = reshape(in[2], ks), rstd = reshape(in[3], ks);
  double c = double(x.shape().back());
  Tensor xhat = mul(sub(x, m), rstd);
  Tensor d = gamma.defined() ? mul(gy, gamma) : gy;
  Tensor a = sum(d, {-1}, true), b = sum(mul(d, xhat), {-1}, true);
  Tensor dx = mul(sub(sub(d, mul(a, 1.0 / c)), mul(xhat, mul(b, 1.0 / c))), rstd);
  // Sums over every axis but the last (none for a single row: sum over {} would reduce all).
  auto rows = stat_axes(x.dim());
  auto over_rows = [&](const Tensor& t) { return rows.empty() ? t : sum(t, rows); };
  return {dx, gamma.defined() ? over_rows(mul(gy, xhat)) : Tensor(), in[5].defined() ? over_rows(gy) : Tensor()};
}

template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
template <class T>
T* ptr_or_null(Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Tangents reach the fused kernels as raw pointers: same dtype and device as x.
void check_tangents(const char* op, const Tensor& x, const std::vector<Tensor>& t) {
  for (const Tensor& v : t)
    BISSL_CHECK(!v.defined() || (v.dtype() == x.dtype() && v.device() == x.device()), op,
                ": expected tangents of ", dtype_name(x.dtype()), " on ", device_name(x.device()), ", found ",
                dtype_name(v.dtype()), " on ", device_name(v.device()));
}

// The fused JVP kernels of batch norm and layer norm take the same
// arguments (statistics per column or per row): one rule pair serves both.
struct BatchNormKernels {
  template <class T, class... A>
  static void jvp(A&&... a) { kern::batch_norm_jvp<T>(std::forward<A>(a)...); }
  template <class T, class... A>
  static void backward_jvp(A&&... a) { kern::batch_norm_backward_jvp<T>(std::forward<A>(a)...); }
};
struct LayerNormKernels {
  template <class T, class... A>
  static void jvp(A&&... a) { kern::layer_norm_jvp<T>(std::forward<A>(a)...); }
  template <class T, class... A>
  static void backward_jvp(A&&... a) { kern::layer_norm_backward_jvp<T>(std::forward<A>(a)...); }
};

// Tangents (ẏ, ṁean, istd˙) of the forward op from (ẋ, γ̇, β̇); the
// statistics' tangents are undefined (zero) without ẋ.
template <class K>
std::vector<Tensor> norm_jvp(const char* op, const Tensor& x, const Tensor& m, const Tensor& istd,
                             const Tensor& gamma, const Tensor& tx, const Tensor& tg, const Tensor& tb) {
  check_tangents(op, x, {tx, tg, tb});
  const int64_t c = x.shape().back(), rows = x.numel() / c;
  Tensor ty = empty(x.shape(), x.dtype(), x.device()), tm, ts;
  if (tx.defined()) tm = empty(m.shape(), x.dtype(), x.device()), ts = empty(istd.shape(), x.dtype(), x.device());
  kern::DeviceScope ds(x.device());
  BISSL_FLOAT_KERNEL(x.dtype(), op,
                     K::template jvp<scalar_t>(x.data<scalar_t>(), m.data<scalar_t>(), istd.data<scalar_t>(),
                                               ptr_or_null<scalar_t>(gamma), ptr_or_null<scalar_t>(tx),
                                               ptr_or_null<scalar_t>(tg), ptr_or_null<scalar_t>(tb),
                                               ty.data<scalar_t>(), ptr_or_null<scalar_t>(tm),
                                               ptr_or_null<scalar_t>(ts), rows, c));
  return {ty, tm, ts};
}

// Tangents (dẋ, dγ̇, dβ̇) of the fused backward op from those of (gy, x,
// mean, istd, γ); dγ̇ / dβ̇ exist where the op's dγ / dβ do.
template <class K>
std::vector<Tensor> norm_backward_jvp(const char* op, const std::vector<Tensor>& in, const std::vector<Tensor>& t,
                                      bool has_dgamma, bool has_dbeta) {
  const Tensor &gy = in[0], &x = in[1], &m = in[2], &istd = in[3], &gamma = in[4];
  check_tangents(op, x, {t[0], t[1], t[2], t[3], t[4]});
  const int64_t c = x.shape().back(), rows = x.numel() / c;
  Tensor tdx = empty(x.shape(), x.dtype(), x.device());
  Tensor tdg = has_dgamma ? empty({c}, x.dtype(), x.device()) : Tensor();
  Tensor tdb = has_dbeta ? empty({c}, x.dtype(), x.device()) : Tensor();
  kern::DeviceScope ds(x.device());
  BISSL_FLOAT_KERNEL(x.dtype(), op,
                     K::template backward_jvp<scalar_t>(
                         gy.data<scalar_t>(), x.data<scalar_t>(), m.data<scalar_t>(), istd.data<scalar_t>(),
                         ptr_or_null<scalar_t>(gamma), ptr_or_null<scalar_t>(t[0]), ptr_or_null<scalar_t>(t[1]),
                         ptr_or_null<scalar_t>(t[2]), ptr_or_null<scalar_t>(t[3]), ptr_or_null<scalar_t>(t[4]),
                         tdx.data<scalar_t>(), ptr_or_null<scalar_t>(tdg), ptr_or_null<scalar_t>(tdb), rows, c));
  return {tdx, tdg, tdb};
}

}  // namespace

// The composites' JVPs, for the tests that check the fused JVPs against them.
std::vector<Tensor> batch_norm_train_jvp_composite(const std::vector<Tensor>& in, const std::vector<Tensor>& t,
                                                   double eps) {
  return jvp_of_composite([eps](const std::vector<Tensor>& i) { return bn_composite(i, eps); }, in, t);
}
std::vector<Tensor> batch_norm_backward_jvp_composite(const std::vector<Tensor>& in, const std::vector<Tensor>& t) {
  return jvp_of_composite(bn_backward_composite, in, t);
}
std::vector<Tensor> layer_norm_jvp_composite(const std::vector<Tensor>& in, const std::vector<Tensor>& t, double eps) {
  return jvp_of_composite([eps](const std::vector<Tensor>& i) { return ln_composite(i, eps); }, in, t);
}
std::vector<Tensor> layer_norm_backward_jvp_composite(const std::vector<Tensor>& in, const std::vector<Tensor>& t) {
  return jvp_of_composite(ln_backward_composite, in, t);
}

namespace {

void check_channel_param(const Tensor& p, int64_t c, const char* what, const char* op) {
  if (!p.defined()) return;
  BISSL_CHECK(p.shape() == Shape{c}, op, ": ", what, " has shape ", shape_str(p.shape()), ", expected [", c, "]");
}

// f32 on the CPU with BISSL_CPU_BN=onednn under default numerics: oneDNN's
// batch norm (kernels/cpu/norm_onednn.h), x as n × spatial × c. False: ours runs.
bool onednn_bn_usable(const Tensor& x) {
  return x.device() == Device::CPU && x.dtype() == DType::F32 && x.dim() >= 2 && x.numel() > 0 &&
         cpu::onednn_batch_norm_wanted();
}
bool onednn_bn_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, Tensor& y, Tensor& m,
                       Tensor& var) {
  if (!onednn_bn_usable(x)) return false;
  const int64_t c = x.shape().back(), n = x.shape()[0], rows = x.numel() / c;
  return cpu::onednn_batch_norm_forward(n, rows / n, c, x.data<float>(), gamma.defined() ? gamma.data<float>() : nullptr,
                                        beta.defined() ? beta.data<float>() : nullptr, eps, y.data<float>(),
                                        m.data<float>(), var.data<float>());
}
bool onednn_bn_backward(const Tensor& gy, const Tensor& x, const Tensor& m, const Tensor& inv, const Tensor& gamma,
                        Tensor& gx, Tensor& gg, Tensor& gb) {
  if (!onednn_bn_usable(x)) return false;
  const int64_t c = x.shape().back(), n = x.shape()[0], rows = x.numel() / c;
  return cpu::onednn_batch_norm_backward(n, rows / n, c, gy.data<float>(), x.data<float>(), m.data<float>(),
                                         inv.data<float>(), gamma.defined() ? gamma.data<float>() : nullptr,
                                         gx.data<float>(), gg.data<float>(), gb.data<float>());
}

}  // namespace

void register_norm(OpRegistry& r) {
  {
    OpDef op = make_op("batch_norm_train", 5, 3,
                       "batch norm over all axes but the last, batch statistics: (y, mean, invstd); updates running "
                       "stats (inputs 3, 4) in place when given");
    op.attrs = {"momentum: float", "eps: float"};
    op.nondiff_inputs = {3, 4};
    op.save_inputs = {0, 1};
    op.save_outputs = {1, 2};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor &x = in[0], &gamma = in[1], &beta = in[2], &rm = in[3], &rv = in[4];
      BISSL_CHECK(x.dim() >= 2, "batch_norm_train: expected rank >= 2 ([..., C]), found ", shape_str(x.shape()));
      int64_t c = x.shape().back(), rows = x.numel() / c;
      BISSL_CHECK(rows > 1, "batch_norm_train: needs more than one value per channel, found ", rows);
      check_channel_param(gamma, c, "gamma", "batch_norm_train");
      check_channel_param(beta, c, "beta", "batch_norm_train");
      check_channel_param(rm, c, "running_mean", "batch_norm_train");
      check_channel_param(rv, c, "running_var", "batch_norm_train");
      double eps = a.f("eps"), mom = a.f("momentum");
      Tensor y = out_empty(x.shape(), x.dtype()), m = out_empty({c}, x.dtype()), inv = out_empty({c}, x.dtype());
      Tensor var = out_empty({c}, x.dtype());
      bool running = rm.defined() && rv.defined();
      // With BISSL_CPU_BN=onednn, oneDNN forms y, mean and var at once; the
      // inverse deviation and the running update are ours either way.
      const bool onednn = onednn_bn_forward(x, gamma, beta, eps, y, m, var);
      BISSL_FLOAT_KERNEL(x.dtype(), "batch_norm_train", {
        if (!onednn)
          kern::batch_norm_stats<scalar_t>(x.data<scalar_t>(), rows, c, m.data<scalar_t>(), var.data<scalar_t>());
        kern::batch_norm_finish<scalar_t>(m.data<scalar_t>(), var.data<scalar_t>(), inv.data<scalar_t>(),
                                          running ? rm.data<scalar_t>() : nullptr,
                                          running ? rv.data<scalar_t>() : nullptr, c, eps, mom, rows);
        if (!onednn)
          kern::batch_norm_apply<scalar_t>(x.data<scalar_t>(), m.data<scalar_t>(), inv.data<scalar_t>(),
                                           gamma.defined() ? gamma.data<scalar_t>() : nullptr,
                                           beta.defined() ? beta.data<scalar_t>() : nullptr, y.data<scalar_t>(), rows,
                                           c);
      });
      return std::vector<Tensor>{y, m, inv};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      const Tensor &x = c.input(0), &m = c.output(1), &inv = c.output(2);
      Tensor gamma = c.input_opt(1);
      Tensor gy = g[0].defined() ? g[0] : zeros(x.shape(), x.dtype(), x.device());
      auto r = batch_norm_backward(gy, x, m, inv, gamma);
      Tensor gx = r[0];
      double n = double(x.numel() / x.shape().back());
      if (g[1].defined()) gx = add(gx, mul(g[1], 1.0 / n));  // d mean / dx
      if (g[2].defined())                                   // d invstd / dx = -invstd³ (x - mean) / n
        gx = add(gx, mul(mul(g[2], mul(pow(inv, 3.0), -1.0 / n)), sub(x, m)));
      return std::vector<Tensor>{gx, c.needs_grad(1) ? r[1] : Tensor(), c.needs_grad(2) ? r[2] : Tensor(), Tensor(),
                                 Tensor()};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return norm_jvp<BatchNormKernels>("batch_norm_train (jvp)", c.input(0), c.output(1), c.output(2),
                                        c.input_opt(1), t[0], t[1], t[2]);
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("batch_norm_backward", 5, 3,
                       "fused VJP of batch_norm_train: (gy, x, mean, invstd, gamma) -> (dx, dgamma, dbeta)");
    op.save_all_inputs = true;
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs&) {
      const Tensor &gy = in[0], &x = in[1], &m = in[2], &inv = in[3], &gamma = in[4];
      int64_t c = x.shape().back(), rows = x.numel() / c;
      BISSL_CHECK(gy.shape() == x.shape(), "batch_norm_backward: gradient shape ", shape_str(gy.shape()),
                  " differs from input ", shape_str(x.shape()));
      Tensor gx = out_empty(x.shape(), x.dtype()), gg = out_empty({c}, x.dtype()), gb = out_empty({c}, x.dtype());
      if (onednn_bn_backward(gy, x, m, inv, gamma, gx, gg, gb)) return std::vector<Tensor>{gx, gg, gb};
      BISSL_FLOAT_KERNEL(x.dtype(), "batch_norm_backward",
                         kern::batch_norm_backward<scalar_t>(gy.data<scalar_t>(), x.data<scalar_t>(), m.data<scalar_t>(),
                                                            inv.data<scalar_t>(),
                                                            gamma.defined() ? gamma.data<scalar_t>() : nullptr,
                                                            gx.data<scalar_t>(), gg.data<scalar_t>(),
                                                            gb.data<scalar_t>(), rows, c));
      return std::vector<Tensor>{gx, gg, gb};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      std::vector<Tensor> in;
      for (int i = 0; i < 5; ++i) in.push_back(c.input_opt(i));
      return vjp_of_composite(bn_backward_composite, in, g);
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      // The op always returns dγ and dβ.
      return norm_backward_jvp<BatchNormKernels>(
          "batch_norm_backward (jvp)", {c.input(0), c.input(1), c.input(2), c.input(3), c.input_opt(4)}, t, true, true);
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("layer_norm", 3, 3, "layer norm over the last dim: (y, mean, rstd)");
    op.attrs = {"eps: float"};
    op.save_inputs = {0, 1, 2};
    op.save_outputs = {1, 2};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor &x = in[0], &gamma = in[1], &beta = in[2];
      BISSL_CHECK(x.dim() >= 1, "layer_norm: expected rank >= 1");
      int64_t c = x.shape().back(), rows = x.numel() / c;
      check_channel_param(gamma, c, "gamma", "layer_norm");
      check_channel_param(beta, c, "beta", "layer_norm");
      Shape rs(x.shape().begin(), x.shape().end() - 1);
      Tensor y = out_empty(x.shape(), x.dtype()), m = out_empty(rs, x.dtype()), rstd = out_empty(rs, x.dtype());
      BISSL_FLOAT_KERNEL(x.dtype(), "layer_norm",
                         kern::layer_norm_forward<scalar_t>(x.data<scalar_t>(),
                                                           gamma.defined() ? gamma.data<scalar_t>() : nullptr,
                                                           beta.defined() ? beta.data<scalar_t>() : nullptr,
                                                           y.data<scalar_t>(), m.data<scalar_t>(),
                                                           rstd.data<scalar_t>(), rows, c, a.f("eps")));
      return std::vector<Tensor>{y, m, rstd};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      const Tensor &x = c.input(0), &m = c.output(1), &rstd = c.output(2);
      Tensor gy = g[0].defined() ? g[0] : zeros(x.shape(), x.dtype(), x.device());
      auto r = call_op("layer_norm_backward", {gy, x, m, rstd, c.input_opt(1), c.input_opt(2)});
      Tensor gx = r[0];
      Shape ks = x.shape();
      ks.back() = 1;
      double n = double(x.shape().back());
      if (g[1].defined()) gx = add(gx, mul(reshape(g[1], ks), 1.0 / n));
      if (g[2].defined())
        gx = add(gx, mul(mul(reshape(g[2], ks), mul(pow(reshape(rstd, ks), 3.0), -1.0 / n)), sub(x, reshape(m, ks))));
      return std::vector<Tensor>{gx, r[1], r[2]};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return norm_jvp<LayerNormKernels>("layer_norm (jvp)", c.input(0), c.output(1), c.output(2), c.input_opt(1),
                                        t[0], t[1], t[2]);
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("layer_norm_backward", 6, 3,
                       "fused VJP of layer_norm: (gy, x, mean, rstd, gamma, beta) -> (dx, dgamma, dbeta); beta is "
                       "read only for whether it exists");
    op.save_all_inputs = true;
    op.nondiff_inputs = {5};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs&) {
      const Tensor &gy = in[0], &x = in[1], &m = in[2], &rstd = in[3], &gamma = in[4], &beta = in[5];
      int64_t c = x.shape().back(), rows = x.numel() / c;
      Tensor gx = out_empty(x.shape(), x.dtype());
      Tensor gg = gamma.defined() ? out_empty({c}, x.dtype()) : Tensor();
      Tensor gb = beta.defined() ? out_empty({c}, x.dtype()) : Tensor();
      BISSL_FLOAT_KERNEL(x.dtype(), "layer_norm_backward",
                         kern::layer_norm_backward<scalar_t>(gy.data<scalar_t>(), x.data<scalar_t>(), m.data<scalar_t>(),
                                                            rstd.data<scalar_t>(),
                                                            gamma.defined() ? gamma.data<scalar_t>() : nullptr,
                                                            gx.data<scalar_t>(),
                                                            gg.defined() ? gg.data<scalar_t>() : nullptr,
                                                            gb.defined() ? gb.data<scalar_t>() : nullptr, rows, c));
      return std::vector<Tensor>{gx, gg, gb};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      std::vector<Tensor> in;
      for (int i = 0; i < 6; ++i) in.push_back(c.input_opt(i));
      auto r = vjp_of_composite(ln_backward_composite, in, g);
      r.resize(6);
      r[5] = Tensor();
      return r;
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      std::vector<Tensor> in;
      for (int i = 0; i < 6; ++i) in.push_back(c.input_opt(i));
      return norm_backward_jvp<LayerNormKernels>("layer_norm_backward (jvp)", in, t, in[4].defined(),
                                                 in[5].defined());
    };
    r.add(std::move(op));
  }
}

}  // namespace ops

BatchNormOut batch_norm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                              const Tensor& running_var, double momentum, double eps) {
  static const OpDef& op = OpRegistry::get().op("batch_norm_train");
  auto r = call_op(op, {x, gamma, beta, running_mean, running_var}, {{"momentum", momentum}, {"eps", eps}});
  return {r[0], r[1], r[2]};
}

void batch_norm_update_running(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                               double momentum, double eps) {
  BISSL_CHECK(x.dim() >= 2, "batch_norm_update_running: expected rank >= 2 ([..., C]), found ", shape_str(x.shape()));
  const int64_t c = x.shape().back(), rows = x.numel() / c;
  BISSL_CHECK(rows > 1, "batch_norm_update_running: needs more than one value per channel, found ", rows);
  BISSL_CHECK(running_mean.defined() && running_var.defined(),
              "batch_norm_update_running: expected running statistics to update");
  ops::check_channel_param(running_mean, c, "running_mean", "batch_norm_update_running");
  ops::check_channel_param(running_var, c, "running_var", "batch_norm_update_running");
  BISSL_CHECK(running_mean.device() == x.device() && running_var.device() == x.device() &&
                  running_mean.dtype() == x.dtype() && running_var.dtype() == x.dtype(),
              "batch_norm_update_running: running statistics must match the input's dtype and device");
  ScopedRange range("batch_norm_update_running");
  kern::DeviceScope ds(x.device());
  Tensor m = empty({c}, x.dtype(), x.device()), var = empty({c}, x.dtype(), x.device());
  Tensor inv = empty({c}, x.dtype(), x.device());
  // batch_norm_train's statistics and update kernels, without its apply:
  // the running statistics come out the same bits. (oneDNN's statistics
  // come with its output: that goes to a scratch tensor.)
  Tensor y_scratch = ops::onednn_bn_usable(x) ? empty(x.shape(), x.dtype()) : Tensor();
  const bool onednn = y_scratch.defined() && ops::onednn_bn_forward(x, Tensor(), Tensor(), eps, y_scratch, m, var);
  BISSL_FLOAT_KERNEL(x.dtype(), "batch_norm_update_running", {
    if (!onednn)
      kern::batch_norm_stats<scalar_t>(x.data<scalar_t>(), rows, c, m.data<scalar_t>(), var.data<scalar_t>());
    kern::batch_norm_finish<scalar_t>(m.data<scalar_t>(), var.data<scalar_t>(), inv.data<scalar_t>(),
                                      running_mean.data<scalar_t>(), running_var.data<scalar_t>(), c, eps, momentum,
                                      rows);
  });
}

std::vector<Tensor> batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                        const Tensor& gamma) {
  static const OpDef& op = OpRegistry::get().op("batch_norm_backward");
  return call_op(op, {gy, x, mean, invstd, gamma});
}

Tensor batch_norm_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                       const Tensor& running_var, double eps) {
  // An affine map of x: composed of differentiable ops; the running
  // statistics are constants (detached).
  Tensor scale = rsqrt(add(running_var.detach(), eps));
  if (gamma.defined()) scale = mul(scale, gamma);
  Tensor y = mul(sub(x, running_mean.detach()), scale);
  return beta.defined() ? add(y, beta) : y;
}

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
  static const OpDef& op = OpRegistry::get().op("layer_norm");
  return call_op(op, {x, gamma, beta}, {{"eps", eps}})[0];
}

}  // namespace bissl
