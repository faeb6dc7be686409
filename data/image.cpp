#include "data/image.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace bissl::data {

namespace {

inline float clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }

double filter_support(Interp m) {
  switch (m) {
    case Interp::Nearest: return 0.5;
    case Interp::Bilinear: return 1.0;
    case Interp::Bicubic: return 2.0;
  }
  return 1.0;
}

double filter_eval(Interp m, double x) {
  if (x < 0) x = -x;
  switch (m) {
    case Interp::Nearest: return x <= 0.5 ? 1.0 : 0.0;  // unused: nearest has its own path
    case Interp::Bilinear: return x < 1.0 ? 1.0 - x : 0.0;
    case Interp::Bicubic: {
      constexpr double a = -0.5;  // PIL's choice (Keys' cubic with a = -0.5)
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
      if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
      return 0.0;
    }
  }
  return 0.0;
}

// Taps of a 1-D resampling from in_size to out_size (Pillow's
// precompute_coeffs): output pixel xx has centre (xx + 0.5) * scale in input
// coordinates; the filter widens by `scale` when shrinking (antialiasing).
struct Taps {
  int64_t ksize = 0;
  std::vector<int64_t> first, count;
  std::vector<float> w;  // out_size * ksize
};

Taps make_taps(int64_t in_size, int64_t out_size, Interp m) {
  Taps t;
  const double scale = double(in_size) / double(out_size);
  t.first.resize(size_t(out_size));
  t.count.resize(size_t(out_size));
  if (m == Interp::Nearest) {
    t.ksize = 1;
    t.w.assign(size_t(out_size), 1.f);
    for (int64_t xx = 0; xx < out_size; ++xx) {
      int64_t x = int64_t(std::floor((xx + 0.5) * scale));
      t.first[xx] = std::min(std::max<int64_t>(x, 0), in_size - 1);
      t.count[xx] = 1;
    }
    return t;
  }
  const double filterscale = std::max(scale, 1.0);
  const double support = filter_support(m) * filterscale;
  t.ksize = int64_t(std::ceil(support)) * 2 + 1;
  t.w.assign(size_t(out_size * t.ksize), 0.f);
  std::vector<double> k(static_cast<size_t>(t.ksize));
  for (int64_t xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    int64_t xmin = std::max<int64_t>(int64_t(center - support + 0.5), 0);
    int64_t xmax = std::min<int64_t>(int64_t(center + support + 0.5), in_size) - xmin;
    xmax = std::min(xmax, t.ksize);
    double total = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      k[x] = filter_eval(m, (x + xmin - center + 0.5) / filterscale);
      total += k[x];
    }
    for (int64_t x = 0; x < xmax; ++x) t.w[size_t(xx * t.ksize + x)] = float(total != 0.0 ? k[x] / total : 0.0);
    t.first[xx] = xmin;
    t.count[xx] = xmax;
  }
  return t;
}

// One pass along width (horizontal) or height (vertical). Each output is
// the sum over its taps in order (the same bits for any channel count).
template <int C>
void resample_w_rows(const Image& in, Image& out, const Taps& t) {
  const int64_t out_w = out.w;
  for (int64_t y = 0; y < in.h; ++y) {
    const float* row = in.px.data() + y * in.w * C;
    float* orow = out.px.data() + y * out_w * C;
    for (int64_t xx = 0; xx < out_w; ++xx) {
      const float* k = t.w.data() + xx * t.ksize;
      const float* src = row + t.first[xx] * C;
      float s[C] = {};
      for (int64_t i = 0; i < t.count[xx]; ++i) {
        const float ki = k[i];
        for (int ch = 0; ch < C; ++ch) s[ch] += ki * src[i * C + ch];
      }
      for (int ch = 0; ch < C; ++ch) orow[xx * C + ch] = clamp01(s[ch]);
    }
  }
}

Image resample_w(const Image& in, int64_t out_w, Interp m) {
  Taps t = make_taps(in.w, out_w, m);
  Image out(in.h, out_w, in.c);
  const int64_t c = in.c;
  if (c == 3) {
    resample_w_rows<3>(in, out, t);
    return out;
  }
  if (c == 1) {
    resample_w_rows<1>(in, out, t);
    return out;
  }
  for (int64_t y = 0; y < in.h; ++y) {
    const float* row = in.px.data() + y * in.w * c;
    float* orow = out.px.data() + y * out_w * c;
    for (int64_t xx = 0; xx < out_w; ++xx) {
      const float* k = t.w.data() + xx * t.ksize;
      const float* src = row + t.first[xx] * c;
      for (int64_t ch = 0; ch < c; ++ch) {
        float s = 0.f;
        for (int64_t i = 0; i < t.count[xx]; ++i) s += k[i] * src[i * c + ch];
        orow[xx * c + ch] = clamp01(s);
      }
    }
  }
  return out;
}

Image resample_h(const Image& in, int64_t out_h, Interp m) {
  Taps t = make_taps(in.h, out_h, m);
  Image out(out_h, in.w, in.c);
  const int64_t rowlen = in.w * in.c;
  std::vector<float> acc(static_cast<size_t>(rowlen));
  for (int64_t yy = 0; yy < out_h; ++yy) {
    std::fill(acc.begin(), acc.end(), 0.f);
    const float* k = t.w.data() + yy * t.ksize;
    for (int64_t i = 0; i < t.count[yy]; ++i) {
      const float* src = in.px.data() + (t.first[yy] + i) * rowlen;
      const float ki = k[i];
      for (int64_t j = 0; j < rowlen; ++j) acc[j] += ki * src[j];
    }
    float* dst = out.px.data() + yy * rowlen;
    for (int64_t j = 0; j < rowlen; ++j) dst[j] = clamp01(acc[j]);
  }
  return out;
}

// Index mapped into [0, n): reflected like torch's "reflect" padding (edge
// not repeated) or clamped like Pillow's box blur.
enum class Edge { Reflect, Clamp };
inline int64_t edge_index(int64_t i, int64_t n, Edge e) {
  if (e == Edge::Clamp || n == 1) return std::min(std::max<int64_t>(i, 0), n - 1);
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

// Correlation with odd-length `taps` centred on each pixel, along x.
Image convolve_x(const Image& in, const std::vector<float>& taps, Edge e) {
  const int64_t r = int64_t(taps.size()) / 2, c = in.c, rowlen = in.w * c;
  Image out(in.h, in.w, c, 0.f);
  std::vector<float> pad(size_t((in.w + 2 * r) * c));
  for (int64_t y = 0; y < in.h; ++y) {
    const float* src = in.px.data() + y * rowlen;
    for (int64_t i = -r; i < in.w + r; ++i) {
      const float* p = src + edge_index(i, in.w, e) * c;
      std::copy(p, p + c, pad.begin() + (i + r) * c);
    }
    float* dst = out.px.data() + y * rowlen;
    for (size_t t = 0; t < taps.size(); ++t) {
      const float kt = taps[t];
      const float* p = pad.data() + int64_t(t) * c;
      for (int64_t j = 0; j < rowlen; ++j) dst[j] += kt * p[j];
    }
  }
  return out;
}

// The same along y (whole rows at a time).
Image convolve_y(const Image& in, const std::vector<float>& taps, Edge e) {
  const int64_t r = int64_t(taps.size()) / 2, rowlen = in.w * in.c;
  Image out(in.h, in.w, in.c, 0.f);
  for (int64_t y = 0; y < in.h; ++y) {
    float* dst = out.px.data() + y * rowlen;
    for (size_t t = 0; t < taps.size(); ++t) {
      const float kt = taps[t];
      const float* src = in.px.data() + edge_index(y + int64_t(t) - r, in.h, e) * rowlen;
      for (int64_t j = 0; j < rowlen; ++j) dst[j] += kt * src[j];
    }
  }
  return out;
}

inline float grey(const float* p) { return 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2]; }

}  // namespace

const char* interp_name(Interp m) {
  switch (m) {
    case Interp::Nearest: return "nearest";
    case Interp::Bilinear: return "bilinear";
    case Interp::Bicubic: return "bicubic";
  }
  return "?";
}

Image from_uint8(const uint8_t* hwc, int64_t h, int64_t w, int64_t c) {
  Image r(h, w, c);
  const float s = 1.f / 255.f;
  for (size_t i = 0; i < r.px.size(); ++i) r.px[i] = float(hwc[i]) * s;
  return r;
}

void to_uint8(const Image& img, uint8_t* out) {
  for (size_t i = 0; i < img.px.size(); ++i) {
    float v = std::nearbyint(img.px[i] * 255.f);
    out[i] = uint8_t(v < 0.f ? 0.f : (v > 255.f ? 255.f : v));
  }
}

Image resize(const Image& img, int64_t out_h, int64_t out_w, Interp m) {
  BISSL_CHECK(out_h > 0 && out_w > 0, "resize: expected a positive output size, found ", out_h, "x", out_w);
  BISSL_CHECK(img.h > 0 && img.w > 0, "resize: expected a non-empty image, found ", img.h, "x", img.w);
  // Horizontal first, then vertical, as Pillow does; a pass that keeps its
  // size is the identity and is skipped.
  if (img.w == out_w && img.h == out_h) return img;
  if (img.w == out_w) return resample_h(img, out_h, m);
  Image tmp = resample_w(img, out_w, m);
  return img.h == out_h ? tmp : resample_h(tmp, out_h, m);
}

Image resize_shorter(const Image& img, int64_t size, Interp m) {
  BISSL_CHECK(size > 0, "resize_shorter: expected a positive size, found ", size);
  int64_t shorter = std::min(img.h, img.w), longer = std::max(img.h, img.w);
  BISSL_CHECK(shorter > 0, "resize_shorter: expected a non-empty image, found ", img.h, "x", img.w);
  if (shorter == size) return img;
  int64_t new_long = int64_t(double(size) * double(longer) / double(shorter));
  // An extreme aspect ratio (2 x 300 000) would grow without bound: the same
  // limit as a decoded image's (data::kMaxImagePixels).
  BISSL_CHECK(double(size) * double(new_long) <= 89478485.0, "resize_shorter: a ", img.h, "x", img.w,
              " image with its shorter side at ", size, " would be ", size, "x", new_long,
              " pixels, more than 89,478,485 (an extreme aspect ratio)");
  return img.h <= img.w ? resize(img, size, new_long, m) : resize(img, new_long, size, m);
}

Image crop(const Image& img, int64_t top, int64_t left, int64_t h, int64_t w) {
  BISSL_CHECK(h > 0 && w > 0, "crop: expected a positive crop size, found ", h, "x", w);
  Image r(h, w, img.c, 0.f);
  for (int64_t y = 0; y < h; ++y) {
    int64_t sy = top + y;
    if (sy < 0 || sy >= img.h) continue;
    int64_t x0 = std::max<int64_t>(0, -left), x1 = std::min<int64_t>(w, img.w - left);
    if (x1 <= x0) continue;
    std::copy(img.px.begin() + ((sy * img.w + left + x0) * img.c), img.px.begin() + ((sy * img.w + left + x1) * img.c),
              r.px.begin() + (y * w + x0) * img.c);
  }
  return r;
}

Image center_crop(const Image& img, int64_t h, int64_t w) {
  // Larger than the image: torchvision pads (left/top gets the floor half).
  auto offset = [](int64_t size, int64_t crop) -> int64_t {
    if (crop > size) return -((crop - size) / 2);
    return int64_t(std::nearbyint(double(size - crop) / 2.0));
  };
  return crop(img, offset(img.h, h), offset(img.w, w), h, w);
}

Image resized_crop(const Image& img, int64_t top, int64_t left, int64_t h, int64_t w, int64_t out_h,
                   int64_t out_w, Interp m) {
  return resize(crop(img, top, left, h, w), out_h, out_w, m);
}

Image hflip(const Image& img) {
  Image r(img.h, img.w, img.c);
  for (int64_t y = 0; y < img.h; ++y)
    for (int64_t x = 0; x < img.w; ++x)
      for (int64_t ch = 0; ch < img.c; ++ch) r.at(y, x, ch) = img.at(y, img.w - 1 - x, ch);
  return r;
}

void adjust_brightness(Image& img, double f) {
  const float ff = float(f);
  for (float& v : img.px) v = clamp01(v * ff);
}

void adjust_contrast(Image& img, double f) {
  const int64_t n = img.h * img.w;
  if (n == 0) return;
  double mean = 0.0;
  if (img.c >= 3)
    for (int64_t i = 0; i < n; ++i) mean += grey(&img.px[size_t(i * img.c)]);
  else
    for (int64_t i = 0; i < n; ++i) mean += img.px[size_t(i * img.c)];
  mean /= double(n);
  const float ff = float(f), off = float((1.0 - f) * mean);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < std::min<int64_t>(img.c, 3); ++ch) {
      float& v = img.px[size_t(i * img.c + ch)];
      v = clamp01(ff * v + off);
    }
}

void adjust_saturation(Image& img, double f) {
  if (img.c < 3) return;
  const float ff = float(f);
  for (int64_t i = 0; i < img.h * img.w; ++i) {
    float* p = &img.px[size_t(i * img.c)];
    const float g = grey(p);
    for (int ch = 0; ch < 3; ++ch) p[ch] = clamp01(ff * p[ch] + (1.f - ff) * g);
  }
}

void adjust_hue(Image& img, double f) {
  BISSL_CHECK(f >= -0.5 && f <= 0.5, "adjust_hue: expected a factor in [-0.5, 0.5], found ", f);
  if (img.c < 3) return;
  const float ff = float(f);
  for (int64_t i = 0; i < img.h * img.w; ++i) {
    float* p = &img.px[size_t(i * img.c)];
    const float r = p[0], g = p[1], b = p[2];
    // RGB -> HSV as torchvision's _rgb2hsv.
    const float maxc = std::max(r, std::max(g, b)), minc = std::min(r, std::min(g, b));
    if (maxc == minc) continue;  // grey: hue rotation changes nothing
    const float cr = maxc - minc;
    const float s = cr / maxc;
    const float inv = 1.f / cr;
    const float rc = (maxc - r) * inv, gc = (maxc - g) * inv, bc = (maxc - b) * inv;
    float h;
    if (maxc == r)
      h = bc - gc;
    else if (maxc == g)
      h = 2.f + rc - bc;
    else
      h = 4.f + gc - rc;
    // (h / 6 + 1) mod 1, then (h + f) mod 1 with a non-negative result (torch's %).
    h = h / 6.f + 1.f;
    h -= std::floor(h);
    h += ff;
    h -= std::floor(h);
    // HSV -> RGB as torchvision's _hsv2rgb.
    const float v = maxc;
    const float h6 = h * 6.f;
    const float fi = std::floor(h6);
    const float fr = h6 - fi;
    const int sector = int(fi) % 6;
    const float pp = clamp01(v * (1.f - s)), q = clamp01(v * (1.f - s * fr)), t = clamp01(v * (1.f - s * (1.f - fr)));
    float o0, o1, o2;
    switch (sector) {
      case 0: o0 = v, o1 = t, o2 = pp; break;
      case 1: o0 = q, o1 = v, o2 = pp; break;
      case 2: o0 = pp, o1 = v, o2 = t; break;
      case 3: o0 = pp, o1 = q, o2 = v; break;
      case 4: o0 = t, o1 = pp, o2 = v; break;
      default: o0 = v, o1 = pp, o2 = q; break;
    }
    p[0] = clamp01(o0);
    p[1] = clamp01(o1);
    p[2] = clamp01(o2);
  }
}

Image to_grayscale(const Image& img, int64_t out_channels) {
  BISSL_CHECK(out_channels == 1 || out_channels == img.c, "to_grayscale: expected 1 or ", img.c,
              " output channels, found ", out_channels);
  Image r(img.h, img.w, out_channels);
  for (int64_t i = 0; i < img.h * img.w; ++i) {
    const float* p = &img.px[size_t(i * img.c)];
    const float g = img.c >= 3 ? grey(p) : p[0];
    for (int64_t ch = 0; ch < out_channels; ++ch) r.px[size_t(i * out_channels + ch)] = g;
  }
  return r;
}

Image gaussian_blur(const Image& img, int64_t kernel, double sigma) {
  BISSL_CHECK(kernel > 0 && kernel % 2 == 1, "gaussian_blur: expected an odd positive kernel size, found ", kernel);
  BISSL_CHECK(sigma > 0, "gaussian_blur: expected a positive sigma, found ", sigma);
  const int64_t r = kernel / 2;
  std::vector<float> k(static_cast<size_t>(kernel));
  double total = 0.0;
  for (int64_t i = 0; i < kernel; ++i) {
    double x = double(i - r);
    double v = std::exp(-0.5 * (x / sigma) * (x / sigma));
    k[size_t(i)] = float(v);
    total += v;
  }
  for (auto& v : k) v = float(v / total);
  Image tmp = convolve_x(img, k, Edge::Reflect);
  Image out = convolve_y(tmp, k, Edge::Reflect);
  for (float& v : out.px) v = clamp01(v);
  return out;
}

Image gaussian_blur_pillow(const Image& img, double sigma) {
  BISSL_CHECK(sigma >= 0, "gaussian_blur_pillow: expected a non-negative sigma, found ", sigma);
  constexpr int kPasses = 3;
  // Box radius l + a whose kPasses-fold box filter has variance sigma^2
  // (Gwosdek et al., "Theoretical foundations of Gaussian convolution by
  // extended box filtering", as Pillow computes it).
  const double s2 = sigma * sigma / kPasses;
  const double len = std::sqrt(12.0 * s2 + 1.0);
  const double l = std::floor((len - 1.0) / 2.0);
  const double a = (2 * l + 1) * (l * (l + 1) - 3 * s2) / (6 * (s2 - (l + 1) * (l + 1)));
  const double radius = l + a;
  if (radius <= 0) return img;
  // One box pass = taps [a, 1, ..., 1, a] / (2 radius + 1), edges clamped.
  const int64_t li = int64_t(l);
  std::vector<float> taps(size_t(2 * li + 3), float(1.0 / (2 * radius + 1)));
  taps.front() = taps.back() = float(a / (2 * radius + 1));
  Image out = img;
  for (int k = 0; k < kPasses; ++k) out = convolve_x(out, taps, Edge::Clamp);
  for (int k = 0; k < kPasses; ++k) out = convolve_y(out, taps, Edge::Clamp);
  for (float& v : out.px) v = clamp01(v);
  return out;
}

void solarize(Image& img, double threshold) {
  const float t = float((threshold - 0.5) / 255.0);
  for (float& v : img.px)
    if (v >= t) v = 1.f - v;
}

void normalize_into(const Image& img, const std::vector<float>& mean, const std::vector<float>& std, float* out,
                    float pixel_scale) {
  BISSL_CHECK(int64_t(mean.size()) == img.c && int64_t(std.size()) == img.c, "normalize: expected ", img.c,
              " means and stds (one per channel), found ", mean.size(), " and ", std.size());
  std::vector<float> inv(static_cast<size_t>(img.c));
  for (int64_t ch = 0; ch < img.c; ++ch) {
    BISSL_CHECK(std[ch] > 0.f, "normalize: expected positive stds, found ", std[ch], " for channel ", ch);
    inv[ch] = 1.f / std[ch];
  }
  const int64_t n = img.h * img.w;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < img.c; ++ch) {
      size_t j = size_t(i * img.c + ch);
      out[j] = (img.px[j] * pixel_scale - mean[ch]) * inv[ch];
    }
}

}  // namespace bissl::data
