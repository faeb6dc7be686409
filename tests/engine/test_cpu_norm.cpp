// f32 batch norm through oneDNN (BISSL_CPU_BN=onednn, kernels/cpu/norm_onednn.h)
// against our own kernels in f32 and against the f64 reference: outputs,
// VJPs, JVPs and H·v of batch_norm_train and batch_norm_backward at the main
// job's shapes, every call taken by oneDNN; the running-statistics replay's
// bits; and what keeps our own arithmetic (the default, portable numerics).
// Without oneDNN in the build the oneDNN cases skip, loudly.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "engine/backend.h"
#include "engine/check/op_table.h"
#include "engine/ops.h"
#include "kernels/cpu/conv_onednn.h"
#include "kernels/cpu/norm_onednn.h"
#include "kernels/cpu/parallel.h"
#include "tests/engine/op_runs.h"

using namespace bissl;
using testops::max_rel;
using testops::Run;
using testops::run_case;
using testops::as;
using testops::have_onednn;

namespace {

struct PathGuard {
  ~PathGuard() {
    cpu::set_bn_path(cpu::BnPath::Own);
    cpu::portable_numerics.store(false);
  }
};

// The main job's batch-norm inputs (ResNet-18 at width 0.25 on 28×28 images,
// small batches), the projection head's [N, C], and no affine parameters.
struct Shp {
  const char* label;
  Shape x;
  bool affine;
};
const std::vector<Shp>& shapes() {
  static const std::vector<Shp> s{{"stem 14x14x16", {6, 14, 14, 16}, true},
                                  {"7x7x16", {8, 7, 7, 16}, true},
                                  {"4x4x32", {8, 4, 4, 32}, true},
                                  {"1x1x128", {16, 1, 1, 128}, true},
                                  {"head [N, C]", {32, 64}, true},
                                  {"no affine", {8, 5, 3, 12}, false}};
  return s;
}

std::vector<check::OpCase> cases_of(const Shp& c, Generator& g) {
  const int64_t ch = c.x.back();
  std::vector<check::OpCase> r;
  Tensor x = randn(c.x, g, DType::F32, 0.5, 2.0);
  Tensor gamma = c.affine ? randn({ch}, g, DType::F32) : Tensor(), beta = c.affine ? randn({ch}, g) : Tensor();
  r.push_back({std::string("batch_norm_train ") + c.label, {x, gamma, beta}, {true, c.affine, c.affine},
               [](const std::vector<Tensor>& in) {
                 auto o = batch_norm_train(in[0], in[1], in[2], Tensor(), Tensor(), 0.1, 1e-5);
                 return std::vector<Tensor>{o.y, o.mean, o.invstd};
               }});
  Tensor mean, invstd;
  {
    NoGradGuard ng;
    auto o = batch_norm_train(x.to(DType::F64), Tensor(), Tensor(), Tensor(), Tensor(), 0.1, 1e-5);
    mean = o.mean.to(DType::F32), invstd = o.invstd.to(DType::F32);
  }
  r.push_back({std::string("batch_norm_backward ") + c.label, {randn(c.x, g), x, mean, invstd, gamma},
               {true, true, false, false, c.affine},
               [](const std::vector<Tensor>& in) { return batch_norm_backward(in[0], in[1], in[2], in[3], in[4]); }});
  return r;
}

}  // namespace

TEST_SUITE("cpu norm") {
  TEST_CASE("oneDNN f32 batch norm equals ours and the f64 reference within f32 rounding") {
    if (!have_onednn("oneDNN batch norm checks")) return;
    PathGuard guard;
    Generator g(31);
    for (const auto& s : shapes())
      for (const auto& c32 : cases_of(s, g)) {
        std::vector<Tensor> w, u, v;
        {
          NoGradGuard ng;
          for (auto& y : c32.fn(c32.inputs)) w.push_back(randn(y.shape(), g, DType::F64));
        }
        for (size_t i = 0; i < c32.inputs.size(); ++i) {
          const Shape sh = c32.inputs[i].defined() ? c32.inputs[i].shape() : Shape{1};
          u.push_back(randn(sh, g, DType::F64));
          v.push_back(randn(sh, g, DType::F64));
        }
        auto w32 = as(w, DType::F32), u32 = as(u, DType::F32), v32 = as(v, DType::F32);
        check::OpCase c64 = c32;
        c64.inputs = as(c32.inputs, DType::F64);
        Run ref = run_case(c64, Device::CPU, as(w32, DType::F64), as(u32, DType::F64), as(v32, DType::F64));
        cpu::set_bn_path(cpu::BnPath::Own);
        const int64_t before = cpu::onednn_batch_norm_calls();
        Run own = run_case(c32, Device::CPU, w32, u32, v32);
        CHECK(cpu::onednn_batch_norm_calls() == before);
        cpu::set_bn_path(cpu::BnPath::OneDNN);
        Run dn = run_case(c32, Device::CPU, w32, u32, v32);
        cpu::set_bn_path(cpu::BnPath::Own);
        CHECK(cpu::onednn_batch_norm_calls() > before);  // oneDNN took this shape
        auto err = [&](const Run& a) {
          return std::max({max_rel(a.outs, ref.outs), max_rel(a.grads, ref.grads), max_rel(a.tangents, ref.tangents),
                           max_rel(a.hv, ref.hv)});
        };
        const double e_dn = err(dn), e_own = err(own);
        INFO(c32.label);
        MESSAGE(c32.label, ": oneDNN ", e_dn, ", ours ", e_own, " (largest relative error against f64)");
        // Measured (2-core EPYC): ours up to 1.2e-7, oneDNN up to 4.2e-7 (its sums are f32).
        CHECK(e_own <= 5e-6);
        CHECK(e_dn <= 5e-6);
      }
  }

  TEST_CASE("oneDNN batch norm: the running update's replay gives the forward's bits; gamma does not move the stats") {
    if (!have_onednn("oneDNN batch norm checks")) return;
    PathGuard guard;
    cpu::set_bn_path(cpu::BnPath::OneDNN);
    Generator g(32);
    NoGradGuard ng;
    for (const Shape& s : {Shape{8, 7, 7, 16}, Shape{32, 64}}) {
      const int64_t before = cpu::onednn_batch_norm_calls();
      const int64_t c = s.back();
      Tensor x = randn(s, g, DType::F32, 0.3, 1.5), gamma = randn({c}, g), beta = randn({c}, g);
      Tensor rm1 = randn({c}, g), rv1 = add(mul(randn({c}, g), 0.1), 1.0);
      Tensor rm2 = rm1.clone(), rv2 = rv1.clone();
      auto o = batch_norm_train(x, gamma, beta, rm1, rv1, 0.1, 1e-5);
      batch_norm_update_running(x, rm2, rv2, 0.1, 1e-5);
      CHECK(rm1.to_vector() == rm2.to_vector());
      CHECK(rv1.to_vector() == rv2.to_vector());
      auto plain = batch_norm_train(x, Tensor(), Tensor(), Tensor(), Tensor(), 0.1, 1e-5);
      CHECK(o.mean.to_vector() == plain.mean.to_vector());
      CHECK(o.invstd.to_vector() == plain.invstd.to_vector());
      CHECK(cpu::onednn_batch_norm_calls() == before + 3);  // both forwards and the replay
    }
  }

  TEST_CASE("our own kernels by default and in portable numerics: their bits, not oneDNN's") {
    PathGuard guard;
    Generator g(33);
    NoGradGuard ng;
    Tensor x = randn({8, 7, 7, 16}, g, DType::F32, 0.5, 2.0), gamma = randn({16}, g), beta = randn({16}, g);
    Tensor gy = randn({8, 7, 7, 16}, g);
    auto run = [&] {
      auto o = batch_norm_train(x, gamma, beta, Tensor(), Tensor(), 0.1, 1e-5);
      auto b = batch_norm_backward(gy, x, o.mean, o.invstd, gamma);
      return std::vector<std::vector<double>>{o.y.to_vector(), o.mean.to_vector(), o.invstd.to_vector(),
                                              b[0].to_vector(), b[1].to_vector(), b[2].to_vector()};
    };
    CHECK(std::string(cpu::bn_path_name(cpu::bn_path())) == "own");  // the default (BISSL_CPU_BN unset)
    CHECK(backend_summary().find("f32 batch norm: own") != std::string::npos);
    const int64_t before = cpu::onednn_batch_norm_calls();
    const auto own = run();
    cpu::set_bn_path(cpu::BnPath::OneDNN);
    cpu::portable_numerics.store(true);
    CHECK(run() == own);  // portable numerics: ours even when oneDNN is asked for
    CHECK(cpu::onednn_batch_norm_calls() == before);
    cpu::portable_numerics.store(false);
    const auto dn = run();
    if (have_onednn("oneDNN batch norm checks")) {
      CHECK(dn != own);  // oneDNN's sums: other bits (so the cases above are not no-ops)
      CHECK(cpu::onednn_batch_norm_calls() == before + 2);
    }
    CHECK(run() == dn);  // and the same bits run after run
  }
}
