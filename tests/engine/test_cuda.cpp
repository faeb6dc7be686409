// CUDA parity: every op-table case run on CUDA and on the CPU reference, in
// f64 and f32 — outputs, VJPs (gradients of a random objective) and JVPs —
// with new device memory poisoned (NaN bytes) so unwritten outputs show.
// Tolerances: norm-wise relative error ≤ 1e-10 (f64), ≤ 1e-5 (f32).
// Without a device every case skips, loudly.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check/gradcheck.h"
#include "engine/check/op_table.h"
#include "engine/nn/layers.h"
#include "engine/op_registry.h"
#include "engine/optim/optimizer.h"
#include "tests/engine/op_runs.h"
#include "tests/engine/small_nets.h"

using namespace bissl;
using bissl::testops::max_rel;
using bissl::testops::Run;
using bissl::testops::run_case;
using bissl::testops::to_dev;

namespace {

bool have_gpu() {
  static bool once = [] {
    std::printf("bissl backend: %s\n", backend_summary().c_str());
    if (!cuda_built()) std::printf("SKIPPED: CUDA checks (this build has no CUDA backend)\n");
    else if (cuda_device_count() == 0) std::printf("SKIPPED: CUDA checks (toolkit present, no GPU on this machine)\n");
    return cuda_built() && cuda_device_count() > 0;
  }();
  return once;
}

// Restores the backend's global switches when a test case ends, however
// it ends (a failed REQUIRE or an exception must not leave poison, cuDNN off
// or deterministic mode on for the cases after it).
struct BackendDefaults {
  ~BackendDefaults() {
    cuda_set_poison(false);
    cuda_set_cudnn(true);
    cuda_set_deterministic(false);
    cuda_set_conv_autotune(true);
  }
};

}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("op table parity: CUDA vs CPU, f64 and f32, outputs / VJP / JVP / HVP") {
    if (!have_gpu()) return;
    BackendDefaults restore;
    cuda_set_poison(true);
    // f32 convolutions run three times: through cuDNN (autotuning off), by
    // the autotuned choice per shape (the default), and through im2col +
    // cuBLAS (cuDNN off). Everything else runs once, in the first mode.
    for (std::string mode : {"cudnn", "autotuned", "im2col"}) {
      const bool first = mode == "cudnn";
      cuda_set_cudnn(mode != "im2col");
      cuda_set_conv_autotune(mode == "autotuned");
      for (DType dt : {DType::F64, DType::F32}) {
        if (!first && dt == DType::F64) continue;  // f64 never uses cuDNN
        double tol = dt == DType::F64 ? 1e-10 : 1e-5;
        uint64_t seed = 11;
        for (auto& e : check::op_table()) {
          Generator g(seed++);
          bool conv = e.op.rfind("conv2d", 0) == 0;
          if (!first && !conv) continue;
          for (auto& c : e.cases(g, dt, 1)) {
            std::vector<Tensor> w, u, v;
            {
              NoGradGuard ng;
              for (auto& y : c.fn(c.inputs))
                w.push_back(y.defined() && is_floating(y.dtype()) ? randn(y.shape(), g, y.dtype()) : Tensor());
            }
            for (size_t i = 0; i < c.inputs.size(); ++i) {
              u.push_back(c.diff[i] ? randn(c.inputs[i].shape(), g, dt) : Tensor());
              v.push_back(c.diff[i] ? randn(c.inputs[i].shape(), g, dt) : Tensor());
            }
            Run cpu = run_case(c, Device::CPU, w, u, v);
            Run gpu = run_case(c, Device::CUDA, w, u, v);
            for (auto& o : gpu.outs) REQUIRE((!o.defined() || o.device() == Device::CUDA));
            // (std::string: doctest prints a bare const char* as a pointer)
            const std::string& path = mode;
            const std::string dtn = dtype_name(dt);
            INFO(e.op, " / ", c.label, " / ", dtn, " / ", path);
            double eo = max_rel(cpu.outs, gpu.outs), eg = max_rel(cpu.grads, gpu.grads),
                   et = max_rel(cpu.tangents, gpu.tangents), eh = max_rel(cpu.hv, gpu.hv);
            if (conv && dt == DType::F32)
              MESSAGE(e.op, " / ", c.label, " / ", path, ": out ", eo, " vjp ", eg, " jvp ", et, " hvp ", eh);
            CHECK(eo <= tol);
            CHECK(eg <= tol);
            CHECK(et <= tol);
            CHECK(eh <= tol * 10);
          }
        }
      }
      if (mode == "autotuned") MESSAGE("autotuned convolution choices: ", cuda_conv_choices());
    }
    cuda_set_cudnn(true);
    cuda_set_conv_autotune(true);
    cuda_set_poison(false);
  }

  TEST_CASE("conv/BN network: forward-over-reverse H·v on CUDA equals the CPU (f64, ≤ 1e-10)") {
    if (!have_gpu()) return;
    Generator g(2024);
    Tensor x = randn({4, 6, 6, 2}, g, DType::F64);
    Tensor y = from_ints({0, 2, 1, 2}, {4});
    auto p = testnets::convnet_params(g);
    std::vector<Tensor> v;
    for (auto& t : p) v.push_back(randn(t.shape(), g, DType::F64));
    auto cpu = hvp([&] { return testnets::convnet_loss(p, x, y); }, p, v);
    std::vector<Tensor> pd, vd;
    for (size_t i = 0; i < p.size(); ++i) {
      Tensor t = p[i].detach().to(Device::CUDA);
      t.requires_grad_();
      pd.push_back(t);
      vd.push_back(v[i].to(Device::CUDA));
    }
    Tensor xd = x.to(Device::CUDA), yd = y.to(Device::CUDA);
    auto gpu = hvp([&] { return testnets::convnet_loss(pd, xd, yd); }, pd, vd);
    double e = max_rel(cpu.hv, gpu.hv);
    MESSAGE("conv/BN H·v CUDA vs CPU, f64: relative error ", e);
    CHECK(e <= 1e-10);
    CHECK(max_rel(cpu.grad, gpu.grad) <= 1e-10);
  }

  TEST_CASE("Linearization on CUDA: replays equal fresh CUDA HVPs bit for bit, and the CPU's (f64, ≤ 1e-10)") {
    if (!have_gpu()) return;
    Generator g(2025);
    Tensor x = randn({4, 6, 6, 2}, g, DType::F64);
    Tensor y = from_ints({0, 2, 1, 2}, {4});
    auto p = testnets::convnet_params(g);
    std::vector<Tensor> v, u;
    for (auto& t : p) v.push_back(randn(t.shape(), g, DType::F64)), u.push_back(randn(t.shape(), g, DType::F64));
    auto cpu_u = hvp([&] { return testnets::convnet_loss(p, x, y); }, p, u).hv;
    std::vector<Tensor> pd, vd, ud;
    for (size_t i = 0; i < p.size(); ++i) {
      Tensor t = p[i].detach().to(Device::CUDA);
      t.requires_grad_();
      pd.push_back(t);
      vd.push_back(v[i].to(Device::CUDA));
      ud.push_back(u[i].to(Device::CUDA));
    }
    Tensor xd = x.to(Device::CUDA), yd = y.to(Device::CUDA);
    auto loss = [&] { return testnets::convnet_loss(pd, xd, yd); };
    Linearization lin(loss, pd, vd);
    auto replay = lin.hvp(ud), fresh = hvp(loss, pd, ud).hv;
    CHECK(max_rel(replay, fresh) == 0);
    double e = max_rel(cpu_u, replay);
    MESSAGE("linearized H·u on CUDA vs CPU, f64: relative error ", e);
    CHECK(e <= 1e-10);
  }

  TEST_CASE("normalisation JVPs on CUDA equal the CPU for every pattern of zero tangents (f64, f32)") {
    if (!have_gpu()) return;
    // The fused closed-form kernels (kernels/norm_math.h) have null-pointer
    // paths the op-table parity (every tangent given) does not reach.
    auto bn_stats = [](const Tensor& x, const Tensor& g, const Tensor& b) {
      const int64_t c = x.shape().back();
      Tensor rm = zeros({c}, x.dtype(), x.device()), rv = ones({c}, x.dtype(), x.device());
      auto r = batch_norm_train(x, g, b, rm, rv, 0.1, 1e-5);
      return std::vector<Tensor>{r.y, r.mean, r.invstd};
    };
    for (DType dt : {DType::F64, DType::F32}) {
      const double tol = dt == DType::F64 ? 1e-10 : 1e-5;
      for (bool layer : {false, true}) {
        for (int params = 0; params < 4; ++params) {  // gamma, beta present
          Generator g(90 + params);
          const int64_t c = 5;
          Tensor x = randn(layer ? Shape{3, 4, c} : Shape{4, 3, 3, c}, g, dt);
          Tensor gamma = params & 1 ? randn({c}, g, dt) : Tensor(), beta = params & 2 ? randn({c}, g, dt) : Tensor();
          auto fwd = [layer, &bn_stats](const std::vector<Tensor>& in) {
            return layer ? call_op("layer_norm", {in[0], in[1], in[2]}, {{"eps", 1e-5}}) : bn_stats(in[0], in[1], in[2]);
          };
          auto stats = fwd({x, gamma, beta});
          std::vector<Tensor> bin = {randn(x.shape(), g, dt), x, stats[1], stats[2], gamma};
          if (layer) bin.push_back(beta);
          const std::string bname = layer ? "layer_norm_backward" : "batch_norm_backward";
          auto bwd = [&bname](const std::vector<Tensor>& in) { return call_op(bname, in); };
          for (bool backward : {false, true}) {
            const std::vector<Tensor> in = backward ? bin : std::vector<Tensor>{x, gamma, beta};
            const int n = backward ? 5 : 3;
            for (int mask = 1; mask < (1 << n); ++mask) {
              std::vector<Tensor> t(in.size());
              bool ok = true;
              for (int k = 0; k < n; ++k)
                if (mask & (1 << k)) {
                  if (!in[size_t(k)].defined()) ok = false;
                  else t[size_t(k)] = randn(in[size_t(k)].shape(), g, dt);
                }
              if (!ok) continue;
              auto f = [&](const std::vector<Tensor>& i) { return backward ? bwd(i) : fwd(i); };
              auto cpu = jvp(f, in, t).second;
              auto gpu = jvp(f, to_dev(in, Device::CUDA), to_dev(t, Device::CUDA)).second;
              CAPTURE(layer);
              CAPTURE(backward);
              CAPTURE(params);
              CAPTURE(mask);
              REQUIRE(cpu.size() == gpu.size());
              for (size_t k = 0; k < cpu.size(); ++k) {
                REQUIRE(cpu[k].defined() == gpu[k].defined());
                if (cpu[k].defined()) CHECK(check::rel_error(cpu[k].to_vector(), gpu[k].to_vector()) <= tol);
              }
            }
          }
        }
      }
    }
  }

  TEST_CASE("optimiser steps on CUDA equal the CPU (SGD, LARS, AdamW; f64); LARS waits for nothing") {
    if (!have_gpu()) return;
    for (std::string kind : {"sgd", "lars", "adamw"}) {
      CAPTURE(kind);
      Generator g(7);
      std::vector<Tensor> pc, gc, pd, gd;
      for (Shape s : {Shape{5, 3}, Shape{7}, Shape{1}}) {
        Tensor p = randn(s, g, DType::F64), gr = randn(s, g, DType::F64);
        pc.push_back(p.clone()), gc.push_back(gr.clone());
        pd.push_back(p.to(Device::CUDA)), gd.push_back(gr.to(Device::CUDA));
      }
      auto make = [&](std::vector<Tensor> ps) -> std::unique_ptr<optim::Optimizer> {
        if (kind == "sgd") return std::make_unique<optim::SGD>(std::move(ps), 0.1, 0.9, 1e-3);
        if (kind == "lars") return std::make_unique<optim::LARS>(std::move(ps), 0.5, 0.9, 1e-4, 0.001);
        return std::make_unique<optim::AdamW>(std::move(ps), 1e-2, 0.9, 0.999, 1e-8, 0.05);
      };
      auto oc = make(pc), od = make(pd);
      int64_t syncs = 0;
      for (int step = 0; step < 3; ++step) {
        for (size_t i = 0; i < pc.size(); ++i) pc[i].set_grad(gc[i]), pd[i].set_grad(gd[i]);
        oc->step();
        const int64_t before = cuda_host_syncs();
        od->step();
        syncs += cuda_host_syncs() - before;
      }
      double e = max_rel(pc, pd);
      MESSAGE(kind, " on CUDA vs CPU after 3 steps: relative error ", e, ", host syncs in the steps ", syncs);
      CHECK(e <= 1e-12);
      CHECK(syncs == 0);
    }
  }

  TEST_CASE("gradient clipping on CUDA: the CPU's norm and scaling, one host wait however many parameters") {
    if (!have_gpu()) return;
    Generator g(9);
    std::vector<Tensor> pc, pd;
    for (int i = 0; i < 12; ++i) {
      Shape s = i % 3 == 0 ? Shape{7, 5} : Shape{int64_t(3 + i)};
      Tensor p = randn(s, g, DType::F64), gr = mul(randn(s, g, DType::F64), 3.0);
      pc.push_back(p.clone()), pd.push_back(p.to(Device::CUDA));
      pc.back().set_grad(gr.clone()), pd.back().set_grad(gr.to(Device::CUDA));
    }
    pd[4].set_grad(Tensor()), pc[4].set_grad(Tensor());  // a parameter without a gradient
    const double nc = optim::clip_grad_norm(pc, 1.0);
    const int64_t before = cuda_host_syncs();
    const double nd = optim::clip_grad_norm(pd, 1.0);
    const int64_t waits = cuda_host_syncs() - before;
    MESSAGE("clip_grad_norm on CUDA: norm ", nd, " (CPU ", nc, "), host waits ", waits);
    CHECK(std::abs(nd - nc) <= 1e-12 * nc);
    CHECK(waits == 1);
    std::vector<Tensor> gc, gd;
    for (size_t i = 0; i < pc.size(); ++i)
      if (pc[i].grad().defined()) gc.push_back(pc[i].grad()), gd.push_back(pd[i].grad());
    CHECK(max_rel(gc, gd) <= 1e-12);
  }

  TEST_CASE("BatchNorm on CUDA: num_batches_tracked stays on the host; train forwards wait for nothing") {
    if (!have_gpu()) return;
    Generator g(3);
    nn::BatchNorm2d cpu(4), gpu(4);
    cpu.to(DType::F64), gpu.to(DType::F64);
    gpu.to(Device::CUDA);
    CHECK(gpu.running_mean.device() == Device::CUDA);
    CHECK(gpu.num_batches_tracked.device() == Device::CPU);
    int64_t syncs = 0;
    for (int i = 0; i < 3; ++i) {
      Tensor x = randn({6, 3, 3, 4}, g, DType::F64);
      cpu.forward(x);
      Tensor xd = x.to(Device::CUDA);
      const int64_t before = cuda_host_syncs();
      gpu.forward(xd);
      syncs += cuda_host_syncs() - before;
    }
    CHECK(syncs == 0);
    CHECK(gpu.num_batches_tracked.to_vector() == std::vector<double>{3});
    CHECK(max_rel({cpu.running_mean, cpu.running_var}, {gpu.running_mean, gpu.running_var}) <= 1e-12);
    // The state dict (and a round trip through it) is unchanged by where the counter lives.
    nn::BatchNorm2d back(4);
    back.to(DType::F64);
    back.load_state_dict(gpu.state_dict());
    CHECK(back.num_batches_tracked.to_vector() == std::vector<double>{3});
  }

  TEST_CASE("deterministic mode: repeated gradients, LARS steps and max-pool VJPs are the same bits") {
    if (!have_gpu()) return;
    BackendDefaults restore;
    cuda_set_deterministic(true);
    Generator g(21);
    auto params = testnets::convnet_params(g, DType::F32);
    std::vector<Tensor> pd;
    for (auto& p : params) pd.push_back(p.detach().to(Device::CUDA).requires_grad_());
    Tensor x = randn({16, 6, 6, 2}, g).to(Device::CUDA), y = randint({16}, 0, 3, g).to(Device::CUDA);
    Tensor img = randn({8, 12, 12, 16}, g).to(Device::CUDA).requires_grad_();
    auto once = [&] {
      auto gr = grad({testnets::convnet_loss(pd, x, y)}, pd);
      Tensor pooled = max_pool2d(img, 3, 2, 1);
      gr.push_back(grad({sum(mul(pooled, pooled))}, {img})[0]);
      std::vector<double> flat;
      for (auto& t : gr)
        for (double v : t.to_vector()) flat.push_back(v);
      // LARS's device-side norms (per-block partials summed in order).
      std::vector<Tensor> ps;
      for (auto& p : pd) ps.push_back(p.detach().clone());
      optim::LARS opt(ps, 0.5, 0.9, 1e-4, 0.001);
      for (size_t i = 0; i < ps.size(); ++i) ps[i].set_grad(gr[i]);
      opt.step();
      for (auto& p : ps)
        for (double v : p.to_vector()) flat.push_back(v);
      return flat;
    };
    const auto a = once(), b = once();
    CHECK(a == b);
    cuda_set_deterministic(false);
  }

  TEST_CASE("fills on the device: full / ones / ones_like in every dtype equal the CPU and wait for nothing") {
    if (!have_gpu()) return;
    for (DType dt : {DType::F32, DType::F64, DType::I64, DType::BF16}) {
      CAPTURE(dtype_name(dt));
      const int64_t before = cuda_host_syncs();
      Tensor a = full({5, 7}, -2.75, dt, Device::CUDA), b = ones({3}, dt, Device::CUDA);
      Tensor c = ones_like(a);
      CHECK(cuda_host_syncs() == before);
      CHECK(a.to_vector() == full({5, 7}, -2.75, dt).to_vector());
      CHECK(b.to_vector() == std::vector<double>(3, 1.0));
      CHECK(c.to_vector() == std::vector<double>(35, 1.0));
    }
  }

  TEST_CASE("peak memory is tracked") {
    if (!have_gpu()) return;
    cuda_reset_peak_bytes();
    size_t before = cuda_peak_bytes();
    { Tensor t = zeros({1 << 20}, DType::F32, Device::CUDA); }
    CHECK(cuda_peak_bytes() >= before + (size_t(4) << 20));
  }

  TEST_CASE("bad indices on the device: reported at the next wait, naming the op; eager checks on request") {
    if (!have_gpu()) return;
    Tensor x = ones({4, 3}, DType::F32, Device::CUDA);
    Tensor bad = from_ints({0, 7, 2}, {3}).to(Device::CUDA), good = from_ints({3, 0}, {2}).to(Device::CUDA);
    // Deferred (default): the op queues its check and waits for nothing; the
    // kernel skips the bad index (no memory fault) and the next wait throws.
    const int64_t before = cuda_host_syncs();
    Tensor y = index_select(x, 0, bad);
    CHECK(cuda_host_syncs() == before);
    CHECK_THROWS_WITH_AS(y.to(Device::CPU), doctest::Contains("index_select: index 7 out of range [0, 4) at position 1"),
                         Error);
    // Reported once; the device is usable afterwards.
    CHECK(index_select(x, 0, good).to_vector() == std::vector<double>(6, 1.0));
    // The first failing check is the one named, even with later failures queued.
    Tensor logits = zeros({3, 5}, DType::F32, Device::CUDA);
    Tensor targets = from_ints({1, 5, 0}, {3}).to(Device::CUDA);
    Tensor loss = cross_entropy(logits, targets);
    Tensor y2 = index_select(x, 0, bad);
    CHECK_THROWS_WITH_AS(loss.item(), doctest::Contains("cross_entropy (targets): index 5 out of range [0, 5)"),
                         Error);
    // take and put_add (flat indices), then synchronize as the wait.
    Tensor flat_bad = from_ints({0, 12}, {2}).to(Device::CUDA);
    Tensor t = call_op("take", {x, flat_bad})[0];
    CHECK_THROWS_WITH_AS(cuda_synchronize(), doctest::Contains("take: index 12 out of range [0, 12)"), Error);
    // Eager: the op itself throws.
    cuda_set_eager_index_checks(true);
    CHECK_THROWS_WITH_AS(index_select(x, 0, bad), doctest::Contains("index 7 out of range"), Error);
    cuda_set_eager_index_checks(false);
    cuda_synchronize();  // nothing pending
  }

  TEST_CASE("per-row token gathers (MAE's gather_tokens) wait for nothing and equal the CPU, VJP included") {
    if (!have_gpu()) return;
    Generator g(13);
    Tensor x = randn({4, 9, 6}, g, DType::F32);
    std::vector<int64_t> keep;  // each row: 3 distinct tokens, as MAE keeps
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 3; ++j) keep.push_back((i * 2 + j * 4) % 9);
    Tensor idx = from_ints(keep, {4, 3});
    Tensor xc = x.clone().requires_grad_(), xd = x.to(Device::CUDA).requires_grad_();
    Tensor wd = to_device_staged(idx, Device::CUDA);
    backward(sum(mul(gather_rows(xc, 1, idx), gather_rows(xc, 1, idx))));
    const int64_t before = cuda_host_syncs();
    Tensor yd = gather_rows(xd, 1, wd);
    backward(sum(mul(yd, yd)));
    CHECK(cuda_host_syncs() == before);
    CHECK(yd.to_vector() == gather_rows(x, 1, idx).to_vector());
    // One add per element: the atomic scatter is exact.
    CHECK(xd.grad().to_vector() == xc.grad().to_vector());
  }

  TEST_CASE("pinned staging: an asynchronous copy keeps its source until it has passed") {
    if (!have_gpu()) return;
    Tensor h = empty_pinned({1 << 20}, DType::F32);
    REQUIRE(h.is_pinned());
    for (int64_t i = 0; i < h.numel(); ++i) h.data<float>()[i] = float(i % 977);
    const std::vector<double> want = h.to_vector();
    // Work queued ahead of the copy, so that it is still pending below.
    Tensor big = ones({4096, 4096}, DType::F32, Device::CUDA);
    for (int k = 0; k < 6; ++k) big = matmul(big, big);  // ~0.8 TFLOP: tens of ms
    const int64_t before = cuda_host_syncs();
    Tensor d = h.to(Device::CUDA);
    CHECK(cuda_host_syncs() == before);
    h = Tensor();  // the copy still holds the block; a new request of its size must get another
    std::vector<Tensor> others;
    for (int k = 0; k < 4; ++k) {
      others.push_back(empty_pinned({1 << 20}, DType::F32));
      std::fill(others.back().data<float>(), others.back().data<float>() + (1 << 20), -1.0f);
    }
    CHECK(d.to_vector() == want);
    const size_t pinned = cuda_pinned_bytes();
    others.clear();  // back to the cache: the next requests reuse them
    for (int k = 0; k < 4; ++k) others.push_back(empty_pinned({1 << 20}, DType::F32));
    CHECK(cuda_pinned_bytes() == pinned);
  }

  TEST_CASE("a training step from the loader to the optimiser waits for nothing (pinned batches, deferred checks)") {
    if (!have_gpu()) return;
    auto set = std::make_shared<data::ImageSet>();
    set->n = 24, set->h = set->w = 6, set->c = 2, set->num_classes = 3;
    set->pixels.resize(size_t(set->n * 6 * 6 * 2));
    for (size_t i = 0; i < set->pixels.size(); ++i) set->pixels[i] = uint8_t((i * 37) % 251);
    for (int64_t i = 0; i < set->n; ++i) set->labels.push_back(i % 3);
    set->source = "synthetic";
    data::LoaderOptions o;
    o.batch_size = 8, o.seed = 5, o.workers = 2, o.cycle = true;
    data::LoaderOptions oc = o;
    o.device = Device::CUDA;
    data::Loader gpu(set, o), cpu(set, oc);
    Generator g(11);
    auto params = testnets::convnet_params(g, DType::F32);
    std::vector<Tensor> pd;
    for (auto& p : params) pd.push_back(p.detach().to(Device::CUDA).requires_grad_());
    optim::SGD opt(pd, 0.05, 0.9, 1e-4);
    int64_t syncs = 0;
    // Step 0 warms up: the convolutions' first calls per shape time cuDNN
    // against the GEMM path (waits); steps 1-4 are counted.
    for (int step = 0; step < 5; ++step) {
      const int64_t before = cuda_host_syncs();
      data::Batch b, bc;
      REQUIRE(gpu.next(b));
      opt.zero_grad();
      backward(testnets::convnet_loss(pd, b.views[0], b.labels));
      opt.step();
      if (step > 0) syncs += cuda_host_syncs() - before;
      // The batch that reached the device is the CPU loader's, bit for bit.
      REQUIRE(cpu.next(bc));
      CHECK(b.views[0].to_vector() == bc.views[0].to_vector());
      CHECK(b.labels.to_vector() == bc.labels.to_vector());
    }
    MESSAGE("host waits in 4 training steps (loader to optimiser): ", syncs, "; page-locked bytes ",
            cuda_pinned_bytes());
    CHECK(syncs == 0);
    // pin_memory = false: each batch copy waits.
    o.pin_memory = false;
    data::Loader pageable(set, o);
    data::Batch b;
    const int64_t before = cuda_host_syncs();
    REQUIRE(pageable.next(b));
    CHECK(cuda_host_syncs() > before);
  }
}
