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

#include "bilevel/trainer.h"
#include "data/datasets.h"
#include "engine/schema.h"
#include "tools/common/settings.h"
#include "tools/pretrain/config.h"

namespace bissl::stages {

using schema::Rule;

// The arms a pipeline can compare (each one fine-tuned `seeds` times):
//   ft            the pretrained backbone
//   bissl         BiSSL's θP                    ij_discarded  BiSSL without the IJ term
//   weighted_sum  (1−w)L_P + wL_D jointly       mix           pretraining continued on pretext + downstream images
//   noisytune     pretrained + NoisyTune noise  linear_probe  frozen backbone, head only
//   zero_head     zero-initialised head         random_init   a randomly initialised backbone
const std::vector<std::string>& known_arms();

struct TaskConfig {  // [task]: the downstream (labelled) task
  std::string dataset = "fashion-mnist";
  std::string root = "/usr/share/datasets/fashion-mnist";
  std::vector<int64_t> classes;           // original labels to keep, relabelled 0..; empty = all
  int64_t train_per_class = 0;            // labelled training images per class; 0 = all not held out
  int64_t val_per_class = 0;              // validation images per class from the training set; 0 = val_fraction
  double val_fraction = 0.2;              // the spec: ~20 % of train, class-stratified
  int64_t image_size = 28;                // train crops / eval centre crops
  uint64_t split_seed = 0;
  std::vector<double> crop_scale = {0.08, 1.0};
  std::vector<double> crop_ratio = {0.5, 1.0};
  double flip = 0.5;
  int64_t train_images = 0, val_images = 0, test_images = 0;  // multi-label tasks
  int64_t mosaic_grid = 2;
  double mosaic_fill = 0.75;
  int64_t load_size = 0;
  bool ignore_difficult = false;
  // folder / list tasks (your own images).
  int64_t channels = 0;                 // 0 = from the first training image (grey -> 1, else 3)
  std::string folder_order = "class";   // class | name
  std::string train_list = "train.txt", val_list, test_list = "test.txt", class_names_file;
  bool skip_bad_images = false;
  int64_t max_image_pixels = data::kMaxImagePixels;
  bool lazy = false;                    // folder, list: decode when read
  int64_t cache_mb = 0;
  std::string train_interp = "bilinear";
  // Not settings: the normalisation of the task's views, resolved at run
  // time from the backbone and [pretrain.data] normalize (with_normalization);
  // empty = data::default_mean / default_std.
  std::vector<float> norm_mean, norm_std;

  template <class V>
  void fields(V& v) {
    v("dataset", dataset,
      schema::one_of({"fashion-mnist", "mnist", "cifar10", "cifar100", "stl10", "fashion-mnist-mosaic", "voc2007",
                      "folder", "list"}),
      "the downstream task; stl10: its labelled train / test files (root: the binary version's folder); "
      "fashion-mnist-mosaic (grid x grid mosaics, root as fashion-mnist) and voc2007 (root = a "
      "VOCdevkit) are multi-label: cross-entropy against multi-hot targets, scored by 11-point mAP; folder: "
      "root/train/<class>/..., root/test/<class>/..., optionally root/val/<class>/...; list: split files under root "
      "(train_list, test_list, optionally val_list) of 'relative/path label' lines or CSV (docs/datasets.md)");
    v("root", root, schema::any(), "the dataset's folder");
    v("classes", classes, schema::ge(0), "original labels to keep, relabelled 0..; empty = all");
    v("train_per_class", train_per_class, schema::ge(0), "labelled training images per class; 0 = all not held out");
    v("val_per_class", val_per_class, schema::ge(0),
      "validation images per class taken from the training set; 0 = val_fraction");
    v("val_fraction", val_fraction, schema::in_open(0, 1), "class-stratified validation fraction of train (the spec: ~20 %)");
    v("image_size", image_size, schema::ge(1), "train crops and evaluation centre crops, in pixels");
    v("split_seed", split_seed, schema::any(), "seed of the train / validation split");
    v("crop_scale", crop_scale, schema::in_open_lo(0, 1).length(2),
      "RandomResizedCrop scale [lo, hi] of the downstream train view (the spec's (0.08, 1) is for 96-px natural images)");
    v("crop_ratio", crop_ratio, schema::gt(0).length(2), "RandomResizedCrop aspect ratio [lo, hi]");
    v("flip", flip, schema::probability(), "probability of a horizontal flip in the train view");
    v("train_images", train_images, schema::ge(0),
      "mosaic: train mosaics (0 = train tiles / grid²); voc2007: a random subset of train this size (0 = all)");
    v("val_images", val_images, schema::ge(0), "mosaic: validation mosaics (0 = validation tiles / grid²)");
    v("test_images", test_images, schema::ge(0), "mosaic: test mosaics (0 = test tiles / grid²)");
    v("mosaic_grid", mosaic_grid, schema::in(1, 8), "mosaic: cells per side");
    v("mosaic_fill", mosaic_fill, schema::in_open_lo(0, 1), "mosaic: probability that a cell holds an image (>= 1 per mosaic)");
    v("load_size", load_size, schema::ge(0),
      "voc2007: images resampled to load_size² on load (0 = image_size / 0.875); folder, list: > 0 resamples the "
      "shorter side to load_size and keeps the centre square, 0 requires every image to have the first's size");
    v("ignore_difficult", ignore_difficult, schema::any(),
      "mAP: leave VOC's difficult labels out (the devkit) instead of counting them positive (the reference)");
    using schema::Rule;
    v("channels", channels, Rule(schema::in(0, 3)).stamped_if_changed(),
      "folder, list: image channels, 1 (grey) or 3 (RGB); 0 = from the first training image's file");
    v("folder_order", folder_order, Rule(schema::one_of({"class", "name"})).stamped_if_changed(),
      "folder: image order, class (class after class, each by path: torchvision's ImageFolder) or name (by the path "
      "below the class folder, then class)");
    v("train_list", train_list, Rule(schema::any()).stamped_if_changed(), "list: the training split file, under root");
    v("val_list", val_list, Rule(schema::any()).stamped_if_changed(),
      "list: the validation split file under root; empty = a class-stratified val_fraction of train");
    v("test_list", test_list, Rule(schema::any()).stamped_if_changed(), "list: the test split file, under root");
    v("class_names_file", class_names_file, Rule(schema::any()).stamped_if_changed(),
      "list: class names, one per line, under root (a label may then be a name); empty = integer labels");
    v("skip_bad_images", skip_bad_images, Rule(schema::any()).stamped_if_changed(),
      "folder, list: leave out images that cannot be decoded, counted in a note, instead of stopping with an error");
    v("max_image_pixels", max_image_pixels, Rule(schema::ge(0)).stamped_if_changed(),
      "folder, list: refuse an image whose header declares more pixels than this (a decompression-bomb guard, "
      "Pillow's limit); 0 = no limit");
    v("lazy", lazy, Rule(schema::any()).stamped_if_changed(),
      "folder, list: keep only the file lists in memory and decode each image when it is read (datasets larger "
      "than memory; the same images as loaded, bit for bit; a file that fails to decode then stops the stage)");
    v("cache_mb", cache_mb, Rule(schema::in(0, int64_t(1) << 24)).unstamped(),
      "lazy: keep decoded images in memory up to this many MiB per split, first come (0 = decode on every read)");
    v("train_interp", train_interp, Rule(schema::one_of({"bilinear", "bicubic"})).stamped_if_changed(),
      "resampling of the downstream train view's random resized crop: bilinear (the reference's fine-tuning "
      "transform) or bicubic");
  }
};

struct WarmupConfig {  // [warmup]: the downstream head on the frozen backbone
  int64_t epochs = 20;
  int64_t batch_size = 256;
  double lr = 0.01, momentum = 0.9, weight_decay = 0.0;

  template <class V>
  void fields(V& v) {
    v("epochs", epochs, schema::ge(0), "epochs of head training on the frozen backbone");
    v("batch_size", batch_size, schema::ge(2), "images per batch");
    v("lr", lr, schema::gt(0), "constant SGD lr (the spec gives no value)");
    v("momentum", momentum, schema::in_open_hi(0, 1), "SGD momentum");
    v("weight_decay", weight_decay, schema::ge(0), "SGD weight decay");
  }
};

// [bissl]: Algorithm 1's options (bilevel::BilevelOptions, described there)
// plus what the stage around it reads.
struct BisslConfig : bilevel::BilevelOptions {
  int64_t lower_batch = 1024, upper_batch = 256;
  std::string short_batches = "drop";
  int64_t eval_every = 1;         // downstream validation every N alternations (0 = never)
  int64_t checkpoint_every = 10;  // alternations

  template <class V>
  void fields(V& v) {
    bilevel::BilevelOptions::fields(v);
    v("lower_batch", lower_batch, schema::ge(2), "pretext images per view per lower step (the spec: 1024)");
    v("upper_batch", upper_batch, schema::ge(2), "downstream images per upper step (the spec: 256)");
    v("short_batches", short_batches, Rule(schema::one_of({"drop", "keep"})).stamped_if_changed(),
      "the last batch of an epoch of both streams: drop it when short, or keep it as the reference does (its "
      "W = batch / ghost devices each serve their own short batch: the epoch cut to a multiple of W, the short batch "
      "ghost-normalised in W parts, dropped below 2 images per part)");
    v("eval_every", eval_every, schema::ge(0), "validation score of θD and θP every N alternations; 0 = never");
    v("checkpoint_every", checkpoint_every, Rule(schema::ge(0)).unstamped(), "checkpoint every N alternations; 0 = at the end");
  }
};

// [finetune], in four parts, so that a stamp takes what a stage reads: the
// optimiser (also BiSSL's upper level's), one run's recipe, the random
// search, and the protocol around the runs (a new seed count redoes neither
// the search nor BiSSL).
struct FinetuneOptimizer {
  std::string optimizer = "sgd";
  double layer_decay = 1.0;
  double drop_path = 0.0;

  template <class V>
  void fields(V& v) {
    v("optimizer", optimizer, schema::one_of({"sgd", "adamw"}), "sgd (the spec's, with momentum) or adamw (MAE's)");
    v("layer_decay", layer_decay, schema::in_open_lo(0, 1), "ViT only: layer-wise lr decay (MAE: 0.65-0.75); 1 = off");
    v("drop_path", drop_path, schema::in_open_hi(0, 1), "ViT only: stochastic depth while fine-tuning (MAE: 0.1)");
  }
};
struct FinetuneRecipe {
  int64_t epochs = 400, batch_size = 256;
  double lr = 0.03, weight_decay = 1e-3, momentum = 0.9;
  int64_t eval_every = 1;

  template <class V>
  void fields(V& v) {
    v("epochs", epochs, schema::ge(1), "epochs per fine-tuning run (the spec: 400)");
    v("batch_size", batch_size, schema::ge(2), "images per batch");
    v("lr", lr, schema::gt(0), "lr used as it is when search_trials = 0");
    v("weight_decay", weight_decay, schema::ge(0), "weight decay used as it is when search_trials = 0");
    v("momentum", momentum, schema::in_open_hi(0, 1), "SGD momentum");
    v("eval_every", eval_every, schema::ge(0),
      "validation every N epochs (the best-validation epoch is kept); 0 = after the last epoch only");
  }
};
struct SearchConfig {
  int64_t search_trials = 100;
  int64_t search_epochs = 0;
  double lr_min = 1e-4, lr_max = 1.0, wd_min = 1e-5, wd_max = 1e-2;
  bool share_search = true;

  template <class V>
  void fields(V& v) {
    v("search_trials", search_trials, schema::ge(0), "random (lr, wd) trials on the validation split; 0 = lr, weight_decay");
    v("search_epochs", search_epochs, schema::ge(0), "epochs per trial; 0 = epochs");
    v("lr_min", lr_min, schema::gt(0), "log-uniform lr range: low end");
    v("lr_max", lr_max, schema::gt(0), "log-uniform lr range: high end");
    v("wd_min", wd_min, schema::gt(0), "log-uniform weight decay range: low end");
    v("wd_max", wd_max, schema::gt(0), "log-uniform weight decay range: high end");
    v("share_search", share_search, schema::any(), "every arm (and BiSSL's upper level) uses the ft arm's chosen lr / wd");
  }
};
struct FinetuneConfig : FinetuneOptimizer, FinetuneRecipe, SearchConfig {
  int64_t seeds = 10;
  double noisytune = 0.15;
  std::string parallel = "data";

  template <class V>
  void protocol_fields(V& v) {
    v("seeds", seeds, schema::ge(1), "fine-tuning runs per arm at the chosen values (the spec: 10)");
    v("noisytune", noisytune, schema::ge(0), "λ of the noisytune arm");
    v("parallel", parallel, Rule(schema::one_of({"data", "seeds"})).unstamped(),
      "on several ranks (mpirun): data = every search trial and seed data parallel over all ranks; seeds = trials and "
      "seeds side by side, each on one rank as one process computes it (the same bits as one process with the "
      "same thread count, or in portable numerics), results gathered; one rank: no effect");
  }
};

struct EvalConfig {  // [eval]
  int64_t tsne_points = 1000;
  double tsne_perplexity = 30;
  int64_t recalib_batches = 20;

  template <class V>
  void fields(V& v) {
    v("tsne_points", tsne_points, schema::ge(0), "test images in the t-SNE plots; 0 = no t-SNE");
    v("tsne_perplexity", tsne_perplexity, schema::gt(0), "t-SNE perplexity");
    v("recalib_batches", recalib_batches, schema::ge(1), "downstream batches for BN recalibration before alignment");
  }
};

struct PipelineConfig {  // [pipeline]
  std::string out = "runs/pipeline";
  std::string device = "auto";
  bool deterministic = false;
  std::string numerics = "default";
  int workers = 2;
  uint64_t seed = 0;
  std::vector<std::string> arms = {"ft", "bissl"};
  int64_t stage_seeds = 1;
  bool run_pretrain = true;
  std::string pretrained;

  template <class V>
  void fields(V& v) {
    v("out", out, Rule(schema::any()).unstamped(), "output folder of the run");
    v("device", device, schema::one_of({"cpu", "cuda", "auto"}), "cpu, cuda, or auto (cuda when a GPU exists)");
    v("deterministic", deterministic, schema::any(),
      "bit-reproducible CUDA steps (cuDNN's deterministic algorithms, no timed convolution choice); the CPU always is");
    v("numerics", numerics, Rule(schema::one_of({"default", "portable"})).stamped_if_changed(),
      "CPU numerics: default (sums per thread, OpenBLAS's kernels for this CPU: bits depend on both), or portable "
      "(fixed-chunk sums, OpenBLAS's Haswell kernels: the same bits on any x86-64 CPU with AVX2 and at any thread "
      "count; engine/numerics.h); the executables re-start themselves with OPENBLAS_CORETYPE=Haswell for it");
    v("workers", workers, Rule(schema::ge(0)).unstamped(), "loader worker threads");
    v("seed", seed, schema::any(), "seed of the streams, augmentations, heads and the search");
    v("arms", arms,
      Rule(schema::one_of(known_arms())).length(1, 64).unstamped(),
      "the arms compared, each fine-tuned `finetune.seeds` times (the first is the reference of the tests)");
    v("stage_seeds", stage_seeds, Rule(schema::in(1, 64)).unstamped(),
      "runs of each training-stage arm (bissl, ij_discarded, ...) with other stream and augmentation seeds, each "
      "fine-tuned with its own block of finetune.seeds seeds (stage seed k: seeds k*seeds .. (k+1)*seeds-1; an arm "
      "without a training stage gets the same blocks); the report then tests with the stage seed as the unit");
    v("run_pretrain", run_pretrain, Rule(schema::any()).unstamped(),
      "false: out/pretrain must already hold a pretrained backbone");
    v("pretrained", pretrained, Rule(schema::any()).unstamped(),
      "a folder with backbone.safetensors + objective.safetensors made earlier, used instead of pretraining");
  }
};

struct ConfigValues : PipelineConfig {
  pretrain::Config pretrain;
  TaskConfig task;
  WarmupConfig warmup;
  BisslConfig bissl;
  FinetuneConfig finetune;
  EvalConfig eval;
  // Not a setting: --no-recompute (a stage whose stamp differs is an error
  // naming the first differing key instead of being recomputed).
  bool no_recompute = false;
};

struct Config : ConfigValues {
  Config() { bind(); }
  Config(const Config& o) : ConfigValues(o) {
    bind();
    settings_.take_defaults_from(o.settings_);
  }
  Config& operator=(const Config& o) {
    static_cast<ConfigValues&>(*this) = o;
    return *this;  // settings_ stays bound to this object's members
  }

  void set(const std::string& assignment) { settings_.set(assignment); }
  void load_toml(const std::string& path) { settings_.load_toml_file(path); }
  void load_toml_string(const std::string& text, const std::string& where) { settings_.load_toml_string(text, where); }
  std::string to_toml(bool docs = false) const { return settings_.to_toml(docs); }
  // Every value in its range (the schema), then what involves several keys.
  void validate() const;
  const settings::Settings& settings() const { return settings_; }

 private:
  void bind();
  settings::Settings settings_;
};


// What every stage executable does with its flags: defaults, then the TOML
// file (when given; with --quick and no file, the main job's), then the
// --quick preset (when asked), then the --set overrides in order; validated.
Config load_config(const std::string& path, const std::vector<std::string>& sets, bool quick = false);

}  // namespace bissl::stages
