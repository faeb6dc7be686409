#pragma once
// The pretraining configuration: defaults, TOML loading, `section.key=value`
// overrides, and the resolved config as TOML (printed at start, saved beside
// the outputs and inside checkpoints).
#include <cstdint>
#include <string>
#include <vector>

#include "models/factory.h"
#include "ssl/factory.h"

namespace bissl::settings {
class Settings;
}

namespace bissl::pretrain {

struct Config {
  // [data]
  std::string dataset = "fashion-mnist";  // fashion-mnist | mnist | cifar10 | cifar100 | stl10 | folder
  std::string root = "/usr/share/datasets/fashion-mnist";
  int64_t image_size = 28;                // views are cropped/resized to this
  int64_t limit = 0;                      // use only the first N training images (0 = all)
  int64_t max_image_pixels = 89478485;    // folder: per-image pixel limit from the header (= data::kMaxImagePixels)
  int64_t load_size = 0;                  // folder: shorter side + centre square on load; 0 = squashed to image_size
  bool lazy = false;                      // folder: decode images when the loader reads them
  int64_t cache_mb = 0;                   // lazy: decoded images kept in memory, MiB
  std::string normalize = "default";      // default | imagenet | pretext
  int64_t stats_images = 10000;           // pretext: images the statistics are computed on (0 = all)
  int workers = 2;
  models::BackboneSpec model;             // [model] (models/factory.h)
  ssl::ObjectiveSpec method;              // [method] (ssl/factory.h)
  // [train]
  int64_t batch_size = 256;
  int64_t epochs = 1;
  int64_t steps = 0;                      // total optimiser steps; 0 = epochs × batches per epoch
  std::string optimizer = "lars";         // lars | adamw | sgd
  double lr = 4.8, weight_decay = 1e-6, momentum = 0.9, trust = 0.001;
  double warmup = 0.1;                    // warm-up length as a fraction of the steps (or >= 1: steps)
  double final_lr_ratio = 0.001;          // cosine ends at lr × this
  uint64_t seed = 0;
  std::string device = "auto";            // cpu | cuda | auto
  std::string numerics = "default";       // default | portable (engine/numerics.h)
  bool sync_batch_norm = true;            // several ranks: BN statistics over the whole job's batch (the spec)
  // Not a setting: the normalisation the views use, resolved at run time
  // (pretrain::normalization_for; empty = data::default_mean / default_std).
  std::vector<float> norm_mean, norm_std;
  // [output]
  std::string out = "runs/pretrain";
  int64_t checkpoint_every = 500;
  int64_t log_every = 10;

  // Binds every key (described once, in config.cpp) under [prefix + section]
  // of a settings table: "" for bissl-pretrain's own config, "pretrain."
  // inside the pipeline config.
  void bind(settings::Settings& s, const std::string& prefix = "");

  // Applies one `section.key=value`; throws on unknown keys or values of the
  // wrong type (tools/common/settings.h does the parsing).
  void set(const std::string& assignment);
  void load_toml(const std::string& path);
  void load_toml_string(const std::string& text, const std::string& where);
  std::string to_toml(bool docs = false) const;
  // Every value in its range, then what involves several keys.
  void validate() const;
  // What involves several keys (validate() without the per-key ranges, which
  // an enclosing settings table checks itself).
  void validate_combinations() const;
};

// Defaults, then the TOML file (when given), then the --set overrides;
// validated. (`quick` is accepted for tool_main and ignored.)
Config load_config(const std::string& path, const std::vector<std::string>& sets, bool quick = false);

}  // namespace bissl::pretrain
