#pragma once
// One op-table case run on one device and in the current backend modes:
// forward, the VJP of a random objective, the JVP along a direction and
// forward-over-reverse H·v, for comparing two runs of the same case (CUDA
// against the CPU, oneDNN against im2col).
#include <algorithm>
#include <cstdio>
#include <vector>

#include "engine/autograd.h"
#include "engine/check/gradcheck.h"
#include "engine/check/op_table.h"
#include "kernels/cpu/conv_onednn.h"

namespace bissl::testops {

inline std::vector<Tensor> to_dev(const std::vector<Tensor>& xs, Device d) {
  std::vector<Tensor> r;
  for (auto& x : xs) r.push_back(x.defined() ? x.to(d) : Tensor());
  return r;
}

struct Run {
  std::vector<Tensor> outs, grads, tangents, hv;
};

// Forward, VJP of Σ⟨w_k, y_k⟩, JVP along u, and forward-over-reverse H·v on one device.
inline Run run_case(const check::OpCase& c, Device d, const std::vector<Tensor>& w, const std::vector<Tensor>& u,
                    const std::vector<Tensor>& v) {
  Run r;
  auto in = to_dev(c.inputs, d);
  std::vector<Tensor> leaves, xs;
  for (size_t i = 0; i < in.size(); ++i) {
    Tensor x = in[i].defined() ? in[i].detach() : Tensor();
    if (c.diff[i]) x.requires_grad_(true), leaves.push_back(x);
    xs.push_back(x);
  }
  auto objective = [&](const std::vector<Tensor>& ys) {
    Tensor L;
    for (size_t k = 0; k < ys.size(); ++k) {
      if (!ys[k].defined() || !is_floating(ys[k].dtype())) continue;
      Tensor t = sum(mul(ys[k], w[k].to(d)));
      L = L.defined() ? add(L, t) : t;
    }
    return L;
  };
  auto ys = c.fn(xs);
  for (auto& y : ys) r.outs.push_back(y.defined() ? y.detach() : Tensor());
  r.grads = grad({objective(ys)}, leaves);
  std::vector<Tensor> tans;
  for (size_t i = 0; i < in.size(); ++i) tans.push_back(c.diff[i] ? u[i].to(d) : Tensor());
  r.tangents = jvp(c.fn, in, tans).second;
  std::vector<Tensor> vs;
  for (size_t i = 0; i < in.size(); ++i)
    if (c.diff[i]) vs.push_back(v[i].to(d));
  r.hv = hvp([&] { return objective(c.fn(xs)); }, leaves, vs).hv;
  return r;
}

inline double max_rel(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!a[i].defined() || !b[i].defined()) continue;
    worst = std::max(worst, check::rel_error(a[i].to_vector(), b[i].to_vector()));
  }
  return worst;
}

// The tensors in dtype dt (undefined ones stay undefined).
inline std::vector<Tensor> as(const std::vector<Tensor>& xs, DType dt) {
  std::vector<Tensor> r;
  for (auto& x : xs) r.push_back(x.defined() ? x.to(dt) : Tensor());
  return r;
}

// Whether this build has oneDNN; says once, loudly, that `what` skips without it.
inline bool have_onednn(const char* what) {
  static bool once = [what] {
    if (!cpu::onednn_available())
      std::printf("SKIPPED: %s (this build has no oneDNN: apt install libdnnl-dev)\n", what);
    return cpu::onednn_available();
  }();
  return once;
}

}  // namespace bissl::testops
