#pragma once
// Random augmentations, seeded per sample. A sample's randomness is a Philox
// stream keyed by the seed with counter (draw, stream, sample index, epoch),
// so it depends only on (seed, epoch, sample index, view) — never on which
// thread runs it or in what order.
//
// The view pipelines follow torchvision's transforms as used by the
// reference code (RandomResizedCrop, RandomHorizontalFlip,
// RandomApply(ColorJitter), RandomGrayscale, GaussianBlur, Solarization,
// ToTensor, Normalize), in that order.
#include <array>
#include <cstdint>
#include <vector>

#include "data/image.h"
#include "engine/random.h"

namespace bissl::data {

// A per-sample random stream (cheap to make: four words of state).
class SampleRng {
 public:
  SampleRng(uint64_t seed, uint64_t epoch, uint64_t index, uint32_t stream = 0);
  double uniform();                                 // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int64_t randint(int64_t lo, int64_t hi);          // uniform in [lo, hi] (inclusive)
  bool bernoulli(double p) { return p >= 1.0 || (p > 0.0 && uniform() < p); }

 private:
  uint64_t seed_;
  uint32_t stream_, index_, epoch_;
  uint32_t draw_ = 0;
  std::array<uint32_t, 4> words_{};
  int used_ = 2;  // pairs of words used from `words_`
};

// A crop box in pixels.
struct CropBox {
  int64_t top = 0, left = 0, h = 0, w = 0;
};

// torchvision RandomResizedCrop.get_params: up to 10 attempts at an area
// fraction uniform in `scale` and a log-uniform aspect ratio (w/h) in
// `ratio`, side lengths rounded half to even; falls back to the largest
// centred crop with the ratio clamped into range.
CropBox random_resized_crop_params(int64_t h, int64_t w, std::array<double, 2> scale, std::array<double, 2> ratio,
                                   SampleRng& rng);

// torchvision ColorJitter(brightness, contrast, saturation, hue): factors
// uniform in [1-b, 1+b], [1-c, 1+c], [1-s, 1+s], [-h, h], applied in a random
// order (a permutation of the four drawn first, then the four factors).
// A zero strength leaves that adjustment out, as torchvision does.
struct ColorJitter {
  double brightness = 0.4, contrast = 0.4, saturation = 0.2, hue = 0.1;
};
void color_jitter(Image& img, const ColorJitter& cj, SampleRng& rng);

// Odd kernel size of about 10% of the image side (at least 3), as SimCLR.
int64_t auto_blur_kernel(int64_t side);

// How the blur is computed: a truncated Gaussian kernel (torchvision's
// GaussianBlur, kernel `blur_kernel` or ~10% of the side) or Pillow's
// extended box blur (ImageFilter.GaussianBlur, what the reference code runs).
enum class BlurKind { Kernel, Pillow };

// One view: how an input image becomes one normalised float HWC image.
struct ViewConfig {
  int64_t size = 0;  // square output side; 0 = keep the input size (eval path, no resize only)

  // Train path (random_crop = true): random resized crop, then the rest.
  bool random_crop = true;
  std::array<double, 2> scale{0.08, 1.0};
  std::array<double, 2> ratio{0.5, 1.0};  // the reference code's (0.5, 1.0); torchvision's default is (3/4, 4/3)
  Interp interp = Interp::Bicubic;
  double flip_p = 0.5;
  double jitter_p = 0.8;
  ColorJitter jitter;
  double grayscale_p = 0.2;
  double blur_p = 0.0;
  BlurKind blur_kind = BlurKind::Kernel;
  int64_t blur_kernel = 0;  // BlurKind::Kernel only; 0 = auto_blur_kernel(size)
  double blur_sigma_min = 0.1, blur_sigma_max = 2.0;
  double solarize_p = 0.0;
  double solarize_threshold = 128.0;

  // Eval path (random_crop = false): resize the shorter side to `resize`
  // (0 = no resize), centre crop to `size` (skipped when size is 0).
  int64_t resize = 0;

  // Normalisation (one entry per channel); pixel_scale as in normalize_into.
  std::vector<float> mean, std;
  float pixel_scale = 1.f;

  // Throws bissl::Error when the settings cannot work on `channels` channels.
  void validate(int64_t channels) const;
  // Output height/width for an input of h x w.
  std::array<int64_t, 2> out_hw(int64_t h, int64_t w) const;
};

// Applies `v` to one uint8 HWC image and writes the normalised float HWC
// result (out_hw(h, w) x c floats) to `out`.
void apply_view(const ViewConfig& v, const uint8_t* src, int64_t h, int64_t w, int64_t c, SampleRng& rng,
                float* out);
// The same on a float image, returning the un-normalised result (for tests
// and tools that want to look at the augmented image).
Image augment(const ViewConfig& v, const Image& img, SampleRng& rng);

// ---- ready pipelines (square outputs; 1 or 3 channels) ----
// Normalisation constants: ImageNet (timm's IMAGENET_DEFAULT_*) for 3
// channels, Fashion-MNIST's training-set mean/std for 1 channel.
std::vector<float> default_mean(int64_t channels);
std::vector<float> default_std(int64_t channels);

// A view's normalisation constants, one per channel (empty: the pipeline's own
// default_mean / default_std).
struct Normalization {
  std::vector<float> mean, std;
  bool empty() const { return mean.empty(); }
  bool operator==(const Normalization& o) const { return mean == o.mean && std == o.std; }
};
// timm's IMAGENET_DEFAULT_MEAN / _STD; one channel: the means of the three.
Normalization imagenet_normalization(int64_t channels);
// The mean and standard deviation of images (data::channel_stats) as floats.
Normalization normalization_from_stats(const std::vector<double>& mean, const std::vector<double>& std);
// v with n's constants (v unchanged when n is empty); validated for `channels`.
ViewConfig normalized(ViewConfig v, const Normalization& n, int64_t channels);

// The spec's two SimCLR/BYOL views: RandomResizedCrop(size, scale (0.08, 1),
// ratio (0.5, 1), bicubic), flip 0.5, ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8,
// grayscale p 0.2, blur p 1.0 (view 1) / 0.1 (view 2), solarize p 0 / 0.2.
ViewConfig ssl_view(int view, int64_t size, int64_t channels);
// MAE pretraining (MAE paper's recipe): RandomResizedCrop(size, scale
// (0.2, 1), torchvision's ratio (3/4, 4/3), bicubic) + flip, nothing else.
ViewConfig mae_view(int64_t size, int64_t channels);
// Fine-tuning train: RandomResizedCrop(size, scale (0.08, 1), ratio (0.5, 1),
// bilinear) + flip, as the reference code.
ViewConfig finetune_train_view(int64_t size, int64_t channels);
// Evaluation: resize the shorter side to int(size / 0.875) (109 for 96, 32
// for 28), centre crop to size, bilinear.
ViewConfig eval_view(int64_t size, int64_t channels);
// No augmentation: the image as it is, normalised.
ViewConfig plain_view(int64_t channels);

}  // namespace bissl::data
