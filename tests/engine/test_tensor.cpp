#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/random.h"

using namespace bissl;

TEST_SUITE("tensor") {
  TEST_CASE("creation, shapes and element access") {
    Tensor z = zeros({2, 3});
    CHECK(z.numel() == 6);
    CHECK(z.dim() == 2);
    CHECK(z.dtype() == DType::F32);
    CHECK(z.at({1, 2}) == 0.0);
    Tensor o = ones({4}, DType::F64);
    CHECK(o.sum().item() == 4.0);
    Tensor f = full({2, 2}, 2.5, DType::F64);
    CHECK(f.at({1, 1}) == 2.5);
    Tensor a = arange(0, 5, 1, DType::I64);
    CHECK(a.numel() == 5);
    CHECK(a.flat(4) == 4.0);
    Tensor v = from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::F64);
    CHECK(v.at({1, 0}) == 4.0);
    CHECK_THROWS_AS(v.at({2, 0}), Error);
    CHECK_THROWS_AS(from_vector({1, 2, 3}, {2, 2}), Error);
    CHECK(scalar_tensor(3.0).dim() == 0);
    CHECK(scalar_tensor(3.0).item() == 3.0);
  }

  TEST_CASE("shape errors say expected and found") {
    Tensor a = zeros({2, 3}), b = zeros({4, 3});
    try {
      add(a, b);
      FAIL("expected an error");
    } catch (const Error& e) {
      std::string m = e.what();
      CHECK(m.find("[2, 3]") != std::string::npos);
      CHECK(m.find("[4, 3]") != std::string::npos);
    }
    try {
      conv2d(zeros({1, 5, 5, 3}), zeros({4, 3, 3, 1}));
      FAIL("expected an error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("input has 3 channels, weight expects 1") != std::string::npos);
    }
    // A kernel larger than the (padded) input: an error, not a one-pixel
    // output from a truncated division.
    CHECK_THROWS_WITH_AS(conv2d(zeros({1, 4, 9, 3}), zeros({2, 5, 5, 3}), {3, 3, 0, 0, 1, 1, 1}),
                         doctest::Contains("5x5 kernel (dilation 1x1) does not fit the 4x9 input with padding 0x0"),
                         Error);
    CHECK_THROWS_WITH_AS(max_pool2d(zeros({1, 2, 2, 1}), 3, 1, 0), doctest::Contains("kernel 3 does not fit the 2x2"),
                         Error);
    CHECK_NOTHROW(conv2d(zeros({1, 4, 4, 3}), zeros({2, 5, 5, 3}), {1, 1, 1, 1, 1, 1, 1}));
    CHECK_THROWS_AS(add(zeros({2}), zeros({2}, DType::F64)), Error);
    CHECK_THROWS_AS(reshape(zeros({2, 3}), {4, 2}), Error);
    CHECK_THROWS_AS(matmul(zeros({2, 3}), zeros({2, 3})), Error);
  }

  TEST_CASE("Philox is counter-based and reproducible") {
    Generator g1(42), g2(42);
    Tensor a = randn({1000}, g1, DType::F64), b = randn({1000}, g2, DType::F64);
    CHECK(a.to_vector() == b.to_vector());
    // Drawing in two halves gives the same stream as one draw.
    Generator g3(42);
    Tensor c1 = randn({500}, g3, DType::F64), c2 = randn({500}, g3, DType::F64);
    auto av = a.to_vector(), cv1 = c1.to_vector(), cv2 = c2.to_vector();
    CHECK(std::equal(cv1.begin(), cv1.end(), av.begin()));
    CHECK(std::equal(cv2.begin(), cv2.end(), av.begin() + 500));
    // Moments.
    double m = mean(a).item(), s = std::sqrt(var(a).item());
    CHECK(std::abs(m) < 0.1);
    CHECK(std::abs(s - 1.0) < 0.1);
    Generator g4(7);
    Tensor u = rand({10000}, g4, DType::F64, -1, 3);
    for (double x : u.to_vector()) REQUIRE((x >= -1 && x < 3));
    CHECK(std::abs(mean(u).item() - 1.0) < 0.05);
    // Known answer for the Philox4x32-10 block function (Random123 test vector).
    auto w = philox4x32_10({0, 0, 0, 0}, {0, 0});
    CHECK(w[0] == 0x6627e8d5u);
    CHECK(w[1] == 0xe169c58du);
    CHECK(w[2] == 0xbc57ac4cu);
    CHECK(w[3] == 0x9b00dbd8u);
    auto w2 = philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
    CHECK(w2[0] == 0x408f276du);
    CHECK(w2[1] == 0x41c83b0eu);
    CHECK(w2[2] == 0xa20bc7c6u);
    CHECK(w2[3] == 0x6d5451fdu);
  }

  TEST_CASE("dtype conversion including bf16 storage") {
    Tensor x = from_vector({1.0, -2.5, 3.140625, 1e-3}, {4}, DType::F64);
    Tensor f = x.to(DType::F32);
    CHECK(f.dtype() == DType::F32);
    CHECK(f.flat(1) == -2.5);
    Tensor h = x.to(DType::BF16);
    CHECK(h.dtype() == DType::BF16);
    CHECK(h.flat(2) == 3.140625);                     // exactly representable
    CHECK(std::abs(h.flat(3) - 1e-3) < 1e-3 * 4e-3);  // 8 mantissa bits
    Tensor back = h.to(DType::F32);
    CHECK(back.flat(0) == 1.0);
    Tensor i = from_vector({1.7, -2.2}, {2}, DType::F64).to(DType::I64);
    CHECK(i.flat(0) == 1.0);
    CHECK(i.flat(1) == -2.0);
    CHECK(f32_to_bf16(1.0f) == 0x3f80);
    CHECK(bf16_to_f32(0x3f80) == 1.0f);
    // Round to nearest even.
    CHECK(f32_to_bf16(bf16_to_f32(0x3f80) + std::ldexp(1.0f, -8)) == 0x3f80);
    CHECK(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  }

  TEST_CASE("reshape is a view; other movement ops copy") {
    Tensor x = from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::F64);
    Tensor r = reshape(x, {3, 2});
    CHECK(r.raw() == x.raw());
    Tensor p = transpose(x, 0, 1);
    CHECK(p.raw() != x.raw());
    CHECK(p.at({2, 1}) == 6.0);
    CHECK(p.at({0, 1}) == 4.0);
    Tensor s = slice(x, 1, 1, 3);
    CHECK(s.shape() == Shape{2, 2});
    CHECK(s.at({1, 0}) == 5.0);
    Tensor c = concat({x, x}, 0);
    CHECK(c.shape() == Shape{4, 3});
    CHECK(c.at({3, 2}) == 6.0);
    Tensor pd = pad(x, {1, 0, 0, 2}, -1.0);
    CHECK(pd.shape() == Shape{3, 5});
    CHECK(pd.at({0, 0}) == -1.0);
    CHECK(pd.at({1, 0}) == 1.0);
    CHECK(pd.at({2, 4}) == -1.0);
    CHECK(reshape(x, {-1}).shape() == Shape{6});
    // Integer tensors (labels) select too.
    Tensor lab = from_ints({5, 6, 7}, {3});
    CHECK(index_select(lab, 0, from_ints({2, 0}, {2})).to_vector() == std::vector<double>{7, 5});
  }

  TEST_CASE("fill_elements writes an element's bit pattern (the CPU side of device fills)") {
    Tensor t = empty({6}, DType::F64);
    double v = -1.25;
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof v);
    fill_elements(t.raw(), Device::CPU, sizeof(double), t.numel(), bits);
    CHECK(t.to_vector() == std::vector<double>(6, -1.25));
    Tensor h = empty({3}, DType::BF16);
    fill_elements(h.raw(), Device::CPU, 2, 3, f32_to_bf16(0.5f));
    CHECK(h.to_vector() == std::vector<double>(3, 0.5));
  }

  TEST_CASE("empty_pinned: page-locked with a GPU, an ordinary CPU tensor without one") {
    Tensor t = empty_pinned({3, 4}, DType::F64);
    CHECK(t.device() == Device::CPU);
    CHECK(t.is_pinned() == (cuda_device_count() > 0));
    CHECK_FALSE(empty({3, 4}).is_pinned());
    t.fill_(2.5);
    CHECK(t.to_vector() == std::vector<double>(12, 2.5));
    Tensor c = t.clone();  // copies are ordinary CPU tensors
    CHECK_FALSE(c.is_pinned());
    CHECK(c.to_vector() == t.to_vector());
    CHECK_THROWS_WITH_AS(empty_pinned({2, -1}), doctest::Contains("negative dimension"), Error);
  }

  TEST_CASE("printing") {
    Tensor x = from_vector({1, 2}, {2}, DType::F64);
    std::string s = x.str();
    CHECK(s.find("[2]") != std::string::npos);
    CHECK(s.find("f64") != std::string::npos);
  }

  TEST_CASE("forward values of representative ops") {
    Tensor x = from_vector({-1, 0.5, 2, -3}, {2, 2}, DType::F64);
    CHECK(relu(x).to_vector() == std::vector<double>{0, 0.5, 2, 0});
    CHECK(sum(x, {1}).to_vector() == std::vector<double>{-0.5, -1});
    auto [mv, mi] = max(x, 1);
    CHECK(mv.to_vector() == std::vector<double>{0.5, 2});
    CHECK(mi.to_vector() == std::vector<double>{1, 0});
    CHECK(std::abs(logsumexp(x, {1}).flat(0) - std::log(std::exp(-1) + std::exp(0.5))) < 1e-12);
    Tensor sm = softmax(x, 1);
    CHECK(std::abs(sm.flat(0) + sm.flat(1) - 1.0) < 1e-12);
    CHECK(std::abs(var(from_vector({1, 2, 3, 4}, {4}, DType::F64)).item() - 5.0 / 3.0) < 1e-12);
    Tensor m = matmul(from_vector({1, 2, 3, 4}, {2, 2}, DType::F64), from_vector({5, 6, 7, 8}, {2, 2}, DType::F64));
    CHECK(m.to_vector() == std::vector<double>{19, 22, 43, 50});
    // cross-entropy by hand: one row, logits (0, ln 3) -> p = (1/4, 3/4).
    Tensor ce = cross_entropy(from_vector({0, std::log(3.0)}, {1, 2}, DType::F64), from_ints({1}, {1}));
    CHECK(std::abs(ce.item() + std::log(0.75)) < 1e-12);
    Tensor ls = cross_entropy(from_vector({0, std::log(3.0)}, {1, 2}, DType::F64), from_ints({1}, {1}), 0.2);
    CHECK(std::abs(ls.item() - (-(0.9 * std::log(0.75) + 0.1 * std::log(0.25)))) < 1e-12);
    // A -inf logit (a masked similarity) is a zero probability, not a NaN.
    Tensor masked = from_vector({-std::numeric_limits<double>::infinity(), 0, std::log(3.0)}, {1, 3}, DType::F64);
    CHECK(std::abs(cross_entropy(masked, from_ints({2}, {1})).item() + std::log(0.75)) < 1e-12);
    Tensor n = l2_normalize(from_vector({3, 4}, {1, 2}, DType::F64), 1);
    CHECK(std::abs(n.flat(0) - 0.6) < 1e-12);
    // Max pool and avg pool on a known 4x4 image (NHWC, one channel).
    Tensor img = reshape(arange(0, 16, 1, DType::F64), {1, 4, 4, 1});
    CHECK(max_pool2d(img, 2, 2).to_vector() == std::vector<double>{5, 7, 13, 15});
    CHECK(avg_pool2d(img, 2, 2).to_vector() == std::vector<double>{2.5, 4.5, 10.5, 12.5});
    {
      // Ties: every window's gradient goes to its first tap inside the image
      // (row-major over the window), channel by channel.
      Tensor flatimg = ones({1, 3, 4, 2}, DType::F64).requires_grad_();
      backward(sum(max_pool2d(flatimg, 3, 1, 1)));
      std::vector<double> want(3 * 4 * 2, 0.0);
      for (int64_t oh = 0; oh < 3; ++oh)
        for (int64_t ow = 0; ow < 4; ++ow) {
          const int64_t ih = std::max<int64_t>(oh - 1, 0), iw = std::max<int64_t>(ow - 1, 0);
          for (int64_t c = 0; c < 2; ++c) want[size_t((ih * 4 + iw) * 2 + c)] += 1;
        }
      CHECK(flatimg.grad().to_vector() == want);
    }
    // count_include_pad=false divides by the in-image part of the window.
    CHECK(avg_pool2d(img, 3, 2, 1, false).flat(0) == (0 + 1 + 4 + 5) / 4.0);
    CHECK(avg_pool2d(img, 3, 2, 1, true).flat(0) == (0 + 1 + 4 + 5) / 9.0);
  }

  TEST_CASE("conv2d matches a direct loop (stride, padding, dilation, groups)") {
    Generator g(3);
    struct Cfg {
      int64_t H, W, C, O, K, G, st, pd, dl;
    };
    // Dilated and grouped (taps copied one by one); then one group without
    // dilation (a kernel row copied as one run), a kernel wider than the
    // image clipped on both sides, and stride 1 with the run fully inside.
    for (Cfg cf : {Cfg{7, 6, 4, 6, 3, 2, 2, 1, 2}, Cfg{5, 6, 2, 3, 7, 1, 2, 3, 1}, Cfg{6, 7, 3, 4, 3, 1, 1, 1, 1},
                   Cfg{5, 9, 3, 2, 5, 1, 3, 0, 1}}) {
      CAPTURE(cf.K);
      CAPTURE(cf.G);
      int64_t N = 2, H = cf.H, W = cf.W, C = cf.C, O = cf.O, K = cf.K, G = cf.G, st = cf.st, pd = cf.pd, dl = cf.dl;
      Tensor x = randn({N, H, W, C}, g, DType::F64), w = randn({O, K, K, C / G}, g, DType::F64);
      Tensor y = conv2d(x, w, {st, st, pd, pd, dl, dl, G});
      int64_t Ho = (H + 2 * pd - dl * (K - 1) - 1) / st + 1, Wo = (W + 2 * pd - dl * (K - 1) - 1) / st + 1;
      REQUIRE(y.shape() == Shape{N, Ho, Wo, O});
      double maxerr = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t oh = 0; oh < Ho; ++oh)
          for (int64_t ow = 0; ow < Wo; ++ow)
            for (int64_t o = 0; o < O; ++o) {
              int64_t grp = o / (O / G);
              double acc = 0;
              for (int64_t i = 0; i < K; ++i)
                for (int64_t j = 0; j < K; ++j)
                  for (int64_t c = 0; c < C / G; ++c) {
                    int64_t ih = oh * st - pd + i * dl, iw = ow * st - pd + j * dl;
                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                    acc += x.at({n, ih, iw, grp * (C / G) + c}) * w.at({o, i, j, c});
                  }
              maxerr = std::max(maxerr, std::abs(acc - y.at({n, oh, ow, o})));
            }
      CHECK(maxerr < 1e-12);
    }
  }
}
