// conv2d with its data- and filter-gradient as ops of their own (the three
// are bilinear and each one's VJP is built from the other two), and pooling.
#include "engine/ops/common.h"

namespace bissl {
namespace ops {
namespace {

std::vector<std::string> conv_attr_doc() {
  return {"stride: ints[2]", "padding: ints[2]", "dilation: ints[2]", "groups: int"};
}

Attrs conv_attrs(const Conv2dParams& p) {
  return {{"stride", std::vector<int64_t>{p.stride_h, p.stride_w}},
          {"padding", std::vector<int64_t>{p.pad_h, p.pad_w}},
          {"dilation", std::vector<int64_t>{p.dil_h, p.dil_w}},
          {"groups", p.groups}};
}
Conv2dParams conv_params(const Attrs& a) {
  const auto &s = a.ints("stride"), &pd = a.ints("padding"), &d = a.ints("dilation");
  return {s[0], s[1], pd[0], pd[1], d[0], d[1], a.i("groups")};
}

kern::ConvShape conv_shape(const Shape& x, const Shape& w, const Conv2dParams& p) {
  BISSL_CHECK(x.size() == 4, "conv2d: expected an NHWC input of rank 4, found ", shape_str(x));
  BISSL_CHECK(w.size() == 4, "conv2d: expected an OHWI weight of rank 4, found ", shape_str(w));
  BISSL_CHECK(p.groups >= 1 && x[3] % p.groups == 0 && w[0] % p.groups == 0, "conv2d: groups ", p.groups,
              " must divide input channels ", x[3], " and output channels ", w[0]);
  BISSL_CHECK(w[3] * p.groups == x[3], "conv2d: input has ", x[3], " channels, weight expects ", w[3] * p.groups,
              " (", w[3], " per group × ", p.groups, " groups)");
  BISSL_CHECK(p.stride_h > 0 && p.stride_w > 0 && p.dil_h > 0 && p.dil_w > 0 && p.pad_h >= 0 && p.pad_w >= 0,
              "conv2d: expected positive stride/dilation and non-negative padding");
  kern::ConvShape s{x[0], x[1], x[2], x[3], w[0], w[1], w[2], 0, 0,
                   p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w, p.groups};
  // The (dilated) kernel must fit the padded input; checked before dividing
  // (C++ division truncates a negative numerator towards zero).
  BISSL_CHECK(s.h + 2 * s.ph >= s.dh * (s.kh - 1) + 1 && s.w + 2 * s.pw >= s.dw * (s.kw - 1) + 1, "conv2d: a ", s.kh,
              "x", s.kw, " kernel (dilation ", s.dh, "x", s.dw, ") does not fit the ", s.h, "x", s.w,
              " input with padding ", s.ph, "x", s.pw);
  s.ho = (s.h + 2 * s.ph - s.dh * (s.kh - 1) - 1) / s.sh + 1;
  s.wo = (s.w + 2 * s.pw - s.dw * (s.kw - 1) - 1) / s.sw + 1;
  return s;
}

Tensor conv_fwd(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  same_dtype("conv2d", x, w);
  auto s = conv_shape(x.shape(), w.shape(), p);
  Tensor y = out_empty({s.n, s.ho, s.wo, s.o}, x.dtype());
  BISSL_FLOAT_KERNEL(x.dtype(), "conv2d",
                     kern::conv2d_forward<scalar_t>(s, x.data<scalar_t>(), w.data<scalar_t>(), y.data<scalar_t>()));
  return y;
}

kern::PoolShape pool_shape(const Shape& x, const Attrs& a, const char* op) {
  BISSL_CHECK(x.size() == 4, op, ": expected an NHWC input of rank 4, found ", shape_str(x));
  int64_t k = a.i("kernel"), st = a.i("stride"), pd = a.i("padding");
  BISSL_CHECK(k > 0 && st > 0 && pd >= 0 && 2 * pd <= k, op, ": expected kernel > 0, stride > 0, 0 <= padding <= kernel/2;"
              " found kernel ", k, ", stride ", st, ", padding ", pd);
  BISSL_CHECK(x[1] + 2 * pd >= k && x[2] + 2 * pd >= k, op, ": kernel ", k, " does not fit the ", x[1], "x", x[2],
              " input with padding ", pd);
  kern::PoolShape s{x[0], x[1], x[2], x[3], (x[1] + 2 * pd - k) / st + 1, (x[2] + 2 * pd - k) / st + 1, k, st, pd};
  return s;
}

Attrs pool_attrs(int64_t k, int64_t s, int64_t p) { return {{"kernel", k}, {"stride", s}, {"padding", p}}; }

}  // namespace

void register_conv_pool(OpRegistry& r) {
  {
    OpDef op = make_op("conv2d", 2, 1, "2-D convolution, x NHWC, w OHWI (no bias)");
    op.attrs = conv_attr_doc();
    op.save_inputs = {0, 1};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      return std::vector<Tensor>{conv_fwd(in[0], in[1], conv_params(a))};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      auto p = conv_params(c.attrs);
      return std::vector<Tensor>{
          c.needs_grad(0) ? conv2d_input_grad(g[0], c.input(1), c.input_shape(0), p) : Tensor(),
          c.needs_grad(1) ? conv2d_weight_grad(c.input(0), g[0], c.input_shape(1), p) : Tensor()};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      auto p = conv_params(c.attrs);
      Tensor r0 = t[0].defined() ? conv2d(t[0], c.input(1), p) : Tensor();
      Tensor r1 = t[1].defined() ? conv2d(c.input(0), t[1], p) : Tensor();
      return std::vector<Tensor>{add_opt(r0, r1)};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("conv2d_input_grad", 2, 1, "data gradient of conv2d: (gy, w) -> dx of x_shape");
    op.attrs = conv_attr_doc();
    op.attrs.push_back("x_shape: ints");
    op.save_inputs = {0, 1};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor &gy = in[0], &w = in[1];
      same_dtype("conv2d_input_grad", gy, w);
      auto s = conv_shape(a.ints("x_shape"), w.shape(), conv_params(a));
      BISSL_CHECK(gy.shape() == Shape({s.n, s.ho, s.wo, s.o}), "conv2d_input_grad: gradient shape ",
                  shape_str(gy.shape()), ", expected ", shape_str({s.n, s.ho, s.wo, s.o}));
      Tensor gx = out_empty(a.ints("x_shape"), gy.dtype());
      BISSL_FLOAT_KERNEL(gy.dtype(), "conv2d_input_grad",
                         kern::conv2d_input_grad<scalar_t>(s, gy.data<scalar_t>(), w.data<scalar_t>(),
                                                          gx.data<scalar_t>()));
      return std::vector<Tensor>{gx};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& h) {
      auto p = conv_params(c.attrs);
      return std::vector<Tensor>{c.needs_grad(0) ? conv2d(h[0], c.input(1), p) : Tensor(),
                                 c.needs_grad(1) ? conv2d_weight_grad(h[0], c.input(0), c.input_shape(1), p) : Tensor()};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      auto p = conv_params(c.attrs);
      const Shape& xs = c.attrs.ints("x_shape");
      Tensor r0 = t[0].defined() ? conv2d_input_grad(t[0], c.input(1), xs, p) : Tensor();
      Tensor r1 = t[1].defined() ? conv2d_input_grad(c.input(0), t[1], xs, p) : Tensor();
      return std::vector<Tensor>{add_opt(r0, r1)};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("conv2d_weight_grad", 2, 1, "filter gradient of conv2d: (x, gy) -> dw of w_shape");
    op.attrs = conv_attr_doc();
    op.attrs.push_back("w_shape: ints");
    op.save_inputs = {0, 1};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor &x = in[0], &gy = in[1];
      same_dtype("conv2d_weight_grad", x, gy);
      auto s = conv_shape(x.shape(), a.ints("w_shape"), conv_params(a));
      BISSL_CHECK(gy.shape() == Shape({s.n, s.ho, s.wo, s.o}), "conv2d_weight_grad: gradient shape ",
                  shape_str(gy.shape()), ", expected ", shape_str({s.n, s.ho, s.wo, s.o}));
      Tensor gw = out_empty(a.ints("w_shape"), x.dtype());
      BISSL_FLOAT_KERNEL(x.dtype(), "conv2d_weight_grad",
                         kern::conv2d_weight_grad<scalar_t>(s, x.data<scalar_t>(), gy.data<scalar_t>(),
                                                           gw.data<scalar_t>()));
      return std::vector<Tensor>{gw};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& h) {
      auto p = conv_params(c.attrs);
      return std::vector<Tensor>{
          c.needs_grad(0) ? conv2d_input_grad(c.input(1), h[0], c.input_shape(0), p) : Tensor(),
          c.needs_grad(1) ? conv2d(c.input(0), h[0], p) : Tensor()};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      auto p = conv_params(c.attrs);
      const Shape& ws = c.attrs.ints("w_shape");
      Tensor r0 = t[0].defined() ? conv2d_weight_grad(t[0], c.input(1), ws, p) : Tensor();
      Tensor r1 = t[1].defined() ? conv2d_weight_grad(c.input(0), t[1], ws, p) : Tensor();
      return std::vector<Tensor>{add_opt(r0, r1)};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("max_pool2d", 1, 2, "max pooling, NHWC: (values, flat i64 argmax indices into x)");
    op.attrs = {"kernel: int", "stride: int", "padding: int"};
    op.nondiff_outputs = {1};
    op.save_outputs = {1};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor& x = in[0];
      auto s = pool_shape(x.shape(), a, "max_pool2d");
      Tensor y = out_empty({s.n, s.ho, s.wo, s.c}, x.dtype()), idx = out_empty({s.n, s.ho, s.wo, s.c}, DType::I64);
      BISSL_FLOAT_KERNEL(x.dtype(), "max_pool2d",
                         kern::max_pool2d<scalar_t>(s, x.data<scalar_t>(), y.data<scalar_t>(), idx.data<int64_t>()));
      return std::vector<Tensor>{y, idx};
    };
    // The VJP gathers per input element (max_pool2d_backward): deterministic
    // on every device, where a scatter (put_add) needs atomics on CUDA.
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      Attrs a = c.attrs;
      a.set("x_shape", c.input_shape(0));
      return std::vector<Tensor>{call_op("max_pool2d_backward", {g[0], c.output(1)}, a)[0]};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return std::vector<Tensor>{call_op("take", {t[0], c.output(1)})[0], Tensor()};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("max_pool2d_backward", 2, 1,
                       "max pooling's VJP: (gy, argmax indices) -> gx of x_shape, each element the sum of gy over "
                       "the windows whose argmax it is (gathered: deterministic)");
    op.attrs = {"kernel: int", "stride: int", "padding: int", "x_shape: ints"};
    op.nondiff_inputs = {1};
    op.save_inputs = {1};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor &gy = in[0], &idx = in[1];
      auto s = pool_shape(a.ints("x_shape"), a, "max_pool2d_backward");
      const Shape ys{s.n, s.ho, s.wo, s.c};
      BISSL_CHECK(gy.shape() == ys && idx.shape() == ys && idx.dtype() == DType::I64,
                  "max_pool2d_backward: expected gradient and i64 indices of shape ", shape_str(ys), ", found ",
                  shape_str(gy.shape()), " and ", dtype_name(idx.dtype()), " ", shape_str(idx.shape()));
      Tensor gx = out_empty(a.ints("x_shape"), gy.dtype());
      BISSL_FLOAT_KERNEL(gy.dtype(), "max_pool2d_backward",
                         kern::max_pool2d_backward<scalar_t>(s, gy.data<scalar_t>(), idx.data<int64_t>(),
                                                             gx.data<scalar_t>()));
      return std::vector<Tensor>{gx};
    };
    // Linear in gy: its adjoint is the gather at the argmax (take), its
    // tangent the same op on the tangent.
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      return std::vector<Tensor>{call_op("take", {g[0], c.input(1)})[0], Tensor()};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return std::vector<Tensor>{call_op("max_pool2d_backward", {t[0], c.input(1)}, c.attrs)[0]};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("avg_pool2d", 1, 1, "average pooling, NHWC");
    op.attrs = {"kernel: int", "stride: int", "padding: int", "count_include_pad: bool"};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor& x = in[0];
      auto s = pool_shape(x.shape(), a, "avg_pool2d");
      Tensor y = out_empty({s.n, s.ho, s.wo, s.c}, x.dtype());
      BISSL_FLOAT_KERNEL(x.dtype(), "avg_pool2d",
                         kern::avg_pool2d<scalar_t>(s, x.data<scalar_t>(), y.data<scalar_t>(), a.b("count_include_pad")));
      return std::vector<Tensor>{y};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      Attrs a = c.attrs;
      a.set("x_shape", c.input_shape(0));
      return std::vector<Tensor>{call_op("avg_pool2d_backward", {g[0]}, a)[0]};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return std::vector<Tensor>{call_op("avg_pool2d", {t[0]}, c.attrs)[0]};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("avg_pool2d_backward", 1, 1, "adjoint of avg_pool2d: gy -> dx of x_shape");
    op.attrs = {"kernel: int", "stride: int", "padding: int", "count_include_pad: bool", "x_shape: ints"};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor& g = in[0];
      auto s = pool_shape(a.ints("x_shape"), a, "avg_pool2d_backward");
      BISSL_CHECK(g.shape() == Shape({s.n, s.ho, s.wo, s.c}), "avg_pool2d_backward: gradient shape ",
                  shape_str(g.shape()), ", expected ", shape_str({s.n, s.ho, s.wo, s.c}));
      Tensor gx = out_empty(a.ints("x_shape"), g.dtype());
      BISSL_FLOAT_KERNEL(g.dtype(), "avg_pool2d_backward",
                         kern::avg_pool2d_backward<scalar_t>(s, g.data<scalar_t>(), gx.data<scalar_t>(),
                                                            a.b("count_include_pad")));
      return std::vector<Tensor>{gx};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& h) {
      return std::vector<Tensor>{call_op("avg_pool2d", {h[0]}, c.attrs)[0]};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return std::vector<Tensor>{call_op("avg_pool2d_backward", {t[0]}, c.attrs)[0]};
    };
    r.add(std::move(op));
  }
}

}  // namespace ops

Tensor conv2d(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  static const OpDef& op = OpRegistry::get().op("conv2d");
  return call_op(op, {x, w}, ops::conv_attrs(p))[0];
}
Tensor conv2d_input_grad(const Tensor& gy, const Tensor& w, const Shape& x_shape, const Conv2dParams& p) {
  static const OpDef& op = OpRegistry::get().op("conv2d_input_grad");
  return call_op(op, {gy, w}, ops::conv_attrs(p).set("x_shape", x_shape))[0];
}
Tensor conv2d_weight_grad(const Tensor& x, const Tensor& gy, const Shape& w_shape, const Conv2dParams& p) {
  static const OpDef& op = OpRegistry::get().op("conv2d_weight_grad");
  return call_op(op, {x, gy}, ops::conv_attrs(p).set("w_shape", w_shape))[0];
}
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t pad) {
  static const OpDef& op = OpRegistry::get().op("max_pool2d");
  return call_op(op, {x}, ops::pool_attrs(kernel, stride, pad))[0];
}
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t pad, bool count_include_pad) {
  static const OpDef& op = OpRegistry::get().op("avg_pool2d");
  return call_op(op, {x}, ops::pool_attrs(kernel, stride, pad).set("count_include_pad", count_include_pad))[0];
}
Tensor global_avg_pool(const Tensor& x) {
  BISSL_CHECK(x.dim() == 4, "global_avg_pool: expected an NHWC input of rank 4, found ", shape_str(x.shape()));
  return mean(x, {1, 2});
}

}  // namespace bissl
