// Image operations and augmentations: geometry on known images, resampling
// against Pillow's formulas, colour operations, per-sample determinism, the
// ready view pipelines.
#include <doctest/doctest.h>

#include <cmath>
#include <set>
#include <vector>

#include "data/augment.h"
#include "engine/error.h"

using namespace bissl;
using namespace bissl::data;

namespace {

// Pixel (y, x, ch) = (y * w + x) * c + ch, scaled into [0, 1].
Image ramp_image(int64_t h, int64_t w, int64_t c) {
  Image img(h, w, c);
  const float s = 1.f / float(h * w * c);
  for (size_t i = 0; i < img.px.size(); ++i) img.px[i] = float(i) * s;
  return img;
}

Image random_image(int64_t h, int64_t w, int64_t c, uint64_t seed) {
  Image img(h, w, c);
  SampleRng rng(seed, 0, 0, 99);
  for (auto& v : img.px) v = float(rng.uniform());
  return img;
}

double max_abs_diff(const Image& a, const Image& b) {
  REQUIRE(a.px.size() == b.px.size());
  double m = 0;
  for (size_t i = 0; i < a.px.size(); ++i) m = std::max(m, double(std::abs(a.px[i] - b.px[i])));
  return m;
}

}  // namespace

TEST_CASE("SampleRng: a stream depends only on (seed, epoch, index, stream)") {
  auto draw = [](uint64_t s, uint64_t e, uint64_t i, uint32_t st) {
    SampleRng r(s, e, i, st);
    std::vector<double> v;
    for (int k = 0; k < 7; ++k) v.push_back(r.uniform());
    return v;
  };
  CHECK(draw(1, 2, 3, 0) == draw(1, 2, 3, 0));
  CHECK(draw(1, 2, 3, 0) != draw(2, 2, 3, 0));
  CHECK(draw(1, 2, 3, 0) != draw(1, 3, 3, 0));
  CHECK(draw(1, 2, 3, 0) != draw(1, 2, 4, 0));
  CHECK(draw(1, 2, 3, 0) != draw(1, 2, 3, 1));
  SampleRng r(5, 0, 0);
  std::set<int64_t> seen;
  for (int k = 0; k < 2000; ++k) {
    double u = r.uniform();
    CHECK((u >= 0.0 && u < 1.0));
    int64_t j = r.randint(3, 7);
    CHECK((j >= 3 && j <= 7));
    seen.insert(j);
  }
  CHECK(seen.size() == 5);
}

TEST_CASE("geometry: flip, crop, centre crop and resize on known images") {
  Image img = ramp_image(5, 7, 3);
  Image f = hflip(img);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 7; ++x)
      for (int ch = 0; ch < 3; ++ch) CHECK(f.at(y, x, ch) == img.at(y, 6 - x, ch));
  CHECK(max_abs_diff(hflip(f), img) == 0.0);

  Image c = crop(img, 1, 2, 3, 4);
  CHECK(c.h == 3);
  CHECK(c.w == 4);
  CHECK(c.at(0, 0, 1) == img.at(1, 2, 1));
  CHECK(c.at(2, 3, 2) == img.at(3, 5, 2));
  // Outside the image: zeros (torchvision pads).
  Image o = crop(img, -1, 5, 2, 3);
  CHECK(o.at(0, 0, 0) == 0.f);
  CHECK(o.at(1, 0, 0) == img.at(0, 5, 0));
  CHECK(o.at(1, 2, 0) == 0.f);

  // Same-size resize is the identity, and so is resized_crop to the crop's size.
  CHECK(max_abs_diff(resize(img, 5, 7, Interp::Bicubic), img) == 0.0);
  CHECK(max_abs_diff(resized_crop(img, 1, 2, 3, 4, 3, 4, Interp::Bilinear), c) == 0.0);

  // torchvision CenterCrop rounds half to even: 109 -> 96 starts at round(6.5) = 6.
  Image big = ramp_image(109, 109, 1);
  Image cc = center_crop(big, 96, 96);
  CHECK(cc.at(0, 0, 0) == big.at(6, 6, 0));
  Image odd = ramp_image(11, 11, 1);
  CHECK(center_crop(odd, 8, 8).at(0, 0, 0) == odd.at(2, 2, 0));  // round(1.5) = 2
  // Larger than the image: padded with zeros, image centred.
  Image pad = center_crop(ramp_image(2, 2, 1), 4, 4);
  CHECK(pad.at(0, 0, 0) == 0.f);
  CHECK(pad.at(1, 1, 0) == ramp_image(2, 2, 1).at(0, 0, 0));

  // resize_shorter keeps the aspect ratio like torchvision Resize(int).
  Image r = resize_shorter(ramp_image(20, 30, 1), 10, Interp::Bilinear);
  CHECK(r.h == 10);
  CHECK(r.w == 15);
}

TEST_CASE("resampling: Pillow's antialiased taps, linear ramps reproduced, constants kept") {
  // Bilinear 4 -> 2: Pillow's support widens to 2; output 0 has centre 1 and
  // taps (0.75, 0.75, 0.25) / 1.75 on inputs 0, 1, 2.
  Image row(1, 4, 1);
  row.px = {0.f, 0.2f, 0.4f, 0.6f};
  Image d = resize(row, 1, 2, Interp::Bilinear);
  CHECK(d.px[0] == doctest::Approx((0.75 * 0 + 0.75 * 0.2 + 0.25 * 0.4) / 1.75).epsilon(1e-6));
  CHECK(d.px[1] == doctest::Approx((0.25 * 0.2 + 0.75 * 0.4 + 0.75 * 0.6) / 1.75).epsilon(1e-6));

  // Upsampling a linear ramp: away from the borders both filters reproduce it
  // (Keys' cubic with a = -0.5 reproduces polynomials up to degree 2).
  Image ramp(1, 8, 1);
  for (int x = 0; x < 8; ++x) ramp.px[size_t(x)] = 0.1f * float(x);
  for (Interp m : {Interp::Bilinear, Interp::Bicubic}) {
    Image u = resize(ramp, 1, 16, m);
    for (int xx = 4; xx < 12; ++xx) {
      const double src = (xx + 0.5) / 2.0 - 0.5;
      CHECK(u.px[size_t(xx)] == doctest::Approx(0.1 * src).epsilon(1e-5));
    }
  }
  // Bicubic overshoots on a step; results stay clamped to [0, 1].
  Image step(1, 6, 1);
  step.px = {0, 0, 0, 1, 1, 1};
  Image su = resize(step, 1, 17, Interp::Bicubic);
  for (float v : su.px) CHECK((v >= 0.f && v <= 1.f));

  Image flat(9, 13, 3, 0.37f);
  for (Interp m : {Interp::Nearest, Interp::Bilinear, Interp::Bicubic})
    for (auto hw : {std::pair{4, 5}, std::pair{20, 31}, std::pair{9, 4}}) {
      Image r = resize(flat, hw.first, hw.second, m);
      CHECK(r.h == hw.first);
      CHECK(r.w == hw.second);
      for (float v : r.px) CHECK(v == doctest::Approx(0.37f).epsilon(1e-5));
    }
  Image nn = resize(ramp, 1, 4, Interp::Nearest);  // centres 1, 3, 5, 7
  CHECK(nn.px[1] == ramp.px[3]);
}

TEST_CASE("colour: brightness, contrast, saturation, hue, grayscale, solarize") {
  Image img(1, 2, 3);
  img.px = {1.f, 0.f, 0.f, 0.2f, 0.4f, 0.6f};
  Image b = img;
  adjust_brightness(b, 0.5);
  CHECK(b.px[0] == doctest::Approx(0.5f));
  CHECK(b.px[5] == doctest::Approx(0.3f));
  adjust_brightness(b, 10.0);
  CHECK(b.px[0] == 1.f);  // clamped

  Image c = img;
  adjust_contrast(c, 0.0);  // every channel becomes the mean grey level
  const float mean_grey = (0.299f * 1.f + (0.299f * 0.2f + 0.587f * 0.4f + 0.114f * 0.6f)) / 2.f;
  for (float v : c.px) CHECK(v == doctest::Approx(mean_grey).epsilon(1e-5));

  Image s = img;
  adjust_saturation(s, 0.0);
  CHECK(s.px[0] == doctest::Approx(0.299f));
  CHECK(s.px[1] == doctest::Approx(0.299f));

  Image h = img;
  adjust_hue(h, 1.0 / 3.0);  // red -> green
  CHECK(h.px[0] == doctest::Approx(0.f).epsilon(1e-5));
  CHECK(h.px[1] == doctest::Approx(1.f).epsilon(1e-5));
  Image h0 = img;
  adjust_hue(h0, 0.0);
  CHECK(max_abs_diff(h0, img) < 1e-6);
  Image grey(1, 1, 3, 0.4f);
  adjust_hue(grey, 0.25);
  CHECK(max_abs_diff(grey, Image(1, 1, 3, 0.4f)) < 1e-6);

  // One channel: saturation and hue do nothing; brightness/contrast apply.
  Image g1 = ramp_image(3, 3, 1);
  Image g2 = g1;
  adjust_saturation(g2, 0.1);
  adjust_hue(g2, 0.3);
  CHECK(max_abs_diff(g1, g2) == 0.0);
  adjust_contrast(g2, 0.5);
  CHECK(max_abs_diff(g1, g2) > 0.0);

  Image gr = to_grayscale(img, 3);
  CHECK(gr.c == 3);
  CHECK(gr.px[0] == doctest::Approx(0.299f));
  CHECK(gr.px[2] == doctest::Approx(0.299f));
  CHECK(to_grayscale(img, 1).c == 1);

  // Solarize at 128: 8-bit values >= 128 invert, 127 stays.
  Image so(1, 3, 1);
  so.px = {127.f / 255.f, 128.f / 255.f, 1.f};
  solarize(so);
  CHECK(so.px[0] == doctest::Approx(127.f / 255.f));
  CHECK(so.px[1] == doctest::Approx(127.f / 255.f));
  CHECK(so.px[2] == doctest::Approx(0.f));
}

TEST_CASE("blur: constant images stay constant, mass is kept, kernel size ~10%") {
  Image flat(12, 9, 3, 0.6f);
  for (double sigma : {0.1, 1.0, 2.0}) CHECK(max_abs_diff(gaussian_blur(flat, 5, sigma), flat) < 1e-6);
  // Tiny image with a kernel wider than it (reflection folds several times).
  Image tiny(2, 2, 1, 0.25f);
  CHECK(max_abs_diff(gaussian_blur(tiny, 9, 2.0), tiny) < 1e-6);
  // A blurred impulse spreads but keeps its sum away from the borders.
  Image imp(15, 15, 1, 0.f);
  imp.at(7, 7, 0) = 1.f;
  Image bl = gaussian_blur(imp, 7, 1.0);
  double sum = 0;
  for (float v : bl.px) sum += v;
  CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(bl.at(7, 7, 0) < 1.f);
  CHECK(bl.at(7, 8, 0) == doctest::Approx(bl.at(8, 7, 0)));
  // Pillow's box-blur approximation: constants kept, impulse variance sigma^2.
  CHECK(max_abs_diff(gaussian_blur_pillow(flat, 1.7), flat) < 1e-6);
  CHECK(max_abs_diff(gaussian_blur_pillow(tiny, 2.0), tiny) < 1e-6);
  Image wide(1, 41, 1, 0.f);
  wide.at(0, 20, 0) = 1.f;
  for (double sigma : {0.5, 1.0, 2.0}) {
    Image pb = gaussian_blur_pillow(wide, sigma);
    double m0 = 0, m2 = 0;
    for (int x = 0; x < 41; ++x) {
      m0 += pb.at(0, x, 0);
      m2 += pb.at(0, x, 0) * (x - 20.0) * (x - 20.0);
    }
    CHECK(m0 == doctest::Approx(1.0).epsilon(1e-5));
    CHECK(m2 == doctest::Approx(sigma * sigma).epsilon(1e-3));
  }
  CHECK(auto_blur_kernel(96) == 9);
  CHECK(auto_blur_kernel(28) == 3);
  CHECK(auto_blur_kernel(224) == 23);
  CHECK_THROWS_AS(gaussian_blur(flat, 4, 1.0), Error);
}

TEST_CASE("normalisation: (x * scale - mean) / std per channel") {
  Image img(1, 1, 3);
  img.px = {0.5f, 0.25f, 1.f};
  float out[3];
  normalize_into(img, {0.5f, 0.f, 1.f}, {1.f, 0.5f, 2.f}, out);
  CHECK(out[0] == doctest::Approx(0.f));
  CHECK(out[1] == doctest::Approx(0.5f));
  CHECK(out[2] == doctest::Approx(0.f));
  normalize_into(img, {0.f, 0.f, 0.f}, {1.f, 1.f, 1.f}, out, 255.f);  // timm's unscaled ToTensor
  CHECK(out[2] == doctest::Approx(255.f));
  CHECK_THROWS_AS(normalize_into(img, {0.f}, {1.f}, out), Error);
}

TEST_CASE("random resized crop: boxes in bounds, area and ratio in range, fallback") {
  int fallback_like = 0;
  for (uint64_t i = 0; i < 500; ++i) {
    SampleRng rng(3, 0, i);
    CropBox b = random_resized_crop_params(96, 96, {0.08, 1.0}, {0.5, 1.0}, rng);
    CHECK(b.h > 0);
    CHECK(b.w > 0);
    CHECK(b.top >= 0);
    CHECK(b.left >= 0);
    CHECK(b.top + b.h <= 96);
    CHECK(b.left + b.w <= 96);
    const double area = double(b.h * b.w) / (96.0 * 96.0);
    const double ratio = double(b.w) / double(b.h);
    if (b.h == 96 && b.w == 96) ++fallback_like;
    CHECK(area >= 0.06);
    CHECK(ratio >= 0.45);
    CHECK(ratio <= 1.1);
  }
  CHECK(fallback_like < 50);
  // Impossible areas force the fallback: the centred crop with the ratio clamped.
  SampleRng rng(1, 0, 0);
  CropBox f = random_resized_crop_params(10, 40, {2.0, 3.0}, {0.5, 1.0}, rng);
  CHECK(f.h == 10);
  CHECK(f.w == 10);
  CHECK(f.top == 0);
  CHECK(f.left == 15);
  CropBox g = random_resized_crop_params(40, 10, {2.0, 3.0}, {1.0, 2.0}, rng);
  CHECK(g.w == 10);
  CHECK(g.h == 10);
  CHECK(g.top == 15);
}

TEST_CASE("views: shapes, value ranges and determinism of the ready pipelines") {
  const Image src = random_image(32, 40, 3, 11);
  std::vector<uint8_t> u8(src.px.size());
  to_uint8(src, u8.data());
  for (int view : {1, 2}) {
    ViewConfig v = ssl_view(view, 24, 3);
    CHECK(v.ratio[0] == 0.5);
    CHECK(v.blur_p == (view == 1 ? 1.0 : 0.1));
    CHECK(v.solarize_p == (view == 1 ? 0.0 : 0.2));
    std::vector<float> a(24 * 24 * 3), b(a.size()), c(a.size());
    for (uint64_t i = 0; i < 20; ++i) {
      SampleRng r1(9, 1, i, uint32_t(view)), r2(9, 1, i, uint32_t(view)), r3(9, 2, i, uint32_t(view));
      apply_view(v, u8.data(), 32, 40, 3, r1, a.data());
      apply_view(v, u8.data(), 32, 40, 3, r2, b.data());
      apply_view(v, u8.data(), 32, 40, 3, r3, c.data());
      CHECK(a == b);
      CHECK(a != c);
      for (size_t k = 0; k < a.size(); ++k) {
        const int ch = int(k % 3);
        const float lo = (0.f - v.mean[ch]) / v.std[ch] - 1e-4f, hi = (1.f - v.mean[ch]) / v.std[ch] + 1e-4f;
        if (a[k] < lo || a[k] > hi) {
          FAIL_CHECK("value " << a[k] << " outside [" << lo << ", " << hi << "]");
          break;
        }
      }
    }
  }
  // 28x28 grey (Fashion-MNIST): every pipeline works on one channel.
  const Image g = random_image(28, 28, 1, 12);
  std::vector<uint8_t> g8(g.px.size());
  to_uint8(g, g8.data());
  for (const ViewConfig& v : {ssl_view(1, 28, 1), ssl_view(2, 28, 1), finetune_train_view(28, 1), eval_view(28, 1),
                              plain_view(1), mae_view(28, 1)}) {
    auto hw = v.out_hw(28, 28);
    CHECK(hw[0] == 28);
    CHECK(hw[1] == 28);
    std::vector<float> out(28 * 28);
    SampleRng r(1, 0, 0);
    apply_view(v, g8.data(), 28, 28, 1, r, out.data());
    for (float x : out) CHECK(std::isfinite(x));
  }
  CHECK(eval_view(96, 3).resize == 109);
  CHECK(eval_view(28, 1).resize == 32);
  // Plain view: exactly the normalised input.
  std::vector<float> p(28 * 28);
  SampleRng r(0, 0, 0);
  apply_view(plain_view(1), g8.data(), 28, 28, 1, r, p.data());
  CHECK(p[5] == doctest::Approx((g8[5] / 255.f - default_mean(1)[0]) / default_std(1)[0]));
  // Eval on 28: resize 28 -> 32 then centre crop 28 (offset 2).
  Image e = augment(eval_view(28, 1), g, r);
  Image manual = center_crop(resize(g, 32, 32, Interp::Bilinear), 28, 28);
  CHECK(max_abs_diff(e, manual) == 0.0);
}

TEST_CASE("views: a flip-only pipeline flips about half the samples, exactly") {
  ViewConfig v = plain_view(3);
  v.flip_p = 0.5;
  Image img = ramp_image(6, 8, 3);
  int flipped = 0;
  for (uint64_t i = 0; i < 200; ++i) {
    SampleRng r(4, 0, i);
    Image out = augment(v, img, r);
    if (max_abs_diff(out, img) == 0.0)
      continue;
    CHECK(max_abs_diff(out, hflip(img)) == 0.0);
    ++flipped;
  }
  CHECK(flipped > 70);
  CHECK(flipped < 130);
}

TEST_CASE("views: invalid settings are errors") {
  ViewConfig v = ssl_view(1, 32, 3);
  CHECK_THROWS_AS(v.validate(1), Error);  // 3 means for 1 channel
  v.scale = {0.5, 0.1};
  CHECK_THROWS_AS(v.validate(3), Error);
  ViewConfig w = ssl_view(2, 32, 3);
  w.blur_kernel = 4;
  CHECK_THROWS_AS(w.validate(3), Error);
  CHECK_THROWS_AS(ssl_view(3, 32, 3), Error);
}
