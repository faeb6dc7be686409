#include "tools/pretrain/build.h"

#include <nlohmann/json.hpp>

#include "data/datasets.h"
#include "engine/backend.h"
#include "engine/io/safetensors.h"

namespace bissl::pretrain {

static_assert(data::kMaxImagePixels == 89478485, "pretrain::Config::max_image_pixels repeats data::kMaxImagePixels");

std::shared_ptr<const data::ImageSet> load_data(const Config& c) {
  data::ImageSet s;
  if (c.dataset == "fashion-mnist") s = data::load_fashion_mnist(c.root, true);
  else if (c.dataset == "mnist") s = data::load_mnist(c.root, true);
  else if (c.dataset == "cifar10") s = data::load_cifar10(c.root, true);
  else if (c.dataset == "cifar100") s = data::load_cifar100(c.root, true);
  else if (c.dataset == "stl10") s = data::load_stl10(c.root, data::Stl10Split::Unlabeled, c.limit > 0 ? c.limit : -1);
  else if (c.dataset == "folder") {
    data::DecodeOptions o;
    o.channels = 3;
    o.height = o.width = c.load_size > 0 ? c.load_size : c.image_size;
    o.fit = c.load_size > 0 ? data::Fit::ShorterCrop : data::Fit::Squash;
    o.max_pixels = c.max_image_pixels;
    o.lazy = c.lazy;
    o.cache_bytes = c.cache_mb << 20;
    s = data::decode_image_list(data::list_image_folder(c.root), o);
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

data::Normalization compute_normalization(const Config& c, const data::ImageSet& train) {
  if (c.normalize == "default") return {};
  if (c.normalize == "imagenet") return data::imagenet_normalization(train.c);
  BISSL_CHECK(c.normalize == "pretext", "config: data.normalize must be default, imagenet or pretext, found '",
              c.normalize, "'");
  data::ChannelStats st = data::channel_stats(train, data::evenly_spaced(train.n, c.stats_images), 0);
  return data::normalization_from_stats(st.mean, st.std);
}

std::map<std::string, std::string> normalization_metadata(const data::Normalization& n) {
  if (n.empty()) return {};
  return {{"normalize_mean", nlohmann::json(n.mean).dump()}, {"normalize_std", nlohmann::json(n.std).dump()}};
}

data::Normalization normalization_in_file(const std::string& path) {
  io::SafetensorsFile f = io::load_safetensors(path);
  auto m = f.metadata.find("normalize_mean"), s = f.metadata.find("normalize_std");
  if (m == f.metadata.end() && s == f.metadata.end()) return {};
  BISSL_CHECK(m != f.metadata.end() && s != f.metadata.end(), path,
              ": expected both normalize_mean and normalize_std in the metadata, found one");
  data::Normalization n;
  try {
    n.mean = nlohmann::json::parse(m->second).get<std::vector<float>>();
    n.std = nlohmann::json::parse(s->second).get<std::vector<float>>();
  } catch (const std::exception& e) {
    throw Error(str(path, ": expected normalize_mean / normalize_std to be JSON lists of numbers, found '",
                    m->second, "' / '", s->second, "'"));
  }
  BISSL_CHECK(!n.mean.empty() && n.mean.size() == n.std.size(), path, ": expected a mean and std per channel, found ",
              n.mean.size(), " means and ", n.std.size(), " stds");
  for (float v : n.std) BISSL_CHECK(v > 0, path, ": expected positive normalize_std values, found ", v);
  return n;
}

std::string describe_normalization(const data::Normalization& n, int64_t channels) {
  const bool def = n.empty();
  std::vector<float> m = def ? data::default_mean(channels) : n.mean, s = def ? data::default_std(channels) : n.std;
  return str(def ? "default: " : "", "mean ", nlohmann::json(m).dump(), ", std ", nlohmann::json(s).dump());
}

data::Normalization normalization_for(const Config& c, const std::string& backbone, int64_t channels) {
  data::Normalization file = backbone.empty() ? data::Normalization{} : normalization_in_file(backbone);
  data::Normalization want;
  if (c.normalize == "imagenet") want = data::imagenet_normalization(channels);
  else if (c.normalize == "pretext") {
    BISSL_CHECK(!file.empty(), "pretrain.data.normalize = pretext: the backbone ",
                backbone.empty() ? std::string("(none: a random initialisation)") : "'" + backbone + "'",
                " carries no normalisation statistics; start from a backbone of a bissl pretraining run made with "
                "normalize = pretext (its statistics travel in every backbone.safetensors after it)");
    want = file;
  }
  if (!file.empty()) {
    const data::Normalization as_file = want.empty()
                                            ? data::Normalization{data::default_mean(channels), data::default_std(channels)}
                                            : want;
    BISSL_CHECK(as_file == file, "the backbone '", backbone, "' was trained on views normalised by ",
                describe_normalization(file, channels), "; pretrain.data.normalize = ", c.normalize, " gives ",
                describe_normalization(want, channels), " (set normalize to what its pretraining used)");
  }
  return want;
}

std::vector<data::ViewConfig> pretext_views(const Config& c, int64_t channels) {
  const data::Normalization n{c.norm_mean, c.norm_std};
  if (c.method.name == "mae") return {data::normalized(data::mae_view(c.image_size, channels), n, channels)};
  return {data::normalized(data::ssl_view(1, c.image_size, channels), n, channels),
          data::normalized(data::ssl_view(2, c.image_size, channels), n, channels)};
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

}  // namespace bissl::pretrain
