#pragma once
// Float images and the deterministic image operations the augmentations are
// built from. An Image is HWC float, values in [0, 1] (uint8 / 255).
//
// The reference pipeline (torchvision on PIL images) rounds to uint8 after
// every operation; these work in float throughout, so results differ from
// PIL's by at most about one grey level per operation.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace bissl::data {

struct Image {
  int64_t h = 0, w = 0, c = 0;
  std::vector<float> px;  // h * w * c, HWC

  Image() = default;
  Image(int64_t h_, int64_t w_, int64_t c_, float fill = 0.f) : h(h_), w(w_), c(c_), px(size_t(h_ * w_ * c_), fill) {}
  float& at(int64_t y, int64_t x, int64_t ch) { return px[size_t((y * w + x) * c + ch)]; }
  float at(int64_t y, int64_t x, int64_t ch) const { return px[size_t((y * w + x) * c + ch)]; }
};

Image from_uint8(const uint8_t* hwc, int64_t h, int64_t w, int64_t c);
// Rounds to nearest and clamps to [0, 255].
void to_uint8(const Image& img, uint8_t* out);

// Resampling filters as in PIL (Pillow's Resample.c): separable, and
// antialiased when shrinking (the filter support widens by the scale
// factor), pixel centres at +0.5. Bicubic uses a = -0.5 (PIL's; torch's
// tensor path uses -0.75). Nearest picks the pixel under the centre.
enum class Interp { Nearest, Bilinear, Bicubic };
const char* interp_name(Interp m);

// Resample the whole image to out_h x out_w. Results are clamped to [0, 1]
// after each pass, like PIL does for 8-bit images.
Image resize(const Image& img, int64_t out_h, int64_t out_w, Interp m);
// torchvision Resize(size) with an int: the shorter side becomes `size`,
// the longer int(size * long / short); unchanged when the short side is size.
Image resize_shorter(const Image& img, int64_t size, Interp m);
// Crop rows [top, top+h), columns [left, left+w); parts outside the image
// are zero (torchvision pads with zeros when the crop is larger).
Image crop(const Image& img, int64_t top, int64_t left, int64_t h, int64_t w);
// torchvision CenterCrop: top = round((H - h) / 2) (round half to even).
Image center_crop(const Image& img, int64_t h, int64_t w);
// crop then resize (torchvision resized_crop).
Image resized_crop(const Image& img, int64_t top, int64_t left, int64_t h, int64_t w, int64_t out_h,
                   int64_t out_w, Interp m);
Image hflip(const Image& img);

// Colour operations, in place, as torchvision's functional ones on [0, 1]
// images: brightness x*f; contrast blends with the mean grey level;
// saturation blends with the per-pixel grey; hue rotates H in HSV by f
// (f in [-0.5, 0.5]). Grey = 0.299 R + 0.587 G + 0.114 B (PIL's "L").
// On 1-channel images saturation and hue do nothing.
void adjust_brightness(Image& img, double f);
void adjust_contrast(Image& img, double f);
void adjust_saturation(Image& img, double f);
void adjust_hue(Image& img, double f);
// Grey image with `out_channels` (1 or the input's channel count) equal channels.
Image to_grayscale(const Image& img, int64_t out_channels);

// Gaussian blur with an odd `kernel` size (taps exp(-x^2 / 2 sigma^2),
// normalised), separable, reflect padding — torchvision's gaussian_blur.
Image gaussian_blur(const Image& img, int64_t kernel, double sigma);
// Pillow's ImageFilter.GaussianBlur(radius=sigma), which the reference code
// uses: three box blurs per axis whose (fractional) radius gives variance
// sigma^2, edges extended; no kernel size. Stronger than gaussian_blur with a
// small kernel when sigma is large relative to it.
Image gaussian_blur_pillow(const Image& img, double sigma);
// PIL ImageOps.solarize: pixels whose 8-bit value is >= threshold are
// inverted. On float pixels this is x * 255 >= threshold - 0.5, which is what
// PIL does to the same value rounded to 8 bits.
void solarize(Image& img, double threshold = 128.0);

// out = (x * pixel_scale - mean[c]) / std[c], HWC floats. pixel_scale 255
// reproduces timm's ToTensor (which does not divide by 255).
void normalize_into(const Image& img, const std::vector<float>& mean, const std::vector<float>& std, float* out,
                    float pixel_scale = 1.f);

}  // namespace bissl::data
