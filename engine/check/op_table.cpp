#include "engine/check/op_table.h"

#include <cmath>

#include "engine/dist/comm.h"
#include "engine/op_registry.h"

namespace bissl::check {
namespace {

// Sample-input generators. Values are random and never all zero; domains
// keep each op smooth around the sample (positive for log/sqrt, away from
// the kinks of relu/abs).
struct Gen {
  Generator& g;
  DType dt;
  int s;  // shape scale for perf
  Tensor rn(const Shape& sh) { return randn(sh, g, dt); }
  Tensor pos(const Shape& sh) { return rand(sh, g, dt, 0.5, 2.0); }
  Tensor away0(const Shape& sh) {  // |x| in [0.2, 1.5]
    Tensor m = rand(sh, g, dt, 0.2, 1.5), sgn = rand(sh, g, dt, 0.0, 1.0);
    for (int64_t i = 0; i < m.numel(); ++i) m.set_flat(i, sgn.flat(i) < 0.5 ? -m.flat(i) : m.flat(i));
    return m;
  }
  Tensor idx(const Shape& sh, int64_t hi) { return randint(sh, 0, hi, g); }
  int64_t n(int64_t base) { return base * s; }
};

using Cases = std::vector<OpCase>;

Fn op_fn(const std::string& name, Attrs a = {}) {
  return [name, a](const std::vector<Tensor>& in) { return call_op(name, in, a); };
}

OpCase one(const std::string& label, std::vector<Tensor> in, std::vector<bool> diff, Fn fn) {
  return {label, std::move(in), std::move(diff), std::move(fn)};
}

OpEntry unary(const std::string& op, std::function<Tensor(Gen&, const Shape&)> make, Attrs a = {}) {
  return {op, false, [op, make, a](Generator& g, DType dt, int s) {
            Gen G{g, dt, s};
            return Cases{one("[3,5]", {make(G, {3, 5})}, {true}, op_fn(op, a)),
                         one("[2,3,4]", {make(G, {2, 3, G.n(4)})}, {true}, op_fn(op, a))};
          }};
}

OpEntry binary(const std::string& op, bool positive_b) {
  return {op, false, [op, positive_b](Generator& g, DType dt, int s) {
            Gen G{g, dt, s};
            auto b = [&](const Shape& sh) { return positive_b ? G.pos(sh) : G.rn(sh); };
            return Cases{one("same[4,5]", {G.rn({4, G.n(5)}), b({4, G.n(5)})}, {true, true}, op_fn(op)),
                         one("bcast[3,1,4]x[5,4]", {G.rn({3, 1, 4}), b({5, 4})}, {true, true}, op_fn(op)),
                         one("scalar_b", {G.rn({2, 3}), b({})}, {true, true}, op_fn(op))};
          }};
}

Attrs axes_attrs(std::vector<int64_t> axes, bool keepdim) { return {{"axes", axes}, {"keepdim", keepdim}}; }

std::vector<OpEntry> build() {
  std::vector<OpEntry> t;
  auto rn = [](Gen& G, const Shape& s) { return G.rn(s); };
  auto pos = [](Gen& G, const Shape& s) { return G.pos(s); };
  auto away0 = [](Gen& G, const Shape& s) { return G.away0(s); };

  // ---- elementwise ----
  t.push_back(unary("neg", rn));
  t.push_back(unary("exp", rn));
  t.push_back(unary("log", pos));
  t.push_back(unary("sqrt", pos));
  t.push_back(unary("rsqrt", pos));
  t.push_back(unary("abs", away0));
  t.push_back(unary("relu", away0));
  t.push_back(unary("gelu", rn));
  t.push_back(unary("gelu_tanh", rn));
  t.push_back(unary("sigmoid", rn));
  t.push_back(unary("tanh", rn));
  t.push_back(unary("erf", rn));
  t.push_back(unary("add_scalar", rn, {{"s", 0.7}}));
  t.push_back(unary("mul_scalar", rn, {{"s", -1.3}}));
  t.push_back({"pow", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("p=3", {G.rn({3, G.n(4)})}, {true}, op_fn("pow", {{"s", 3.0}})),
                              one("p=2.5", {G.pos({3, G.n(4)})}, {true}, op_fn("pow", {{"s", 2.5}})),
                              one("p=-1.5", {G.pos({3, G.n(4)})}, {true}, op_fn("pow", {{"s", -1.5}}))};
               }});
  t.push_back(binary("add", false));
  t.push_back(binary("sub", false));
  t.push_back(binary("mul", false));
  t.push_back(binary("div", true));
  t.push_back({"relu_backward", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("same_shape", {G.rn({3, G.n(4)}), G.away0({3, G.n(4)})}, {true, false},
                                  op_fn("relu_backward"))};
               }});
  t.push_back({"where", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 Tensor cond = compare(G.rn({3, 1, G.n(4)}), "gt", 0.0);
                 return Cases{one("bcast", {cond, G.rn({3, 2, G.n(4)}), G.rn({2, G.n(4)})}, {false, true, true},
                                  op_fn("where"))};
               }});

  // ---- reductions ----
  t.push_back({"sum", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("axis1_keep", {G.rn({3, 4, G.n(5)})}, {true}, op_fn("sum", axes_attrs({1}, true))),
                              one("all", {G.rn({3, G.n(4)})}, {true}, op_fn("sum", axes_attrs({}, false))),
                              one("axes0,2", {G.rn({3, 4, G.n(5)})}, {true}, op_fn("sum", axes_attrs({0, 2}, false)))};
               }});
  t.push_back({"mean", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("axes0,2", {G.rn({3, 4, G.n(5)})}, {true}, op_fn("mean", axes_attrs({0, 2}, true))),
                              one("last", {G.rn({3, G.n(6)})}, {true}, op_fn("mean", axes_attrs({-1}, false)))};
               }});
  t.push_back({"var", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 Attrs a1 = axes_attrs({1}, false), a2 = axes_attrs({0, 2}, true);
                 a1.set("correction", int64_t(1));
                 a2.set("correction", int64_t(0));
                 return Cases{one("axis1_unbiased", {G.rn({3, 5, G.n(2)})}, {true}, op_fn("var", a1)),
                              one("axes0,2_biased", {G.rn({3, 4, G.n(5)})}, {true}, op_fn("var", a2))};
               }});
  t.push_back({"max", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("axis1", {G.rn({3, 5, G.n(2)})}, {true}, op_fn("max", {{"axis", int64_t(1)}, {"keepdim", false}})),
                              one("last_keep", {G.rn({4, G.n(6)})}, {true}, op_fn("max", {{"axis", int64_t(-1)}, {"keepdim", true}}))};
               }});
  t.push_back({"logsumexp", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("axis1", {G.rn({3, G.n(5)})}, {true}, op_fn("logsumexp", axes_attrs({1}, false))),
                              one("axes0,2", {G.rn({3, 4, G.n(5)})}, {true}, op_fn("logsumexp", axes_attrs({0, 2}, true)))};
               }});
  t.push_back({"expand", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("[3,1]->[2,3,4]", {G.rn({3, 1})}, {true}, op_fn("expand", {{"shape", Shape{2, 3, G.n(4)}}}))};
               }});
  t.push_back({"sum_to", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("[2,3,4]->[3,1]", {G.rn({2, 3, G.n(4)})}, {true}, op_fn("sum_to", {{"shape", Shape{3, 1}}}))};
               }});

  // ---- movement and indexing ----
  t.push_back({"reshape", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("[2,3,4]->[6,-1]", {G.rn({2, 3, G.n(4)})}, {true}, op_fn("reshape", {{"shape", Shape{6, -1}}}))};
               }});
  t.push_back({"permute", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("nhwc->nchw", {G.rn({2, 3, 4, G.n(5)})}, {true},
                                  op_fn("permute", {{"perm", std::vector<int64_t>{0, 3, 1, 2}}}))};
               }});
  t.push_back({"slice", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("axis1_1:6:2", {G.rn({3, 7, G.n(2)})}, {true},
                                  op_fn("slice", {{"axis", int64_t(1)}, {"start", int64_t(1)}, {"end", int64_t(6)}, {"step", int64_t(2)}}))};
               }});
  t.push_back({"slice_backward", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("into[3,7,2]", {G.rn({3, 3, G.n(2)})}, {true},
                                  op_fn("slice_backward", {{"axis", int64_t(1)}, {"start", int64_t(1)}, {"step", int64_t(2)},
                                                           {"shape", Shape{3, 7, G.n(2)}}}))};
               }});
  t.push_back({"concat", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("axis1_3way", {G.rn({2, 1, G.n(3)}), G.rn({2, 3, G.n(3)}), G.rn({2, 2, G.n(3)})},
                                  {true, true, true}, op_fn("concat", {{"axis", int64_t(1)}}))};
               }});
  t.push_back({"pad", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("nhwc_pad1", {G.rn({2, 3, 3, G.n(2)})}, {true},
                                  op_fn("pad", {{"pads", std::vector<int64_t>{0, 0, 1, 1, 2, 1, 0, 0}}, {"value", 0.5}})),
                              one("crop", {G.rn({4, G.n(5)})}, {true},
                                  op_fn("pad", {{"pads", std::vector<int64_t>{-1, 2, 0, -2}}, {"value", 0.0}}))};
               }});
  t.push_back({"index_select", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 Tensor idx = from_ints({2, 0, 2, 3}, {4});
                 return Cases{one("axis1_repeat", {G.rn({3, 4, G.n(2)}), idx}, {true, false},
                                  op_fn("index_select", {{"axis", int64_t(1)}}))};
               }});
  t.push_back({"index_add", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 Tensor idx = from_ints({2, 0, 2, 3}, {4});
                 return Cases{one("axis1_repeat", {G.rn({3, 4, G.n(2)}), idx}, {true, false},
                                  op_fn("index_add", {{"axis", int64_t(1)}, {"size", int64_t(5)}}))};
               }});
  t.push_back({"gather", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("axis1", {G.rn({3, 5, G.n(2)}), G.idx({3, 4, G.n(2)}, 5)}, {true, false},
                                  op_fn("gather", {{"axis", int64_t(1)}}))};
               }});
  t.push_back({"scatter_add", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("axis1", {G.rn({3, 4, G.n(2)}), G.idx({3, 4, G.n(2)}, 5)}, {true, false},
                                  op_fn("scatter_add", {{"axis", int64_t(1)}, {"shape", Shape{3, 5, G.n(2)}}}))};
               }});
  t.push_back({"gather_rows", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("axis1_tokens", {G.rn({3, 5, G.n(2)}), G.idx({3, 4}, 5)}, {true, false},
                                  op_fn("gather_rows", {{"axis", int64_t(1)}})),
                              one("axis2_rank4", {G.rn({2, 3, 4, G.n(2)}), G.idx({2, 3, 6}, 4)}, {true, false},
                                  op_fn("gather_rows", {{"axis", int64_t(2)}})),
                              one("axis0_last", {G.rn({G.n(5)}), G.idx({3}, G.n(5))}, {true, false},
                                  op_fn("gather_rows", {{"axis", int64_t(0)}}))};
               }});
  t.push_back({"scatter_rows_add", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("axis1_repeat", {G.rn({3, 4, G.n(2)}), G.idx({3, 4}, 5)}, {true, false},
                                  op_fn("scatter_rows_add", {{"axis", int64_t(1)}, {"size", int64_t(5)}}))};
               }});
  t.push_back({"take", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("flat", {G.rn({4, G.n(5)}), G.idx({3, 4}, 4 * G.n(5))}, {true, false}, op_fn("take"))};
               }});
  t.push_back({"put_add", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("flat", {G.rn({3, 4}), G.idx({3, 4}, 10)}, {true, false},
                                  op_fn("put_add", {{"shape", Shape{2, 5}}}))};
               }});

  // ---- linear algebra ----
  t.push_back({"matmul", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 int64_t m = G.n(3), k = G.n(4), n = G.n(5);
                 auto mm = [](bool ta, bool tb) {
                   return op_fn("matmul", {{"trans_a", ta}, {"trans_b", tb}});
                 };
                 return Cases{one("nn", {G.rn({m, k}), G.rn({k, n})}, {true, true}, mm(false, false)),
                              one("tn", {G.rn({k, m}), G.rn({k, n})}, {true, true}, mm(true, false)),
                              one("nt", {G.rn({m, k}), G.rn({n, k})}, {true, true}, mm(false, true)),
                              one("tt", {G.rn({k, m}), G.rn({n, k})}, {true, true}, mm(true, true)),
                              one("batched_bcast", {G.rn({2, m, k}), G.rn({k, n})}, {true, true}, mm(false, false)),
                              one("batched", {G.rn({2, 2, m, k}), G.rn({2, 1, n, k})}, {true, true}, mm(false, true))};
               }});
  t.push_back({"linear", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 int64_t in = G.n(4), out = G.n(3);
                 return Cases{one("bias", {G.rn({5, in}), G.rn({out, in}), G.rn({out})}, {true, true, true}, op_fn("linear")),
                              one("3d_nobias", {G.rn({2, 3, in}), G.rn({out, in}), Tensor()}, {true, true, false},
                                  op_fn("linear"))};
               }});

  // ---- convolution and pooling ----
  auto conv_attrs = [](int64_t st, int64_t pd, int64_t dil, int64_t groups) {
    return Attrs{{"stride", std::vector<int64_t>{st, st}}, {"padding", std::vector<int64_t>{pd, pd}},
                 {"dilation", std::vector<int64_t>{dil, dil}}, {"groups", groups}};
  };
  struct ConvCfg {
    const char* label;
    Shape x, w;
    int64_t st, pd, dil, groups;
  };
  auto conv_cfgs = [](int s) {
    return std::vector<ConvCfg>{{"3x3_s1_p1", {2, 5, 5, 3}, {4, 3, 3, 3}, 1, 1, 1, 1},
                                {"3x3_s2_p1_d2_g2", {2, 7, 6, 4}, {6, 3, 3, 2}, 2, 1, 2, 2},
                                {"1x1", {2, 3, 3, 4}, {5, 1, 1, 4}, 1, 0, 1, 1},
                                // a stem-like kernel wider than the image: taps clipped on both sides
                                {"7x7_s2_p3_wide", {2, 5, 6, 2}, {3, 7, 7, 2}, 2, 3, 1, 1},
                                {"perf_3x3_64", {8 * s, 16, 16, 32}, {32, 3, 3, 32}, 1, 1, 1, 1}};
  };
  auto conv_out = [](const ConvCfg& c) {
    int64_t ho = (c.x[1] + 2 * c.pd - c.dil * (c.w[1] - 1) - 1) / c.st + 1;
    int64_t wo = (c.x[2] + 2 * c.pd - c.dil * (c.w[2] - 1) - 1) / c.st + 1;
    return Shape{c.x[0], ho, wo, c.w[0]};
  };
  t.push_back({"conv2d", false, [=](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 Cases cs;
                 for (auto& c : conv_cfgs(s)) {
                   if (s == 1 && std::string(c.label).rfind("perf", 0) == 0) continue;
                   cs.push_back(one(c.label, {G.rn(c.x), G.rn(c.w)}, {true, true},
                                    op_fn("conv2d", conv_attrs(c.st, c.pd, c.dil, c.groups))));
                 }
                 return cs;
               }});
  t.push_back({"conv2d_input_grad", false, [=](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 Cases cs;
                 for (auto& c : conv_cfgs(s)) {
                   if (s == 1 && std::string(c.label).rfind("perf", 0) == 0) continue;
                   cs.push_back(one(c.label, {G.rn(conv_out(c)), G.rn(c.w)}, {true, true},
                                    op_fn("conv2d_input_grad", conv_attrs(c.st, c.pd, c.dil, c.groups).set("x_shape", c.x))));
                 }
                 return cs;
               }});
  t.push_back({"conv2d_weight_grad", false, [=](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 Cases cs;
                 for (auto& c : conv_cfgs(s)) {
                   if (s == 1 && std::string(c.label).rfind("perf", 0) == 0) continue;
                   cs.push_back(one(c.label, {G.rn(c.x), G.rn(conv_out(c))}, {true, true},
                                    op_fn("conv2d_weight_grad", conv_attrs(c.st, c.pd, c.dil, c.groups).set("w_shape", c.w))));
                 }
                 return cs;
               }});
  auto pool_attrs = [](int64_t k, int64_t st, int64_t pd) {
    return Attrs{{"kernel", k}, {"stride", st}, {"padding", pd}};
  };
  t.push_back({"max_pool2d", false, [=](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("k3_s2_p1", {G.rn({2, 5, 5, G.n(3)})}, {true}, op_fn("max_pool2d", pool_attrs(3, 2, 1))),
                              one("k2_s2", {G.rn({1, 4, 6, G.n(2)})}, {true}, op_fn("max_pool2d", pool_attrs(2, 2, 0)))};
               }});
  t.push_back({"max_pool2d_backward", false, [=](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 // Argmax indices of a real pooling (overlapping 3x3 windows, stride 2: inputs shared by windows).
                 Shape xs{2, 5, 5, G.n(3)};
                 Tensor idx = call_op("max_pool2d", {G.rn(xs)}, pool_attrs(3, 2, 1))[1];
                 Attrs a = pool_attrs(3, 2, 1);
                 a.set("x_shape", xs);
                 return Cases{one("k3_s2_p1", {G.rn(idx.shape()), idx}, {true, false}, op_fn("max_pool2d_backward", a))};
               }});
  t.push_back({"avg_pool2d", false, [=](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("k3_s2_p1_incl", {G.rn({2, 5, 5, G.n(3)})}, {true},
                                  op_fn("avg_pool2d", pool_attrs(3, 2, 1).set("count_include_pad", true))),
                              one("k3_s2_p1_excl", {G.rn({2, 5, 5, G.n(3)})}, {true},
                                  op_fn("avg_pool2d", pool_attrs(3, 2, 1).set("count_include_pad", false)))};
               }});
  t.push_back({"avg_pool2d_backward", false, [=](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("k3_s2_p1_excl", {G.rn({2, 3, 3, G.n(3)})}, {true},
                                  op_fn("avg_pool2d_backward", pool_attrs(3, 2, 1)
                                                                   .set("count_include_pad", false)
                                                                   .set("x_shape", Shape{2, 5, 5, G.n(3)})))};
               }});
  t.push_back({"global_avg_pool", true, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("nhwc", {G.rn({2, 3, 4, G.n(5)})}, {true},
                                  [](const std::vector<Tensor>& in) { return std::vector<Tensor>{global_avg_pool(in[0])}; })};
               }});

  // ---- normalisation ----
  auto bn = [](double eps) {
    return [eps](const std::vector<Tensor>& in) {
      int64_t c = in[0].shape().back();
      Tensor rm = zeros({c}, in[0].dtype(), in[0].device()), rv = ones({c}, in[0].dtype(), in[0].device());
      auto r = batch_norm_train(in[0], in[1], in[2], rm, rv, 0.1, eps);
      return std::vector<Tensor>{r.y, r.mean, r.invstd};
    };
  };
  t.push_back({"batch_norm_train", false, [=](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 int64_t c = G.n(3);
                 return Cases{one("1d_affine", {G.rn({6, c}), G.rn({c}), G.rn({c})}, {true, true, true}, bn(1e-5)),
                              one("2d_nhwc", {G.rn({2, 3, 3, c}), G.rn({c}), G.rn({c})}, {true, true, true}, bn(1e-5)),
                              one("no_affine", {G.rn({5, c}), Tensor(), Tensor()}, {true, false, false}, bn(1e-3))};
               }});
  t.push_back({"batch_norm_backward", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 int64_t c = G.n(3);
                 return Cases{one("2d", {G.rn({2, 2, 2, c}), G.rn({2, 2, 2, c}), G.rn({c}), G.pos({c}), G.rn({c})},
                                  {true, true, true, true, true}, op_fn("batch_norm_backward")),
                              one("no_gamma", {G.rn({7, c}), G.rn({7, c}), G.rn({c}), G.pos({c}), Tensor()},
                                  {true, true, true, true, false}, op_fn("batch_norm_backward"))};
               }});
  t.push_back({"batch_norm_eval", true, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 int64_t c = G.n(3);
                 Tensor rm = G.rn({c}), rv = G.pos({c});
                 return Cases{one("2d", {G.rn({2, 2, 2, c}), G.rn({c}), G.rn({c})}, {true, true, true},
                                  [rm, rv](const std::vector<Tensor>& in) {
                                    Device d = in[0].device();
                                    return std::vector<Tensor>{batch_norm_eval(in[0], in[1], in[2], rm.to(d), rv.to(d), 1e-5)};
                                  })};
               }});
  t.push_back({"layer_norm", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 int64_t c = G.n(5);
                 return Cases{one("affine", {G.rn({2, 3, c}), G.rn({c}), G.rn({c})}, {true, true, true},
                                  op_fn("layer_norm", {{"eps", 1e-5}})),
                              one("plain", {G.rn({4, c}), Tensor(), Tensor()}, {true, false, false},
                                  op_fn("layer_norm", {{"eps", 1e-5}})),
                              one("single_row", {G.rn({c}), G.rn({c}), G.rn({c})}, {true, true, true},
                                  op_fn("layer_norm", {{"eps", 1e-5}}))};
               }});
  t.push_back({"layer_norm_backward", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 int64_t c = G.n(4);
                 return Cases{one("affine", {G.rn({3, c}), G.rn({3, c}), G.rn({3}), G.pos({3}), G.rn({c}), G.rn({c})},
                                  {true, true, true, true, true, false}, op_fn("layer_norm_backward")),
                              one("plain", {G.rn({2, 2, c}), G.rn({2, 2, c}), G.rn({2, 2}), G.pos({2, 2}), Tensor(),
                                            Tensor()},
                                  {true, true, true, true, false, false}, op_fn("layer_norm_backward"))};
               }});

  // ---- softmax and losses ----
  t.push_back({"softmax", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("axis1", {G.rn({3, G.n(5)})}, {true}, op_fn("softmax", {{"axis", int64_t(1)}})),
                              one("axis0_3d", {G.rn({4, 2, G.n(3)})}, {true}, op_fn("softmax", {{"axis", int64_t(0)}}))};
               }});
  t.push_back({"log_softmax", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("axis1", {G.rn({3, G.n(5)})}, {true}, op_fn("log_softmax", {{"axis", int64_t(1)}})),
                              one("axis1_3d", {G.rn({2, 4, G.n(3)})}, {true}, op_fn("log_softmax", {{"axis", int64_t(1)}}))};
               }});
  t.push_back({"cross_entropy", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 int64_t n = G.n(6), c = 5;
                 return Cases{one("indices", {G.rn({n, c}), G.idx({n}, c)}, {true, false},
                                  op_fn("cross_entropy", {{"label_smoothing", 0.0}})),
                              one("smooth0.1", {G.rn({n, c}), G.idx({n}, c)}, {true, false},
                                  op_fn("cross_entropy", {{"label_smoothing", 0.1}}))};
               }});
  t.push_back({"cross_entropy_soft", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 int64_t n = G.n(4);
                 Tensor multi_hot = compare(G.rn({n, 5}), "gt", 0.0);
                 return Cases{one("probs", {G.rn({n, 5}), softmax(G.rn({n, 5}), 1)}, {true, true}, op_fn("cross_entropy_soft")),
                              one("multi_hot", {G.rn({n, 5}), multi_hot}, {true, false}, op_fn("cross_entropy_soft"))};
               }});
  t.push_back({"l2_normalize", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("rows", {G.rn({4, G.n(6)})}, {true}, op_fn("l2_normalize", {{"axis", int64_t(1)}, {"eps", 1e-12}})),
                              one("axis0", {G.rn({3, G.n(4)})}, {true}, op_fn("l2_normalize", {{"axis", int64_t(0)}, {"eps", 1e-12}}))};
               }});

  // ---- randomness and attention (composites) ----
  t.push_back({"dropout", true, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("p0.3", {G.rn({4, G.n(6)})}, {true}, [](const std::vector<Tensor>& in) {
                   Generator gen(1234);  // the same mask at every evaluation
                   return std::vector<Tensor>{dropout(in[0], 0.3, gen)};
                 })};
               }});
  t.push_back({"drop_path", true, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("p0.5", {G.rn({6, 2, G.n(3)})}, {true}, [](const std::vector<Tensor>& in) {
                   Generator gen(99);
                   return std::vector<Tensor>{drop_path(in[0], 0.5, gen)};
                 })};
               }});
  t.push_back({"scaled_dot_product_attention", true, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 int64_t L = G.n(4), d = 3;
                 auto sdpa = [](bool causal) {
                   return [causal](const std::vector<Tensor>& in) {
                     return std::vector<Tensor>{scaled_dot_product_attention(in[0], in[1], in[2], causal)};
                   };
                 };
                 return Cases{one("full", {G.rn({2, L, d}), G.rn({2, L, d}), G.rn({2, L, 2})}, {true, true, true}, sdpa(false)),
                              one("causal", {G.rn({1, 2, L, d}), G.rn({1, 2, L, d}), G.rn({1, 2, L, d})}, {true, true, true},
                                  sdpa(true))};
               }});

  // ---- collectives (the current group: one rank here; tests/dist/ runs
  // these rows on 1-4 ranks with inner products summed over the ranks) ----
  auto coll = [](Tensor (*f)(const Tensor&, int)) {
    return [f](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in[0], -1)}; };
  };
  t.push_back({"all_reduce_sum", false, [coll](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("[3,4]", {G.rn({3, G.n(4)})}, {true}, coll(all_reduce_sum))};
               }});
  t.push_back({"all_gather", false, [coll](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 return Cases{one("[2,3]", {G.rn({2, G.n(3)})}, {true}, coll(all_gather))};
               }});
  t.push_back({"reduce_scatter_sum", false, [coll](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 const int64_t ranks = dist::group(dist::current_group()).size();
                 return Cases{one("[2*ranks,3]", {G.rn({2 * ranks, G.n(3)})}, {true}, coll(reduce_scatter_sum))};
               }});
  t.push_back({"broadcast", false, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 const int last = dist::group(dist::current_group()).size() - 1;
                 return Cases{one("root0", {G.rn({3, G.n(2)})}, {true},
                                  [](const std::vector<Tensor>& in) { return std::vector<Tensor>{broadcast(in[0], 0)}; }),
                              one("root_last", {G.rn({2, G.n(2)})}, {true}, [last](const std::vector<Tensor>& in) {
                                return std::vector<Tensor>{broadcast(in[0], last)};
                              })};
               }});
  // Curvature through the collectives: second-order terms couple the ranks'
  // values, so H·v needs the collectives of tangents and of cotangents'
  // tangents (a gathered-negatives loss in miniature).
  t.push_back({"collectives_nonlinear", true, [](Generator& g, DType dt, int s) {
                 Gen G{g, dt, s};
                 const int64_t ranks = dist::group(dist::current_group()).size();
                 return Cases{
                     one("gather_scatter", {G.rn({2, G.n(3)}), G.rn({2 * ranks, G.n(3)})}, {true, true},
                         [](const std::vector<Tensor>& in) {
                           Tensor Z = all_gather(tanh(in[0]));            // every rank's rows
                           Tensor P = softmax(matmul(Z, Z, false, true), 1);  // couples them
                           Tensor y = reduce_scatter_sum(mul(tanh(matmul(P, Z)), in[1]));
                           return std::vector<Tensor>{y};
                         }),
                     one("reduce_broadcast", {G.rn({3, G.n(2)})}, {true}, [](const std::vector<Tensor>& in) {
                       Tensor m = all_reduce_sum(mul(in[0], in[0]));
                       return std::vector<Tensor>{mul(tanh(broadcast(in[0], 0)), m)};
                     })};
               }});
  return t;
}

}  // namespace

const std::vector<OpEntry>& op_table() {
  static const std::vector<OpEntry> t = build();
  return t;
}

const std::vector<std::pair<std::string, std::string>>& op_table_exempt() {
  static const std::vector<std::pair<std::string, std::string>> e = {
      {"cast", "dtype conversion; values checked in test_tensor (an f64 derivative check through f32 is meaningless)"},
      {"sign", "not differentiable (zero derivative, never recorded)"},
      {"compare_gt", "mask; not differentiable"},
      {"compare_ge", "mask; not differentiable"},
      {"compare_lt", "mask; not differentiable"},
      {"compare_le", "mask; not differentiable"},
      {"compare_eq", "mask; not differentiable"},
      {"compare_ne", "mask; not differentiable"},
      {"one_hot", "creates a constant; not differentiable"},
      {"dropout_mask", "creates a constant; checked through the dropout entry"},
  };
  return e;
}

}  // namespace bissl::check
