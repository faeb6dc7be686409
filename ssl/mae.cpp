#include "ssl/mae.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/autograd.h"
#include "engine/dist/comm.h"
#include "engine/nn/init.h"
#include "engine/ops.h"

namespace bissl::ssl {

namespace {

// Per-step masks and indices: through pinned staging, no wait for the GPU.
Tensor to_device(const Tensor& t, Device d) { return t.device() == d ? t : to_device_staged(t, d); }

// Builds the index tensors of a masking from per-row shuffles (visible first).
MaeMasking masking_from_shuffles(const std::vector<int64_t>& shuffle, int64_t n, int64_t l, int64_t k, DType t) {
  std::vector<int64_t> restore(size_t(n * l)), keep(size_t(n * k));
  std::vector<double> mask(size_t(n * l));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t* s = &shuffle[size_t(i * l)];
    for (int64_t j = 0; j < l; ++j) {
      restore[size_t(i * l + s[j])] = j;
      mask[size_t(i * l + s[j])] = j < k ? 0.0 : 1.0;
    }
    std::copy(s, s + k, keep.begin() + i * k);
  }
  MaeMasking m;
  m.ids_shuffle = from_ints(shuffle, {n, l});
  m.ids_restore = from_ints(restore, {n, l});
  m.ids_keep = from_ints(keep, {n, k});
  m.mask = from_vector(mask, {n, l}, t);
  m.num_visible = k;
  return m;
}

void check_encoder_matches(const models::ViTConfig& a, const models::ViTConfig& b) {
  BISSL_CHECK(a.image_size == b.image_size && a.patch_size == b.patch_size && a.in_channels == b.in_channels &&
                  a.embed_dim == b.embed_dim,
              "mae: the decoder was built for a ", b.image_size, " px, patch ", b.patch_size, ", ", b.in_channels,
              "-channel, ", b.embed_dim, "-wide encoder; found ", a.image_size, " px, patch ", a.patch_size, ", ",
              a.in_channels, " channels, ", a.embed_dim, " wide");
}

void xavier_linears_(nn::Module& m, Generator& g) {
  for (auto& [name, mod] : m.named_modules()) {
    if (auto* l = dynamic_cast<nn::Linear*>(mod)) {
      nn::init::xavier_uniform_(l->weight, g);
      if (l->bias.defined()) nn::init::zeros_(l->bias);
    } else if (auto* ln = dynamic_cast<nn::LayerNorm*>(mod)) {
      if (ln->weight.defined()) nn::init::ones_(ln->weight);
      if (ln->bias.defined()) nn::init::zeros_(ln->bias);
    }
  }
}

}  // namespace

// ---- masking ----

int64_t mae_num_visible(int64_t num_patches, double mask_ratio) {
  BISSL_CHECK(mask_ratio >= 0 && mask_ratio < 1, "mae: expected a mask ratio in [0, 1), found ", mask_ratio);
  int64_t k = std::llround(double(num_patches) * (1.0 - mask_ratio));
  return std::clamp<int64_t>(k, 1, num_patches);
}

MaeMasking mae_random_masking(int64_t n, int64_t l, double mask_ratio, Generator& g, DType mask_dtype) {
  BISSL_CHECK(n > 0 && l > 0, "mae_random_masking: expected n > 0 and num_patches > 0, found ", n, " and ", l);
  int64_t k = mae_num_visible(l, mask_ratio);
  Tensor noise = rand({n, l}, g, DType::F64);
  const double* z = noise.data<double>();
  std::vector<int64_t> shuffle(size_t(n * l));
  for (int64_t i = 0; i < n; ++i) {
    auto b = shuffle.begin() + i * l;
    std::iota(b, b + l, int64_t(0));
    std::stable_sort(b, b + l, [&](int64_t a, int64_t c) { return z[i * l + a] < z[i * l + c]; });
  }
  return masking_from_shuffles(shuffle, n, l, k, mask_dtype);
}

MaeMasking mae_masking_from_mask(const Tensor& mask_in) {
  BISSL_CHECK(mask_in.dim() == 2, "mae: expected a mask [N, L], found shape ", shape_str(mask_in.shape()));
  Tensor mask = to_device(mask_in, Device::CPU);
  int64_t n = mask.shape()[0], l = mask.shape()[1];
  std::vector<double> m = mask.to_vector();
  std::vector<int64_t> shuffle(size_t(n * l));
  int64_t k = -1;
  for (int64_t i = 0; i < n; ++i) {
    int64_t vis = 0;
    for (int64_t j = 0; j < l; ++j) {
      double v = m[size_t(i * l + j)];
      BISSL_CHECK(v == 0.0 || v == 1.0, "mae: mask values must be 0 (visible) or 1 (masked), found ", v, " at [", i,
                  ", ", j, "]");
      if (v == 0.0) shuffle[size_t(i * l + vis++)] = j;
    }
    BISSL_CHECK(k < 0 || vis == k, "mae: every mask row needs the same number of visible patches; row 0 has ", k,
                ", row ", i, " has ", vis);
    k = vis;
    int64_t pos = vis;
    for (int64_t j = 0; j < l; ++j)
      if (m[size_t(i * l + j)] != 0.0) shuffle[size_t(i * l + pos++)] = j;
  }
  BISSL_CHECK(k >= 1, "mae: a mask must leave at least one patch visible per sample");
  return masking_from_shuffles(shuffle, n, l, k, is_floating(mask.dtype()) ? mask.dtype() : DType::F32);
}

// ---- patches and targets ----

Tensor patchify(const Tensor& x, int64_t p) {
  BISSL_CHECK(x.dim() == 4 && p > 0 && x.shape()[1] % p == 0 && x.shape()[2] % p == 0,
              "patchify: expected NHWC images with height and width divisible by ", p, ", found shape ",
              shape_str(x.shape()));
  int64_t n = x.shape()[0], h = x.shape()[1] / p, w = x.shape()[2] / p, c = x.shape()[3];
  Tensor t = permute(reshape(x, {n, h, p, w, p, c}), {0, 1, 3, 2, 4, 5});
  return reshape(t, {n, h * w, p * p * c});
}

Tensor unpatchify(const Tensor& x, int64_t p, int64_t height, int64_t width, int64_t c) {
  int64_t h = height / p, w = width / p;
  BISSL_CHECK(x.dim() == 3 && height % p == 0 && width % p == 0 && x.shape()[1] == h * w && x.shape()[2] == p * p * c,
              "unpatchify: expected patches [N, ", h * w, ", ", p * p * c, "], found shape ", shape_str(x.shape()));
  int64_t n = x.shape()[0];
  Tensor t = permute(reshape(x, {n, h, w, p, p, c}), {0, 1, 3, 2, 4, 5});
  return reshape(t, {n, height, width, c});
}

Tensor mae_target(const Tensor& images, int64_t patch_size, bool norm_pix_loss, double eps) {
  Tensor t = patchify(images, patch_size);
  if (!norm_pix_loss) return t;
  Tensor m = mean(t, {-1}, true);
  Tensor v = var(t, {-1}, 1, true);
  return mul(sub(t, m), rsqrt(add(v, eps)));
}

// ---- decoder ----

MaeDecoder::MaeDecoder(const models::ViTConfig& enc, const MaeConfig& cfg, Generator& g) : enc_(enc), cfg_(cfg) {
  BISSL_CHECK(cfg.decoder_dim > 0 && cfg.decoder_depth > 0, "MaeDecoder: expected decoder_dim and decoder_depth > 0, found ",
              cfg.decoder_dim, " and ", cfg.decoder_depth);
  mae_num_visible(enc.num_patches(), cfg.mask_ratio);  // validates the ratio
  int64_t dd = cfg.decoder_dim, l = enc.num_patches();
  mask_token = register_parameter("mask_token", zeros({1, 1, dd}));
  if (cfg.sincos_pos_embed)
    decoder_pos_embed = register_buffer("decoder_pos_embed", models::sincos_pos_embed_2d(dd, enc.grid(), true));
  else
    decoder_pos_embed = register_parameter("decoder_pos_embed", zeros({1, 1 + l, dd}));
  decoder_embed = register_module("decoder_embed", std::make_shared<nn::Linear>(enc.embed_dim, dd, g));
  decoder_blocks = register_module("decoder_blocks", std::make_shared<nn::Sequential>());
  for (int64_t i = 0; i < cfg.decoder_depth; ++i)
    decoder_blocks->push_back(
        std::make_shared<models::Block>(dd, cfg.decoder_heads, cfg.mlp_ratio, true, 0.0, 1e-6, nullptr, g));
  decoder_norm = register_module("decoder_norm", std::make_shared<nn::LayerNorm>(dd, 1e-6));
  decoder_pred = register_module("decoder_pred", std::make_shared<nn::Linear>(dd, enc.patch_dim(), g));

  nn::init::normal_(mask_token, g, 0.0, 0.02);
  if (!cfg.sincos_pos_embed) nn::init::trunc_normal_(decoder_pos_embed, g, 0.0, 0.02);
  xavier_linears_(*this, g);
}

Tensor MaeDecoder::forward(const Tensor& latent, const Tensor& ids_restore) {
  ScopedRange range(range_name().c_str());
  int64_t l = enc_.num_patches(), dd = cfg_.decoder_dim;
  BISSL_CHECK(latent.dim() == 3 && latent.shape()[2] == enc_.embed_dim && latent.shape()[1] >= 2,
              "MaeDecoder: expected encoder tokens [N, 1 + K, ", enc_.embed_dim, "], found shape ",
              shape_str(latent.shape()));
  int64_t n = latent.shape()[0], k = latent.shape()[1] - 1;
  BISSL_CHECK(k <= l && ids_restore.dim() == 2 && ids_restore.shape()[0] == n && ids_restore.shape()[1] == l,
              "MaeDecoder: expected ids_restore [", n, ", ", l, "] for ", k, " visible tokens, found shape ",
              shape_str(ids_restore.shape()));
  Tensor x = decoder_embed->forward(latent);  // [N, 1 + K, Dd]
  Tensor vis = slice(x, 1, 1, 1 + k);
  Tensor rest = k < l ? concat({vis, expand(mask_token, {n, l - k, dd})}, 1) : vis;  // shuffled order
  rest = models::gather_tokens(rest, ids_restore);                                      // patch order
  x = concat({slice(x, 1, 0, 1), rest}, 1);
  x = add(x, decoder_pos_embed);
  x = decoder_blocks->forward(x);
  x = decoder_norm->forward(x);
  x = decoder_pred->forward(x);  // [N, 1 + L, p·p·C]
  return slice(x, 1, 1, 1 + l);
}

// ---- loss ----

MaeOut mae_loss(models::ViT& encoder, MaeDecoder& decoder, const Tensor& images, const Tensor& mask, Generator& g) {
  ScopedRange range("MAE loss");
  const models::ViTConfig& ec = encoder.config();
  check_encoder_matches(ec, decoder.encoder_config());
  BISSL_CHECK(images.dim() == 4, "mae_loss: expected NHWC images, found shape ", shape_str(images.shape()));
  int64_t n = images.shape()[0], l = ec.num_patches();
  // On several ranks: this rank's rows of the whole job's batch.
  const dist::RowWindow w = dist::row_window(n);
  MaeMasking mk;
  if (mask.defined()) {
    BISSL_CHECK(mask.dim() == 2 && mask.shape()[0] == n && mask.shape()[1] == l, "mae_loss: expected a mask [", n,
                ", ", l, "], found shape ", shape_str(mask.shape()));
    mk = mae_masking_from_mask(mask);
  } else if (w.total == n) {
    mk = mae_random_masking(n, l, decoder.config().mask_ratio, g, images.dtype());
  } else {
    // The whole batch's draw, this rank's rows of it: the masks do not depend on N.
    MaeMasking all = mae_random_masking(w.total, l, decoder.config().mask_ratio, g, images.dtype());
    auto rows = [&](const Tensor& t) { return slice(t, 0, w.offset, w.offset + n).clone(); };
    mk = {rows(all.ids_shuffle), rows(all.ids_restore), rows(all.ids_keep), rows(all.mask), all.num_visible};
  }
  BISSL_CHECK(mk.num_visible < l, "mae_loss: the mask hides no patch, so there is nothing to reconstruct");
  Device dev = images.device();
  Tensor keep = to_device(mk.ids_keep, dev), restore = to_device(mk.ids_restore, dev);
  Tensor m = to_device(mk.mask.dtype() == images.dtype() ? mk.mask : cast(mk.mask, images.dtype()), dev);

  Tensor latent = encoder.forward_features(images, keep);
  Tensor pred = decoder.forward(latent, restore);
  Tensor target = mae_target(images, ec.patch_size, decoder.config().norm_pix_loss, decoder.config().norm_pix_eps);
  Tensor per_patch = mean(pow(sub(pred, target), 2.0), {-1});  // [N, L]
  // The whole batch's masked patches (every row hides l − K of them): on
  // several ranks this rank's share of the whole batch's loss.
  double masked = double(w.total * (l - mk.num_visible));
  Tensor loss = mul(sum(mul(per_patch, m)), 1.0 / masked);
  return {loss, pred, m, restore};
}

void mae_init_encoder_(models::ViT& encoder, Generator& g) {
  xavier_linears_(*encoder.blocks, g);
  if (encoder.head) xavier_linears_(*encoder.head, g);
  nn::init::normal_(encoder.cls_token, g, 0.0, 0.02);
  int64_t d = encoder.config().embed_dim;
  nn::init::xavier_uniform_(reshape(encoder.patch_embed->proj->weight.detach(), {d, -1}), g);
  nn::init::zeros_(encoder.patch_embed->proj->bias);
}

MaeObjective::MaeObjective(const models::ViTConfig& encoder, const MaeConfig& cfg, Generator& g) {
  decoder_ = register_module("decoder", std::make_shared<MaeDecoder>(encoder, cfg, g));
}

Tensor MaeObjective::loss(nn::Layer& backbone, const SslBatch& b) {
  auto* vit = dynamic_cast<models::ViT*>(&backbone);
  BISSL_CHECK(vit, "mae: expected a ViT backbone, found ", backbone.type_name());
  Generator g(b.seed);
  return mae_loss(*vit, *decoder_, b.view1, Tensor(), g).loss;
}

}  // namespace bissl::ssl
