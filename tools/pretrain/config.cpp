#include "tools/pretrain/config.h"

#include "engine/error.h"
#include "tools/common/settings.h"

namespace bissl::pretrain {

namespace {

// The config's keys, bound to the members of one Config (tools/common/settings.h).
settings::Settings bind(Config& c) {
  settings::Settings s;
  s.add("data", "dataset", &c.dataset);
  s.add("data", "root", &c.root);
  s.add("data", "image_size", &c.image_size);
  s.add("data", "limit", &c.limit);
  s.add("data", "workers", &c.workers);
  s.add("model", "arch", &c.arch);
  s.add("model", "stem", &c.stem);
  s.add("model", "width", &c.width);
  s.add("model", "patch_size", &c.patch_size);
  s.add("model", "drop_path", &c.drop_path);
  s.add("model", "depth", &c.depth);
  s.add("method", "name", &c.method);
  s.add("method", "temperature", &c.temperature);
  s.add("method", "proj_hidden", &c.proj_hidden);
  s.add("method", "proj_out", &c.proj_out);
  s.add("method", "ema", &c.ema);
  s.add("method", "mask_ratio", &c.mask_ratio);
  s.add("method", "decoder_dim", &c.decoder_dim);
  s.add("method", "decoder_depth", &c.decoder_depth);
  s.add("train", "batch_size", &c.batch_size);
  s.add("train", "epochs", &c.epochs);
  s.add("train", "steps", &c.steps);
  s.add("train", "optimizer", &c.optimizer);
  s.add("train", "lr", &c.lr);
  s.add("train", "weight_decay", &c.weight_decay);
  s.add("train", "momentum", &c.momentum);
  s.add("train", "trust", &c.trust);
  s.add("train", "warmup", &c.warmup);
  s.add("train", "final_lr_ratio", &c.final_lr_ratio);
  s.add("train", "seed", &c.seed);
  s.add("train", "device", &c.device);
  s.add("output", "dir", &c.out);
  s.add("output", "checkpoint_every", &c.checkpoint_every);
  s.add("output", "log_every", &c.log_every);
  return s;
}

}  // namespace

void Config::set(const std::string& a) { bind(*this).set(a); }

void Config::load_toml_string(const std::string& text, const std::string& where) {
  bind(*this).load_toml_string(text, where);
}

void Config::load_toml(const std::string& path) { bind(*this).load_toml_file(path); }

std::string Config::to_toml() const { return bind(const_cast<Config&>(*this)).to_toml(); }

void Config::validate() const {
  BISSL_CHECK(depth >= 0, "config: model.depth must be >= 0 (0 = the architecture's), found ", depth);
  BISSL_CHECK(drop_path >= 0 && drop_path < 1, "config: model.drop_path must be in [0, 1), found ", drop_path);
  BISSL_CHECK(method == "simclr" || method == "byol" || method == "mae",
              "config: method.name must be simclr, byol or mae, found '", method, "'");
  BISSL_CHECK(optimizer == "lars" || optimizer == "adamw" || optimizer == "sgd",
              "config: train.optimizer must be lars, adamw or sgd, found '", optimizer, "'");
  BISSL_CHECK(device == "cpu" || device == "cuda" || device == "auto", "config: train.device must be cpu, cuda or auto, found '",
              device, "'");
  BISSL_CHECK(batch_size >= 2, "config: train.batch_size must be >= 2, found ", batch_size);
  BISSL_CHECK(image_size > 0, "config: data.image_size must be > 0, found ", image_size);
  BISSL_CHECK(lr > 0, "config: train.lr must be > 0, found ", lr);
  BISSL_CHECK(method != "mae" || arch.rfind("vit", 0) == 0, "config: MAE needs a ViT (model.arch vit_tiny or vit_small), found '",
              arch, "'");
  BISSL_CHECK(method == "mae" || arch.rfind("resnet", 0) == 0, "config: ", method,
              " is set up for ResNet backbones here (model.arch resnet18/34/50), found '", arch, "'");
}

}  // namespace bissl::pretrain
