#pragma once
// The pretext objective a spec describes (SimCLR, BYOL or MAE with their
// heads), built the same way for pretraining and every later stage.
#include <cstdint>
#include <memory>
#include <string>

#include "engine/nn/module.h"
#include "engine/random.h"
#include "engine/schema.h"
#include "models/factory.h"
#include "ssl/byol.h"
#include "ssl/mae.h"
#include "ssl/objective.h"
#include "ssl/simclr.h"

namespace bissl::ssl {

struct ObjectiveSpec {  // [method] of a pretraining config
  std::string name = "simclr";
  double temperature = 0.5;
  int64_t proj_hidden = 256, proj_out = 256, proj_layers = 3;
  int64_t pred_hidden = 0, pred_layers = 3;
  double ema = 0.9995;
  double mask_ratio = 0.75;
  int64_t decoder_dim = 128, decoder_depth = 2, decoder_heads = 8;
  bool norm_pix_loss = true;
  std::string decoder_pos_embed = "sincos";

  template <class V>
  void fields(V& v) {
    v("name", name, schema::one_of({"simclr", "byol", "mae"}), "the pretext task");
    v("temperature", temperature, schema::gt(0), "SimCLR: NT-Xent temperature");
    v("proj_hidden", proj_hidden, schema::ge(1), "SimCLR / BYOL: projector hidden width");
    v("proj_out", proj_out, schema::ge(1), "SimCLR / BYOL: projection size");
    v("proj_layers", proj_layers, schema::ge(1), "SimCLR / BYOL: Linear layers in the projector");
    v("pred_hidden", pred_hidden, schema::ge(0), "BYOL: predictor hidden width; 0 = proj_hidden");
    v("pred_layers", pred_layers, schema::ge(1), "BYOL: Linear layers in the predictor");
    v("ema", ema, schema::in(0, 1), "BYOL: target EMA decay");
    v("mask_ratio", mask_ratio, schema::in_open_hi(0, 1), "MAE: fraction of patches masked");
    v("decoder_dim", decoder_dim, schema::ge(1), "MAE: decoder width");
    v("decoder_depth", decoder_depth, schema::ge(1), "MAE: decoder blocks");
    v("decoder_heads", decoder_heads, schema::ge(1), "MAE: decoder attention heads (must divide decoder_dim)");
    v("norm_pix_loss", norm_pix_loss, schema::any(), "MAE: targets normalised per patch");
    v("decoder_pos_embed", decoder_pos_embed, schema::one_of({"sincos", "learned"}),
      "MAE: decoder position embeddings, fixed 2-D sine-cosine (MAE's) or learned");
  }
  int64_t predictor_hidden() const { return pred_hidden > 0 ? pred_hidden : proj_hidden; }
  // The heads of each objective, as the library's options.
  SimclrOptions simclr() const;
  ByolOptions byol() const;
  MaeConfig mae() const;
};

// The objective for `backbone` (built from `bb` for channels x image_size²
// images, feature_dim its output size) on the CPU, its heads drawn from `g`:
// SimCLR, BYOL or MaeObjective (ssl/mae.h). BYOL's target network starts as
// a copy of `backbone` (a fresh backbone seeded `target_seed` is its shape);
// MAE's decoder is the head, and a batch's mask comes from the batch seed.
std::shared_ptr<Objective> make_objective(const ObjectiveSpec& spec, const models::BackboneSpec& bb,
                                          const nn::Layer& backbone, int64_t channels, int64_t image_size,
                                          int64_t feature_dim, Generator& g, uint64_t target_seed);

}  // namespace bissl::ssl
