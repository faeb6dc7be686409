// bissl-inspect: the autodiff stack, looked at and checked number by number.
//   bissl-inspect graph          the tape of one forward pass (op, shapes, dtype,
//                                bytes saved), newest first; --dot writes Graphviz
//   bissl-inspect grad           loss and the gradient of every parameter
//   bissl-inspect hvp            loss, gradient and H·v w.r.t. the backbone
//   bissl-inspect upper          one BiSSL upper step: rhs, u, H·rhs, the θD and
//                                φD gradients before and after clipping, CG's
//                                directions and products (the trainer's code)
//   bissl-inspect make-example   tiny weights, batch and direction to try them on
// grad and hvp read weights, batch and direction from safetensors files in
// PyTorch's layout (NCHW images, OIHW conv weights) and write their results
// in the same layout, so another framework's numbers compare directly.
// docs/inspect.md has the file formats, names and a PyTorch comparison.
#include <CLI/CLI.hpp>

#include <chrono>
#include <functional>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/dist/comm.h"
#include "engine/io/safetensors.h"
#include "engine/ops.h"
#include "models/heads.h"
#include "models/torch_state.h"
#include "tools/common/cli_fields.h"
#include "tools/inspect/session.h"
#include "tools/inspect/tape.h"
#include "tools/inspect/upper.h"

#ifndef BISSL_GIT_HASH
#define BISSL_GIT_HASH "unknown"
#endif

using namespace bissl;
using namespace bissl::inspect;

namespace {

struct Cli {
  ModelOptions model;
  LossOptions loss;
  RunOptions run;
  std::string dtype = "f32", device = "cpu";
  std::string input, direction, out, dot;
  int64_t batch = 8;
  bool check = false, attrs = false, summary = false, trace = false;
  inspect::UpperFiles upper;
  bilevel::BilevelOptions bissl = upper_defaults();

  // `upper` runs with BiSSL's defaults (the spec's); the upper lr and weight
  // decay are the optimiser's, which one step's gradients never read.
  static bilevel::BilevelOptions upper_defaults() {
    bilevel::BilevelOptions o;
    o.upper_lr = 1, o.upper_wd = 0;
    return o;
  }
  double check_eps = 1e-7, check_tol = 1e-6;
};

void add_model_options(CLI::App* sc, Cli& c) {
  // The backbone spec's own fields (models/factory.h) under inspect's names;
  // no stochastic depth here (the same loss on every call).
  settings::add_field_flags(sc, c.model.backbone, {{"arch", "--model"}, {"depth", "--vit-depth"}},
                            {"drop_path", "pos_embed"});
  sc->add_option("--pos-embed", c.model.pos_embed,
                 "ViT position embeddings: learned, sincos, or auto (sincos for mae, else learned)")
      ->check(CLI::IsMember({"auto", "learned", "sincos"}))
      ->capture_default_str();
  sc->add_option("--in-channels", c.model.in_channels, "image channels")->capture_default_str();
  sc->add_option("--num-classes", c.model.num_classes,
                 "classifier outputs (fc / head); default: ce reads them from --weights (else 10), other losses 0");
  sc->add_option("--image-size", c.model.image_size,
                 "ViT image size (default 224); size of the random batch of graph (default 32 for ResNet)");
}

void add_loss_options(CLI::App* sc, Cli& c) {
  sc->add_option("--loss", c.loss.loss,
                 "ce (cross-entropy with \"labels\"), ntxent (SimCLR on the two halves of the batch), byol (the two "
                 "halves), mae (ViT, \"mask\" from the batch)")
      ->check(CLI::IsMember({"ce", "ntxent", "byol", "mae"}))
      ->capture_default_str();
  sc->add_option("--label-smoothing", c.loss.label_smoothing, "ce")->capture_default_str();
  // The objective spec's own fields (ssl/factory.h); the loss picks the
  // objective, the width lists below give projector and predictor, the
  // decoder's position embeddings follow --pos-embed, BYOL's EMA is unused.
  settings::add_field_flags(sc, c.loss.heads, {},
                            {"name", "proj_hidden", "proj_out", "proj_layers", "pred_hidden", "pred_layers", "ema",
                             "decoder_pos_embed"});
  sc->add_option("--projector", c.loss.projector, "ntxent/byol projector widths hidden-...-out")->capture_default_str();
  sc->add_option("--predictor", c.loss.predictor, "byol predictor widths hidden-...-out")->capture_default_str();
}

void add_run_options(CLI::App* sc, Cli& c, bool needs_files) {
  sc->add_option("--mode", c.run.mode, "train (batch statistics) or eval (running statistics)")->capture_default_str();
  sc->add_option("--dtype", c.dtype, "f32 or f64")->check(CLI::IsMember({"f32", "f64"}))->capture_default_str();
  sc->add_option("--device", c.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  sc->add_option("--seed", c.run.seed, "random init / batch / MAE mask when not read from files")->capture_default_str();
  auto* w = sc->add_option("--weights", c.run.weights,
                           "safetensors, PyTorch layout and names (torchvision ResNet, timm ViT) plus head tensors "
                           "(head.projector.*, head.predictor.*, MAE decoder names); see docs/inspect.md");
  sc->add_option("--head-weights", c.run.head_weights, "the head tensors from a separate safetensors file instead");
  auto* in = sc->add_option("--input", c.input,
                            "safetensors batch: \"images\" NCHW (PyTorch's convention; converted to bissl's NHWC) or "
                            "\"images_nhwc\", \"labels\" i64 [N] for ce, \"mask\" [N, L] (1 = masked) for mae");
  sc->add_flag("--strict", c.run.strict, "tensors in the files that nothing uses are errors, not notes");
  if (needs_files) {
    w->required();
    in->required();
  }
}

DType parse_dtype(const std::string& s) { return s == "f64" ? DType::F64 : DType::F32; }

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

void print_notes(const Session& s) {
  for (auto& n : s.notes()) std::fprintf(stderr, "bissl-inspect: note: %s\n", n.c_str());
}

std::unique_ptr<Session> open_session(Cli& c) {
  c.run.dtype = parse_dtype(c.dtype);
  c.run.device = c.device == "cuda" ? Device::CUDA : Device::CPU;
  return std::make_unique<Session>(c.model, c.loss, c.run);
}

std::map<std::string, std::string> metadata(const Session& s, const Cli& c, const std::string& cmd) {
  std::map<std::string, std::string> m = {
      {"tool", "bissl-inspect " + cmd}, {"bissl_git", BISSL_GIT_HASH},   {"model", c.model.model()},
      {"loss", c.loss.loss},            {"mode", c.run.mode},            {"dtype", c.dtype},
      {"device", c.device},             {"layout", "pytorch (NCHW images, OIHW conv weights)"},
      {"config", s.describe()},         {"weights", c.run.weights},      {"input", c.input},
      {"seed", std::to_string(c.run.seed)}};
  if (!c.run.head_weights.empty()) m["head_weights"] = c.run.head_weights;
  if (!c.direction.empty()) m["direction"] = c.direction;
  return m;
}

// ---- numeric checks (f64): central differences ----

double norm(const std::vector<Tensor>& xs) {
  double s = 0;
  for (auto& x : xs) {
    Tensor c = x.device() == Device::CPU ? x : x.to(Device::CPU);
    for (double v : c.to_vector()) s += v * v;
  }
  return std::sqrt(s);
}

double dot(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  NoGradGuard ng;
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += sum(mul(a[i], b[i])).to(Device::CPU).item();
  return s;
}

// ‖a − b‖ / max(‖a‖, ‖b‖), over all tensors together.
double rel_error(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  std::vector<Tensor> d;
  {
    NoGradGuard ng;
    for (size_t i = 0; i < a.size(); ++i) d.push_back(sub(a[i], b[i]));
  }
  double den = std::max({norm(a), norm(b), 1e-300});
  return norm(d) / den;
}

// Moves the parameters to θ0 + h·u (and back with restore).
struct Perturb {
  std::vector<Tensor> params, theta0;
  explicit Perturb(const std::vector<Tensor>& p) : params(p) {
    NoGradGuard ng;
    for (auto& x : p) theta0.push_back(x.detach().clone());
  }
  void set(const std::vector<Tensor>& u, double h) {
    NoGradGuard ng;
    NoForwardADGuard nf;
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(add(theta0[i], mul(u[i], h)));
  }
  ~Perturb() {
    NoGradGuard ng;
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(theta0[i]);
  }
};

double step_for(const std::vector<Tensor>& u, double eps) {
  int64_t n = 0;
  for (auto& x : u) n += x.numel();
  double rms = norm(u) / std::sqrt(double(std::max<int64_t>(n, 1)));
  return eps / std::max(rms, 1e-300);
}

// Central differences at steps eps, eps/10, eps/100 (RMS per element): a
// step that moves a ReLU pre-activation across zero (or, in train mode,
// meets the large curvature of batch norm over a few samples) spoils the
// difference, and smaller steps are the cure until rounding takes over. A
// wrong derivative is wrong at every step, so the best of the three is the
// verdict.
bool check_ladder(const char* what, const Cli& c, const std::function<double(double)>& error_at) {
  double best = INFINITY, best_eps = c.check_eps;
  std::string all;
  for (double eps = c.check_eps; eps >= c.check_eps / 100 * 0.999; eps /= 10) {
    double e = error_at(eps);
    char buf[48];
    std::snprintf(buf, sizeof buf, "%s%.0e: %.2e", all.empty() ? "" : ", ", eps, e);
    all += buf;
    if (e < best) best = e, best_eps = eps;
    if (best <= c.check_tol * 1e-2) break;  // clearly right: no need for smaller steps
  }
  bool ok = best <= c.check_tol;
  std::printf("check %-42s rel. error %.3e at step %.0e (bound %.1e) %s  [steps %s]\n", what, best, best_eps,
              c.check_tol, ok ? "ok" : "FAILED", all.c_str());
  return ok;
}

// <grad, u> against (L(θ + h·u) − L(θ − h·u)) / 2h.
bool check_directional(Session& s, const std::vector<Tensor>& params, const std::vector<Tensor>& g,
                       const std::vector<Tensor>& u, const Cli& c) {
  double an = dot(g, u);
  return check_ladder("<grad, u> vs central diff. of the loss", c, [&](double eps) {
    double h = step_for(u, eps);
    Perturb p(params);
    NoGradGuard ng;
    p.set(u, h);
    double lp = s.loss().to(Device::CPU).item();
    p.set(u, -h);
    double lm = s.loss().to(Device::CPU).item();
    double fd = (lp - lm) / (2 * h);
    return std::abs(an - fd) / std::max({std::abs(an), std::abs(fd), 1e-300});
  });
}

// H·v against (∇L(θ + h·v) − ∇L(θ − h·v)) / 2h, as ‖a − b‖ / max(‖a‖, ‖b‖).
bool check_hv(Session& s, const std::vector<Tensor>& params, const std::vector<Tensor>& hv,
              const std::vector<Tensor>& v, const Cli& c) {
  return check_ladder("H·v vs central diff. of the gradient", c, [&](double eps) {
    double h = step_for(v, eps);
    std::vector<Tensor> fd;
    Perturb p(params);
    p.set(v, h);
    auto gp = grad({s.loss()}, params);
    p.set(v, -h);
    auto gm = grad({s.loss()}, params);
    NoGradGuard ng;
    for (size_t i = 0; i < params.size(); ++i) fd.push_back(mul(sub(gp[i], gm[i]), 1.0 / (2 * h)));
    return rel_error(hv, fd);
  });
}

void require_f64_for_check(const Cli& c) {
  BISSL_CHECK(!c.check || c.dtype == "f64", "--check compares against central differences, which need --dtype f64");
}

// ---- commands ----

int cmd_grad(Cli& c) {
  require_f64_for_check(c);
  auto s = open_session(c);
  s->set_batch(load_batch(c.input));
  print_notes(*s);
  std::fprintf(stderr, "bissl-inspect grad: %s\n", s->describe().c_str());
  nn::StateDict named = s->backbone_params();
  for (auto& kv : s->head_params()) named.push_back(kv);
  std::vector<Tensor> params;
  for (auto& [k, t] : named) params.push_back(t);

  auto t0 = std::chrono::steady_clock::now();
  Tensor loss = s->loss();
  auto g = grad({loss}, params);
  double secs = seconds_since(t0);
  double lv = loss.to(Device::CPU).item();

  io::NamedTensors out{{"loss", to_torch_layout(loss)}};
  for (size_t i = 0; i < named.size(); ++i) out.emplace_back("grad." + named[i].first, to_torch_layout(g[i]));
  if (c.loss.loss == "mae") out.emplace_back("mask", to_torch_layout(s->batch().mask));
  io::save_safetensors(c.out, out, metadata(*s, c, "grad"));
  std::printf("loss %.17g\n", lv);
  std::printf("wrote %s: loss, %zu gradients (%zu backbone, %zu head); forward+backward %.3f s\n", c.out.c_str(),
              named.size(), s->backbone_params().size(), s->head_params().size(), secs);

  if (!c.check) return 0;
  Generator gen(c.run.seed + 1);
  std::vector<Tensor> u;
  for (auto& p : params) u.push_back(randn(p.shape(), gen, p.dtype()).to(p.device()));
  return check_directional(*s, params, g, u, c) ? 0 : 1;
}

int cmd_hvp(Cli& c) {
  require_f64_for_check(c);
  auto s = open_session(c);
  s->set_batch(load_batch(c.input));
  std::vector<std::string> notes;
  std::vector<Tensor> v = load_param_file(c.direction, s->backbone_params(), c.run.strict, notes);
  print_notes(*s);
  for (auto& n : notes) std::fprintf(stderr, "bissl-inspect: note: %s\n", n.c_str());
  std::fprintf(stderr, "bissl-inspect hvp: %s\n", s->describe().c_str());
  const nn::StateDict& named = s->backbone_params();
  std::vector<Tensor> params;
  for (auto& [k, t] : named) params.push_back(t);

  auto t0 = std::chrono::steady_clock::now();
  HvpResult r = hvp([&] { return s->loss(); }, params, v);
  double secs = seconds_since(t0);
  double lv = r.loss.to(Device::CPU).item();

  io::NamedTensors out{{"loss", to_torch_layout(r.loss)}};
  for (size_t i = 0; i < named.size(); ++i) out.emplace_back("grad." + named[i].first, to_torch_layout(r.grad[i]));
  for (size_t i = 0; i < named.size(); ++i) out.emplace_back("hvp." + named[i].first, to_torch_layout(r.hv[i]));
  if (c.loss.loss == "mae") out.emplace_back("mask", to_torch_layout(s->batch().mask));
  io::save_safetensors(c.out, out, metadata(*s, c, "hvp"));
  std::printf("loss %.17g\n", lv);
  std::printf("<v, H·v> %.17g\n", dot(v, r.hv));
  std::printf("wrote %s: loss, %zu gradients, %zu H·v (backbone; heads fixed); forward-over-reverse %.3f s\n",
              c.out.c_str(), named.size(), named.size(), secs);

  if (!c.check) return 0;
  bool ok = check_directional(*s, params, r.grad, v, c);
  ok = check_hv(*s, params, r.hv, v, c) && ok;
  return ok ? 0 : 1;
}

int cmd_upper(Cli& c) {
  auto s = open_session(c);
  s->set_batch(load_batch(c.input));
  c.bissl.validate();
  auto t0 = std::chrono::steady_clock::now();
  UpperOutput r = run_upper(*s, c.upper, c.bissl, c.trace);
  double secs = seconds_since(t0);
  print_notes(*s);
  for (auto& n : r.notes) std::fprintf(stderr, "bissl-inspect: note: %s\n", n.c_str());
  std::fprintf(stderr, "bissl-inspect upper: %s\n", s->describe().c_str());
  auto meta = metadata(*s, c, "upper");
  meta["downstream"] = c.upper.downstream;
  meta["weights_d"] = c.upper.weights_d.empty() ? "(a copy of θP)" : c.upper.weights_d;
  meta["head_d"] = c.upper.head_d;
  meta["bissl"] = schema::to_json(c.bissl).dump();
  io::save_safetensors(c.out, r.tensors, meta);
  const bilevel::UpperStepResult& u = r.step;
  const bool implicit = c.bissl.variant == bilevel::Variant::BiSSL;
  if (implicit) std::printf("L_D(θP, φD) %.17g\n", u.loss_p);
  std::printf("L_D(θD, φD) %.17g\n", u.loss_d);
  if (implicit) {
    std::printf("‖rhs‖ %.17g\n‖u‖ %.17g\n<rhs, u> %.17g\n<rhs, H·rhs> %.17g\n", norm(u.rhs), norm(u.cg.u),
                dot(u.rhs, u.cg.u), dot(u.rhs, u.products.at(0)));
    std::printf("CG residuals");
    for (double x : u.cg.residuals) std::printf(" %.6e", x);
    std::printf("\nCG Rayleigh quotients of I + H/(λ+δ)");
    for (double x : u.cg.curvature) std::printf(" %.6e", x);
    std::printf("\n");
  }
  std::printf("upper gradient norm before clipping %.17g (clip %g)\n", u.grad_norm, c.bissl.clip);
  std::printf("wrote %s: %zu tensors (%s); %.3f s\n", c.out.c_str(), r.tensors.size(),
              implicit ? (c.trace ? "the step and every CG direction and product" : "the step") : "ij_discarded's step",
              secs);
  return 0;
}

int cmd_graph(Cli& c) {
  auto s = open_session(c);
  Batch b = !c.input.empty()
                ? load_batch(c.input)
                : random_batch(c.batch, s->image_size(), c.model.in_channels, s->num_classes(), s->num_patches(),
                               c.loss.heads.mask_ratio, c.run.seed + 7);
  s->set_batch(b);
  print_notes(*s);
  std::printf("bissl-inspect graph: %s; batch %s (NHWC)\n", s->describe().c_str(),
              shape_str(s->batch().images.shape()).c_str());

  auto t0 = std::chrono::steady_clock::now();
  Tensor loss = s->loss();
  double fwd = seconds_since(t0);
  auto tape = collect_tape(loss);
  auto names = s->param_names();
  std::printf("the tape, newest first (the order the backward pass visits it); saved = inputs + outputs the node "
              "keeps for its VJP\n\n");
  print_tape(std::cout, tape, names, c.attrs, !c.summary);

  std::vector<Tensor> params;
  for (auto& [k, t] : s->backbone_params()) params.push_back(t);
  for (auto& [k, t] : s->head_params()) params.push_back(t);
  t0 = std::chrono::steady_clock::now();
  auto g = grad({loss}, params);
  double bwd = seconds_since(t0);
  std::printf("loss %.10g; forward %.3f s, backward %.3f s (%zu parameter gradients)\n",
              loss.to(Device::CPU).item(), fwd, bwd, g.size());
  if (!c.dot.empty()) {
    write_dot(c.dot, tape, names, loss);
    std::printf("wrote %s (render: dot -Tsvg %s -o tape.svg)\n", c.dot.c_str(), c.dot.c_str());
  }
  return 0;
}

int cmd_make_example(Cli& c) {
  namespace fs = std::filesystem;
  BISSL_CHECK(!c.out.empty(), "make-example: --out DIR is required");
  fs::create_directories(c.out);
  c.run.weights.clear();
  c.run.head_weights.clear();
  c.run.dtype = DType::F32;
  c.run.device = Device::CPU;
  // The backbone with a classifier (ce), then the heads of the other
  // losses: one weights file serves every loss (unused tensors are notes).
  ModelOptions mo = c.model;
  if (mo.num_classes < 0) mo.num_classes = 10;
  LossOptions lo = c.loss;
  lo.loss = "ce";
  Session ce(mo, lo, c.run);
  io::NamedTensors weights = ce.torch_weights();
  std::set<std::string> have;
  for (auto& kv : weights) have.insert(kv.first);
  auto add_heads = [&](const std::string& loss, uint64_t seed) {
    ModelOptions m2 = c.model;
    m2.num_classes = 0;
    LossOptions l2 = c.loss;
    l2.loss = loss;
    RunOptions r2 = c.run;
    r2.seed = seed;
    Session s(m2, l2, r2);
    std::set<std::string> backbone;
    for (auto& kv : s.backbone().state_dict()) backbone.insert(kv.first);
    for (auto& kv : models::torch_state_dict(*s.head_module())) {
      const std::string& k = kv.first;
      if (backbone.count(k) || have.count(k) || k.rfind("backbone_target.", 0) == 0 ||
          k.rfind("projector_target.", 0) == 0)
        continue;
      weights.push_back(kv);
      have.insert(k);
    }
  };
  add_heads("byol", c.run.seed + 1);  // head.projector.* (SimCLR's too) and head.predictor.*
  if (c.model.is_vit()) add_heads("mae", c.run.seed + 2);

  Generator g(c.run.seed + 3);
  int64_t size = ce.image_size();
  Batch b = random_batch(c.batch, size, c.model.in_channels, ce.num_classes(), ce.num_patches(), c.loss.heads.mask_ratio,
                         c.run.seed + 4);
  io::NamedTensors batch{{"images", permute(b.images, {0, 3, 1, 2})}, {"labels", b.labels}};
  if (b.mask.defined()) batch.emplace_back("mask", b.mask);
  io::NamedTensors direction;
  for (auto& [k, p] : ce.backbone_params()) direction.emplace_back(k, to_torch_layout(randn(p.shape(), g)));

  std::string w = (fs::path(c.out) / "weights.safetensors").string();
  std::string in = (fs::path(c.out) / "batch.safetensors").string();
  std::string d = (fs::path(c.out) / "direction.safetensors").string();
  // φD for `upper`: a Linear from the backbone's features to the classes.
  Generator gh(c.run.seed + 5);
  models::LinearHead head_d(ce.feature_dim(), ce.num_classes(), gh);
  std::string hd = (fs::path(c.out) / "head_d.safetensors").string();
  io::save_safetensors(hd, models::torch_state_dict(head_d), {{"format", "pt"}});
  io::save_safetensors(w, weights, {{"format", "pt"}, {"config", ce.describe()}});
  io::save_safetensors(in, batch, {{"layout", "images NCHW"}});
  io::save_safetensors(d, direction, {{"format", "pt"}});
  std::printf("wrote %s (%zu tensors: %s with %lld classes, and heads), %s (images NCHW %s, labels%s), %s, %s\n",
              w.c_str(), weights.size(), c.model.model().c_str(), (long long)ce.num_classes(), in.c_str(),
              shape_str(batch[0].second.shape()).c_str(), b.mask.defined() ? ", mask" : "", d.c_str(), hd.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bissl::dist::Session session(argc, argv);  // one rank only (docs/distributed.md)
  bissl::dist::require_one_rank("bissl-inspect");
  CLI::App app{
      "bissl-inspect: the tape, gradients and Hessian-vector products of a model's loss, for teaching and for "
      "comparing bissl with another framework number by number. Files are safetensors in PyTorch's layout: images "
      "NCHW (converted to bissl's NHWC on load), conv weights OIHW (bissl's OHWI inside). See docs/inspect.md."};
  app.require_subcommand(1);
  Cli c;
  auto* graph = app.add_subcommand("graph", "print the tape of one forward pass (newest first) and run its backward");
  add_model_options(graph, c);
  add_loss_options(graph, c);
  add_run_options(graph, c, false);
  graph->add_option("--batch", c.batch, "random batch size when there is no --input")->capture_default_str();
  graph->add_option("--dot", c.dot, "also write the tape as Graphviz DOT to this file");
  graph->add_flag("--attrs", c.attrs, "print each node's attributes (stride, padding, ...)");
  graph->add_flag("--summary", c.summary, "totals and the per-op table only, no node list");

  auto* gr = app.add_subcommand("grad", "write the loss and the gradient of every parameter");
  add_model_options(gr, c);
  add_loss_options(gr, c);
  add_run_options(gr, c, true);
  gr->add_option("--out", c.out, "result safetensors: loss, grad.<name> (PyTorch layout)")->required();
  gr->add_flag("--check", c.check, "compare <grad, u> for a random u with central differences (f64)");
  gr->add_option("--check-eps", c.check_eps, "largest central-difference step (RMS per element); /10 and /100 are tried too")->capture_default_str();
  gr->add_option("--check-tol", c.check_tol, "largest relative error accepted")->capture_default_str();

  auto* hv = app.add_subcommand("hvp", "write the loss, the gradient and H·v w.r.t. the backbone (heads fixed)");
  add_model_options(hv, c);
  add_loss_options(hv, c);
  add_run_options(hv, c, true);
  hv->add_option("--direction", c.direction,
                 "safetensors with one tensor v per backbone parameter, same names, PyTorch layout")
      ->required();
  hv->add_option("--out", c.out, "result safetensors: loss, grad.<name>, hvp.<name> (PyTorch layout)")->required();
  hv->add_flag("--check", c.check,
               "compare H·v with central differences of the gradient and <grad, v> with those of the loss (f64)");
  hv->add_option("--check-eps", c.check_eps, "largest central-difference step (RMS per element); /10 and /100 are tried too")->capture_default_str();
  hv->add_option("--check-tol", c.check_tol, "largest relative error accepted")->capture_default_str();

  auto* up = app.add_subcommand(
      "upper", "one BiSSL upper step from files, by the trainer's own code: rhs, u, H·rhs, θD and φD gradients");
  add_model_options(up, c);
  add_loss_options(up, c);
  add_run_options(up, c, true);
  up->add_option("--weights-d", c.upper.weights_d, "θD's backbone (names as --weights); default: a copy of θP");
  up->add_option("--head-d", c.upper.head_d,
                 "φD, a torch.nn.Linear's state dict: \"weight\" [classes, features], \"bias\" [classes]")
      ->required();
  up->add_option("--downstream", c.upper.downstream,
                 "downstream batch: \"images\" NCHW (or \"images_nhwc\"), \"labels\" i64 [N] or \"targets\" "
                 "float [N, classes]")
      ->required();
  // BiSSL's own settings (bilevel::BilevelOptions), those one upper step reads.
  settings::add_field_flags(up, c.bissl, {},
                            {"alternations", "lower_steps", "upper_steps", "lower_lr", "lower_wd", "lower_momentum",
                             "lower_trust", "lower_warmup", "lower_total", "upper_lr", "upper_wd", "upper_momentum",
                             "upper_total", "schedule", "cg_batch", "weight"});
  up->add_flag("--trace", c.trace, "also write every CG direction and its H·v (cg.<k>.d.<name>, cg.<k>.hvp.<name>)");
  up->add_option("--out", c.out,
                 "result safetensors: loss_p, loss_d, rhs.*, head_p.*, u.*, hvp_rhs.*, grad_d[_clipped].*, "
                 "grad_head[_clipped].*, cg.residuals, cg.curvature (PyTorch layout)")
      ->required();

  auto* mk = app.add_subcommand(
      "make-example",
      "write random weights (backbone with a classifier + heads), a batch, a direction and φD (head_d) to --out DIR");
  add_model_options(mk, c);
  add_loss_options(mk, c);
  mk->add_option("--seed", c.run.seed, "random seed")->capture_default_str();
  mk->add_option("--batch", c.batch, "batch size")->capture_default_str();
  mk->add_option("--out", c.out, "directory for weights/batch/direction/head_d.safetensors")->required();

  CLI11_PARSE(app, argc, argv);
  try {
    if (graph->parsed()) return cmd_graph(c);
    if (gr->parsed()) return cmd_grad(c);
    if (hv->parsed()) return cmd_hvp(c);
    if (up->parsed()) return cmd_upper(c);
    return cmd_make_example(c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bissl-inspect: %s\n", e.what());
    return 2;
  }
}
