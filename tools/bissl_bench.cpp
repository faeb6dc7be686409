// bissl-bench: the shapes of ../shared/bench/torch_anchor.py, timed in bissl,
// printed as JSON (and written to --out). Run beside torch_anchor.py on the
// same GPU to compare (tools/gpu_check.sh does both).
//   R50 96px b256 SGD train step, fp32 and TF32; R18 CIFAR-stem 32px b512 fp32;
//   NT-Xent (R50 backbone + 2048-256-256-256 projector, 256 images, τ 0.5):
//   gradient and forward-over-reverse H·v w.r.t. the backbone; peak memory.
//   Also the loader's hand-over of a 256×96×96×3 batch to the device, with
//   pinned staging and with pageable buffers (not in the anchor); and the
//   loader on image files (--only folder): 96-px train views of JPEGs
//   decoded by 2 workers (lazy), cached, or held decoded in memory.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <stb/stb_image_write.h>  // implemented in data/stb_write.cpp

#include "data/augment.h"
#include "data/datasets.h"
#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/dist/comm.h"
#include "engine/optim/optimizer.h"
#include "engine/profile.h"
#include "models/factory.h"
#include "ssl/factory.h"
#include "ssl/simclr.h"

using namespace bissl;

namespace {

struct Opts {
  Device dev = Device::CUDA;
  int warm = 3, iters = 10;
  bool small = false;  // tiny shapes: a smoke test that runs anywhere
};

template <class F>
double median_ms(F f, const Opts& o, int iters) {
  for (int i = 0; i < o.warm; ++i) f();
  cuda_synchronize();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    auto a = std::chrono::steady_clock::now();
    f();
    cuda_synchronize();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double gib(size_t b) { return double(b) / double(1ull << 30); }

// Times the host waited for the GPU during one call of f (after warm-up):
// the target is none inside a training step but where a value is read.
template <class F>
int64_t host_syncs_of(F f) {
  const int64_t before = cuda_host_syncs();
  f();
  return cuda_host_syncs() - before;
}

void move_to(nn::Module& m, Device d) { m.to(d); }

// The anchor's models, from the model factory every stage uses.
models::BackboneSpec resnet(const char* arch, const char* stem) {
  models::BackboneSpec s;
  s.arch = arch, s.stem = stem;
  return s;
}

std::shared_ptr<nn::Layer> classifier(const models::BackboneSpec& s, int64_t px, int64_t classes, Generator& g) {
  int64_t feature_dim = 0;
  return models::make_backbone(s, 3, px, g, feature_dim, classes);
}

void train_step(nlohmann::json& res, const std::string& tag, std::shared_ptr<nn::Layer> model, int64_t batch,
                int64_t px, int64_t classes, const Opts& o) {
  Generator g(1);
  move_to(*model, o.dev);
  Tensor x = randn({batch, px, px, 3}, g).to(o.dev);
  Tensor y = randint({batch}, 0, classes, g).to(o.dev);
  optim::SGD opt(model->parameters(), 0.01, 0.9);
  const std::string range = tag + " step";
  auto step = [&] {
    ScopedRange r(range.c_str());
    opt.zero_grad();
    Tensor loss = cross_entropy(model->forward(x), y);
    backward(loss);
    opt.step();
  };
  step();  // first call per shape: convolution autotuning (its buffers are not the step's peak)
  cuda_synchronize();
  cuda_reset_peak_bytes();
  double ms = median_ms(step, o, o.iters);
  res[tag + "_ms"] = ms;
  res[tag + "_img_s"] = double(batch) / ms * 1e3;
  res[tag + "_peak_GiB"] = gib(cuda_peak_bytes());
  res[tag + "_host_syncs"] = host_syncs_of(step);
  std::fprintf(stderr, "[ok] %s: %.1f ms\n", tag.c_str(), ms);
}

void hvp_bench(nlohmann::json& res, const Opts& o) {
  Generator g(2);
  int64_t batch = o.small ? 4 : 256, px = o.small ? 32 : 96;
  // SimCLR's objective with its defaults (2048-256-256-256 projector, τ 0.5),
  // but as the anchor runs it: one forward of all 256 images, then the pairs.
  const models::BackboneSpec spec = resnet("resnet50", "imagenet");
  const ssl::ObjectiveSpec method;
  int64_t fdim = 0;
  auto bb = models::make_backbone(spec, 3, px, g, fdim);
  auto obj = ssl::make_objective(method, spec, *bb, 3, px, fdim, g, /*target_seed=*/0);
  models::MLPHead& head = dynamic_cast<ssl::SimCLR&>(*obj).projector();
  move_to(*bb, o.dev);
  move_to(*obj, o.dev);
  Tensor x = randn({batch, px, px, 3}, g).to(o.dev);
  auto params = bb->parameters();
  std::vector<Tensor> v;
  for (auto& p : params) v.push_back(randn(p.shape(), g).to(o.dev));
  auto loss = [&] {
    Tensor z = head.forward(bb->forward(x));
    return ssl::nt_xent(slice(z, 0, 0, batch / 2), slice(z, 0, batch / 2, batch), method.temperature);
  };
  auto grad_only = [&] {
    ScopedRange r("ntxent_r50 grad");
    return grad({loss()}, params);
  };
  res["ntxent_r50_grad_ms"] = median_ms(grad_only, o, o.iters);
  cuda_reset_peak_bytes();
  grad_only();
  res["ntxent_r50_grad_peak_GiB"] = gib(cuda_peak_bytes());
  res["ntxent_r50_grad_host_syncs"] = host_syncs_of(grad_only);
  std::fprintf(stderr, "[ok] ntxent grad\n");
  auto hvp_for = [&] {
    ScopedRange r("ntxent_r50 hvp");
    return hvp(loss, params, v);
  };
  res["ntxent_r50_hvp_fwd_rev_ms"] = median_ms(hvp_for, o, std::max(3, o.iters / 2));
  cuda_reset_peak_bytes();
  hvp_for();
  res["ntxent_r50_hvp_fwd_rev_peak_GiB"] = gib(cuda_peak_bytes());
  res["ntxent_r50_hvp_host_syncs"] = host_syncs_of(hvp_for);
  double ratio = res["ntxent_r50_hvp_fwd_rev_ms"].get<double>() / res["ntxent_r50_grad_ms"].get<double>();
  res["hvp_over_grad"] = ratio;
  res["bissl_upper_step_est_ms"] =
      res["ntxent_r50_grad_ms"].get<double>() + 5 * res["ntxent_r50_hvp_fwd_rev_ms"].get<double>();
  std::fprintf(stderr, "[ok] ntxent hvp (%.2fx grad)\n", ratio);

  // Linearized: one recording pass, then each H·v replays the tangent rules
  // only (BiSSL's CG applies H up to 40 times at one point).
  cuda_reset_peak_bytes();
  {
    auto t0 = std::chrono::steady_clock::now();
    Linearization lin(loss, params, v);
    cuda_synchronize();
    res["ntxent_r50_linearize_record_ms"] =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    auto lin_for = [&] {
      ScopedRange r("ntxent_r50 hvp linearized");
      return lin.hvp(v);
    };
    res["ntxent_r50_hvp_linearized_ms"] = median_ms(lin_for, o, std::max(3, o.iters / 2));
    res["ntxent_r50_hvp_linearized_peak_GiB"] = gib(cuda_peak_bytes());  // recording + replays
    res["ntxent_r50_hvp_linearized_host_syncs"] = host_syncs_of(lin_for);
    res["ntxent_r50_linearize_steps"] = lin.steps();
  }
  double lratio = res["ntxent_r50_hvp_linearized_ms"].get<double>() / res["ntxent_r50_grad_ms"].get<double>();
  res["hvp_linearized_over_grad"] = lratio;
  std::fprintf(stderr, "[ok] ntxent linearized hvp (%.2fx grad)\n", lratio);
  // As BiSSL's CG runs it by default (cg_linearize with cg_updates_bn): each
  // replay also repeats the batch-norm running-statistics updates.
  {
    Linearization lin(loss, params, v, /*replay_forward_effects=*/true);
    auto lin_for = [&] {
      ScopedRange r("ntxent_r50 hvp linearized + BN updates");
      return lin.hvp(v);
    };
    res["ntxent_r50_hvp_linearized_bn_ms"] = median_ms(lin_for, o, std::max(3, o.iters / 2));
    res["ntxent_r50_hvp_linearized_bn_host_syncs"] = host_syncs_of(lin_for);
    res["ntxent_r50_linearize_forward_effects"] = lin.forward_effects();
  }
  res["hvp_linearized_bn_over_grad"] =
      res["ntxent_r50_hvp_linearized_bn_ms"].get<double>() / res["ntxent_r50_grad_ms"].get<double>();
}

// The main job's shapes, as ../shared/bench/torch_cpu_anchor.py times them
// (the CPU anchor): ResNet-18 at width 0.25 with the ImageNet stem on grey
// 28×28 images, SimCLR's projector 128-128-64, τ 0.5. A training step on 256
// pairs (SGD with momentum, backbone and projector), then the NT-Xent
// gradient and H·v w.r.t. the backbone on 64 pairs: forward-over-reverse and
// replayed (Linearization, as BiSSL's CG runs it with cg_linearize).
void mainjob_bench(nlohmann::json& res, const Opts& o) {
  Generator g(3);
  models::BackboneSpec spec = resnet("resnet18", "imagenet");
  spec.width = 0.25;
  ssl::ObjectiveSpec method;
  method.temperature = 0.5, method.proj_hidden = 128, method.proj_out = 64;
  const int64_t px = 28, step_batch = o.small ? 8 : 256, hvp_batch = o.small ? 4 : 64;
  int64_t fdim = 0;
  auto bb = models::make_backbone(spec, 1, px, g, fdim);
  auto obj = ssl::make_objective(method, spec, *bb, 1, px, fdim, g, /*target_seed=*/0);
  move_to(*bb, o.dev);
  move_to(*obj, o.dev);
  auto views = [&](int64_t n) {
    ssl::SslBatch b;
    b.view1 = randn({n, px, px, 1}, g).to(o.dev);
    b.view2 = randn({n, px, px, 1}, g).to(o.dev);
    return b;
  };
  const ssl::SslBatch big = views(step_batch), small = views(hvp_batch);
  auto bb_params = bb->parameters();
  auto all = bb_params;
  for (auto& p : obj->parameters()) all.push_back(p);
  {
    optim::SGD opt(all, 0.1, 0.9);
    auto step = [&] {
      ScopedRange r("mainjob simclr step");
      opt.zero_grad();
      backward(obj->loss(*bb, big));
      opt.step();
    };
    const double ms = median_ms(step, o, o.iters);
    res["mainjob_simclr_step_ms"] = ms;
    res["mainjob_simclr_step_pairs"] = step_batch;
    std::fprintf(stderr, "[ok] main job: SimCLR step on %lld pairs: %.1f ms\n", (long long)step_batch, ms);
  }
  auto loss = [&] { return obj->loss(*bb, small); };
  auto grad_only = [&] {
    ScopedRange r("mainjob ntxent grad");
    return grad({loss()}, bb_params);
  };
  res["mainjob_ntxent_grad_ms"] = median_ms(grad_only, o, o.iters);
  std::vector<Tensor> v;
  for (auto& p : bb_params) v.push_back(randn(p.shape(), g).to(o.dev));
  auto hvp_for = [&] {
    ScopedRange r("mainjob ntxent hvp");
    return hvp(loss, bb_params, v);
  };
  res["mainjob_ntxent_hvp_ms"] = median_ms(hvp_for, o, o.iters);
  Linearization lin(loss, bb_params, v, /*replay_forward_effects=*/true);
  auto lin_for = [&] {
    ScopedRange r("mainjob ntxent hvp replayed");
    return lin.hvp(v);
  };
  res["mainjob_ntxent_hvp_replayed_ms"] = median_ms(lin_for, o, o.iters);
  res["mainjob_ntxent_pairs"] = hvp_batch;
  std::fprintf(stderr, "[ok] main job: NT-Xent on %lld pairs: gradient %.1f ms, H·v %.1f ms, replayed %.1f ms\n",
               (long long)hvp_batch, res["mainjob_ntxent_grad_ms"].get<double>(),
               res["mainjob_ntxent_hvp_ms"].get<double>(), res["mainjob_ntxent_hvp_replayed_ms"].get<double>());
}

// The loader's hand-over (next() with the batch already built by the
// workers): host time of next(), the wall time per batch including the
// copies (a synchronize after the last), and host waits per batch, with
// pinned staging and with pageable buffers.
void loader_bench(nlohmann::json& res, const Opts& o) {
  const int64_t batch = o.small ? 8 : 256, px = o.small ? 32 : 96;
  auto set = std::make_shared<data::ImageSet>();
  set->n = batch * 2, set->h = set->w = px, set->c = 3, set->num_classes = 10;
  set->pixels.resize(size_t(set->n * px * px * 3));
  for (size_t i = 0; i < set->pixels.size(); ++i) set->pixels[i] = uint8_t((i * 2654435761u) >> 24);
  for (int64_t i = 0; i < set->n; ++i) set->labels.push_back(i % 10);
  set->source = "synthetic";
  for (bool pin : {true, false}) {
    data::LoaderOptions lo;
    lo.batch_size = batch, lo.workers = 2, lo.prefetch = 2, lo.cycle = true, lo.device = o.dev, lo.pin_memory = pin;
    data::Loader loader(set, lo);
    data::Batch b;
    for (int i = 0; i < o.warm + 1; ++i) loader.next(b);
    cuda_synchronize();
    double next_ms = 0;
    int64_t syncs = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.iters; ++i) {
      while (loader.ready() < 1) std::this_thread::yield();  // the batch is built: time the hand-over only
      auto a = std::chrono::steady_clock::now();
      const int64_t before = cuda_host_syncs();
      loader.next(b);
      syncs += cuda_host_syncs() - before;
      next_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
    }
    cuda_synchronize();
    const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const std::string tag = std::string("loader_b") + std::to_string(batch) + "_" + std::to_string(px) + "px_" +
                            (pin ? "pinned" : "pageable");
    res[tag + "_next_ms"] = next_ms / o.iters;
    res[tag + "_host_syncs"] = double(syncs) / o.iters;
    res[tag + "_wall_ms"] = wall / o.iters;
    std::fprintf(stderr, "[ok] %s: next() %.3f ms on the host\n", tag.c_str(), next_ms / o.iters);
  }
  res["pinned_MiB"] = double(cuda_pinned_bytes()) / double(1 << 20);
}

// `count` photo-like JPEGs (500 x 375, quality 90: smooth colour fields,
// edges and sensor-like noise, about the size of a Flowers-102 or Pets image)
// in 10 class folders under dir.
void write_synthetic_jpegs(const std::string& dir, int64_t count) {
  const int w = 500, h = 375;
  std::vector<uint8_t> px(size_t(w * h * 3));
  for (int64_t k = 0; k < count; ++k) {
    const std::string cls = dir + "/class" + std::to_string(k % 10);
    std::filesystem::create_directories(cls);
    uint64_t x = uint64_t(k) * 0x9E3779B97F4A7C15ull + 7;
    auto rnd = [&] {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      return double(x >> 11) / double(1ull << 53);
    };
    const double f1 = 0.005 + 0.03 * rnd(), f2 = 0.005 + 0.03 * rnd(), ph = 6.28 * rnd();
    const double cx = w * rnd(), cy = h * rnd(), rad = 40 + 120 * rnd();
    for (int i = 0; i < h; ++i)
      for (int j = 0; j < w; ++j) {
        const bool blob = (j - cx) * (j - cx) + (i - cy) * (i - cy) < rad * rad;
        for (int c = 0; c < 3; ++c) {
          double v = 128 + 80 * std::sin(f1 * j + f2 * i * (c + 1) + ph) + (blob ? 60.0 - 40 * c : 0.0) +
                     24 * (rnd() - 0.5);
          px[size_t((i * w + j) * 3 + c)] = uint8_t(std::clamp(v, 0.0, 255.0));
        }
      }
    char name[32];
    std::snprintf(name, sizeof name, "/%06lld.jpg", (long long)k);
    if (!stbi_write_jpg((cls + name).c_str(), w, h, 3, px.data(), 90))
      throw Error(str("bench: cannot write ", cls, name));
  }
}

// The loader at the natural-image setting: images loaded at 110 px (shorter
// side + centre square), train views RandomResizedCrop(96, (0.08, 1),
// bicubic) + flip, batches of 256 built by 2 workers; one epoch drained as
// fast as it comes. Lazy (each image decoded from its file when read), lazy
// with every image cached (a second epoch), and the images decoded into
// memory first (that decode timed apart).
void folder_bench(nlohmann::json& res, const Opts& o, std::string folder, int64_t count) {
  namespace fs = std::filesystem;
  std::string made;
  if (folder.empty()) {
    made = (fs::temp_directory_path() / ("bissl_bench_jpegs_" + std::to_string(count))).string();
    if (!fs::exists(made + "/done")) {
      fs::remove_all(made);
      auto t0 = std::chrono::steady_clock::now();
      write_synthetic_jpegs(made, count);
      std::ofstream(made + "/done") << "ok\n";
      std::fprintf(stderr, "[ok] wrote %lld synthetic JPEGs in %.1f s\n", (long long)count,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    folder = made;
  }
  const data::ImageList list = data::list_image_folder(folder);
  res["folder"] = made.empty() ? folder : "synthetic: " + std::to_string(count) + " JPEGs of 500x375, quality 90";
  res["folder_images"] = int64_t(list.files.size());
  const int64_t batch = o.small ? 16 : 256;
  data::DecodeOptions d;
  d.channels = 3;
  d.height = d.width = 110;
  d.fit = data::Fit::ShorterCrop;
  auto epoch = [&](std::shared_ptr<const data::ImageSet> set, const char* tag, int64_t e) {
    data::LoaderOptions lo;
    lo.batch_size = batch, lo.workers = 2, lo.seed = 1, lo.drop_last = true;
    data::ViewConfig v = data::finetune_train_view(96, 3);
    v.interp = data::Interp::Bicubic;
    lo.views = {v};
    data::Loader loader(set, lo);
    loader.start_epoch(e);
    data::Batch b;
    int64_t n = 0;
    auto t0 = std::chrono::steady_clock::now();
    while (loader.next(b)) n += b.size();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    res[std::string("folder_") + tag + "_images_per_s"] = double(n) / s;
    res[std::string("folder_") + tag + "_resident_MiB"] = double(set->resident_bytes()) / double(1 << 20);
    std::fprintf(stderr, "[ok] folder, %s: %.0f images/s (%lld images in %.2f s; the set holds %.1f MiB)\n", tag,
                 double(n) / s, (long long)n, s, double(set->resident_bytes()) / double(1 << 20));
  };
  d.lazy = true;
  epoch(std::make_shared<const data::ImageSet>(data::decode_image_list(list, d)), "lazy", 0);
  d.cache_bytes = int64_t(list.files.size()) * 110 * 110 * 3;
  auto cached = std::make_shared<const data::ImageSet>(data::decode_image_list(list, d));
  epoch(cached, "lazy_cache_fill", 0);
  epoch(cached, "lazy_cached", 1);
  d.lazy = false;
  d.threads = 2;
  auto t0 = std::chrono::steady_clock::now();
  auto mem = std::make_shared<const data::ImageSet>(data::decode_image_list(list, d));
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res["folder_in_memory_decode_images_per_s"] = double(mem->n) / load_s;
  std::fprintf(stderr, "[ok] folder, decoding into memory (2 threads): %.0f images/s\n", double(mem->n) / load_s);
  epoch(mem, "in_memory", 0);
}

}  // namespace

int main(int argc, char** argv) {
  bissl::dist::Session session(argc, argv);  // one rank only (docs/distributed.md)
  bissl::dist::require_one_rank("bissl-bench");
  CLI::App app{"bissl-bench: torch_anchor.py's shapes in bissl, as JSON"};
  Opts o;
  std::string device = "cuda", out, only = "r50,r18,hvp,loader";
  app.add_option("--device", device, "cuda or cpu")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--iters", o.iters, "timed iterations (median reported)");
  app.add_option("--warm", o.warm, "untimed warm-up iterations");
  app.add_option("--only", only,
                 "comma list of r50, r18, hvp, loader, folder; mainjob (the CPU anchor's shapes), r50b32 (ResNet-50, "
                 "96 px, batch 32: the CPU's natural-image row)");
  std::string folder;
  int64_t folder_images = 2560;
  app.add_option("--folder", folder,
                 "folder: an image folder (root/<class>/...) to read; empty = synthetic JPEGs written to the temp dir");
  app.add_option("--folder-images", folder_images, "folder: how many synthetic JPEGs");
  app.add_option("--out", out, "also write the JSON here");
  app.add_flag("--small", o.small, "tiny shapes (a smoke test, e.g. on the CPU)");
  bool no_cudnn = false;
  app.add_flag("--no-cudnn", no_cudnn, "f32 convolutions through im2col + cuBLAS instead of cuDNN");
  bool no_autotune = false;
  app.add_flag("--no-autotune", no_autotune,
               "f32 convolutions: cuDNN whenever it takes the shape, instead of the faster of cuDNN and "
               "im2col + cuBLAS per shape");
  CLI11_PARSE(app, argc, argv);
  o.dev = device == "cuda" ? Device::CUDA : Device::CPU;
  cuda_set_cudnn(!no_cudnn);
  cuda_set_conv_autotune(!no_autotune);
  try {
    nlohmann::json res;
    res["backend"] = backend_summary();
    res["device"] = device;
    res["small"] = o.small;
    res["cudnn"] = !no_cudnn;
    res["conv_autotune"] = !no_autotune;
    only.erase(std::remove(only.begin(), only.end(), ' '), only.end());  // "r50, r18" as "r50,r18"
    auto want = [&](const std::string& k) { return ("," + only + ",").find("," + k + ",") != std::string::npos; };
    Generator g(0);
    int64_t b50 = o.small ? 2 : 256, px50 = o.small ? 32 : 96, b18 = o.small ? 2 : 512;
    const models::BackboneSpec r50 = resnet("resnet50", "imagenet");
    if (want("r50")) {
      cuda_set_tf32(false);
      train_step(res, "r50_96px_b256_fp32", classifier(r50, px50, 100, g), b50, px50, 100, o);
      if (o.dev == Device::CUDA) {
        cuda_set_tf32(true);
        train_step(res, "r50_96px_b256_tf32", classifier(r50, px50, 100, g), b50, px50, 100, o);
        cuda_set_tf32(false);
      }
    }
    if (want("r50b32")) {
      cuda_set_tf32(false);
      train_step(res, "r50_96px_b32_fp32", classifier(r50, px50, 100, g), o.small ? 2 : 32, px50, 100, o);
    }
    if (want("mainjob")) mainjob_bench(res, o);
    if (want("r18"))
      train_step(res, "r18cifar_32px_b512_fp32", classifier(resnet("resnet18", "cifar"), 32, 10, g), b18, 32, 10, o);
    if (want("hvp")) hvp_bench(res, o);
    if (want("loader")) loader_bench(res, o);
    if (want("folder")) folder_bench(res, o, folder, folder_images);
    if (o.dev == Device::CUDA) res["conv_choices"] = cuda_conv_choices();
    else res["cpu_conv_choices"] = cpu_conv_choices();
    std::cout << res.dump(1) << std::endl;
    if (!out.empty()) std::ofstream(out) << res.dump(1) << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bissl-bench: %s\n", e.what());
    return 2;
  }
  return 0;
}
