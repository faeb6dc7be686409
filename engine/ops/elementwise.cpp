// Elementwise ops: unary maps, scalar ops, broadcast binary ops, where, cast.
#include <cmath>

#include "engine/ops/common.h"

namespace bissl {
namespace ops {
namespace {

using kern::Unary;

Tensor run_unary(Unary k, const Tensor& x, double s, const char* name) {
  Tensor y = out_empty(x.shape(), x.dtype());
  BISSL_FLOAT_KERNEL(x.dtype(), name, kern::unary<scalar_t>(k, x.data<scalar_t>(), y.data<scalar_t>(), x.numel(), s));
  return y;
}

// f'(x) from the saved input x, output y and attrs, in engine ops.
using Deriv = std::function<Tensor(const Tensor& x, const Tensor& y, const Attrs&)>;

void unary_op(OpRegistry& r, const std::string& name, Unary k, const std::string& doc, bool uses_x, bool uses_y,
              Deriv d, std::vector<std::string> attrs = {}) {
  OpDef op = make_op(name, 1, 1, doc);
  op.attrs = std::move(attrs);
  std::string nm = name;
  bool scalar_attr = !op.attrs.empty();
  op.forward[0] = [k, nm, scalar_attr](const std::vector<Tensor>& in, const Attrs& a) {
    return std::vector<Tensor>{run_unary(k, in[0], scalar_attr ? a.f("s") : 0.0, nm.c_str())};
  };
  if (uses_x) op.save_inputs = {0};
  if (uses_y) op.save_outputs = {0};
  op.vjp = [d, uses_x, uses_y](const OpCtx& c, const std::vector<Tensor>& g) {
    Tensor x = uses_x ? c.input(0) : Tensor(), y = uses_y ? c.output(0) : Tensor();
    return std::vector<Tensor>{mul(g[0], d(x, y, c.attrs))};
  };
  op.jvp = [d](const OpCtx& c, const std::vector<Tensor>& t) {
    return std::vector<Tensor>{mul(t[0], d(c.input(0), c.output(0), c.attrs))};
  };
  r.add(std::move(op));
}

// Ops whose derivative is zero (masks, signs) are recorded as non-differentiable.
void nondiff_unary_op(OpRegistry& r, const std::string& name, Unary k, const std::string& doc, bool scalar_attr) {
  OpDef op = make_op(name, 1, 1, doc);
  if (scalar_attr) op.attrs = {"s: float"};
  op.nondiff_inputs = {0};
  op.nondiff_outputs = {0};
  std::string nm = name;
  op.forward[0] = [k, nm, scalar_attr](const std::vector<Tensor>& in, const Attrs& a) {
    return std::vector<Tensor>{run_unary(k, in[0], scalar_attr ? a.f("s") : 0.0, nm.c_str())};
  };
  r.add(std::move(op));
}

Tensor run_binary(kern::Binary k, const Tensor& a, const Tensor& b, const char* name) {
  same_dtype(name, a, b);
  Shape out = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor y = out_empty(out, a.dtype());
  auto sa = broadcast_strides(a.shape(), out), sb = broadcast_strides(b.shape(), out);
  BISSL_FLOAT_KERNEL(a.dtype(), name,
                     kern::binary<scalar_t>(k, a.data<scalar_t>(), sa, b.data<scalar_t>(), sb, y.data<scalar_t>(), out));
  return y;
}

void binary_op(OpRegistry& r, const std::string& name, kern::Binary k, const std::string& doc,
               std::vector<int> saved, VjpFn vjp, JvpFn jvp) {
  OpDef op = make_op(name, 2, 1, doc);
  std::string nm = name;
  op.forward[0] = [k, nm](const std::vector<Tensor>& in, const Attrs&) {
    return std::vector<Tensor>{run_binary(k, in[0], in[1], nm.c_str())};
  };
  op.save_inputs = std::move(saved);
  op.vjp = std::move(vjp);
  op.jvp = std::move(jvp);
  r.add(std::move(op));
}

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double k2OverSqrtPi = 1.12837916709551257390;

}  // namespace

void register_elementwise(OpRegistry& r) {
  unary_op(r, "exp", Unary::Exp, "e^x", false, true, [](const Tensor&, const Tensor& y, const Attrs&) { return y; });
  unary_op(r, "log", Unary::Log, "natural log", true, false,
           [](const Tensor& x, const Tensor&, const Attrs&) { return pow(x, -1.0); });
  unary_op(r, "sqrt", Unary::Sqrt, "square root", false, true,
           [](const Tensor&, const Tensor& y, const Attrs&) { return mul(pow(y, -1.0), 0.5); });
  unary_op(r, "rsqrt", Unary::Rsqrt, "1/sqrt(x)", false, true,
           [](const Tensor&, const Tensor& y, const Attrs&) { return mul(pow(y, 3.0), -0.5); });
  unary_op(r, "abs", Unary::Abs, "|x|", true, false,
           [](const Tensor& x, const Tensor&, const Attrs&) { return sign(x); });
  // ReLU's derivative rules go through one fused op, relu_backward(g, x) =
  // g where x > 0 and 0 elsewhere (one pass; no mask tensor), which is also
  // its own tangent rule, so forward-over-reverse stays one pass per ReLU.
  {
    OpDef op = make_op("relu", 1, 1, "max(x, 0)");
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs&) {
      return std::vector<Tensor>{run_unary(Unary::Relu, in[0], 0.0, "relu")};
    };
    op.save_inputs = {0};
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      return std::vector<Tensor>{relu_backward(g[0], c.input(0))};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return std::vector<Tensor>{relu_backward(t[0], c.input(0))};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("relu_backward", 2, 1,
                       "g where x > 0, else 0 (ReLU's VJP; x is not differentiated: ReLU's second derivative is 0)");
    op.nondiff_inputs = {1};
    op.save_inputs = {1};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs&) {
      return std::vector<Tensor>{run_binary(kern::Binary::MaskPositive, in[0], in[1], "relu_backward")};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      return std::vector<Tensor>{relu_backward(g[0], c.input(1)), Tensor()};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return std::vector<Tensor>{relu_backward(t[0], c.input(1))};
    };
    r.add(std::move(op));
  }
  unary_op(r, "gelu", Unary::GeluErf, "x·Φ(x), exact (erf)", true, false,
           [](const Tensor& x, const Tensor&, const Attrs&) {
             Tensor cdf = mul(add(erf(mul(x, kInvSqrt2)), 1.0), 0.5);
             Tensor pdf = mul(exp(mul(mul(x, x), -0.5)), kInvSqrt2Pi);
             return add(cdf, mul(x, pdf));
           });
  unary_op(r, "gelu_tanh", Unary::GeluTanh, "x·Φ(x), tanh approximation", true, false,
           [](const Tensor& x, const Tensor&, const Attrs&) {
             Tensor x2 = mul(x, x);
             Tensor t = tanh(mul(add(x, mul(mul(x2, x), 0.044715)), kSqrt2OverPi));
             Tensor left = mul(add(t, 1.0), 0.5);
             Tensor sech2 = add(neg(mul(t, t)), 1.0);
             Tensor inner = mul(add(mul(x2, 3.0 * 0.044715), 1.0), kSqrt2OverPi);
             return add(left, mul(mul(mul(x, sech2), inner), 0.5));
           });
  unary_op(r, "sigmoid", Unary::Sigmoid, "1/(1+e^-x)", false, true,
           [](const Tensor&, const Tensor& y, const Attrs&) { return mul(y, add(neg(y), 1.0)); });
  unary_op(r, "tanh", Unary::Tanh, "tanh", false, true,
           [](const Tensor&, const Tensor& y, const Attrs&) { return add(neg(mul(y, y)), 1.0); });
  unary_op(r, "erf", Unary::Erf, "error function", true, false, [](const Tensor& x, const Tensor&, const Attrs&) {
    return mul(exp(neg(mul(x, x))), k2OverSqrtPi);
  });
  unary_op(
      r, "pow", Unary::PowScalar, "x^s (scalar exponent)", true, false,
      [](const Tensor& x, const Tensor&, const Attrs& a) {
        double p = a.f("s");
        if (p == 1.0) return ones_like(x);
        if (p == 0.0) return zeros_like(x);
        return mul(pow(x, p - 1.0), p);
      },
      {"s: float"});
  nondiff_unary_op(r, "sign", Unary::Sign, "sign(x); zero derivative, not recorded", false);
  for (auto [nm, k] : std::vector<std::pair<std::string, Unary>>{{"gt", Unary::Gt}, {"ge", Unary::Ge}, {"lt", Unary::Lt},
                                                                  {"le", Unary::Le}, {"eq", Unary::Eq}, {"ne", Unary::Ne}})
    nondiff_unary_op(r, "compare_" + nm, k, "1 where x " + nm + " s else 0; not differentiable", true);

  // Linear unary ops: exact rules, no derivative tensor.
  r.add([] {
    OpDef op = make_op("neg", 1, 1, "-x");
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs&) {
      return std::vector<Tensor>{run_unary(Unary::Neg, in[0], 0.0, "neg")};
    };
    op.vjp = [](const OpCtx&, const std::vector<Tensor>& g) { return std::vector<Tensor>{neg(g[0])}; };
    op.jvp = [](const OpCtx&, const std::vector<Tensor>& t) { return std::vector<Tensor>{neg(t[0])}; };
    return op;
  }());
  r.add([] {
    OpDef op = make_op("mul_scalar", 1, 1, "x·s");
    op.attrs = {"s: float"};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      return std::vector<Tensor>{run_unary(Unary::MulScalar, in[0], a.f("s"), "mul_scalar")};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) { return std::vector<Tensor>{mul(g[0], c.attrs.f("s"))}; };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) { return std::vector<Tensor>{mul(t[0], c.attrs.f("s"))}; };
    return op;
  }());
  r.add([] {
    OpDef op = make_op("add_scalar", 1, 1, "x + s");
    op.attrs = {"s: float"};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      return std::vector<Tensor>{run_unary(Unary::AddScalar, in[0], a.f("s"), "add_scalar")};
    };
    op.vjp = [](const OpCtx&, const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; };
    op.jvp = [](const OpCtx&, const std::vector<Tensor>& t) { return std::vector<Tensor>{t[0]}; };
    return op;
  }());

  binary_op(
      r, "add", kern::Binary::Add, "a + b (broadcast)", {},
      [](const OpCtx& c, const std::vector<Tensor>& g) {
        return std::vector<Tensor>{sum_to(g[0], c.input_shape(0)), sum_to(g[0], c.input_shape(1))};
      },
      [](const OpCtx& c, const std::vector<Tensor>& t) {
        const Shape& s = c.output(0).shape();
        if (t[0].defined() && t[1].defined()) return std::vector<Tensor>{add(t[0], t[1])};
        return std::vector<Tensor>{bcast(t[0].defined() ? t[0] : t[1], s)};
      });
  binary_op(
      r, "sub", kern::Binary::Sub, "a - b (broadcast)", {},
      [](const OpCtx& c, const std::vector<Tensor>& g) {
        return std::vector<Tensor>{sum_to(g[0], c.input_shape(0)),
                                   c.needs_grad(1) ? sum_to(neg(g[0]), c.input_shape(1)) : Tensor()};
      },
      [](const OpCtx& c, const std::vector<Tensor>& t) {
        const Shape& s = c.output(0).shape();
        if (t[0].defined() && t[1].defined()) return std::vector<Tensor>{sub(t[0], t[1])};
        return std::vector<Tensor>{t[0].defined() ? bcast(t[0], s) : bcast(neg(t[1]), s)};
      });
  binary_op(
      r, "mul", kern::Binary::Mul, "a · b (broadcast)", {0, 1},
      [](const OpCtx& c, const std::vector<Tensor>& g) {
        return std::vector<Tensor>{c.needs_grad(0) ? sum_to(mul(g[0], c.input(1)), c.input_shape(0)) : Tensor(),
                                   c.needs_grad(1) ? sum_to(mul(g[0], c.input(0)), c.input_shape(1)) : Tensor()};
      },
      [](const OpCtx& c, const std::vector<Tensor>& t) {
        Tensor r0 = t[0].defined() ? mul(t[0], c.input(1)) : Tensor();
        Tensor r1 = t[1].defined() ? mul(c.input(0), t[1]) : Tensor();
        return std::vector<Tensor>{bcast(add_opt(r0, r1), c.output(0).shape())};
      });
  binary_op(
      r, "div", kern::Binary::Div, "a / b (broadcast)", {0, 1},
      [](const OpCtx& c, const std::vector<Tensor>& g) {
        const Tensor &a = c.input(0), &b = c.input(1);
        Tensor ga = c.needs_grad(0) ? sum_to(div(g[0], b), c.input_shape(0)) : Tensor();
        Tensor gb = c.needs_grad(1) ? sum_to(neg(div(mul(g[0], a), mul(b, b))), c.input_shape(1)) : Tensor();
        return std::vector<Tensor>{ga, gb};
      },
      [](const OpCtx& c, const std::vector<Tensor>& t) {
        const Tensor &a = c.input(0), &b = c.input(1);
        Tensor r0 = t[0].defined() ? div(t[0], b) : Tensor();
        Tensor r1 = t[1].defined() ? neg(div(mul(a, t[1]), mul(b, b))) : Tensor();
        return std::vector<Tensor>{bcast(add_opt(r0, r1), c.output(0).shape())};
      });

  {
    OpDef op = make_op("where", 3, 1, "cond != 0 ? a : b (broadcast); cond is not differentiated");
    op.nondiff_inputs = {0};
    op.save_inputs = {0};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs&) {
      const Tensor &c = in[0], &a = in[1], &b = in[2];
      same_dtype("where", a, b);
      same_dtype("where", c, a);
      Shape out = broadcast_shapes(broadcast_shapes(c.shape(), a.shape(), "where"), b.shape(), "where");
      Tensor y = out_empty(out, a.dtype());
      BISSL_FLOAT_KERNEL(a.dtype(), "where",
                         kern::where<scalar_t>(c.data<scalar_t>(), broadcast_strides(c.shape(), out),
                                              a.data<scalar_t>(), broadcast_strides(a.shape(), out),
                                              b.data<scalar_t>(), broadcast_strides(b.shape(), out),
                                              y.data<scalar_t>(), out));
      return std::vector<Tensor>{y};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      Tensor z = zeros({}, g[0].dtype(), g[0].device());
      const Tensor& cond = c.input(0);
      return std::vector<Tensor>{
          Tensor(), c.needs_grad(1) ? sum_to(where(cond, g[0], z), c.input_shape(1)) : Tensor(),
          c.needs_grad(2) ? sum_to(where(cond, z, g[0]), c.input_shape(2)) : Tensor()};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      Tensor z = zeros({}, c.output(0).dtype(), c.output(0).device());
      Tensor ta = t[1].defined() ? t[1] : z, tb = t[2].defined() ? t[2] : z;
      return std::vector<Tensor>{bcast(where(c.input(0), ta, tb), c.output(0).shape())};
    };
    r.add(std::move(op));
  }

  {
    OpDef op = make_op("cast", 1, 1, "dtype conversion (f32, f64, i64, bf16)");
    op.attrs = {"dtype: int (0 f32, 1 f64, 2 i64, 3 bf16)"};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& a) {
      const Tensor& x = in[0];
      DType to = DType(a.i("dtype"));
      Tensor y = out_empty(x.shape(), to);
      int kind = int(x.dtype());
      switch (to) {
        case DType::F32: kern::convert<float>(x.raw(), kind, y.data<float>(), x.numel()); break;
        case DType::F64: kern::convert<double>(x.raw(), kind, y.data<double>(), x.numel()); break;
        case DType::I64: kern::convert_to_i64(x.raw(), kind, y.data<int64_t>(), x.numel()); break;
        case DType::BF16: kern::convert_to_bf16(x.raw(), kind, y.data<uint16_t>(), x.numel()); break;
      }
      return std::vector<Tensor>{y};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& g) {
      return std::vector<Tensor>{cast(g[0], c.input_dtype(0))};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      return std::vector<Tensor>{cast(t[0], c.output(0).dtype())};
    };
    r.add(std::move(op));
  }
}

}  // namespace ops

// ---- public functions ----
namespace {
const OpDef& op_named(const char* n) { return OpRegistry::get().op(n); }
#define OP1(NAME) static const OpDef& op = op_named(NAME)
}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { OP1("add"); return call_op(op, {a, b})[0]; }
Tensor sub(const Tensor& a, const Tensor& b) { OP1("sub"); return call_op(op, {a, b})[0]; }
Tensor mul(const Tensor& a, const Tensor& b) { OP1("mul"); return call_op(op, {a, b})[0]; }
Tensor div(const Tensor& a, const Tensor& b) { OP1("div"); return call_op(op, {a, b})[0]; }
Tensor add(const Tensor& a, double s) { OP1("add_scalar"); return call_op(op, {a}, {{"s", s}})[0]; }
Tensor mul(const Tensor& a, double s) { OP1("mul_scalar"); return call_op(op, {a}, {{"s", s}})[0]; }
Tensor neg(const Tensor& x) { OP1("neg"); return call_op(op, {x})[0]; }
Tensor exp(const Tensor& x) { OP1("exp"); return call_op(op, {x})[0]; }
Tensor log(const Tensor& x) { OP1("log"); return call_op(op, {x})[0]; }
Tensor sqrt(const Tensor& x) { OP1("sqrt"); return call_op(op, {x})[0]; }
Tensor rsqrt(const Tensor& x) { OP1("rsqrt"); return call_op(op, {x})[0]; }
Tensor pow(const Tensor& x, double p) { OP1("pow"); return call_op(op, {x}, {{"s", p}})[0]; }
Tensor abs(const Tensor& x) { OP1("abs"); return call_op(op, {x})[0]; }
Tensor relu(const Tensor& x) { OP1("relu"); return call_op(op, {x})[0]; }
Tensor relu_backward(const Tensor& g, const Tensor& x) { OP1("relu_backward"); return call_op(op, {g, x})[0]; }
Tensor gelu(const Tensor& x, bool tanh_approx) {
  static const OpDef& exact = op_named("gelu");
  static const OpDef& approx = op_named("gelu_tanh");
  return call_op(tanh_approx ? approx : exact, {x})[0];
}
Tensor sigmoid(const Tensor& x) { OP1("sigmoid"); return call_op(op, {x})[0]; }
Tensor tanh(const Tensor& x) { OP1("tanh"); return call_op(op, {x})[0]; }
Tensor erf(const Tensor& x) { OP1("erf"); return call_op(op, {x})[0]; }
Tensor sign(const Tensor& x) { OP1("sign"); return call_op(op, {x})[0]; }
Tensor compare(const Tensor& x, const std::string& cmp, double s) {
  return call_op("compare_" + cmp, {x}, {{"s", s}})[0];
}
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  OP1("where");
  Tensor c = cond.dtype() == a.dtype() ? cond : cast(cond, a.dtype());
  return call_op(op, {c, a, b})[0];
}
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  return where(mask, full({}, value, x.dtype(), x.device()), x);
}
Tensor cast(const Tensor& x, DType t) {
  OP1("cast");
  if (x.dtype() == t) return x;
  if (!is_floating(t) || !is_floating(x.dtype())) {
    NoGradGuard ng;  // conversions to or from integers/bf16 storage carry no derivative
    NoForwardADGuard nf;
    return call_op(op, {x}, {{"dtype", int64_t(t)}})[0];
  }
  return call_op(op, {x}, {{"dtype", int64_t(t)}})[0];
}

}  // namespace bissl
