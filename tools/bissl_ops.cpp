// bissl-ops: the op inspector.
//   bissl-ops list                   every registered op with its attributes
//   bissl-ops grad [-o op,...]       f64 derivative checks, a table per op
//   bissl-ops perf [-o op,...]       CPU timings (GFLOP/s or GB/s) as JSON
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <set>
#include <sstream>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/check/gradcheck.h"
#include "engine/check/op_table.h"
#include "engine/dist/comm.h"
#include "engine/op_registry.h"

using namespace bissl;

namespace {

std::set<std::string> split(const std::string& s) {
  std::set<std::string> r;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) r.insert(item);
  return r;
}

std::vector<const check::OpEntry*> select(const std::string& only) {
  const auto want = split(only);
  auto missing = want;
  std::vector<const check::OpEntry*> r;
  for (auto& e : check::op_table())
    if (want.empty() || want.count(e.op)) r.push_back(&e), missing.erase(e.op);
  BISSL_CHECK(missing.empty(), "bissl-ops: no table entry for '", *missing.begin(), "' (see `bissl-ops list`)");
  return r;
}

int cmd_list() {
  auto& reg = OpRegistry::get();
  std::printf("%-22s %-4s %-4s %s\n", "op", "in", "out", "attributes — description");
  for (auto& name : reg.names()) {
    auto& op = reg.op(name);
    std::string attrs;
    for (auto& a : op.attrs) attrs += (attrs.empty() ? "" : ", ") + a;
    std::printf("%-22s %-4s %-4d %s%s%s\n", name.c_str(), op.num_inputs < 0 ? "n" : std::to_string(op.num_inputs).c_str(),
                op.num_outputs, attrs.c_str(), attrs.empty() ? "" : " — ", op.doc.c_str());
  }
  std::printf("\ncomposites in the op table (differentiated through their registered ops):\n");
  for (auto& e : check::op_table())
    if (e.composite) std::printf("  %s\n", e.op.c_str());
  std::printf("\n%zu registered ops\n", reg.names().size());
  return 0;
}

int cmd_grad(const std::string& only, uint64_t seed) {
  int passed = 0, failed = 0;
  for (auto* e : select(only)) {
    Generator g(seed);
    std::printf("== %s%s\n", e->op.c_str(), e->composite ? " (composite)" : "");
    std::printf("  %-22s %-13s %12s %9s  %s\n", "case", "check", "rel.error", "bound", "");
    uint64_t s = seed;
    for (auto& c : e->cases(g, DType::F64, 1)) {
      for (auto& r : check::check_case(c, ++s)) {
        bool ok = r.passed();
        ok ? ++passed : ++failed;
        std::printf("  %-22s %-13s %12.3e %9.1e  %s\n", c.label.c_str(), r.check.c_str(), r.error, r.bound,
                    ok ? "ok" : "FAILED");
      }
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

double flops_of(const std::string& op, const check::OpCase& c, const std::vector<Tensor>& outs) {
  auto& in = c.inputs;
  if (op == "matmul") {  // a's matrix is m×k or k×m: k = (its size) / m
    const Shape& o = outs[0].shape();
    const Shape& a = in[0].shape();
    double k = double(a[a.size() - 1] * a[a.size() - 2]) / double(o[o.size() - 2]);
    return 2.0 * double(numel(o)) * k;
  }
  if (op == "linear") return 2.0 * double(outs[0].numel()) * double(in[0].shape().back());
  if (op == "conv2d") return 2.0 * double(outs[0].numel()) * double(numel(in[1].shape()) / in[1].shape()[0]);
  if (op == "conv2d_input_grad") return 2.0 * double(in[0].numel()) * double(numel(in[1].shape()) / in[1].shape()[0]);
  if (op == "conv2d_weight_grad") {
    const Shape& w = outs[0].shape();
    return 2.0 * double(in[1].numel()) * double(numel(w) / w[0]);
  }
  return 0;
}

template <class F>
double median_ms(F f, int reps) {
  std::vector<double> t;
  f();  // warm-up
  for (int i = 0; i < reps; ++i) {
    auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int cmd_perf(const std::string& only, int reps, int scale, Device dev, bool tf32) {
  if (dev == Device::CUDA) cuda_set_tf32(tf32);
  nlohmann::json rows = nlohmann::json::array();
  for (auto* e : select(only)) {
    Generator g(1);
    for (auto c : e->cases(g, DType::F32, scale)) {
      for (auto& t : c.inputs) t = t.defined() ? t.to(dev) : t;
      std::vector<Tensor> outs;
      double fwd = median_ms(
          [&] {
            NoGradGuard ng;
            outs = c.fn(c.inputs);
            cuda_synchronize();
          },
          reps);
      double bytes = 0;
      for (auto& t : c.inputs) bytes += t.defined() ? double(t.nbytes()) : 0.0;
      for (auto& t : outs) bytes += t.defined() ? double(t.nbytes()) : 0.0;
      // Forward + backward through the objective Σ outputs.
      std::vector<Tensor> leaves, xs;
      for (size_t i = 0; i < c.inputs.size(); ++i) {
        Tensor x = c.inputs[i].defined() ? c.inputs[i].detach() : Tensor();
        if (c.diff[i]) x.requires_grad_(true), leaves.push_back(x);
        xs.push_back(x);
      }
      double fb = median_ms(
          [&] {
            auto ys = c.fn(xs);
            Tensor L;
            for (auto& y : ys)
              if (y.defined() && is_floating(y.dtype()) && y.requires_grad()) L = L.defined() ? add(L, sum(y)) : sum(y);
            if (L.defined()) grad({L}, leaves);
            cuda_synchronize();
          },
          reps);
      nlohmann::json row = {{"op", e->op}, {"case", c.label}, {"dtype", "f32"}, {"device", device_name(dev)},
                            {"forward_ms", fwd}, {"forward_backward_ms", fb}};
      double fl = flops_of(e->op, c, outs);
      if (fl > 0) row["forward_gflops"] = fl / (fwd * 1e6);
      else row["forward_gbps"] = bytes / (fwd * 1e6);
      rows.push_back(row);
    }
  }
  nlohmann::json out = {{"backend", backend_summary()}, {"reps", reps}, {"scale", scale}, {"results", rows}};
  std::cout << out.dump(2) << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bissl::dist::Session session(argc, argv);  // one rank only (docs/distributed.md)
  bissl::dist::require_one_rank("bissl-ops");
  CLI::App app{"bissl-ops: inspect, check and time the engine's ops"};
  app.require_subcommand(1);
  auto* list = app.add_subcommand("list", "every registered op with its attributes");
  std::string only;
  uint64_t seed = 1;
  auto* gradc = app.add_subcommand("grad", "f64 derivative checks (VJP, JVP, HVP) per op");
  gradc->add_option("-o,--ops", only, "comma-separated op names (default: all)");
  gradc->add_option("--seed", seed, "seed for inputs and directions");
  int reps = 10, scale = 16;
  std::string device = "cpu";
  bool tf32 = false;
  auto* perf = app.add_subcommand("perf", "CPU timings of every op's cases as JSON");
  perf->add_option("-o,--ops", only, "comma-separated op names (default: all)");
  perf->add_option("--reps", reps, "timed repetitions (median reported)");
  perf->add_option("--scale", scale, "shape multiplier for the table's sample shapes");
  perf->add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  perf->add_flag("--tf32", tf32, "TF32 tensor cores for f32 GEMMs (cuda)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (*list) return cmd_list();
    if (*gradc) return cmd_grad(only, seed);
    if (*perf) return cmd_perf(only, reps, scale, device == "cuda" ? Device::CUDA : Device::CPU, tf32);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bissl-ops: %s\n", e.what());
    return 2;
  }
  return 0;
}
