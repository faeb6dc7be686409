// The generic derivative checks over every op in the table, in f64:
// VJP (inner-product identity and central differences), JVP (central
// differences), HVP (symmetry, central differences of gradients, and
// forward-over-reverse = reverse-over-reverse). Relative error bound:
// check::kGradTol = 1e-6, with errors divided by max(|a|, |b|, 1e-3).
#include <doctest/doctest.h>

#include <set>

#include "engine/autograd.h"
#include "engine/check/gradcheck.h"
#include "engine/ops.h"
#include "engine/check/op_table.h"
#include "engine/op_registry.h"
#include "engine/ops/common.h"
#include "tests/support.h"

using namespace bissl;

namespace {
using bissl::testing::flat;

// Largest relative error over tangent lists; an undefined tangent is zero.
double tangent_rel_error(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  double worst = 0;
  REQUIRE(a.size() == b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    Tensor x = a[k], y = b[k];
    if (!x.defined() && !y.defined()) continue;
    if (!x.defined()) x = zeros_like(y);
    if (!y.defined()) y = zeros_like(x);
    worst = std::max(worst, check::rel_error(x.to_vector(), y.to_vector()));
  }
  return worst;
}
}  // namespace

TEST_SUITE("op_table") {
  TEST_CASE("layer norm's fused JVPs equal its composites' for every pattern of zero tangents (f64 and f32)") {
    for (DType dt : {DType::F64, DType::F32}) {
      const double tol = dt == DType::F64 ? 1e-12 : 1e-5;
      Generator g(78);
      for (int params = 0; params < 4; ++params) {  // bit 0: gamma, bit 1: beta
        const int64_t c = 6;
        Tensor x = randn({2, 3, c}, g, dt), gamma = params & 1 ? randn({c}, g, dt) : Tensor(),
               beta = params & 2 ? randn({c}, g, dt) : Tensor();
        auto fwd = [](const std::vector<Tensor>& in) {
          return call_op("layer_norm", {in[0], in[1], in[2]}, {{"eps", 1e-5}});
        };
        for (int mask = 1; mask < 8; ++mask) {
          if (((mask & 2) && !gamma.defined()) || ((mask & 4) && !beta.defined())) continue;
          std::vector<Tensor> t = {mask & 1 ? randn(x.shape(), g, dt) : Tensor(),
                                   mask & 2 ? randn({c}, g, dt) : Tensor(), mask & 4 ? randn({c}, g, dt) : Tensor()};
          CAPTURE(params);
          CAPTURE(mask);
          CHECK(tangent_rel_error(jvp(fwd, {x, gamma, beta}, t).second,
                                  ops::layer_norm_jvp_composite({x, gamma, beta}, t, 1e-5)) <= tol);
        }
        auto stats = fwd({x, gamma, beta});
        std::vector<Tensor> in = {randn(x.shape(), g, dt), x, stats[1], stats[2], gamma, beta};
        auto bwd = [](const std::vector<Tensor>& i) { return call_op("layer_norm_backward", i); };
        for (int mask = 1; mask < 32; ++mask) {
          if ((mask & 16) && !gamma.defined()) continue;
          std::vector<Tensor> t;
          for (int k = 0; k < 5; ++k) t.push_back(mask & (1 << k) ? randn(in[size_t(k)].shape(), g, dt) : Tensor());
          t.push_back(Tensor());  // beta: read only for whether it exists
          CAPTURE(params);
          CAPTURE(mask);
          CHECK(tangent_rel_error(jvp(bwd, in, t).second, ops::layer_norm_backward_jvp_composite(in, t)) <= tol);
        }
      }
    }
  }

  TEST_CASE("batch norm's fused JVPs equal its composites' for every pattern of zero tangents (f64 and f32)") {
    auto max_rel = tangent_rel_error;
    for (DType dt : {DType::F64, DType::F32}) {
      const double tol = dt == DType::F64 ? 1e-12 : 1e-5;
      Generator g(77);
      for (int params = 0; params < 4; ++params) {  // bit 0: gamma, bit 1: beta
        const int64_t c = 5;
        Tensor x = randn({3, 2, 4, c}, g, dt), gamma = params & 1 ? randn({c}, g, dt) : Tensor(),
               beta = params & 2 ? randn({c}, g, dt) : Tensor();
        auto fwd = [](const std::vector<Tensor>& in) {
          const int64_t ch = in[0].shape().back();
          Tensor rm = zeros({ch}, in[0].dtype()), rv = ones({ch}, in[0].dtype());
          auto r = batch_norm_train(in[0], in[1], in[2], rm, rv, 0.1, 1e-5);
          return std::vector<Tensor>{r.y, r.mean, r.invstd};
        };
        for (int mask = 1; mask < 8; ++mask) {
          if (((mask & 2) && !gamma.defined()) || ((mask & 4) && !beta.defined())) continue;
          std::vector<Tensor> t = {mask & 1 ? randn(x.shape(), g, dt) : Tensor(),
                                   mask & 2 ? randn({c}, g, dt) : Tensor(), mask & 4 ? randn({c}, g, dt) : Tensor()};
          auto fused = jvp(fwd, {x, gamma, beta}, t).second;
          auto composite = ops::batch_norm_train_jvp_composite({x, gamma, beta}, t, 1e-5);
          CAPTURE(params);
          CAPTURE(mask);
          CHECK(max_rel(fused, composite) <= tol);
        }
        // batch_norm_backward: (gy, x, mean, invstd, gamma), any subset of tangents.
        auto stats = fwd({x, gamma, beta});
        Tensor gy = randn(x.shape(), g, dt);
        std::vector<Tensor> in = {gy, x, stats[1], stats[2], gamma};
        auto bwd = [](const std::vector<Tensor>& i) { return call_op("batch_norm_backward", i); };
        for (int mask = 1; mask < 32; ++mask) {
          if ((mask & 16) && !gamma.defined()) continue;
          std::vector<Tensor> t;
          for (int k = 0; k < 5; ++k) t.push_back(mask & (1 << k) ? randn(in[size_t(k)].shape(), g, dt) : Tensor());
          auto fused = jvp(bwd, in, t).second;
          auto composite = ops::batch_norm_backward_jvp_composite(in, t);
          CAPTURE(params);
          CAPTURE(mask);
          CHECK(max_rel(fused, composite) <= tol);
        }
      }
    }
  }

  TEST_CASE("linearize: replaying the recorded tangent rules gives hvp's H·v for every op") {
    int64_t cases = 0;
    for (auto& entry : check::op_table()) {
      Generator g(0x11AEL + uint64_t(cases));
      for (auto& c : entry.cases(g, DType::F64, 1)) {
        std::vector<Tensor> xs, leaves;
        for (size_t i = 0; i < c.inputs.size(); ++i) {
          Tensor x = c.inputs[i].defined() ? c.inputs[i].detach() : Tensor();
          if (c.diff[i]) x.requires_grad_(true), leaves.push_back(x);
          xs.push_back(x);
        }
        if (leaves.empty()) continue;
        // A random linear functional of the outputs: its Hessian is the op's second derivative.
        auto ys0 = c.fn(xs);
        std::vector<Tensor> w;
        for (auto& y : ys0) w.push_back(y.defined() && is_floating(y.dtype()) ? randn(y.shape(), g, DType::F64) : Tensor());
        auto objective = [&] {
          auto ys = c.fn(xs);
          Tensor L;
          for (size_t k = 0; k < ys.size(); ++k) {
            if (!w[k].defined()) continue;
            Tensor t = sum(mul(ys[k], w[k]));
            L = L.defined() ? add(L, t) : t;
          }
          return L;
        };
        std::vector<Tensor> v, u;
        for (auto& l : leaves) v.push_back(randn(l.shape(), g, DType::F64)), u.push_back(randn(l.shape(), g, DType::F64));
        Linearization lin(objective, leaves, v);
        auto hu = hvp(objective, leaves, u).hv;
        INFO(entry.op, " / ", c.label);
        CHECK(flat(lin.first().hv) == flat(hvp(objective, leaves, v).hv));
        auto lu = flat(lin.hvp(u)), fu = flat(hu);
        INFO("sizes ", lu.size(), " ", fu.size(), " first ", (lu.empty() ? 0.0 : lu[0]), " ", (fu.empty() ? 0.0 : fu[0]));
        CHECK(lu == fu);
        ++cases;
      }
    }
    MESSAGE(cases, " op-table cases linearized");
    CHECK(cases > 50);
  }

  TEST_CASE("every registered op is in the table or exempt with a reason") {
    std::set<std::string> covered;
    for (auto& e : check::op_table()) covered.insert(e.op);
    for (auto& e : check::op_table_exempt()) covered.insert(e.first);
    for (auto& name : OpRegistry::get().names()) {
      INFO("op ", name);
      CHECK(covered.count(name) == 1);
    }
  }

  TEST_CASE("f64 derivative checks for every op") {
    uint64_t seed = 1;
    for (auto& entry : check::op_table()) {
      Generator g(0xB155L + seed);
      auto cases = entry.cases(g, DType::F64, 1);
      REQUIRE(!cases.empty());
      for (auto& c : cases) {
        // Fresh random inputs, never all zeros.
        for (size_t i = 0; i < c.inputs.size(); ++i) {
          if (!c.inputs[i].defined() || !c.diff[i]) continue;
          double m = 0;
          for (double v : c.inputs[i].to_vector()) m = std::max(m, std::abs(v));
          CHECK(m > 0);
        }
        for (auto& r : check::check_case(c, seed++)) {
          INFO(entry.op, " / ", c.label, " / ", r.check, ": relative error ", r.error, " (bound ", r.bound, ")");
          CHECK(r.passed());
        }
      }
    }
  }
}
