// MAE: masking invariants, patchify layout, targets, the decoder's names,
// the loss against MAE's own forward (models_mae.py semantics, run in
// PyTorch/timm on the same weights), loss only on masked patches (by hand),
// a given mask overriding the random one, and forward-over-reverse HVPs
// w.r.t. the encoder against central differences of the gradient (f64).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <string>

#include "engine/autograd.h"
#include "engine/check/gradcheck.h"
#include "engine/ops.h"
#include "engine/optim/optimizer.h"
#include "models/torch_state.h"
#include "models/vit.h"
#include "ssl/mae.h"

#include "tests/models/formula.h"

using namespace bissl;
using namespace bissl::models;
using namespace bissl::ssl;

namespace {

using testing::formula_fill;
using testing::formula_images;

std::vector<int64_t> ints(const Tensor& t) {
  std::vector<int64_t> r;
  for (double v : t.to_vector()) r.push_back(int64_t(v));
  return r;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// The encoder / decoder of the reference: 8x8 images, 2 channels, patch 4
// (L = 4), encoder 8 wide, 1 block, 2 heads; decoder 8 wide, 1 block, 2 heads.
ViTConfig tiny_encoder() {
  ViTConfig c;
  c.image_size = 8;
  c.patch_size = 4;
  c.in_channels = 2;
  c.embed_dim = 8;
  c.depth = 1;
  c.num_heads = 2;
  return c;
}
MaeConfig tiny_decoder() {
  MaeConfig c;
  c.decoder_dim = 8;
  c.decoder_depth = 1;
  c.decoder_heads = 2;
  return c;
}

void check_masking(const MaeMasking& m, int64_t n, int64_t l, int64_t k) {
  REQUIRE(m.ids_shuffle.shape() == Shape{n, l});
  REQUIRE(m.ids_restore.shape() == Shape{n, l});
  REQUIRE(m.ids_keep.shape() == Shape{n, k});
  REQUIRE(m.mask.shape() == Shape{n, l});
  CHECK(m.num_visible == k);
  auto sh = ints(m.ids_shuffle), re = ints(m.ids_restore), kp = ints(m.ids_keep);
  auto mk = m.mask.to_vector();
  for (int64_t i = 0; i < n; ++i) {
    std::set<int64_t> seen(sh.begin() + i * l, sh.begin() + (i + 1) * l);
    CHECK(int64_t(seen.size()) == l);  // a permutation
    CHECK(*seen.begin() == 0);
    CHECK(*seen.rbegin() == l - 1);
    double masked = 0;
    for (int64_t j = 0; j < l; ++j) {
      CHECK(sh[size_t(i * l + re[size_t(i * l + j)])] == j);  // ids_restore inverts ids_shuffle
      CHECK(re[size_t(i * l + sh[size_t(i * l + j)])] == j);
      masked += mk[size_t(i * l + j)];
      CHECK(mk[size_t(i * l + sh[size_t(i * l + j)])] == (j < k ? 0.0 : 1.0));
    }
    CHECK(masked == double(l - k));
    for (int64_t j = 0; j < k; ++j) CHECK(kp[size_t(i * k + j)] == sh[size_t(i * l + j)]);
  }
}

}  // namespace

TEST_SUITE("mae") {
  TEST_CASE("random masking: round(L·(1-ratio)) visible, ids_restore inverts ids_shuffle, seeded") {
    CHECK(mae_num_visible(196, 0.75) == 49);
    CHECK(mae_num_visible(16, 0.75) == 4);
    CHECK(mae_num_visible(49, 0.75) == 12);  // 12.25
    CHECK(mae_num_visible(10, 0.75) == 3);   // 2.5 rounds up (MAE's int() would keep 2)
    CHECK(mae_num_visible(64, 0.9) == 6);    // 6.4
    CHECK(error_of([] { mae_num_visible(16, 1.0); }).find("mask ratio in [0, 1)") != std::string::npos);

    Generator g(42);
    MaeMasking m = mae_random_masking(3, 16, 0.75, g);
    check_masking(m, 3, 16, 4);
    CHECK(g.offset() == 3 * 16);  // one draw of N·L uniforms
    // Keeps the smallest noise: reproduce the draw.
    Generator g2(42);
    Tensor noise = rand({3, 16}, g2, DType::F64);
    auto sh = ints(m.ids_shuffle);
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j + 1 < 16; ++j)
        CHECK(noise.at({i, sh[size_t(i * 16 + j)]}) < noise.at({i, sh[size_t(i * 16 + j + 1)]}));
    // Same seed, same masking; another seed, another one.
    Generator a(7), b(7), c(8);
    auto ma = mae_random_masking(4, 49, 0.75, a), mb = mae_random_masking(4, 49, 0.75, b),
         mc = mae_random_masking(4, 49, 0.75, c);
    check_masking(ma, 4, 49, 12);
    CHECK(ints(ma.ids_shuffle) == ints(mb.ids_shuffle));
    CHECK(ints(ma.ids_shuffle) != ints(mc.ids_shuffle));
    // Rows differ from each other (per-sample shuffles).
    auto sa = ints(ma.ids_keep);
    CHECK(std::vector<int64_t>(sa.begin(), sa.begin() + 12) != std::vector<int64_t>(sa.begin() + 12, sa.begin() + 24));
    // The mask dtype follows the request.
    CHECK(mae_random_masking(1, 4, 0.5, a, DType::F64).mask.dtype() == DType::F64);
  }

  TEST_CASE("a given mask: visible patches first in ascending order; errors") {
    Tensor mask = from_vector({1, 0, 1, 0, 0, 0, 1, 1}, {2, 4});
    MaeMasking m = mae_masking_from_mask(mask);
    check_masking(m, 2, 4, 2);
    CHECK(ints(m.ids_shuffle) == std::vector<int64_t>{1, 3, 0, 2, 0, 1, 2, 3});
    CHECK(ints(m.ids_restore) == std::vector<int64_t>{2, 0, 3, 1, 0, 1, 2, 3});
    CHECK(m.mask.to_vector() == mask.to_vector());
    // A random masking's mask gives back the same visible sets.
    Generator g(3);
    MaeMasking r = mae_random_masking(3, 16, 0.75, g);
    MaeMasking back = mae_masking_from_mask(r.mask);
    auto k1 = ints(r.ids_keep), k2 = ints(back.ids_keep);
    for (int64_t i = 0; i < 3; ++i) {
      std::sort(k1.begin() + i * 4, k1.begin() + (i + 1) * 4);
      CHECK(std::equal(k1.begin() + i * 4, k1.begin() + (i + 1) * 4, k2.begin() + i * 4));
    }
    CHECK(error_of([] { mae_masking_from_mask(from_vector({1, 0, 1, 1, 0, 0, 1, 1}, {2, 4})); })
              .find("same number of visible patches; row 0 has 1, row 1 has 2") != std::string::npos);
    CHECK(error_of([] { mae_masking_from_mask(from_vector({1, 0.5}, {1, 2})); }).find("0 (visible) or 1 (masked)") !=
          std::string::npos);
    CHECK(error_of([] { mae_masking_from_mask(from_vector({1, 1}, {1, 2})); }).find("at least one patch visible") !=
          std::string::npos);
  }

  TEST_CASE("patchify: MAE's layout (row-major patches, (row, column, channel) inside); unpatchify inverts") {
    // x[n, y, x, c] = 1000n + 100y + 10x + c, 4x6 images, 2 channels, patch 2.
    std::vector<double> v;
    for (int n = 0; n < 2; ++n)
      for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 6; ++x)
          for (int c = 0; c < 2; ++c) v.push_back(1000 * n + 100 * y + 10 * x + c);
    Tensor img = from_vector(v, {2, 4, 6, 2}, DType::F64);
    Tensor p = patchify(img, 2);
    REQUIRE(p.shape() == Shape{2, 6, 8});
    for (int n = 0; n < 2; ++n)
      for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 6; ++x)
          for (int c = 0; c < 2; ++c)
            CHECK(p.at({n, (y / 2) * 3 + x / 2, ((y % 2) * 2 + x % 2) * 2 + c}) == 1000 * n + 100 * y + 10 * x + c);
    CHECK(unpatchify(p, 2, 4, 6, 2).to_vector() == v);
    CHECK(error_of([&] { patchify(img, 4); }).find("divisible by 4") != std::string::npos);
  }

  TEST_CASE("targets: per-patch normalisation (unbiased variance, eps 1e-6) or raw pixels") {
    Generator g(4);
    Tensor img = randn({2, 8, 8, 3}, g, DType::F64, 0.5, 2.0);
    Tensor raw = mae_target(img, 4, false);
    CHECK(raw.to_vector() == patchify(img, 4).to_vector());
    Tensor t = mae_target(img, 4, true);
    REQUIRE(t.shape() == Shape{2, 4, 48});
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t l = 0; l < 4; ++l) {
        double s = 0, s2 = 0, r = 0, r2 = 0;
        for (int64_t k = 0; k < 48; ++k) {
          s += t.at({n, l, k}), s2 += t.at({n, l, k}) * t.at({n, l, k});
          r += raw.at({n, l, k}), r2 += raw.at({n, l, k}) * raw.at({n, l, k});
        }
        double var_raw = (r2 - r * r / 48) / 47;
        CHECK(std::abs(s / 48) < 1e-12);
        CHECK((s2 - s * s / 48) / 47 == doctest::Approx(var_raw / (var_raw + 1e-6)).epsilon(1e-12));
      }
  }

  TEST_CASE("decoder: MAE's names and shapes; paper and small presets") {
    Generator g(5);
    ViTConfig ec = tiny_encoder();
    MaeDecoder dec(ec, tiny_decoder(), g);
    auto sd = dec.state_dict();
    std::vector<std::pair<std::string, Shape>> expected = {
        {"mask_token", {1, 1, 8}},          {"decoder_pos_embed", {1, 5, 8}},
        {"decoder_embed.weight", {8, 8}},   {"decoder_embed.bias", {8}},
        {"decoder_blocks.0.norm1.weight", {8}}, {"decoder_blocks.0.norm1.bias", {8}},
        {"decoder_blocks.0.attn.qkv.weight", {24, 8}}, {"decoder_blocks.0.attn.qkv.bias", {24}},
        {"decoder_blocks.0.attn.proj.weight", {8, 8}}, {"decoder_blocks.0.attn.proj.bias", {8}},
        {"decoder_blocks.0.norm2.weight", {8}}, {"decoder_blocks.0.norm2.bias", {8}},
        {"decoder_blocks.0.mlp.fc1.weight", {32, 8}}, {"decoder_blocks.0.mlp.fc1.bias", {32}},
        {"decoder_blocks.0.mlp.fc2.weight", {8, 32}}, {"decoder_blocks.0.mlp.fc2.bias", {8}},
        {"decoder_norm.weight", {8}},       {"decoder_norm.bias", {8}},
        {"decoder_pred.weight", {32, 8}},   {"decoder_pred.bias", {32}}};
    REQUIRE(sd.size() == expected.size());
    for (size_t i = 0; i < sd.size(); ++i) {
      INFO(sd[i].first);
      CHECK(sd[i].first == expected[i].first);
      CHECK(sd[i].second.shape() == expected[i].second);
    }
    // The sin-cos decoder position embedding is fixed (a buffer, not trained).
    for (auto& [k, t] : dec.named_parameters()) CHECK(k != "decoder_pos_embed");
    CHECK(dec.decoder_pos_embed.to_vector() == sincos_pos_embed_2d(8, 2, true).to_vector());
    MaeConfig learned = tiny_decoder();
    learned.sincos_pos_embed = false;
    MaeDecoder dl(ec, learned, g);
    CHECK(dl.named_parameters()[1].first == "decoder_pos_embed");
    MaeConfig p = MaeConfig::paper(), s;
    CHECK(p.decoder_dim == 512);
    CHECK(p.decoder_depth == 8);
    CHECK(p.decoder_heads == 16);
    CHECK(s.decoder_dim == 256);
    CHECK(s.decoder_depth == 4);
    CHECK(s.mask_ratio == 0.75);
    CHECK(s.norm_pix_loss);
    // Decoder output: one prediction per patch.
    ViT enc(ec, g);
    Tensor x = randn({2, 8, 8, 2}, g);
    MaeMasking m = mae_random_masking(2, 4, 0.5, g);
    CHECK(dec.forward(enc.forward_features(x, m.ids_keep), m.ids_restore).shape() == Shape{2, 4, 32});
  }

  TEST_CASE("loss and predictions equal MAE's forward (PyTorch + timm, same weights, f64)") {
    Generator g(6);
    ViT enc(tiny_encoder(), g);
    MaeDecoder dec(tiny_encoder(), tiny_decoder(), g);
    enc.to(DType::F64);
    dec.to(DType::F64);
    formula_fill(enc);
    formula_fill(dec);
    // The sin-cos buffer was made in f32; the reference's is exact f64.
    dec.decoder_pos_embed.copy_(sincos_pos_embed_2d(8, 2, true, DType::F64));
    Tensor x = formula_images(2, 2, 8, 8, DType::F64);
    Tensor mask = from_vector({1, 0, 1, 0, 0, 0, 1, 1}, {2, 4}, DType::F64);
    MaeOut out = mae_loss(enc, dec, x, mask, g);
    // Reference: MAE's forward_encoder / forward_decoder / forward_loss (norm_pix_loss) with timm Blocks.
    const double loss = 1.0285415576816794;
    const std::vector<double> pred8 = {
      0.31928931924207604, 0.47502865954963025, 0.65979876904820223, -0.023280300077149263, 0.73496200248600363,
      -0.65676705379051581, 0.63578775307552382, -1.2126471905281346, 0.43362719996216487, 0.35104469322845722,
      0.78935156187641664, -0.1541415273763167, 0.86282824386319146, -0.7774333800847576, 0.74528600702563497,
      -1.3073764811080644, 0.31647236315224825, 0.48466539343576048, 0.64365916496309794, -0.0011685827085236578,
      0.70760532392780251, -0.62506504864666257, 0.60078295363956857, -1.1754907427189418, 0.48731184496299323,
      0.3069377085482527, 0.82243041155177654, -0.17510443170601764, 0.87098582989965068, -0.77251738256078328,
      0.72745809035805287, -1.2772229230029153, 0.45417833831864329, 0.34111366739414695, 0.7883358896904693,
      -0.14221255792973841, 0.84037826577685659, -0.74520066928279971, 0.70433054825561892, -1.2590451099461974,
      0.33862276977510941, 0.44814596778584354, 0.69334665467179146, -0.062390144797181968, 0.77834766443443948,
      -0.70300177925089391, 0.68335109581243703, -1.2599750122302233, 0.31637997198389456, 0.4847946156531322,
      0.64349736121764667, -0.00097951841166560305, 0.70739521652963711, -0.62484080760754424, 0.60055195320991961,
      -1.1752605794342699, 0.31408362446977334, 0.48210168430724609, 0.65109101336925734, -0.013224171278485963,
      0.72388820012347432, -0.64503974399566111, 0.62379259281616384, -1.2007786451347719
    };
    MESSAGE("MAE loss ours ", out.loss.item(), " reference ", loss);
    CHECK(std::abs(out.loss.item() - loss) < 1e-12);
    REQUIRE(out.pred.shape() == Shape{2, 4, 32});
    double d = 0;
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t l = 0; l < 4; ++l)
        for (int64_t k = 0; k < 8; ++k) d = std::max(d, std::abs(out.pred.at({n, l, k}) - pred8[size_t((n * 4 + l) * 8 + k)]));
    CHECK(d < 1e-12);
    CHECK(out.mask.to_vector() == mask.to_vector());
  }

  TEST_CASE("the loss counts masked patches only (by hand)") {
    Generator g(7);
    ViT enc(tiny_encoder(), g);
    MaeDecoder dec(tiny_encoder(), tiny_decoder(), g);
    enc.to(DType::F64);
    dec.to(DType::F64);
    Tensor x = randn({3, 8, 8, 2}, g, DType::F64);
    for (bool norm : {true, false}) {
      MaeConfig c = tiny_decoder();
      c.norm_pix_loss = norm;
      MaeDecoder d(tiny_encoder(), c, g);
      d.to(DType::F64);
      d.load_state_dict(dec.state_dict());
      MaeOut out = mae_loss(enc, d, x, Tensor(), g);
      Tensor target = mae_target(x, 4, norm);
      auto mk = out.mask.to_vector();
      double num = 0, den = 0;
      for (int64_t n = 0; n < 3; ++n)
        for (int64_t l = 0; l < 4; ++l) {
          double se = 0;
          for (int64_t k = 0; k < 32; ++k) {
            double e = out.pred.at({n, l, k}) - target.at({n, l, k});
            se += e * e;
          }
          num += mk[size_t(n * 4 + l)] * se / 32;
          den += mk[size_t(n * 4 + l)];
        }
      CHECK(den == 3 * 3);  // round(4·0.25) = 1 visible, 3 masked per sample
      CHECK(out.loss.item() == doctest::Approx(num / den).epsilon(1e-13));
      // d loss / d pred vanishes exactly on visible patches. (A parameter is
      // requested too: engine grad() returns zeros for an intermediate alone.)
      Tensor gp = grad({out.loss}, {out.pred, d.decoder_pred->weight})[0];
      for (int64_t n = 0; n < 3; ++n)
        for (int64_t l = 0; l < 4; ++l) {
          double mx = 0;
          for (int64_t k = 0; k < 32; ++k) mx = std::max(mx, std::abs(gp.at({n, l, k})));
          if (mk[size_t(n * 4 + l)] == 0.0)
            CHECK(mx == 0.0);
          else
            CHECK(mx > 0.0);
        }
    }
  }

  TEST_CASE("a given mask overrides the random one; a random mask is seeded") {
    Generator g(8);
    ViT enc(tiny_encoder(), g);
    MaeDecoder dec(tiny_encoder(), tiny_decoder(), g);
    Tensor x = randn({2, 8, 8, 2}, g);
    Tensor mask = from_vector({0, 1, 1, 1, 1, 1, 0, 1}, {2, 4});
    Generator a(1), b(2);
    double la = mae_loss(enc, dec, x, mask, a).loss.item();
    double lb = mae_loss(enc, dec, x, mask, b).loss.item();
    CHECK(la == lb);
    CHECK(a.offset() == 0);  // not drawn from
    Generator c(3), d(3);
    MaeOut oc = mae_loss(enc, dec, x, Tensor(), c), od = mae_loss(enc, dec, x, Tensor(), d);
    CHECK(oc.loss.item() == od.loss.item());
    CHECK(oc.mask.to_vector() == od.mask.to_vector());
    CHECK(oc.ids_restore.shape() == Shape{2, 4});
    // Replaying the returned mask gives the same loss.
    CHECK(mae_loss(enc, dec, x, oc.mask, a).loss.item() == doctest::Approx(oc.loss.item()).epsilon(1e-6));
    CHECK(error_of([&] { mae_loss(enc, dec, x, zeros({2, 4}), a); }).find("hides no patch") != std::string::npos);
    CHECK(error_of([&] { mae_loss(enc, dec, x, zeros({2, 5}), a); }).find("mask [2, 4]") != std::string::npos);
    ViTConfig other = tiny_encoder();
    other.embed_dim = 12;
    ViT enc2(other, g);
    CHECK(error_of([&] { mae_loss(enc2, dec, x, mask, a); }).find("8-wide encoder") != std::string::npos);
  }

  TEST_CASE("forward-over-reverse HVP w.r.t. the encoder vs central differences of the gradient (f64)") {
    Generator g(9);
    ViTConfig ec = tiny_encoder();
    ec.depth = 2;
    ViT enc(ec, g);
    MaeDecoder dec(ec, tiny_decoder(), g);
    enc.to(DType::F64);
    dec.to(DType::F64);
    formula_fill(enc);
    formula_fill(dec);
    Tensor x = formula_images(2, 2, 8, 8, DType::F64);
    Tensor mask = from_vector({1, 0, 1, 0, 0, 0, 1, 1}, {2, 4}, DType::F64);
    std::vector<Tensor> params = enc.parameters();
    auto loss = [&] { return mae_loss(enc, dec, x, mask, g).loss; };
    std::vector<Tensor> v, u;
    for (auto& p : params) v.push_back(randn(p.shape(), g, DType::F64)), u.push_back(randn(p.shape(), g, DType::F64));
    HvpResult r = hvp(loss, params, v);

    auto flat = [](const std::vector<Tensor>& ts) {
      std::vector<double> out;
      for (auto& t : ts) {
        auto w = t.to_vector();
        out.insert(out.end(), w.begin(), w.end());
      }
      return out;
    };
    auto grad_at = [&](double s) {
      std::vector<Tensor> saved;
      for (size_t i = 0; i < params.size(); ++i) {
        saved.push_back(params[i].clone());
        params[i].copy_(add(saved.back(), mul(v[i], s)));
      }
      auto gr = grad({loss()}, params);
      for (size_t i = 0; i < params.size(); ++i) params[i].copy_(saved[i]);
      return flat(gr);
    };
    // The error is the O(eps²) truncation of the central difference (measured:
    // 9e-6 at eps 1e-4, 9e-8 at 1e-5, 9e-10 at 1e-6), so eps = 1e-6.
    const double eps = 1e-6;
    auto gp = grad_at(eps), gm = grad_at(-eps);
    std::vector<double> fd(gp.size());
    for (size_t i = 0; i < fd.size(); ++i) fd[i] = (gp[i] - gm[i]) / (2 * eps);
    double err = check::rel_error(fd, flat(r.hv));
    MESSAGE("MAE encoder H·v vs central differences: relative error ", err);
    CHECK(err <= 1e-6);
    CHECK(check::rel_error(flat(r.grad), flat(grad({loss()}, params))) <= 1e-12);
    // Symmetry: <u, Hv> = <v, Hu>.
    HvpResult ru = hvp(loss, params, u);
    auto hv = flat(r.hv), hu = flat(ru.hv), uf = flat(u), vf = flat(v);
    double uhv = 0, vhu = 0;
    for (size_t i = 0; i < hv.size(); ++i) uhv += uf[i] * hv[i], vhu += vf[i] * hu[i];
    CHECK(check::rel_error(uhv, vhu) <= 1e-6);
    // A linearization (attention, layer norm, gathers of the mask) replays
    // to the same bits as fresh HVPs.
    Linearization lin(loss, params, v);
    CHECK(flat(lin.first().hv) == hv);
    CHECK(flat(lin.hvp(u)) == hu);
    CHECK(flat(lin.hvp(v)) == hv);
  }

  TEST_CASE("a few AdamW steps on one batch lower the loss") {
    Generator g(10);
    ViT enc(tiny_encoder(), g);
    MaeDecoder dec(tiny_encoder(), tiny_decoder(), g);
    mae_init_encoder_(enc, g);
    Tensor x = randn({4, 8, 8, 2}, g);
    Tensor mask = mae_random_masking(4, 4, 0.75, g).mask;
    std::vector<Tensor> ps = enc.parameters();
    for (auto& p : dec.parameters()) ps.push_back(p);
    optim::AdamW opt(ps, 1e-2, 0.9, 0.95, 1e-8, 0.05);
    double first = 0, last = 0;
    for (int s = 0; s < 30; ++s) {
      opt.zero_grad();
      Tensor l = mae_loss(enc, dec, x, mask, g).loss;
      if (s == 0) first = l.item();
      last = l.item();
      backward(l);
      opt.step();
    }
    MESSAGE("MAE loss ", first, " -> ", last, " after 30 steps");
    CHECK(last < 0.7 * first);
  }
}
