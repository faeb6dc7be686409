#include "data/augment.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace bissl::data {

// ---- SampleRng ----

SampleRng::SampleRng(uint64_t seed, uint64_t epoch, uint64_t index, uint32_t stream)
    : seed_(seed), stream_(stream), index_(uint32_t(index)), epoch_(uint32_t(epoch)) {
  BISSL_CHECK(index < (uint64_t(1) << 32), "SampleRng: expected a sample index below 2^32, found ", index);
  BISSL_CHECK(epoch < (uint64_t(1) << 32), "SampleRng: expected an epoch below 2^32, found ", epoch);
}

double SampleRng::uniform() {
  if (used_ == 2) {
    words_ = philox4x32_10({draw_++, stream_, index_, epoch_}, {uint32_t(seed_), uint32_t(seed_ >> 32)});
    used_ = 0;
  }
  return philox_uniform(words_, used_++);
}

int64_t SampleRng::randint(int64_t lo, int64_t hi) {
  BISSL_CHECK(hi >= lo, "SampleRng::randint: expected lo <= hi, found ", lo, " > ", hi);
  int64_t r = lo + int64_t(std::floor(uniform() * double(hi - lo + 1)));
  return std::min(r, hi);
}

// ---- random resized crop ----

CropBox random_resized_crop_params(int64_t h, int64_t w, std::array<double, 2> scale, std::array<double, 2> ratio,
                                   SampleRng& rng) {
  const double area = double(h) * double(w);
  const double lr0 = std::log(ratio[0]), lr1 = std::log(ratio[1]);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.uniform(scale[0], scale[1]);
    const double aspect = std::exp(rng.uniform(lr0, lr1));
    // Python's round(): half to even, which nearbyint gives in the default mode.
    const int64_t cw = int64_t(std::nearbyint(std::sqrt(target_area * aspect)));
    const int64_t ch = int64_t(std::nearbyint(std::sqrt(target_area / aspect)));
    if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
      CropBox b;
      b.h = ch;
      b.w = cw;
      b.top = rng.randint(0, h - ch);
      b.left = rng.randint(0, w - cw);
      return b;
    }
  }
  // Fallback: centre crop with the aspect ratio clamped into range.
  const double in_ratio = double(w) / double(h);
  CropBox b;
  if (in_ratio < std::min(ratio[0], ratio[1])) {
    b.w = w;
    b.h = int64_t(std::nearbyint(double(w) / std::min(ratio[0], ratio[1])));
  } else if (in_ratio > std::max(ratio[0], ratio[1])) {
    b.h = h;
    b.w = int64_t(std::nearbyint(double(h) * std::max(ratio[0], ratio[1])));
  } else {
    b.w = w;
    b.h = h;
  }
  b.top = (h - b.h) / 2;
  b.left = (w - b.w) / 2;
  return b;
}

// ---- colour jitter ----

void color_jitter(Image& img, const ColorJitter& cj, SampleRng& rng) {
  int order[4] = {0, 1, 2, 3};
  for (int i = 3; i > 0; --i) std::swap(order[i], order[rng.randint(0, i)]);
  const bool has[4] = {cj.brightness > 0, cj.contrast > 0, cj.saturation > 0, cj.hue > 0};
  double f[4] = {1, 1, 1, 0};
  if (has[0]) f[0] = rng.uniform(std::max(0.0, 1 - cj.brightness), 1 + cj.brightness);
  if (has[1]) f[1] = rng.uniform(std::max(0.0, 1 - cj.contrast), 1 + cj.contrast);
  if (has[2]) f[2] = rng.uniform(std::max(0.0, 1 - cj.saturation), 1 + cj.saturation);
  if (has[3]) f[3] = rng.uniform(-cj.hue, cj.hue);
  for (int k : order) {
    if (!has[k]) continue;
    switch (k) {
      case 0: adjust_brightness(img, f[0]); break;
      case 1: adjust_contrast(img, f[1]); break;
      case 2: adjust_saturation(img, f[2]); break;  // no-op on 1 channel
      case 3: adjust_hue(img, f[3]); break;         // no-op on 1 channel
    }
  }
}

int64_t auto_blur_kernel(int64_t side) {
  int64_t k = int64_t(0.1 * double(side));
  if (k % 2 == 0) ++k;
  return std::max<int64_t>(k, 3);
}

// ---- views ----

void ViewConfig::validate(int64_t channels) const {
  BISSL_CHECK(channels == 1 || channels == 3, "view: expected 1 or 3 channels, found ", channels);
  BISSL_CHECK(size >= 0, "view: expected a non-negative size, found ", size);
  auto prob = [](double p, const char* what) {
    BISSL_CHECK(p >= 0.0 && p <= 1.0, "view: expected ", what, " in [0, 1], found ", p);
  };
  prob(flip_p, "flip_p");
  prob(jitter_p, "jitter_p");
  prob(grayscale_p, "grayscale_p");
  prob(blur_p, "blur_p");
  prob(solarize_p, "solarize_p");
  if (random_crop) {
    BISSL_CHECK(size > 0, "view: a random resized crop needs a positive output size, found ", size);
    BISSL_CHECK(scale[0] > 0 && scale[0] <= scale[1], "view: expected 0 < scale[0] <= scale[1], found (", scale[0],
                ", ", scale[1], ")");
    BISSL_CHECK(ratio[0] > 0 && ratio[0] <= ratio[1], "view: expected 0 < ratio[0] <= ratio[1], found (", ratio[0],
                ", ", ratio[1], ")");
  }
  BISSL_CHECK(resize >= 0, "view: expected a non-negative resize, found ", resize);
  BISSL_CHECK(jitter.brightness >= 0 && jitter.contrast >= 0 && jitter.saturation >= 0, "view: expected non-negative "
              "jitter strengths, found (", jitter.brightness, ", ", jitter.contrast, ", ", jitter.saturation, ")");
  BISSL_CHECK(jitter.hue >= 0 && jitter.hue <= 0.5, "view: expected hue jitter in [0, 0.5], found ", jitter.hue);
  BISSL_CHECK(blur_kernel == 0 || (blur_kernel > 0 && blur_kernel % 2 == 1),
              "view: expected blur_kernel 0 (auto) or odd and positive, found ", blur_kernel);
  BISSL_CHECK(blur_sigma_min > 0 && blur_sigma_min <= blur_sigma_max, "view: expected 0 < blur sigma min <= max, found (",
              blur_sigma_min, ", ", blur_sigma_max, ")");
  BISSL_CHECK(int64_t(mean.size()) == channels && int64_t(std.size()) == channels, "view: expected ", channels,
              " means and stds, found ", mean.size(), " and ", std.size());
  for (float s : std) BISSL_CHECK(s > 0.f, "view: expected positive stds, found ", s);
}

std::array<int64_t, 2> ViewConfig::out_hw(int64_t h, int64_t w) const {
  if (random_crop || size > 0) return {size, size};
  if (resize > 0) {
    int64_t shorter = std::min(h, w), longer = std::max(h, w);
    if (shorter == resize) return {h, w};
    int64_t nl = int64_t(double(resize) * double(longer) / double(shorter));
    return h <= w ? std::array<int64_t, 2>{resize, nl} : std::array<int64_t, 2>{nl, resize};
  }
  return {h, w};
}

Image augment(const ViewConfig& v, const Image& src, SampleRng& rng) {
  Image img;
  if (v.random_crop) {
    CropBox b = random_resized_crop_params(src.h, src.w, v.scale, v.ratio, rng);
    img = resized_crop(src, b.top, b.left, b.h, b.w, v.size, v.size, v.interp);
  } else {
    img = v.resize > 0 ? resize_shorter(src, v.resize, v.interp) : src;
    if (v.size > 0) img = center_crop(img, v.size, v.size);
  }
  if (v.flip_p > 0 && rng.bernoulli(v.flip_p)) img = hflip(img);
  if (v.jitter_p > 0 && rng.bernoulli(v.jitter_p)) color_jitter(img, v.jitter, rng);
  if (v.grayscale_p > 0 && rng.bernoulli(v.grayscale_p)) img = to_grayscale(img, img.c);
  if (v.blur_p > 0 && rng.bernoulli(v.blur_p)) {
    const double sigma = rng.uniform(v.blur_sigma_min, v.blur_sigma_max);
    if (v.blur_kind == BlurKind::Pillow) {
      img = gaussian_blur_pillow(img, sigma);
    } else {
      const int64_t k = v.blur_kernel > 0 ? v.blur_kernel : auto_blur_kernel(std::min(img.h, img.w));
      img = gaussian_blur(img, k, sigma);
    }
  }
  if (v.solarize_p > 0 && rng.bernoulli(v.solarize_p)) solarize(img, v.solarize_threshold);
  return img;
}

void apply_view(const ViewConfig& v, const uint8_t* src, int64_t h, int64_t w, int64_t c, SampleRng& rng, float* out) {
  Image img = augment(v, from_uint8(src, h, w, c), rng);
  normalize_into(img, v.mean, v.std, out, v.pixel_scale);
}

// ---- ready pipelines ----

std::vector<float> default_mean(int64_t channels) {
  if (channels == 1) return {0.28604f};  // Fashion-MNIST train set, see data/README.md
  BISSL_CHECK(channels == 3, "default_mean: expected 1 or 3 channels, found ", channels);
  return {0.485f, 0.456f, 0.406f};
}

std::vector<float> default_std(int64_t channels) {
  if (channels == 1) return {0.35302f};
  BISSL_CHECK(channels == 3, "default_std: expected 1 or 3 channels, found ", channels);
  return {0.229f, 0.224f, 0.225f};
}

Normalization imagenet_normalization(int64_t channels) {
  BISSL_CHECK(channels == 1 || channels == 3, "imagenet_normalization: expected 1 or 3 channels, found ", channels);
  if (channels == 1) return {{0.449f}, {0.226f}};
  return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
}

Normalization normalization_from_stats(const std::vector<double>& mean, const std::vector<double>& std) {
  BISSL_CHECK(mean.size() == std.size() && !mean.empty(), "normalisation: expected a mean and std per channel, found ",
              mean.size(), " and ", std.size());
  Normalization n;
  for (size_t c = 0; c < mean.size(); ++c) {
    BISSL_CHECK(std[c] > 0, "normalisation: channel ", c, " has a standard deviation of ", std[c],
                " (every image constant in it); it cannot be normalised");
    n.mean.push_back(float(mean[c]));
    n.std.push_back(float(std[c]));
  }
  return n;
}

ViewConfig normalized(ViewConfig v, const Normalization& n, int64_t channels) {
  if (!n.empty()) {
    v.mean = n.mean;
    v.std = n.std;
  }
  v.validate(channels);
  return v;
}

ViewConfig ssl_view(int view, int64_t size, int64_t channels) {
  BISSL_CHECK(view == 1 || view == 2, "ssl_view: expected view 1 or 2, found ", view);
  ViewConfig v;
  v.size = size;
  v.random_crop = true;
  v.scale = {0.08, 1.0};
  v.ratio = {0.5, 1.0};
  v.interp = Interp::Bicubic;
  v.flip_p = 0.5;
  v.jitter_p = 0.8;
  v.jitter = ColorJitter{0.4, 0.4, 0.2, 0.1};
  v.grayscale_p = 0.2;
  v.blur_p = view == 1 ? 1.0 : 0.1;
  v.solarize_p = view == 1 ? 0.0 : 0.2;
  v.mean = default_mean(channels);
  v.std = default_std(channels);
  v.validate(channels);
  return v;
}

ViewConfig mae_view(int64_t size, int64_t channels) {
  ViewConfig v = finetune_train_view(size, channels);
  v.scale = {0.2, 1.0};
  v.ratio = {3.0 / 4.0, 4.0 / 3.0};
  v.interp = Interp::Bicubic;
  v.validate(channels);
  return v;
}

ViewConfig finetune_train_view(int64_t size, int64_t channels) {
  ViewConfig v;
  v.size = size;
  v.random_crop = true;
  v.scale = {0.08, 1.0};
  v.ratio = {0.5, 1.0};
  v.interp = Interp::Bilinear;
  v.flip_p = 0.5;
  v.jitter_p = 0.0;
  v.grayscale_p = 0.0;
  v.blur_p = 0.0;
  v.solarize_p = 0.0;
  v.mean = default_mean(channels);
  v.std = default_std(channels);
  v.validate(channels);
  return v;
}

ViewConfig eval_view(int64_t size, int64_t channels) {
  ViewConfig v = plain_view(channels);
  v.size = size;
  v.resize = int64_t(double(size) / (224.0 / 256.0));
  v.interp = Interp::Bilinear;
  v.validate(channels);
  return v;
}

ViewConfig plain_view(int64_t channels) {
  ViewConfig v;
  v.size = 0;
  v.random_crop = false;
  v.resize = 0;
  v.flip_p = v.jitter_p = v.grayscale_p = v.blur_p = v.solarize_p = 0.0;
  v.mean = default_mean(channels);
  v.std = default_std(channels);
  v.validate(channels);
  return v;
}

}  // namespace bissl::data
