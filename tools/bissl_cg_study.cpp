// bissl-cg-study: how well BiSSL's conjugate gradient solves its system
// (I + H/(λ+δ)) u = ∇θP L_D at the points a pipeline run went through — the
// start of the BiSSL stage (the warmed-up backbone) and its end (θP). For
// each point: the extreme eigenvalues of the pretext Hessian H (Lanczos with
// full reorthogonalisation on a Linearization), then CG (layer-wise and
// global) for several iteration counts and dampings δ, each scored by its
// true relative residual ‖b − A u‖/‖b‖ (not the recurrence's). Writes
// <out>/cg_study.json and <out>/cg_study.md.
//   bissl-cg-study --config configs/pipeline_fashion_mnist.toml --run runs/fashion_mnist --out runs/fashion_mnist/cg_study
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/nn/state_io.h"
#include "models/factory.h"
#include "bilevel/cg.h"
#include "bilevel/implicit.h"
#include "bilevel/lanczos.h"
#include "bilevel/trainer.h"
#include "engine/autograd.h"
#include "engine/nn/layers.h"
#include "engine/ops.h"
#include "models/heads.h"
#include "tools/pretrain/build.h"
#include "tools/stages/stage_main.h"
#include "tools/stages/classify.h"
#include "tools/common/files.h"
#include "tools/stages/progress.h"
#include "tools/stages/task.h"

using namespace bissl;
namespace fs = std::filesystem;

namespace {

using bilevel::TensorList;

double norm(const TensorList& x) { return std::sqrt(bilevel::list_dot(x, x)); }

struct Point {
  std::string name, backbone, objective, head;
};

nlohmann::json study_point(const stages::Config& cfg_in, const stages::Task& task, const Point& pt, int lanczos_steps,
                           const std::vector<int>& iterations, const std::vector<double>& deltas, uint64_t seed) {
  const stages::Config cfg = stages::with_normalization(cfg_in, pt.backbone, task.train->c);
  const Device dev = stages::resolve_device(cfg.device, cfg.deterministic);
  const auto& bc = cfg.bissl;
  int64_t fdim = 0;
  auto theta = stages::build_backbone(cfg, task.train->c, pt.backbone, cfg.seed, fdim);
  Generator g(seed + 5);
  auto objective = build_objective(cfg, *theta, task.train->c, fdim, g);
  nn::load_module(*objective, pt.objective, "the pretext objective");
  models::LinearHead head(fdim, task.num_classes, g);
  nn::load_module(head, pt.head, "the downstream head");
  theta->to(dev), objective->to(dev), head.to(dev);
  theta->train(), objective->train(), head.train();

  auto pretext = pretrain::load_data(cfg.pretrain);
  stages::LoaderPretextStream lower(pretext, cfg.pretrain, bc.lower_batch, seed * 7 + 1, cfg.workers, dev);
  stages::LoaderDownstreamStream upper(task.train, cfg.task, std::min(bc.upper_batch, task.train->n), seed * 7 + 2,
                                       cfg.workers, dev);
  ssl::SslBatch fixed = lower.next();
  bilevel::DownstreamBatch db = upper.next();
  std::vector<Tensor> params = theta->parameters();

  // b = ∇θP L_D(θP, φD) on a downstream batch (ghost size of the upper level).
  nn::set_ghost_batch(*theta, bc.ghost_upper);
  TensorList b = grad({bilevel::cross_entropy_loss(*theta, head, db)}, params);
  for (auto& t : b) t = t.detach();
  // H: the pretext Hessian on one fixed batch (ghost size of the lower level).
  nn::set_ghost_batch(*theta, bc.ghost_lower);
  nn::set_ghost_batch(*objective, bc.ghost_lower);
  auto t0 = std::chrono::steady_clock::now();
  TensorList v0;
  Generator gv(seed + 9);
  for (auto& p : params) v0.push_back(randn(p.shape(), gv, p.dtype()).to(dev));
  Linearization lin([&] { return objective->loss(*theta, fixed); }, params, v0);
  int64_t products = 1;
  auto H = [&](const TensorList& v) {
    ++products;
    return lin.hvp(v);
  };
  bilevel::LanczosResult lz;
  {
    stages::Progress lp(pt.name + " Lanczos", lanczos_steps, "step");
    int64_t k = 0;
    lz = bilevel::lanczos(
        [&](const TensorList& v) {
          TensorList r = H(v);
          lp.update(++k, "");
          return r;
        },
        v0, lanczos_steps);
    lp.done();
  }
  const double hmin = lz.ritz.front(), hmax = lz.ritz.back();
  std::fprintf(stderr, "%s: Lanczos(%d) on H: Ritz values %.4g .. %.4g\n", pt.name.c_str(), lz.steps, hmin, hmax);

  int64_t nparams = 0;
  for (auto& p : params) nparams += p.numel();
  const double bnorm = norm(b);
  nlohmann::json j{{"point", pt.name},
                   {"backbone", pt.backbone},
                   {"parameters", nparams},
                   {"lanczos_steps", lz.steps},
                   {"ritz", lz.ritz},
                   {"h_min", hmin},
                   {"h_max", hmax},
                   {"rhs_norm", bnorm},
                   {"lambda", bc.lambda}};
  stages::Progress progress(pt.name + " CG runs", int64_t(deltas.size() * 2 * iterations.size()), "run");
  int64_t done = 0;
  for (double delta : deltas) {
    const double scale = 1.0 / (bc.lambda + delta);
    bilevel::MatVec A = bilevel::implicit_matvec(bilevel::HvpFn(H), bc.lambda, delta);
    nlohmann::json dj{{"delta", delta},
                      {"a_min", 1 + hmin * scale},
                      {"a_max", 1 + hmax * scale},
                      {"a_condition", (1 + hmin * scale) > 0 ? (1 + hmax * scale) / (1 + hmin * scale) : -1.0}};
    for (bool layerwise : {true, false}) {
      nlohmann::json runs = nlohmann::json::array();
      for (int k : iterations) {
        bilevel::CgOptions o;
        o.iterations = k;
        o.layerwise = layerwise;
        bilevel::CgResult r = bilevel::conjugate_gradient(A, b, o);
        TensorList Au = A(r.x), res(b.size());
        {
          NoGradGuard ng;
          for (size_t i = 0; i < b.size(); ++i) res[i] = sub(b[i], Au[i]);
        }
        double min_curv = 1e300;
        for (double c : r.curvature) min_curv = std::min(min_curv, c);
        const double true_residual = norm(res) / bnorm;
        runs.push_back({{"iterations", k},
                        {"true_residual", true_residual},
                        {"recurrence_residual", r.residuals.back() / r.residuals.front()},
                        {"recurrence_residuals", r.residuals},
                        {"min_curvature", min_curv},
                        {"u_norm", norm(r.x)},
                        {"nan_replaced", r.nan_replaced}});
        progress.update(++done, str("δ ", delta, layerwise ? " layer-wise " : " global ", k, " it: ‖b−Au‖/‖b‖ ",
                                    stages::fmt(true_residual, 3)));
      }
      dj[layerwise ? "layerwise" : "global"] = runs;
    }
    j["deltas"].push_back(dj);
  }
  progress.done();
  j["hvp_products"] = products;
  j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  j["linearization_steps"] = lin.steps();
  return j;
}

std::string markdown(const std::vector<nlohmann::json>& points, const stages::Config& cfg) {
  std::ostringstream md;
  md << "# CG study\n\nSystem (I + H/(λ+δ)) u = ∇θP L_D (BISSL_SPEC.md), λ = " << cfg.bissl.lambda
     << "; H the pretext Hessian w.r.t. the backbone on one pretext batch of " << cfg.bissl.lower_batch
     << " images, train mode; b on one downstream batch. Lanczos with full reorthogonalisation estimates H's extreme "
        "eigenvalues (Ritz values lie inside the spectrum, so the true extremes are at least as far out). "
        "CG from 0, no tolerance; the score is the true relative residual ‖b − A u‖/‖b‖ (1 = no better than u = 0).\n\n";
  for (auto& p : points) {
    md << "## " << p["point"].get<std::string>() << "\n\n" << p["parameters"].get<int64_t>() << " parameters; Lanczos("
       << p["lanczos_steps"].get<int>() << "): λ(H) from " << stages::fmt(p["h_min"].get<double>(), 4) << " to "
       << stages::fmt(p["h_max"].get<double>(), 4) << ".\n\n";
    md << "| δ | λ(A) range | variant |";
    auto& first = p["deltas"][0]["layerwise"];
    for (auto& r : first) md << " " << r["iterations"].get<int>() << " it |";
    md << "\n|---|---|---|";
    for (size_t i = 0; i < first.size(); ++i) md << "---|";
    md << "\n";
    for (auto& d : p["deltas"]) {
      for (const char* v : {"layerwise", "global"}) {
        md << "| " << stages::fmt(d["delta"].get<double>(), 4) << " | " << stages::fmt(d["a_min"].get<double>(), 3)
           << " .. " << stages::fmt(d["a_max"].get<double>(), 3) << " | " << (std::string(v) == "global" ? "global" : "layer-wise")
           << " |";
        for (auto& r : d[v]) md << " " << stages::fmt(r["true_residual"].get<double>(), 3) << " |";
        md << "\n";
      }
    }
    md << "\n";
  }
  return md.str();
}

std::vector<double> parse_list(const std::string& s) {
  std::vector<double> r;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) r.push_back(std::stod(item));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string run, out, arm = "bissl", iters_s = "5,10,20,40", deltas_s = "10,100,1000";
  int lanczos_steps = 40;
  uint64_t seed = 0;
  return stages::stage_main(
      argc, argv, "bissl-cg-study", "the spectrum of BiSSL's system and how CG solves it, at a run's BiSSL start and end",
      [&](CLI::App& app, stages::StageFlags& f) {
        app.add_option("--run", run, "the pipeline's output directory (pretrain/, warmup/, train/<arm>/)")->required();
        app.add_option("--arm", arm, "the training stage whose end point is studied");
        app.add_option("--out", out, "output directory")->required();
        app.add_option("--lanczos", lanczos_steps, "Lanczos steps");
        app.add_option("--iterations", iters_s, "CG iteration counts, comma-separated");
        app.add_option("--deltas", deltas_s, "dampings δ, comma-separated");
        app.add_option("--seed", seed, "which batches");
        app.add_flag("--quick", f.quick, "the run was made with bissl-pipeline --quick (its batch sizes)");
      },
      [&](stages::Config& cfg) {
        auto task = stages::load_task(cfg.task);
        std::vector<int> iterations;
        for (double v : parse_list(iters_s)) iterations.push_back(int(v));
        std::vector<double> deltas = parse_list(deltas_s);
        std::vector<Point> pts = {
            {"start (warmed-up backbone, pretrained heads, warm-up head)", run + "/warmup/backbone.safetensors",
             run + "/pretrain/objective.safetensors", run + "/warmup/head.safetensors"},
            {"end (" + arm + "'s θP, its pretext heads and φD)", run + "/train/" + arm + "/backbone.safetensors",
             run + "/train/" + arm + "/objective.safetensors", run + "/train/" + arm + "/head_d.safetensors"}};
        for (auto& p : pts)
          for (auto* f : {&p.backbone, &p.objective, &p.head})
            BISSL_CHECK(fs::exists(*f), "expected ", *f, " (run the pipeline first), found no such file");
        fs::create_directories(out);
        std::vector<nlohmann::json> results;
        for (auto& p : pts) results.push_back(study_point(cfg, task, p, lanczos_steps, iterations, deltas, seed));
        stages::write_json_atomic(out + "/cg_study.json", nlohmann::json(results));
        std::string md = markdown(results, cfg);
        stages::write_text_atomic(out + "/cg_study.md", md);
        std::printf("%s\nbissl-cg-study: %s/cg_study.md, cg_study.json\n", md.c_str(), out.c_str());
      },
      /*several_ranks=*/false);  // one rank: its Lanczos and CG products are not reduced
}
