#include "tools/stages/config.h"

#include <algorithm>

#include "engine/error.h"
#include "tools/stages/pipeline.h"

namespace bissl::stages {

const std::vector<std::string>& known_arms() {
  static const std::vector<std::string> a = {"ft",        "bissl",        "ij_discarded", "weighted_sum", "mix",
                                             "noisytune", "linear_probe", "zero_head",    "random_init"};
  return a;
}

Config load_config(const std::string& path, const std::vector<std::string>& sets, bool quick) {
  Config c;
  if (!path.empty()) c.load_toml(path);
  if (quick) apply_quick_preset(c);
  for (auto& s : sets) c.set(s);
  c.validate();
  return c;
}

void Config::bind() {
  auto& s = settings_;
  s.add("pipeline", "out", &out);
  s.add("pipeline", "device", &device);
  s.add("pipeline", "deterministic", &deterministic);
  s.add("pipeline", "workers", &workers);
  s.add("pipeline", "seed", &seed);
  s.add("pipeline", "arms", &arms);
  s.add("pipeline", "run_pretrain", &run_pretrain);
  s.add("pipeline", "pretrained", &pretrained);

  s.add("task", "dataset", &task.dataset);
  s.add("task", "root", &task.root);
  s.add("task", "classes", &task.classes);
  s.add("task", "train_per_class", &task.train_per_class);
  s.add("task", "val_per_class", &task.val_per_class);
  s.add("task", "val_fraction", &task.val_fraction);
  s.add("task", "image_size", &task.image_size);
  s.add("task", "split_seed", &task.split_seed);
  s.add("task", "crop_scale", &task.crop_scale);
  s.add("task", "crop_ratio", &task.crop_ratio);
  s.add("task", "flip", &task.flip);
  s.add("task", "train_images", &task.train_images);
  s.add("task", "val_images", &task.val_images);
  s.add("task", "test_images", &task.test_images);
  s.add("task", "mosaic_grid", &task.mosaic_grid);
  s.add("task", "mosaic_fill", &task.mosaic_fill);
  s.add("task", "load_size", &task.load_size);
  s.add("task", "ignore_difficult", &task.ignore_difficult);

  s.add("warmup", "epochs", &warmup.epochs);
  s.add("warmup", "batch_size", &warmup.batch_size);
  s.add("warmup", "lr", &warmup.lr);
  s.add("warmup", "momentum", &warmup.momentum);
  s.add("warmup", "weight_decay", &warmup.weight_decay);

  auto& b = bissl;
  s.add("bissl", "variant", &b.variant);
  s.add("bissl", "alternations", &b.alternations);
  s.add("bissl", "lower_steps", &b.lower_steps);
  s.add("bissl", "upper_steps", &b.upper_steps);
  s.add("bissl", "lower_batch", &b.lower_batch);
  s.add("bissl", "upper_batch", &b.upper_batch);
  s.add("bissl", "lambda", &b.lambda);
  s.add("bissl", "delta", &b.delta);
  s.add("bissl", "cg_iterations", &b.cg_iterations);
  s.add("bissl", "cg_layerwise", &b.cg_layerwise);
  s.add("bissl", "cg_tolerance", &b.cg_tolerance);
  s.add("bissl", "lower_lr", &b.lower_lr);
  s.add("bissl", "lower_wd", &b.lower_wd);
  s.add("bissl", "lower_momentum", &b.lower_momentum);
  s.add("bissl", "lower_trust", &b.lower_trust);
  s.add("bissl", "lower_warmup", &b.lower_warmup);
  s.add("bissl", "lower_total", &b.lower_total);
  s.add("bissl", "upper_lr", &b.upper_lr);
  s.add("bissl", "upper_wd", &b.upper_wd);
  s.add("bissl", "upper_momentum", &b.upper_momentum);
  s.add("bissl", "upper_total", &b.upper_total);
  s.add("bissl", "clip", &b.clip);
  s.add("bissl", "ghost_lower", &b.ghost_lower);
  s.add("bissl", "ghost_upper", &b.ghost_upper);
  s.add("bissl", "cg_updates_bn", &b.cg_updates_bn);
  s.add("bissl", "cg_linearize", &b.cg_linearize);
  s.add("bissl", "weight", &b.weight);
  s.add("bissl", "eval_every", &b.eval_every);
  s.add("bissl", "checkpoint_every", &b.checkpoint_every);

  auto& f = finetune;
  s.add("finetune", "epochs", &f.epochs);
  s.add("finetune", "batch_size", &f.batch_size);
  s.add("finetune", "lr", &f.lr);
  s.add("finetune", "weight_decay", &f.weight_decay);
  s.add("finetune", "momentum", &f.momentum);
  s.add("finetune", "search_trials", &f.search_trials);
  s.add("finetune", "search_epochs", &f.search_epochs);
  s.add("finetune", "lr_min", &f.lr_min);
  s.add("finetune", "lr_max", &f.lr_max);
  s.add("finetune", "wd_min", &f.wd_min);
  s.add("finetune", "wd_max", &f.wd_max);
  s.add("finetune", "share_search", &f.share_search);
  s.add("finetune", "seeds", &f.seeds);
  s.add("finetune", "noisytune", &f.noisytune);
  s.add("finetune", "optimizer", &f.optimizer);
  s.add("finetune", "layer_decay", &f.layer_decay);
  s.add("finetune", "drop_path", &f.drop_path);
  s.add("finetune", "eval_every", &f.eval_every);

  s.add("eval", "tsne_points", &eval.tsne_points);
  s.add("eval", "tsne_perplexity", &eval.tsne_perplexity);
  s.add("eval", "recalib_batches", &eval.recalib_batches);

  s.add_passthrough("pretrain", [this](const std::string& a) { pretrain.set(a); },
                    [this] { return pretrain.to_toml(); });
}

void Config::validate() const {
  BISSL_CHECK(device == "cpu" || device == "cuda" || device == "auto",
              "config: pipeline.device must be cpu, cuda or auto, found '", device, "'");
  BISSL_CHECK(!arms.empty(), "config: pipeline.arms is empty; known arms: ft, bissl, ij_discarded, weighted_sum, mix, "
                             "noisytune, linear_probe, zero_head, random_init");
  for (auto& a : arms)
    BISSL_CHECK(std::find(known_arms().begin(), known_arms().end(), a) != known_arms().end(),
                "config: pipeline.arms has unknown arm '", a,
                "'; known arms: ft, bissl, ij_discarded, weighted_sum, mix, noisytune, linear_probe, zero_head, random_init");
  BISSL_CHECK(task.dataset == "fashion-mnist" || task.dataset == "mnist" || task.dataset == "cifar10" ||
                  task.dataset == "cifar100" || task.dataset == "fashion-mnist-mosaic" || task.dataset == "voc2007",
              "config: task.dataset must be fashion-mnist, mnist, cifar10, cifar100, fashion-mnist-mosaic or voc2007, "
              "found '", task.dataset, "'");
  BISSL_CHECK(task.train_images >= 0 && task.val_images >= 0 && task.test_images >= 0 && task.load_size >= 0,
              "config: task.train_images, val_images, test_images and load_size must be >= 0");
  BISSL_CHECK(task.mosaic_grid >= 1 && task.mosaic_grid <= 8, "config: task.mosaic_grid must be in [1, 8], found ",
              task.mosaic_grid);
  BISSL_CHECK(task.mosaic_fill > 0 && task.mosaic_fill <= 1, "config: task.mosaic_fill must be in (0, 1], found ",
              task.mosaic_fill);
  BISSL_CHECK(task.dataset != "voc2007" || task.classes.empty(),
              "config: task.classes selects classes of a single-label dataset; voc2007 keeps its 20");
  BISSL_CHECK(task.image_size > 0, "config: task.image_size must be > 0, found ", task.image_size);
  BISSL_CHECK(task.val_fraction > 0 && task.val_fraction < 1, "config: task.val_fraction must be in (0, 1), found ",
              task.val_fraction);
  BISSL_CHECK(task.crop_scale.size() == 2 && task.crop_scale[0] > 0 && task.crop_scale[0] <= task.crop_scale[1] &&
                  task.crop_scale[1] <= 1,
              "config: task.crop_scale must be [lo, hi] with 0 < lo <= hi <= 1");
  BISSL_CHECK(task.crop_ratio.size() == 2 && task.crop_ratio[0] > 0 && task.crop_ratio[0] <= task.crop_ratio[1],
              "config: task.crop_ratio must be [lo, hi] with 0 < lo <= hi");
  BISSL_CHECK(task.flip >= 0 && task.flip <= 1, "config: task.flip must be a probability, found ", task.flip);
  BISSL_CHECK(warmup.epochs >= 0 && warmup.batch_size >= 2 && warmup.lr > 0,
              "config: warmup needs epochs >= 0, batch_size >= 2 and lr > 0");
  BISSL_CHECK(bissl.lower_batch >= 2 && bissl.upper_batch >= 2, "config: bissl batch sizes must be >= 2, found ",
              bissl.lower_batch, " and ", bissl.upper_batch);
  BISSL_CHECK(finetune.epochs >= 1 && finetune.batch_size >= 2, "config: finetune needs epochs >= 1 and batch_size >= 2");
  BISSL_CHECK(finetune.seeds >= 1, "config: finetune.seeds must be >= 1, found ", finetune.seeds);
  BISSL_CHECK(finetune.search_trials >= 0, "config: finetune.search_trials must be >= 0, found ", finetune.search_trials);
  BISSL_CHECK(finetune.lr_min > 0 && finetune.lr_max >= finetune.lr_min && finetune.wd_min > 0 &&
                  finetune.wd_max >= finetune.wd_min,
              "config: finetune search ranges need 0 < lr_min <= lr_max and 0 < wd_min <= wd_max");
  BISSL_CHECK(finetune.optimizer == "sgd" || finetune.optimizer == "adamw",
              "config: finetune.optimizer must be sgd or adamw, found '", finetune.optimizer, "'");
  bool vit = pretrain.arch.rfind("vit", 0) == 0;
  BISSL_CHECK(finetune.layer_decay > 0 && finetune.layer_decay <= 1, "config: finetune.layer_decay must be in (0, 1], found ",
              finetune.layer_decay);
  BISSL_CHECK(finetune.drop_path >= 0 && finetune.drop_path < 1, "config: finetune.drop_path must be in [0, 1), found ",
              finetune.drop_path);
  BISSL_CHECK(vit || (finetune.layer_decay == 1 && finetune.drop_path == 0),
              "config: finetune.layer_decay and finetune.drop_path apply to ViT backbones; the backbone is ", pretrain.arch);
  BISSL_CHECK(finetune.lr > 0 && finetune.weight_decay >= 0, "config: finetune.lr must be > 0 and weight_decay >= 0");
  // A replayed H·v differentiates the recorded forward: θP's drop path would
  // be one draw for the whole upper phase instead of one per product.
  BISSL_CHECK(!bissl.cg_linearize || pretrain.drop_path == 0,
              "config: bissl.cg_linearize replays one recorded forward per upper phase, so θP's stochastic depth "
              "(pretrain.model.drop_path = ", pretrain.drop_path, ") would be frozen at one draw; set it to 0 or "
              "bissl.cg_linearize = false");
  pretrain.validate();
}

}  // namespace bissl::stages
