#pragma once
// The configuration of the stages after pretraining and of the pipeline that
// runs them all: one TOML file (configs/pipeline_*.toml), `--set
// section.key=value` overrides, the resolved config printed and saved.
// Defaults are the spec's (BISSL_SPEC.md); a config file scales them to a
// machine. The pretraining config is embedded under [pretrain.*] (its own
// sections: [pretrain.data], [pretrain.train], ...).
#include <cstdint>
#include <string>
#include <vector>

#include "tools/common/settings.h"
#include "tools/pretrain/config.h"

namespace bissl::stages {

struct TaskConfig {  // [task]: the downstream (labelled) task
  // Single-label: fashion-mnist | mnist | cifar10 | cifar100.
  // Multi-label (scored by 11-point mAP, trained with cross-entropy against
  // multi-hot targets): fashion-mnist-mosaic (grid x grid mosaics of
  // Fashion-MNIST images, `root` as fashion-mnist) | voc2007 (`root` = a
  // VOCdevkit; train / val / test = the image sets of those names).
  std::string dataset = "fashion-mnist";
  std::string root = "/usr/share/datasets/fashion-mnist";
  std::vector<int64_t> classes;           // original labels to keep, relabelled 0..; empty = all
  int64_t train_per_class = 0;            // labelled training images per class; 0 = all not held out
  int64_t val_per_class = 0;              // validation images per class from the training set; 0 = val_fraction
  double val_fraction = 0.2;              // the spec: ~20 % of train, class-stratified
  int64_t image_size = 28;                // train crops / eval centre crops
  uint64_t split_seed = 0;
  // The downstream train view (fine-tuning, warm-up, BiSSL's upper level):
  // RandomResizedCrop(image_size, crop_scale, crop_ratio) + flip. The spec's
  // (0.08, 1) and (0.5, 1) are for 96-px natural images.
  std::vector<double> crop_scale = {0.08, 1.0};
  std::vector<double> crop_ratio = {0.5, 1.0};
  double flip = 0.5;
  // Multi-label tasks.
  int64_t train_images = 0;  // mosaic: train mosaics (0 = tiles in the train pool / grid²); voc2007: a random
                             // subset of the train image set of this size (0 = all of it)
  int64_t val_images = 0;    // mosaic: validation mosaics (0 = tiles in the validation pool / grid²)
  int64_t test_images = 0;   // mosaic: test mosaics (0 = test tiles / grid²)
  int64_t mosaic_grid = 2;   // cells per side
  double mosaic_fill = 0.75; // probability that a cell holds an image (at least one per mosaic)
  int64_t load_size = 0;     // voc2007: images resampled to load_size² on load (0 = round(image_size / 0.875))
  bool ignore_difficult = false;  // mAP: leave VOC's difficult labels out (the devkit) instead of positive (the reference)
};

struct WarmupConfig {  // [warmup]: the downstream head on the frozen backbone
  int64_t epochs = 20;
  int64_t batch_size = 256;
  double lr = 0.01, momentum = 0.9, weight_decay = 0.0;  // constant lr (the spec; it gives no value)
};

struct BisslConfig {  // [bissl]: Algorithm 1 (bilevel/trainer.h)
  std::string variant = "bissl";
  int64_t alternations = 500, lower_steps = 20, upper_steps = 8;
  int64_t lower_batch = 1024, upper_batch = 256;
  double lambda = 0.001, delta = 10.0;
  int cg_iterations = 5;
  bool cg_layerwise = true;
  double cg_tolerance = 0.0;
  double lower_lr = 1.0, lower_wd = 1e-6, lower_momentum = 0.9, lower_trust = 0.001;
  int64_t lower_warmup = 200, lower_total = 0;
  double upper_lr = -1, upper_wd = -1;  // < 0: the fine-tuning lr / weight decay (the spec's table)
  double upper_momentum = 0.9;
  int64_t upper_total = 0;
  double clip = 10.0;
  int64_t ghost_lower = 256, ghost_upper = 64;
  bool cg_updates_bn = true;
  bool cg_linearize = false;      // one recorded linearization per upper phase: fresh H·v's results, faster (needs θP without drop path)
  double weight = 0.5;            // weighted_sum's w
  int64_t eval_every = 1;         // downstream validation accuracy every N alternations (0 = never)
  int64_t checkpoint_every = 10;  // alternations
};

struct FinetuneConfig {  // [finetune]: new head, all weights trained
  int64_t epochs = 400, batch_size = 256;
  double lr = 0.03, weight_decay = 1e-3, momentum = 0.9;  // used as they are when search_trials = 0
  int64_t search_trials = 100;    // random search on the validation split
  int64_t search_epochs = 0;      // epochs per trial; 0 = epochs
  double lr_min = 1e-4, lr_max = 1.0, wd_min = 1e-5, wd_max = 1e-2;  // log-uniform ranges
  bool share_search = true;       // other arms reuse the "ft" arm's chosen lr/wd
  int64_t seeds = 10;             // fine-tuning runs per arm at the chosen values
  double noisytune = 0.15;        // λ of the noisytune arm
  std::string optimizer = "sgd";  // sgd (the spec's, with momentum) | adamw (MAE's fine-tuning)
  double layer_decay = 1.0;       // ViT only: layer-wise lr decay (MAE's recipe: 0.65-0.75); 1 = off
  double drop_path = 0.0;         // ViT only: stochastic depth while fine-tuning (MAE's: 0.1)
  int64_t eval_every = 1;         // validation every N epochs
};

struct EvalConfig {  // [eval]
  int64_t tsne_points = 1000;     // test images in the t-SNE plots (0 = no t-SNE)
  double tsne_perplexity = 30;
  int64_t recalib_batches = 20;   // downstream batches for BN recalibration
};

struct ConfigValues {
  // [pipeline]
  std::string out = "runs/pipeline";
  std::string device = "auto";
  // On CUDA: bit-reproducible steps (cuda_set_deterministic: cuDNN's
  // deterministic algorithms by heuristics, no timed convolution choice).
  // The CPU is reproducible either way.
  bool deterministic = false;
  int workers = 2;
  uint64_t seed = 0;
  std::vector<std::string> arms = {"ft", "bissl"};
  bool run_pretrain = true;  // false: out/pretrain/ must already hold a pretrained backbone
  // A folder with backbone.safetensors + objective.safetensors made earlier
  // (another pipeline's pretrain/): used instead of out/pretrain/, nothing is
  // pretrained. Its [pretrain] config must be this config's.
  std::string pretrained;

  pretrain::Config pretrain;
  TaskConfig task;
  WarmupConfig warmup;
  BisslConfig bissl;
  FinetuneConfig finetune;
  EvalConfig eval;
};

struct Config : ConfigValues {
  Config() { bind(); }
  Config(const Config& o) : ConfigValues(o) { bind(); }
  Config& operator=(const Config& o) {
    static_cast<ConfigValues&>(*this) = o;
    return *this;  // settings_ stays bound to this object's members
  }

  void set(const std::string& assignment) { settings_.set(assignment); }
  void load_toml(const std::string& path) { settings_.load_toml_file(path); }
  void load_toml_string(const std::string& text, const std::string& where) { settings_.load_toml_string(text, where); }
  std::string to_toml() const { return settings_.to_toml(); }
  void validate() const;

 private:
  void bind();
  settings::Settings settings_;
};

// The arms a pipeline can compare (each one fine-tuned `seeds` times):
//   ft            the pretrained backbone
//   bissl         BiSSL's θP                    ij_discarded  BiSSL without the IJ term
//   weighted_sum  (1−w)L_P + wL_D jointly       mix           pretraining continued on pretext + downstream images
//   noisytune     pretrained + NoisyTune noise  linear_probe  frozen backbone, head only
//   zero_head     zero-initialised head         random_init   a randomly initialised backbone
const std::vector<std::string>& known_arms();

// What every stage executable does with its flags: defaults, then the TOML
// file (when given), then the --quick preset (when asked), then the --set
// overrides in order; validated.
Config load_config(const std::string& path, const std::vector<std::string>& sets, bool quick = false);

}  // namespace bissl::stages
