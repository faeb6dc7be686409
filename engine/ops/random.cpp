// Dropout masks (Philox), dropout, drop-path and scaled dot-product attention.
// Masks are ops with no differentiable inputs; dropout multiplies by them, so
// its VJP and JVP are those of mul.
#include <cmath>
#include <limits>

#include "engine/dist/comm.h"
#include "engine/ops/common.h"

namespace bissl {
namespace ops {
void register_random(OpRegistry& r) {
  OpDef op = make_op("dropout_mask", 0, 1, "Bernoulli(1-p) mask scaled by 1/(1-p), Philox(seed, offset)");
  op.attrs = {"shape: ints", "p: float", "seed: int", "offset: int", "dtype: int", "device: int"};
  op.nondiff_outputs = {0};
  op.forward[0] = [](const std::vector<Tensor>&, const Attrs& a) {
    double p = a.f("p");
    BISSL_CHECK(p >= 0 && p < 1, "dropout: expected 0 <= p < 1, found ", p);
    Tensor m = empty(a.ints("shape"), DType(a.i("dtype")), Device(a.i("device")));
    kern::DeviceScope ds(m.device());  // no inputs: the device is an attribute
    uint64_t seed = uint64_t(a.i("seed")), off = uint64_t(a.i("offset"));
    BISSL_FLOAT_KERNEL(m.dtype(), "dropout_mask", kern::dropout_mask<scalar_t>(m.data<scalar_t>(), m.numel(), p, seed, off));
    return std::vector<Tensor>{m};
  };
  r.add(std::move(op));
}

}  // namespace ops

Tensor dropout_mask(const Shape& s, double p, Generator& g, DType t, Device d) {
  static const OpDef& op = OpRegistry::get().op("dropout_mask");
  uint64_t off = g.advance(uint64_t(numel(s)));
  return call_op(op, {}, {{"shape", s}, {"p", p}, {"seed", int64_t(g.seed())}, {"offset", int64_t(off)},
                          {"dtype", int64_t(t)}, {"device", int64_t(d)}})[0];
}

Tensor dropout(const Tensor& x, double p, Generator& g, bool training) {
  if (!training || p == 0.0) return x;
  return mul(x, dropout_mask(x.shape(), p, g, x.dtype(), x.device()));
}

Tensor drop_path(const Tensor& x, double p, Generator& g, bool training) {
  if (!training || p == 0.0) return x;
  Shape s(size_t(x.dim()), 1);
  s[0] = x.shape()[0];
  // On several ranks: the draw of the whole job's rows, this rank's slice
  // (the one-process draw, whatever the number of ranks).
  const dist::RowWindow w = dist::row_window(s[0]);
  if (w.total == s[0]) return mul(x, dropout_mask(s, p, g, x.dtype(), x.device()));
  const int64_t n = s[0];
  s[0] = w.total;
  return mul(x, slice(dropout_mask(s, p, g, x.dtype(), x.device()), 0, w.offset, w.offset + n));
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  BISSL_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(),
              "attention: expected q, k, v of equal rank >= 2, found ", shape_str(q.shape()), ", ",
              shape_str(k.shape()), ", ", shape_str(v.shape()));
  double s = scale > 0 ? scale : 1.0 / std::sqrt(double(q.shape().back()));
  Tensor scores = mul(matmul(q, k, false, true), s);
  if (causal) {
    int64_t lq = q.shape()[size_t(q.dim() - 2)], lk = k.shape()[size_t(k.dim() - 2)];
    Tensor mask = zeros({lq, lk}, q.dtype());
    for (int64_t i = 0; i < lq; ++i)
      for (int64_t j = i + 1 + (lk - lq); j < lk; ++j) mask.set_flat(i * lk + j, 1.0);
    scores = masked_fill(scores, mask.to(q.device()), -std::numeric_limits<double>::infinity());
  }
  return matmul(softmax(scores, -1), v);
}

}  // namespace bissl
