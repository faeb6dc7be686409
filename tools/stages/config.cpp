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
  else if (quick) c.load_toml_string(main_job_config_text(), "the main job's config (configs/pipeline_fashion_mnist.toml)");
  if (quick) apply_quick_preset(c);
  for (auto& s : sets) c.set(s);
  c.validate();
  return c;
}

void Config::bind() {
  auto& s = settings_;
  s.section("pipeline", static_cast<PipelineConfig&>(*this));
  s.section("task", task);
  s.section("warmup", warmup);
  s.section("bissl", bissl);
  s.section("finetune", static_cast<FinetuneOptimizer&>(finetune), "finetune.optimizer");
  s.section("finetune", static_cast<FinetuneRecipe&>(finetune), "finetune.recipe");
  s.section("finetune", static_cast<SearchConfig&>(finetune), "finetune.search");
  s.section("finetune", [this](auto& v) { finetune.protocol_fields(v); }, "finetune.protocol");
  s.section("eval", eval);
  pretrain.bind(s, "pretrain.");
}

void Config::validate() const {
  settings_.validate();  // every key in its range
  BISSL_CHECK(task.channels != 2, "config: task.channels must be 0 (from the images), 1 or 3, found 2");
  BISSL_CHECK(!task.lazy || task.dataset == "folder" || task.dataset == "list",
              "config: task.lazy applies to dataset = folder or list (image files), found '", task.dataset, "'");
  BISSL_CHECK(task.dataset != "voc2007" || task.classes.empty(),
              "config: task.classes selects classes of a single-label dataset; voc2007 keeps its 20");
  BISSL_CHECK(task.crop_scale[0] <= task.crop_scale[1], "config: task.crop_scale must be [lo, hi] with lo <= hi, found [",
              task.crop_scale[0], ", ", task.crop_scale[1], "]");
  BISSL_CHECK(task.crop_ratio[0] <= task.crop_ratio[1], "config: task.crop_ratio must be [lo, hi] with lo <= hi, found [",
              task.crop_ratio[0], ", ", task.crop_ratio[1], "]");
  BISSL_CHECK(finetune.lr_max >= finetune.lr_min, "config: finetune.lr_max must be >= finetune.lr_min (", finetune.lr_min,
              "), found ", finetune.lr_max);
  BISSL_CHECK(finetune.wd_max >= finetune.wd_min, "config: finetune.wd_max must be >= finetune.wd_min (", finetune.wd_min,
              "), found ", finetune.wd_max);
  // Ghost batch norm splits a batch into equal groups.
  auto ghost_ok = [](int64_t batch, int64_t ghost) { return ghost <= 0 || batch <= ghost || batch % ghost == 0; };
  BISSL_CHECK(ghost_ok(bissl.lower_batch, bissl.ghost_lower), "config: bissl.ghost_lower = ", bissl.ghost_lower,
              " must divide bissl.lower_batch = ", bissl.lower_batch, " (or be >= it, or 0)");
  BISSL_CHECK(ghost_ok(bissl.upper_batch, bissl.ghost_upper), "config: bissl.ghost_upper = ", bissl.ghost_upper,
              " must divide bissl.upper_batch = ", bissl.upper_batch, " (or be >= it, or 0)");
  bool vit = pretrain.model.is_vit();
  BISSL_CHECK(vit || (finetune.layer_decay == 1 && finetune.drop_path == 0),
              "config: finetune.layer_decay and finetune.drop_path apply to ViT backbones; the backbone is ", pretrain.model.arch);
  // A replayed H·v differentiates the recorded forward: θP's drop path would
  // be one draw for the whole upper phase instead of one per product.
  BISSL_CHECK(!bissl.cg_linearize || pretrain.model.drop_path == 0,
              "config: bissl.cg_linearize replays one recorded forward per upper phase, so θP's stochastic depth "
              "(pretrain.model.drop_path = ", pretrain.model.drop_path, ") would be frozen at one draw; set it to 0 or "
              "bissl.cg_linearize = false");
  // One mode per process: the pipeline's, also for its pretraining.
  BISSL_CHECK(pretrain.numerics == "default" || pretrain.numerics == numerics, "config: pretrain.train.numerics = ",
              pretrain.numerics, " but pipeline.numerics = ", numerics,
              "; the pipeline's stages run in one mode: set pipeline.numerics");
  pretrain.validate_combinations();
}

}  // namespace bissl::stages
