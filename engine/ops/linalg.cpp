// matmul (2-D and batched, transposes as flags so no VJP copies) and linear.
#include "engine/ops/common.h"

namespace bissl {
namespace ops {
namespace {

struct MatmulPlan {
  Shape batch, out;
  int64_t m, n, k;
  std::vector<int64_t> sa, sb;  // batch strides in matrices (0 = broadcast)
};

MatmulPlan plan_matmul(const Shape& as, const Shape& bs, bool ta, bool tb) {
  BISSL_CHECK(as.size() >= 2 && bs.size() >= 2, "matmul: expected operands of rank >= 2, found ", shape_str(as),
              " and ", shape_str(bs));
  MatmulPlan p;
  int64_t ar = as[as.size() - 2], ac = as.back(), br = bs[bs.size() - 2], bc = bs.back();
  p.m = ta ? ac : ar;
  p.k = ta ? ar : ac;
  int64_t kb = tb ? bc : br;
  p.n = tb ? br : bc;
  BISSL_CHECK(p.k == kb, "matmul: inner dimensions differ: ", shape_str(as), (ta ? "ᵀ" : ""), " @ ", shape_str(bs),
              (tb ? "ᵀ" : ""), " (", p.k, " vs ", kb, ")");
  Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  p.batch = broadcast_shapes(ab, bb, "matmul");
  p.sa = broadcast_strides(ab, p.batch);
  p.sb = broadcast_strides(bb, p.batch);
  p.out = p.batch;
  p.out.push_back(p.m);
  p.out.push_back(p.n);
  return p;
}

template <class T>
void run_matmul(const MatmulPlan& p, const T* a, const T* b, T* c, bool ta, bool tb) {
  int64_t nb = numel(p.batch), am = p.m * p.k, bm = p.k * p.n, cm = p.m * p.n;
  int64_t lda = ta ? p.m : p.k, ldb = tb ? p.k : p.n;
  auto cs = contiguous_strides(p.batch);
  for (int64_t i = 0; i < nb; ++i) {
    int64_t oa = 0, ob = 0, rem = i;
    for (size_t d = 0; d < p.batch.size(); ++d) {
      int64_t id = rem / cs[d];
      rem %= cs[d];
      oa += id * p.sa[d];
      ob += id * p.sb[d];
    }
    kern::gemm<T>(ta, tb, p.m, p.n, p.k, T(1), a + oa * am, lda, b + ob * bm, ldb, T(0), c + i * cm, p.n);
  }
}

}  // namespace

void register_linalg(OpRegistry& r) {
  {
    OpDef op = make_op("matmul", 2, 1, "op(a) @ op(b), batch dims broadcast");
    op.attrs = {"trans_a: bool", "trans_b: bool"};
    op.save_inputs = {0, 1};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs& at) {
      const Tensor &a = in[0], &b = in[1];
      same_dtype("matmul", a, b);
      bool ta = at.b("trans_a"), tb = at.b("trans_b");
      MatmulPlan p = plan_matmul(a.shape(), b.shape(), ta, tb);
      Tensor c = out_empty(p.out, a.dtype());
      BISSL_FLOAT_KERNEL(a.dtype(), "matmul",
                         run_matmul<scalar_t>(p, a.data<scalar_t>(), b.data<scalar_t>(), c.data<scalar_t>(), ta, tb));
      return std::vector<Tensor>{c};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& gr) {
      const Tensor &a = c.input(0), &b = c.input(1), &g = gr[0];
      bool ta = c.attrs.b("trans_a"), tb = c.attrs.b("trans_b");
      Tensor ga, gb;
      if (c.needs_grad(0)) {
        if (!ta) ga = matmul(g, b, false, !tb);   // g·op(b)ᵀ
        else ga = matmul(b, g, tb, true);         // (g·op(b)ᵀ)ᵀ = op(b)·gᵀ
        ga = sum_to(ga, c.input_shape(0));
      }
      if (c.needs_grad(1)) {
        if (!tb) gb = matmul(a, g, !ta, false);   // op(a)ᵀ·g
        else gb = matmul(g, a, true, ta);         // gᵀ·op(a)
        gb = sum_to(gb, c.input_shape(1));
      }
      return std::vector<Tensor>{ga, gb};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      bool ta = c.attrs.b("trans_a"), tb = c.attrs.b("trans_b");
      Tensor r0 = t[0].defined() ? matmul(t[0], c.input(1), ta, tb) : Tensor();
      Tensor r1 = t[1].defined() ? matmul(c.input(0), t[1], ta, tb) : Tensor();
      return std::vector<Tensor>{bcast(add_opt(r0, r1), c.output(0).shape())};
    };
    r.add(std::move(op));
  }
  {
    OpDef op = make_op("linear", 3, 1, "x·wᵀ + b over the last dim of x; b optional");
    op.save_inputs = {0, 1};
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs&) {
      const Tensor &x = in[0], &w = in[1], &b = in[2];
      BISSL_CHECK(w.dim() == 2, "linear: expected a 2-D weight, found ", shape_str(w.shape()));
      BISSL_CHECK(x.dim() >= 1 && x.shape().back() == w.shape()[1], "linear: input ", shape_str(x.shape()),
                  " has ", (x.dim() ? x.shape().back() : 0), " features, weight expects ", w.shape()[1]);
      same_dtype("linear", x, w);
      int64_t rows = x.numel() / w.shape()[1], out_f = w.shape()[0];
      Shape os = x.shape();
      os.back() = out_f;
      Tensor y = out_empty(os, x.dtype());
      if (b.defined()) {
        BISSL_CHECK(b.shape() == Shape{out_f}, "linear: bias shape ", shape_str(b.shape()), ", expected [", out_f, "]");
        same_dtype("linear", x, b);
      }
      BISSL_FLOAT_KERNEL(x.dtype(), "linear", {
        scalar_t* yp = y.data<scalar_t>();
        if (b.defined())  // rows of y start as the bias; the GEMM accumulates onto them
          kern::strided_copy(yp, kern::Dims{out_f, 1}, b.raw(), kern::Dims{0, 1}, kern::Dims{rows, out_f},
                             int64_t(sizeof(scalar_t)));
        kern::gemm<scalar_t>(false, true, rows, out_f, w.shape()[1], scalar_t(1), x.data<scalar_t>(), w.shape()[1],
                            w.data<scalar_t>(), w.shape()[1], b.defined() ? scalar_t(1) : scalar_t(0), yp, out_f);
      });
      return std::vector<Tensor>{y};
    };
    op.vjp = [](const OpCtx& c, const std::vector<Tensor>& gr) {
      const Tensor& g = gr[0];
      int64_t out_f = c.input_shape(1)[0], in_f = c.input_shape(1)[1];
      Tensor g2 = reshape(g, {-1, out_f});
      Tensor gx = c.needs_grad(0) ? reshape(matmul(g2, c.input(1)), c.input_shape(0)) : Tensor();
      Tensor gw = c.needs_grad(1) ? matmul(g2, reshape(c.input(0), {-1, in_f}), true, false) : Tensor();
      Tensor gb = c.needs_grad(2) ? sum(g2, {0}) : Tensor();
      return std::vector<Tensor>{gx, gw, gb};
    };
    op.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
      Tensor r0 = t[0].defined() ? linear(t[0], c.input(1)) : Tensor();
      Tensor r1 = t[1].defined() ? linear(c.input(0), t[1]) : Tensor();
      Tensor out = add_opt(r0, r1);
      if (t[2].defined()) out = out.defined() ? add(out, t[2]) : expand(t[2], c.output(0).shape());
      return std::vector<Tensor>{out};
    };
    r.add(std::move(op));
  }
}

}  // namespace ops

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  static const OpDef& op = OpRegistry::get().op("matmul");
  return call_op(op, {a, b}, {{"trans_a", trans_a}, {"trans_b", trans_b}})[0];
}
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  static const OpDef& op = OpRegistry::get().op("linear");
  return call_op(op, {x, w, b})[0];
}

}  // namespace bissl
