// f32 convolutions through oneDNN (kernels/cpu/conv_onednn.h) against
// im2col + GEMM in f32 and against the f64 reference: outputs, VJPs, JVPs
// and H·v of conv2d and its two gradient ops, over the op table's shapes and
// the main job's and ResNet-50's (strides, negative right padding, 1×1 with
// stride, a 7×7 stem on one channel, padding wider than the image). Without
// oneDNN in the build the oneDNN cases skip, loudly.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "engine/backend.h"
#include "engine/check/op_table.h"
#include "engine/ops.h"
#include "kernels/cpu/conv_onednn.h"
#include "kernels/cpu/parallel.h"
#include "tests/engine/op_runs.h"

using namespace bissl;
using testops::max_rel;
using testops::Run;
using testops::run_case;
using testops::as;
using testops::have_onednn;

namespace {

// Restores the CPU convolution path and numerics however a case ends.
struct PathGuard {
  ~PathGuard() {
    cpu::set_conv_path(cpu::ConvPath::Auto);
    cpu::portable_numerics.store(false);
  }
};

struct Shp {
  const char* label;
  Shape x, w;
  int64_t st, pd, dil, groups;
};

// The main job's convolutions (ResNet-18 at width 0.25, ImageNet stem, 28×28
// grey images) and ResNet-50's kinds at 96 px, at small batches.
const std::vector<Shp>& model_shapes() {
  static const std::vector<Shp> s{
      {"stem_7x7_s2_grey", {6, 28, 28, 1}, {16, 7, 7, 1}, 2, 3, 1, 1},
      {"3x3_s1_7px", {6, 7, 7, 16}, {16, 3, 3, 16}, 1, 1, 1, 1},
      {"3x3_s2_7px", {6, 7, 7, 16}, {32, 3, 3, 16}, 2, 1, 1, 1},
      {"1x1_s2_7px (negative right padding)", {6, 7, 7, 16}, {32, 1, 1, 16}, 2, 0, 1, 1},
      {"3x3_s1_1px (padding wider than the image)", {6, 1, 1, 128}, {128, 3, 3, 128}, 1, 1, 1, 1},
      {"stem_7x7_s2_rgb_96px", {2, 96, 96, 3}, {64, 7, 7, 3}, 2, 3, 1, 1},
      {"1x1_bottleneck_expand", {2, 12, 12, 64}, {256, 1, 1, 64}, 1, 0, 1, 1},
      {"3x3_s2_bottleneck", {2, 12, 12, 128}, {128, 3, 3, 128}, 2, 1, 1, 1},
      {"grouped_dilated", {3, 9, 8, 8}, {12, 3, 3, 4}, 1, 2, 2, 2},
  };
  return s;
}

Shape conv_out(const Shp& c) {
  int64_t ho = (c.x[1] + 2 * c.pd - c.dil * (c.w[1] - 1) - 1) / c.st + 1;
  int64_t wo = (c.x[2] + 2 * c.pd - c.dil * (c.w[2] - 1) - 1) / c.st + 1;
  return Shape{c.x[0], ho, wo, c.w[0]};
}

// The three ops of one shape as op-table cases, in dtype dt.
std::vector<check::OpCase> cases_of(const Shp& c, Generator& g, DType dt) {
  const Conv2dParams p = Conv2dParams::make(c.st, c.pd, c.dil, c.groups);
  auto rn = [&](const Shape& s) { return randn(s, g, dt); };
  const Shape xs = c.x, ws = c.w;
  std::vector<check::OpCase> r;
  r.push_back({std::string("conv2d ") + c.label, {rn(c.x), rn(c.w)}, {true, true},
               [p](const std::vector<Tensor>& in) { return std::vector<Tensor>{conv2d(in[0], in[1], p)}; }});
  r.push_back({std::string("conv2d_input_grad ") + c.label, {rn(conv_out(c)), rn(c.w)}, {true, true},
               [p, xs](const std::vector<Tensor>& in) {
                 return std::vector<Tensor>{conv2d_input_grad(in[0], in[1], xs, p)};
               }});
  r.push_back({std::string("conv2d_weight_grad ") + c.label, {rn(c.x), rn(conv_out(c))}, {true, true},
               [p, ws](const std::vector<Tensor>& in) {
                 return std::vector<Tensor>{conv2d_weight_grad(in[0], in[1], ws, p)};
               }});
  return r;
}

check::OpCase in_dtype(const check::OpCase& c, DType dt) {
  check::OpCase r = c;
  r.inputs = as(c.inputs, dt);
  return r;
}

// Every case of `cases` run three ways: f32 through oneDNN, f32 through
// im2col, f64 (im2col, the reference); the f32 runs within `tol` of f64.
void compare(const std::vector<check::OpCase>& cases, Generator& g, double tol) {
  for (const auto& c32 : cases) {
    std::vector<Tensor> w, u, v;  // f64 directions, rounded to f32 for the f32 runs
    {
      NoGradGuard ng;
      for (auto& y : c32.fn(c32.inputs)) w.push_back(randn(y.shape(), g, DType::F64));
    }
    for (size_t i = 0; i < c32.inputs.size(); ++i) {
      u.push_back(randn(c32.inputs[i].shape(), g, DType::F64));
      v.push_back(randn(c32.inputs[i].shape(), g, DType::F64));
    }
    // The reference sees the f32 inputs and directions exactly (f32 ⊂ f64).
    auto w32 = as(w, DType::F32), u32 = as(u, DType::F32), v32 = as(v, DType::F32);
    Run ref = run_case(in_dtype(c32, DType::F64), Device::CPU, as(w32, DType::F64), as(u32, DType::F64),
                       as(v32, DType::F64));
    cpu::set_conv_path(cpu::ConvPath::Im2col);
    Run im = run_case(c32, Device::CPU, w32, u32, v32);
    cpu::set_conv_path(cpu::ConvPath::OneDNN);
    Run dn = run_case(c32, Device::CPU, w32, u32, v32);
    cpu::set_conv_path(cpu::ConvPath::Auto);
    auto err = [&](const Run& a) {
      return std::max({max_rel(a.outs, ref.outs), max_rel(a.grads, ref.grads), max_rel(a.tangents, ref.tangents),
                       max_rel(a.hv, ref.hv)});
    };
    const double e_dn = err(dn), e_im = err(im);
    INFO(c32.label);
    MESSAGE(c32.label, ": oneDNN ", e_dn, ", im2col ", e_im, " (largest relative error against f64)");
    CHECK(e_im <= tol);
    CHECK(e_dn <= tol);
  }
}

}  // namespace

TEST_SUITE("cpu conv") {
  TEST_CASE("oneDNN f32 convolutions equal im2col's and the f64 reference: op table's shapes") {
    if (!have_onednn("oneDNN checks")) return;
    PathGuard restore;
    Generator g(41);
    for (const auto& e : check::op_table()) {
      if (e.op.rfind("conv2d", 0) != 0) continue;
      compare(e.cases(g, DType::F32, 1), g, 1e-5);
    }
  }

  TEST_CASE("oneDNN f32 convolutions equal im2col's and the f64 reference: the models' shapes, all taken by oneDNN") {
    if (!have_onednn("oneDNN checks")) return;
    PathGuard restore;
    Generator g(42);
    cpu::onednn_conv_forget();  // the choices below: these shapes' only
    for (const auto& s : model_shapes()) compare(cases_of(s, g, DType::F32), g, 1e-5);
    const std::string choices = cpu_conv_choices();
    MESSAGE("oneDNN's kernels:\n", choices);
    // The models' shapes (all but the grouped one) run oneDNN's own kernels, not im2col.
    int lines = 0, fallbacks = 0;
    for (size_t a = 0, b; (b = choices.find('\n', a)) != std::string::npos; a = b + 1) {
      const std::string line = choices.substr(a, b - a);
      ++lines;
      if (line.find("im2col (") != std::string::npos && line.find("groups 1,") != std::string::npos) ++fallbacks;
    }
    CHECK(lines >= int(model_shapes().size()));
    CHECK(fallbacks == 0);
  }

  TEST_CASE("portable numerics take im2col whatever the path setting says") {
    PathGuard restore;
    Generator g(43);
    const Shp s{"3x3_s2_7px", {6, 7, 7, 16}, {32, 3, 3, 16}, 2, 1, 1, 1};
    Tensor x = randn(s.x, g, DType::F32), w = randn(s.w, g, DType::F32);
    const Conv2dParams p = Conv2dParams::make(2, 1);
    cpu::portable_numerics.store(true);  // portable numerics: im2col whatever the path says
    cpu::set_conv_path(cpu::ConvPath::Im2col);
    auto portable_im = conv2d(x, w, p).to_vector();
    cpu::set_conv_path(cpu::ConvPath::Auto);
    auto portable_auto = conv2d(x, w, p).to_vector();
    cpu::set_conv_path(cpu::ConvPath::OneDNN);
    auto portable_dn = conv2d(x, w, p).to_vector();
    cpu::portable_numerics.store(false);
    CHECK(portable_auto == portable_im);
    CHECK(portable_dn == portable_im);
    cpu::set_conv_path(cpu::ConvPath::Im2col);
    auto im = conv2d(x, w, p).to_vector();
    cpu::set_conv_path(cpu::ConvPath::Auto);
    if (!have_onednn("oneDNN checks")) return;
    auto dn = conv2d(x, w, p).to_vector();  // auto, default numerics: oneDNN
    CHECK(check::rel_error(dn, im) <= 1e-5);
    const std::string same = dn == im ? " (the same bits)" : " (another summation order)";
    MESSAGE("oneDNN against im2col, one forward: ", check::rel_error(dn, im), same);
  }

  TEST_CASE("the convolution path is a setting with one-line errors") {
    PathGuard restore;
    cpu_set_conv_path("im2col");
    CHECK(cpu_conv_path() == "im2col");
    cpu_set_conv_path("onednn");
    CHECK(cpu_conv_path() == "onednn");
    CHECK_THROWS_WITH_AS(cpu_set_conv_path("mkl"),
                         doctest::Contains("expected auto, onednn or im2col, found 'mkl'"), Error);
    cpu_set_conv_path("auto");
    CHECK(backend_summary().find("f32 convolutions: auto") != std::string::npos);
  }
}
