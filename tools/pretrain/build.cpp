#include "tools/pretrain/build.h"

#include "data/datasets.h"
#include "engine/backend.h"

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
    data::ImageFolderOptions o;
    o.height = o.width = c.image_size;
    o.resize = true;
    o.max_pixels = c.max_image_pixels;
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
