#pragma once
// Masked autoencoder (He et al., 2022) as in the authors' code (models_mae.py):
// per-sample random masking by argsort of uniform noise, the ViT encoder on
// the visible patches only, a light transformer decoder that sees encoded
// visible tokens plus a shared mask token at every masked position, and a
// pixel loss per masked patch (targets normalised per patch by default).
//
// Conventions (MAE's): patches are row-major over the (h, w) grid; a patch's
// pixel vector is ordered (row in patch, column in patch, channel) — NHWC
// order, the same as MAE's patchify; mask is [N, L] with 1 = masked
// (removed), 0 = visible.
//
// Everything from the images to the loss is engine ops, so gradients, JVPs
// and forward-over-reverse HVPs w.r.t. the encoder (and decoder) work.
#include <cstdint>
#include <memory>
#include <string>

#include "engine/nn/layers.h"
#include "engine/random.h"
#include "models/vit.h"
#include "ssl/objective.h"

namespace bissl::ssl {

// MAE's paper defaults are a 512-wide, 8-deep, 16-head decoder for ViT-B/L/H
// at 224 px. The default here is that decoder scaled down for ViT-T/S on
// small images (256 wide, 4 deep, 8 heads); `paper()` gives the original.
struct MaeConfig {
  int64_t decoder_dim = 256, decoder_depth = 4, decoder_heads = 8;
  double mlp_ratio = 4.0;
  double mask_ratio = 0.75;
  bool norm_pix_loss = true;
  double norm_pix_eps = 1e-6;
  // Fixed 2-D sine-cosine decoder position embeddings (MAE) or learned ones.
  bool sincos_pos_embed = true;

  static MaeConfig paper() {
    MaeConfig c;
    c.decoder_dim = 512;
    c.decoder_depth = 8;
    c.decoder_heads = 16;
    return c;
  }
};

// Names as MAE's: mask_token, decoder_pos_embed, decoder_embed,
// decoder_blocks.<i>.*, decoder_norm, decoder_pred.
class MaeDecoder : public nn::Module {
 public:
  // Sizes (tokens, patch size, channels, encoder width) come from the
  // encoder's config. Init as MAE: Linears xavier_uniform with bias 0,
  // LayerNorms (1, 0), mask_token normal(0.02), decoder_pos_embed sin-cos
  // (a buffer) or trunc_normal(0.02) when learned.
  MaeDecoder(const models::ViTConfig& encoder, const MaeConfig& cfg, Generator& g);

  // latent [N, 1 + K, D_enc] (the encoder's output, class token first) and
  // ids_restore [N, L] -> predicted pixels per patch [N, L, p·p·C].
  Tensor forward(const Tensor& latent, const Tensor& ids_restore);

  const MaeConfig& config() const { return cfg_; }
  const models::ViTConfig& encoder_config() const { return enc_; }
  std::string type_name() const override { return "MaeDecoder"; }

  Tensor mask_token;         // [1, 1, Dd]
  Tensor decoder_pos_embed;  // [1, 1 + L, Dd]
  std::shared_ptr<nn::Linear> decoder_embed;
  std::shared_ptr<nn::Sequential> decoder_blocks;
  std::shared_ptr<nn::LayerNorm> decoder_norm;
  std::shared_ptr<nn::Linear> decoder_pred;

 private:
  models::ViTConfig enc_;
  MaeConfig cfg_;
};

// Which patches each sample keeps.
struct MaeMasking {
  Tensor ids_shuffle;  // i64 [N, L]: visible patches first
  Tensor ids_restore;  // i64 [N, L]: the inverse permutation of ids_shuffle
  Tensor ids_keep;     // i64 [N, K]: ids_shuffle[:, :K]
  Tensor mask;         // [N, L] (float, the requested dtype): 1 masked, 0 visible
  int64_t num_visible = 0;  // K
};

// K = round(L·(1 − ratio)) visible patches per sample (MAE's code floors;
// the two differ only when L·(1 − ratio) has a fraction of one half or more).
int64_t mae_num_visible(int64_t num_patches, double mask_ratio);

// MAE's random_masking: noise ~ U[0, 1) [N, L] from g (one draw of N·L
// values), ids_shuffle = argsort(noise) per row (ascending; small noise is
// kept), ids_restore = argsort(ids_shuffle), keep the first K.
MaeMasking mae_random_masking(int64_t n, int64_t num_patches, double mask_ratio, Generator& g,
                              DType mask_dtype = DType::F32);

// The masking of a given mask [N, L] (1 masked, 0 visible; every row with the
// same number K >= 1 of visible patches): ids_shuffle lists each row's
// visible patches in ascending order, then its masked ones.
MaeMasking mae_masking_from_mask(const Tensor& mask);

// Images NHWC [N, H, W, C] -> patches [N, (H/p)·(W/p), p·p·C], and back.
Tensor patchify(const Tensor& images, int64_t patch_size);
Tensor unpatchify(const Tensor& patches, int64_t patch_size, int64_t height, int64_t width, int64_t channels);

// The per-patch reconstruction target: patchify(images), normalised per
// patch by its own mean and (unbiased, as torch.var in MAE's code) variance,
// (x − mean) / sqrt(var + eps), when norm_pix_loss.
Tensor mae_target(const Tensor& images, int64_t patch_size, bool norm_pix_loss, double eps = 1e-6);

struct MaeOut {
  Tensor loss;  // scalar: mean over masked patches of the per-patch mean squared error
  Tensor pred;  // [N, L, p·p·C] decoder predictions (in the normalised target space if norm_pix_loss)
  Tensor mask;  // [N, L] 1 masked, 0 visible (images' dtype)
  Tensor ids_restore;  // i64 [N, L]
};

// One MAE step's loss. `mask` (undefined: a random one from g with the
// decoder's mask_ratio) fixes which patches are hidden, e.g. to replay a
// batch exactly; g is then not used. images: NHWC, the encoder's size.
// On several ranks (the current group, consecutive blocks of the job's
// batch in rank order) the random mask is this rank's rows of the whole
// batch's draw and the loss is this rank's share (the masked patches'
// errors over all ranks' masked patches); a given mask must hide the same
// number of patches per row on every rank.
MaeOut mae_loss(models::ViT& encoder, MaeDecoder& decoder, const Tensor& images, const Tensor& mask, Generator& g);

// MAE as an Objective: the decoder is its head; the mask of a step comes
// from the batch seed, so every evaluation of one batch masks the same
// patches. The backbone passed to loss() must be a ViT.
class MaeObjective : public Objective {
 public:
  MaeObjective(const models::ViTConfig& encoder, const MaeConfig& cfg, Generator& g);
  Tensor loss(nn::Layer& backbone, const SslBatch& b) override;
  nn::Module& head() override { return *decoder_; }
  MaeDecoder& decoder() { return *decoder_; }
  std::string type_name() const override { return "MAE"; }

 private:
  std::shared_ptr<MaeDecoder> decoder_;
};

// MAE's own initialisation of an encoder (xavier_uniform Linears instead of
// timm's trunc_normal; cls_token normal(0.02)), for pretraining as the paper.
void mae_init_encoder_(models::ViT& encoder, Generator& g);

}  // namespace bissl::ssl
