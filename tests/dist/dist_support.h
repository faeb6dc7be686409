#pragma once
// What the multi-rank tests share: this rank and the world's size,
// relative errors, bitwise agreement across ranks, and the evaluation of a
// loss share (loss, gradient, H·v fresh and replayed, each
// summed over the ranks).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "engine/autograd.h"
#include "engine/dist/comm.h"
#include "engine/ops.h"
#include "tests/support.h"

namespace bissl::dist_test {

inline int R() { return dist::rank(); }
inline int N() { return dist::size(); }

using testing::flat;  // tests/support.h

inline double rel(const std::vector<double>& a, const std::vector<double>& b) {
  double nd = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) nd += (a[i] - b[i]) * (a[i] - b[i]), na += a[i] * a[i], nb += b[i] * b[i];
  return std::sqrt(nd) / std::max({std::sqrt(na), std::sqrt(nb), 1e-300});
}
inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Whether every rank holds the same bytes.
inline bool same_bits_everywhere(const Tensor& t) {
  Tensor h = t.to(Device::CPU);
  std::vector<char> all(h.nbytes() * size_t(N()));
  dist::world().all_gather(h.raw(), all.data(), int64_t(h.nbytes()));
  for (int r = 0; r < N(); ++r)
    if (std::memcmp(all.data() + size_t(r) * h.nbytes(), h.raw(), h.nbytes()) != 0) return false;
  return true;
}

struct Result {
  double loss = 0;
  std::vector<double> grad, hv, hv2, replayed;
};

// A loss share of parameters `params` (leaves that require grad): the
// loss, gradient, H·v along v and v2 and a Linearization's replay at v2,
// each summed over the ranks; scale: the reference scheme's 1/N.
inline Result evaluate(const std::vector<Tensor>& params, const std::vector<Tensor>& v,
                       const std::vector<Tensor>& v2, const std::function<Tensor()>& loss, double scale = 1.0) {
  Result r;
  auto reduced = [&](const std::vector<Tensor>& ts) {
    std::vector<Tensor> out;
    for (auto& t : ts) out.push_back(mul(all_reduce_sum(t.detach()), scale));
    return flat(out);
  };
  HvpResult h = hvp(loss, params, v);
  r.loss = dist::all_reduce_sum(h.loss.item()) * scale;
  r.grad = reduced(h.grad);
  r.hv = reduced(h.hv);
  r.hv2 = reduced(hvp(loss, params, v2).hv);
  Linearization lin(loss, params, v);
  r.replayed = reduced(lin.hvp(v2));
  return r;
}
// The same for one parameter tensor W (a fresh leaf of W0's values).
inline Result evaluate(const Tensor& W0, const Tensor& v, const Tensor& v2,
                       const std::function<Tensor(const Tensor&)>& loss_of, double scale = 1.0) {
  Tensor W = W0.clone().requires_grad_(true);
  return evaluate({W}, {v}, {v2}, [&] { return loss_of(W); }, scale);
}

}  // namespace bissl::dist_test
