#include "tools/pretrain/config.h"

#include "engine/error.h"
#include "engine/schema.h"
#include "tools/common/settings.h"

namespace bissl::pretrain {

using schema::Rule;

void Config::bind(settings::Settings& s, const std::string& p) {
  s.section(p + "data", [this](auto& v) {
    v("dataset", dataset, schema::one_of({"fashion-mnist", "mnist", "cifar10", "cifar100", "stl10", "folder"}),
      "the unlabelled pretext images (stl10: its unlabelled split; folder: every image under root)");
    v("root", root, schema::any(), "the dataset's folder");
    v("image_size", image_size, schema::ge(1), "views are cropped / resized to this many pixels per side");
    v("limit", limit, schema::ge(0), "use only the first N training images; 0 = all");
    v("max_image_pixels", max_image_pixels, Rule(schema::ge(0)).stamped_if_changed(),
      "folder: refuse an image whose header declares more pixels than this (a decompression-bomb guard, Pillow's "
      "limit); 0 = no limit");
    v("load_size", load_size, Rule(schema::ge(0)).stamped_if_changed(),
      "folder: > 0 resamples each image's shorter side to load_size and keeps the centre square on load (the views "
      "then crop from it); 0 squashes every image to image_size");
    v("lazy", lazy, Rule(schema::any()).stamped_if_changed(),
      "folder: keep only the file list in memory and decode each image when the loader reads it (datasets larger "
      "than memory; the same images as loaded, bit for bit)");
    v("cache_mb", cache_mb, Rule(schema::in(0, int64_t(1) << 24)).unstamped(),
      "lazy: keep decoded images in memory up to this many MiB, first come (0 = decode on every read)");
    v("normalize", normalize, Rule(schema::one_of({"default", "imagenet", "pretext"})).stamped_if_changed(),
      "per-channel mean / std of every view, pretraining and downstream: default (ImageNet's for RGB, as the "
      "reference; Fashion-MNIST's training statistics for grey), imagenet (timm's IMAGENET_DEFAULT_*; grey: their "
      "means), or pretext (computed on the pretext images when pretraining and stored in its backbone.safetensors "
      "and normalization.json; every later stage takes them from its backbone)");
    v("stats_images", stats_images, Rule(schema::ge(0)).stamped_if_changed(),
      "normalize = pretext: the statistics are computed on this many evenly spaced pretext images (0 = all)");
    v("workers", workers, Rule(schema::ge(0)).unstamped(), "loader worker threads");
  });
  s.section(p + "model", model);
  s.section(p + "method", method);
  s.section(p + "train", [this](auto& v) {
    v("batch_size", batch_size, schema::ge(2), "images per step (two views each for SimCLR / BYOL)");
    v("epochs", epochs, schema::ge(0), "passes over the data (when steps = 0)");
    v("steps", steps, schema::ge(0), "total optimiser steps; 0 = epochs x batches per epoch");
    v("optimizer", optimizer, schema::one_of({"lars", "adamw", "sgd"}), "the optimiser");
    v("lr", lr, schema::gt(0), "peak lr");
    v("weight_decay", weight_decay, schema::ge(0), "weight decay");
    v("momentum", momentum, schema::in_open_hi(0, 1), "momentum (LARS, SGD) or β1 (AdamW)");
    v("trust", trust, schema::gt(0), "LARS trust coefficient");
    v("warmup", warmup, schema::ge(0), "warm-up length: a fraction of the steps, or >= 1: steps");
    v("final_lr_ratio", final_lr_ratio, schema::in(0, 1), "the cosine ends at lr x this");
    v("seed", seed, schema::any(), "seed of the initialisation, the stream and the augmentations");
    v("device", device, schema::one_of({"cpu", "cuda", "auto"}), "cpu, cuda, or auto (cuda when a GPU exists)");
    v("numerics", numerics, Rule(schema::one_of({"default", "portable"})).unstamped(),
      "CPU numerics: default, or portable (the same bits on any x86-64 CPU with AVX2 and at any thread count; "
      "engine/numerics.h); inside the pipeline, pipeline.numerics");
    v("sync_batch_norm", sync_batch_norm, Rule(schema::any()).stamped_if_changed(),
      "on several ranks (mpirun): batch norm over the whole job's batch, as one process computes it (SyncBN, the "
      "spec); false: over each rank's rows (ghost BN of batch_size / ranks); one rank: no effect");
  });
  s.section(p + "output", [this](auto& v) {
    v("dir", out, Rule(schema::any()).unstamped(), "output folder");
    v("checkpoint_every", checkpoint_every, Rule(schema::ge(0)).unstamped(), "checkpoint every N steps; 0 = at the end");
    v("log_every", log_every, Rule(schema::ge(1)).unstamped(), "a metrics line every N steps");
  });
}

namespace {
settings::Settings bound(Config& c) {
  settings::Settings s;
  c.bind(s);
  static Config defaults;  // what --print-config calls each key's default
  static const settings::Settings at_defaults = [] {
    settings::Settings d;
    defaults.bind(d);
    return d;
  }();
  s.take_defaults_from(at_defaults);
  return s;
}
}  // namespace

void Config::set(const std::string& a) { bound(*this).set(a); }

void Config::load_toml_string(const std::string& text, const std::string& where) {
  bound(*this).load_toml_string(text, where);
}

void Config::load_toml(const std::string& path) { bound(*this).load_toml_file(path); }

std::string Config::to_toml(bool docs) const { return bound(const_cast<Config&>(*this)).to_toml(docs); }

void Config::validate() const {
  bound(const_cast<Config&>(*this)).validate();
  validate_combinations();
}

void Config::validate_combinations() const {
  BISSL_CHECK(!lazy || dataset == "folder", "config: data.lazy applies to dataset = folder, found '", dataset, "'");
  BISSL_CHECK(method.name != "mae" || model.is_vit(), "config: MAE needs a ViT (model.arch vit_tiny, vit_small or vit_base), found '",
              model.arch, "'");
  BISSL_CHECK(method.name == "mae" || !model.is_vit(), "config: ", method.name,
              " is set up for ResNet backbones here (model.arch resnet18/34/50/101/152), found '", model.arch, "'");
}

Config load_config(const std::string& path, const std::vector<std::string>& sets, bool) {
  Config c;
  if (!path.empty()) c.load_toml(path);
  for (auto& s : sets) c.set(s);
  c.validate();
  return c;
}

}  // namespace bissl::pretrain
