#include "tools/pretrain/build.h"

#include "data/datasets.h"
#include "engine/backend.h"
#include "engine/io/safetensors.h"
#include "models/resnet.h"
#include "models/torch_state.h"
#include "models/vit.h"
#include "ssl/byol.h"
#include "ssl/mae.h"
#include "ssl/simclr.h"

namespace bissl::pretrain {

namespace {

// MAE as an ssl::Objective: the decoder is its head; the mask of a step comes
// from the batch seed, so every evaluation of one batch masks the same patches.
class MaeObjective : public ssl::Objective {
 public:
  MaeObjective(const models::ViTConfig& enc, const ssl::MaeConfig& cfg, Generator& g) {
    decoder_ = register_module("decoder", std::make_shared<ssl::MaeDecoder>(enc, cfg, g));
  }
  Tensor loss(nn::Layer& backbone, const ssl::SslBatch& b) override {
    auto* vit = dynamic_cast<models::ViT*>(&backbone);
    BISSL_CHECK(vit, "mae: expected a ViT backbone");
    Generator g(b.seed);
    return ssl::mae_loss(*vit, *decoder_, b.view1, Tensor(), g).loss;
  }
  nn::Module& head() override { return *decoder_; }
  std::string type_name() const override { return "MAE"; }

 private:
  std::shared_ptr<ssl::MaeDecoder> decoder_;
};


}  // namespace

std::shared_ptr<const data::ImageSet> load_data(const Config& c) {
  data::ImageSet s;
  if (c.dataset == "fashion-mnist") s = data::load_fashion_mnist(c.root, true);
  else if (c.dataset == "mnist") s = data::load_mnist(c.root, true);
  else if (c.dataset == "cifar10") s = data::load_cifar10(c.root, true);
  else if (c.dataset == "cifar100") s = data::load_cifar100(c.root, true);
  else if (c.dataset == "stl10") s = data::load_stl10(c.root, data::Stl10Split::Unlabeled, c.limit > 0 ? c.limit : -1);
  else if (c.dataset == "folder") {
    data::ImageFolderOptions o;
    o.height = o.width = c.image_size;
    o.resize = true;
    s = data::load_image_folder(c.root, o);
  } else {
    throw Error(str("config: data.dataset must be fashion-mnist, mnist, cifar10, cifar100, stl10 or folder, found '",
                    c.dataset, "'"));
  }
  if (c.limit > 0 && c.limit < s.n) {
    std::vector<int64_t> idx(static_cast<size_t>(c.limit));
    for (int64_t i = 0; i < c.limit; ++i) idx[size_t(i)] = i;
    s = data::subset(s, idx);
  }
  return std::make_shared<const data::ImageSet>(std::move(s));
}

static models::ViTConfig vit_config(const Config& c, int64_t channels) {
  models::ViTConfig v = c.arch == "vit_small" ? models::ViTConfig::small(c.image_size, c.patch_size)
                                              : models::ViTConfig::tiny(c.image_size, c.patch_size);
  v.in_channels = channels;
  v.drop_path_rate = c.drop_path;
  if (c.depth > 0) v.depth = c.depth;
  return v;
}

std::shared_ptr<nn::Layer> make_backbone(const Config& c, int64_t channels, Generator& g, int64_t& feature_dim) {
  if (c.arch.rfind("resnet", 0) == 0) {
    models::ResNetConfig rc;
    rc.depth = c.arch == "resnet18" ? 18 : c.arch == "resnet34" ? 34 : c.arch == "resnet50" ? 50 : -1;
    BISSL_CHECK(rc.depth > 0, "config: model.arch must be resnet18, resnet34, resnet50, vit_tiny or vit_small, found '",
                c.arch, "'");
    rc.stem = c.stem == "imagenet" ? models::ResNetStem::ImageNet : models::ResNetStem::Cifar;
    rc.width = c.width;
    rc.in_channels = channels;
    auto m = std::make_shared<models::ResNet>(rc, g);
    feature_dim = m->feature_dim();
    return m;
  }
  BISSL_CHECK(c.arch == "vit_tiny" || c.arch == "vit_small",
              "config: model.arch must be resnet18, resnet34, resnet50, vit_tiny or vit_small, found '", c.arch, "'");
  auto v = std::make_shared<models::ViT>(vit_config(c, channels), g);
  feature_dim = v->config().embed_dim;
  return v;
}


Device device_of(const std::string& device) {
  BISSL_CHECK(device == "cpu" || device == "cuda" || device == "auto", "device: expected cpu, cuda or auto, found '",
              device, "'");
  if (device == "cuda") {
    BISSL_CHECK(cuda_device_count() > 0, "device: cuda was asked for, but no CUDA device is available (",
                backend_summary(), ")");
    return Device::CUDA;
  }
  return device == "auto" && cuda_device_count() > 0 ? Device::CUDA : Device::CPU;
}

std::shared_ptr<ssl::Objective> make_objective(const Config& c, const nn::Layer& backbone, int64_t channels,
                                               int64_t fdim, Generator& g) {
  if (c.method == "simclr") {
    ssl::SimclrOptions o;
    o.hidden_dim = c.proj_hidden, o.out_dim = c.proj_out, o.temperature = c.temperature;
    return std::make_shared<ssl::SimCLR>(fdim, g, o);
  }
  if (c.method == "byol") {
    ssl::ByolOptions o;
    o.hidden_dim = c.proj_hidden, o.out_dim = c.proj_out, o.pred_hidden_dim = c.proj_hidden, o.ema_decay = c.ema;
    auto factory = [c, channels] {
      Generator g2(c.seed + 1);
      int64_t unused = 0;
      return make_backbone(c, channels, g2, unused);
    };
    return std::make_shared<ssl::BYOL>(backbone, factory, fdim, g, o);
  }
  BISSL_CHECK(c.method == "mae", "config: method.name must be simclr, byol or mae, found '", c.method, "'");
  ssl::MaeConfig mc;
  mc.decoder_dim = c.decoder_dim, mc.decoder_depth = c.decoder_depth, mc.mask_ratio = c.mask_ratio;
  return std::make_shared<MaeObjective>(vit_config(c, channels), mc, g);
}

void save_module(const nn::Module& m, const std::string& path, const std::map<std::string, std::string>& meta) {
  io::NamedTensors all;
  for (auto& [k, t] : m.state_dict()) all.emplace_back(k, t.to(Device::CPU));
  io::save_safetensors(path, all, meta);
}

namespace {
void load_file_into(nn::Module& m, const io::SafetensorsFile& f, const std::string& what) {
  try {
    m.load_state_dict(nn::StateDict(f.tensors.begin(), f.tensors.end()));
  } catch (const Error& e) {
    throw Error(str("loading ", what, " '", f.path, "': ", e.what()));
  }
}
}  // namespace

void load_module(nn::Module& m, const std::string& path, const std::string& what) {
  load_file_into(m, io::load_safetensors(path), what);
}

io::NamedTensors prefixed(const std::string& prefix, const nn::StateDict& sd) {
  io::NamedTensors r;
  for (auto& [k, t] : sd) r.emplace_back(prefix + k, t.to(Device::CPU));
  return r;
}

nn::StateDict with_prefix(const io::SafetensorsFile& f, const std::string& prefix) {
  nn::StateDict r;
  for (auto& [k, t] : f.tensors)
    if (k.rfind(prefix, 0) == 0) r.emplace_back(k.substr(prefix.size()), t);
  return r;
}

void save_backbone(const nn::Layer& backbone, const std::string& path) {
  if (dynamic_cast<const models::ResNet*>(&backbone)) {
    models::save_torch_state(backbone, path);  // PyTorch layout: loads into torchvision
    return;
  }
  save_module(backbone, path);
}

void load_backbone(nn::Layer& backbone, const std::string& path) {
  io::SafetensorsFile f = io::load_safetensors(path);
  if (auto* r = dynamic_cast<models::ResNet*>(&backbone)) {
    io::NamedTensors sd;
    for (auto& kv : f.tensors)  // a torchvision checkpoint carries its ImageNet classifier: not part of a backbone
      if (r->fc || kv.first.rfind("fc.", 0) != 0) sd.push_back(kv);
    try {
      models::load_torch_state_dict(backbone, sd);
    } catch (const Error& e) {
      throw Error(str("loading backbone '", path, "': ", e.what()));
    }
    return;
  }
  load_file_into(backbone, f, "backbone");
}

}  // namespace bissl::pretrain
