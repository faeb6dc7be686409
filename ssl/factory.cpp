#include "ssl/factory.h"

#include "engine/error.h"
#include "models/vit.h"
#include "ssl/byol.h"
#include "ssl/mae.h"
#include "ssl/simclr.h"

namespace bissl::ssl {

namespace {

// MAE as an Objective: the decoder is its head; the mask of a step comes
// from the batch seed, so every evaluation of one batch masks the same patches.
class MaeObjective : public Objective {
 public:
  MaeObjective(const models::ViTConfig& enc, const MaeConfig& cfg, Generator& g) {
    decoder_ = register_module("decoder", std::make_shared<MaeDecoder>(enc, cfg, g));
  }
  Tensor loss(nn::Layer& backbone, const SslBatch& b) override {
    auto* vit = dynamic_cast<models::ViT*>(&backbone);
    BISSL_CHECK(vit, "mae: expected a ViT backbone");
    Generator g(b.seed);
    return mae_loss(*vit, *decoder_, b.view1, Tensor(), g).loss;
  }
  nn::Module& head() override { return *decoder_; }
  std::string type_name() const override { return "MAE"; }

 private:
  std::shared_ptr<MaeDecoder> decoder_;
};

}  // namespace

std::shared_ptr<Objective> make_objective(const ObjectiveSpec& s, const models::BackboneSpec& bb,
                                          const nn::Layer& backbone, int64_t channels, int64_t image_size,
                                          int64_t fdim, Generator& g, uint64_t target_seed) {
  if (s.name == "simclr") {
    SimclrOptions o;
    o.hidden_dim = s.proj_hidden, o.out_dim = s.proj_out, o.temperature = s.temperature;
    return std::make_shared<SimCLR>(fdim, g, o);
  }
  if (s.name == "byol") {
    ByolOptions o;
    o.hidden_dim = s.proj_hidden, o.out_dim = s.proj_out, o.pred_hidden_dim = s.proj_hidden, o.ema_decay = s.ema;
    auto factory = [bb, channels, image_size, target_seed] {
      Generator g2(target_seed);
      int64_t unused = 0;
      return models::make_backbone(bb, channels, image_size, g2, unused);
    };
    return std::make_shared<BYOL>(backbone, factory, fdim, g, o);
  }
  BISSL_CHECK(s.name == "mae", "config: method.name must be simclr, byol or mae, found '", s.name, "'");
  MaeConfig mc;
  mc.decoder_dim = s.decoder_dim, mc.decoder_depth = s.decoder_depth, mc.mask_ratio = s.mask_ratio;
  return std::make_shared<MaeObjective>(models::vit_config(bb, channels, image_size), mc, g);
}

}  // namespace bissl::ssl
