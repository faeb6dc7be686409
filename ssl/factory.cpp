#include "ssl/factory.h"

#include "engine/error.h"
#include "models/vit.h"
#include "ssl/byol.h"
#include "ssl/mae.h"
#include "ssl/simclr.h"

namespace bissl::ssl {

SimclrOptions ObjectiveSpec::simclr() const {
  SimclrOptions o;
  o.hidden_dim = proj_hidden, o.out_dim = proj_out, o.proj_layers = int(proj_layers), o.temperature = temperature;
  return o;
}

ByolOptions ObjectiveSpec::byol() const {
  ByolOptions o;
  o.hidden_dim = proj_hidden, o.out_dim = proj_out, o.proj_layers = int(proj_layers);
  o.pred_hidden_dim = predictor_hidden(), o.pred_layers = int(pred_layers), o.ema_decay = ema;
  return o;
}

MaeConfig ObjectiveSpec::mae() const {
  MaeConfig c;
  c.decoder_dim = decoder_dim, c.decoder_depth = decoder_depth, c.decoder_heads = decoder_heads;
  c.mask_ratio = mask_ratio, c.norm_pix_loss = norm_pix_loss, c.sincos_pos_embed = decoder_pos_embed == "sincos";
  return c;
}

std::shared_ptr<Objective> make_objective(const ObjectiveSpec& s, const models::BackboneSpec& bb,
                                          const nn::Layer& backbone, int64_t channels, int64_t image_size,
                                          int64_t fdim, Generator& g, uint64_t target_seed) {
  if (s.name == "simclr") return std::make_shared<SimCLR>(fdim, g, s.simclr());
  if (s.name == "byol") {
    auto factory = [bb, channels, image_size, target_seed] {
      Generator g2(target_seed);
      int64_t unused = 0;
      return models::make_backbone(bb, channels, image_size, g2, unused);
    };
    return std::make_shared<BYOL>(backbone, factory, fdim, g, s.byol());
  }
  BISSL_CHECK(s.name == "mae", "config: method.name must be simclr, byol or mae, found '", s.name, "'");
  return std::make_shared<MaeObjective>(models::vit_config(bb, channels, image_size), s.mae(), g);
}

}  // namespace bissl::ssl
