#pragma once
// What bissl-inspect evaluates: a backbone (ResNet or ViT), the head(s) of
// the chosen loss, their weights from safetensors files in PyTorch layout, a
// batch, and a loss closure over them that gradients, H·v and the tape are
// taken of.
//
// Weight files (docs/inspect.md, "Names"): one name space, the union of
// --weights and --head-weights (a name in both is an error):
//   backbone  torchvision / timm names, PyTorch layout (OIHW conv weights);
//   ntxent    + SimCLR's head: head.projector.{0,1,3,4,6}.*
//   byol      + head.projector.*, head.predictor.*, and optionally the target
//             network backbone_target.*, projector_target.* (all or none;
//             none: the target is a copy of the online network)
//   mae       + the decoder as in MAE's models_mae.py: mask_token,
//             decoder_embed.*, decoder_blocks.<i>.*, decoder_norm.*,
//             decoder_pred.* (decoder_pos_embed too when it is learned)
// A name the model expects but no file holds is an error naming it; a name
// no module uses is reported on stderr (an error with strict).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engine/io/safetensors.h"
#include "engine/nn/module.h"
#include "models/factory.h"
#include "models/resnet.h"
#include "models/vit.h"
#include "ssl/factory.h"

namespace bissl::inspect {

// The backbone is a models::BackboneSpec and the heads an
// ssl::ObjectiveSpec, built by the model factory every stage uses; their
// flags come from the specs' own descriptions (tools/common/cli_fields.h),
// with inspect's defaults (torchvision's ImageNet stem, timm's 16 px patches,
// MaeConfig's decoder).
struct ModelOptions {
  models::BackboneSpec backbone = defaults();  // --model (arch), --stem, --width, --patch-size, --vit-depth, --pool
  std::string pos_embed = "auto";  // ViT: learned | sincos | auto (sincos for mae, else learned)
  int64_t in_channels = 3;
  int64_t num_classes = -1;  // -1: ce reads it from the weights (fc.weight / head.weight), else 10; SSL losses 0
  int64_t image_size = 0;    // 0: 224 for ViT; the random batch of `graph` uses 32 for ResNet

  bool is_vit() const { return backbone.is_vit(); }
  const std::string& model() const { return backbone.arch; }
  static models::BackboneSpec defaults() {
    models::BackboneSpec b;
    b.stem = "imagenet";
    b.patch_size = 16;
    return b;
  }
};

struct LossOptions {
  std::string loss = "ce";  // ce | ntxent | byol | mae
  double label_smoothing = 0.0;
  // --temperature, --mask-ratio, --decoder-dim/-depth/-heads, --norm-pix-loss;
  // the projector and predictor come from the width lists below.
  ssl::ObjectiveSpec heads = defaults();
  std::string projector = "256-256-256";  // hidden-...-out widths of the Linear layers
  std::string predictor = "256-256-256";  // BYOL
  static ssl::ObjectiveSpec defaults() {
    ssl::ObjectiveSpec o;
    ssl::MaeConfig m;
    o.decoder_dim = m.decoder_dim, o.decoder_depth = m.decoder_depth, o.decoder_heads = m.decoder_heads;
    return o;
  }
};

struct RunOptions {
  std::string mode = "train";  // train | eval
  DType dtype = DType::F32;
  Device device = Device::CPU;
  uint64_t seed = 0;
  std::string weights, head_weights;  // empty: random init from seed
  bool strict = false;                // unused names in weight files are errors
};

// A batch as the loss consumes it (on the CPU until Session::set_batch).
struct Batch {
  Tensor images;  // NHWC
  Tensor labels;  // i64 [N] (ce)
  Tensor mask;    // [N, L], 1 masked (mae)
};

// Reads images ("images" NCHW, converted to NHWC, or "images_nhwc"),
// "labels" (i64) and "mask" from a safetensors file.
Batch load_batch(const std::string& path);
// Random images N(0, 1), labels in [0, classes), a random MAE mask.
Batch random_batch(int64_t n, int64_t image_size, int64_t channels, int64_t classes, int64_t num_patches,
                   double mask_ratio, uint64_t seed);

// "256-256-256" -> {256, 256, 256}; hidden widths must agree (MLPHead has one).
std::vector<int64_t> parse_mlp_spec(const std::string& spec, const char* flag);

class Session {
 public:
  Session(const ModelOptions& m, const LossOptions& l, const RunOptions& r);

  // Checks the batch against model and loss, converts it to the run's dtype
  // and device, and fixes MAE's mask (drawn from the seed when the batch has
  // none) so that every loss() call sees the same batch.
  void set_batch(const Batch& b);
  const Batch& batch() const { return batch_; }

  // One forward: the scalar loss, on the tape when gradients are enabled.
  Tensor loss();

  // Backbone parameters (torchvision/timm names) and the trainable
  // parameters of the heads (objective / decoder names).
  const nn::StateDict& backbone_params() const { return backbone_params_; }
  const nn::StateDict& head_params() const { return head_params_; }
  // Parameter storage -> name, for labelling tape inputs.
  std::map<const TensorImpl*, std::string> param_names() const;

  nn::Layer& backbone() { return *backbone_; }
  nn::Module* head_module() { return head_; }  // null for ce
  int64_t num_classes() const { return num_classes_; }
  int64_t num_patches() const;  // ViT only
  int64_t image_size() const { return image_size_; }
  // One line describing model, loss, mode, dtype, device and sizes.
  std::string describe() const;
  // Notes for stderr (unused keys, defaults taken).
  const std::vector<std::string>& notes() const { return notes_; }

  // The files' state: backbone (+ fc/head) and heads, in PyTorch layout.
  io::NamedTensors torch_weights() const;

  // The pretext objective (ntxent, byol, mae; null for ce) and the width of
  // the backbone's pooled features.
  ssl::Objective* objective() { return objective_.get(); }
  int64_t feature_dim() const { return feat_; }
  // A second backbone of the same spec, dtype, device and mode (BiSSL's θD):
  // its state from `path` (backbone names as --weights; other tensors are
  // notes, errors with --strict), or a copy of this backbone's parameters
  // and buffers when path is empty.
  std::shared_ptr<nn::Layer> twin_backbone(const std::string& path);

  const ModelOptions mopt;
  const LossOptions lopt;
  const RunOptions ropt;

 private:
  void build(Generator& g);
  void load_weights();
  // A state tensor a weights file may leave out: num_batches_tracked, fixed
  // sin-cos position embeddings (recomputed from the sizes).
  bool computed_if_absent(const std::string& name) const;

  models::BackboneSpec bspec_;  // resolved: pos_embed, no drop path
  ssl::ObjectiveSpec hspec_;    // resolved: projector and predictor widths
  std::shared_ptr<nn::Layer> backbone_;
  models::ViT* vit_ = nullptr;
  models::ViTConfig vcfg_;
  std::shared_ptr<ssl::Objective> objective_;  // null for ce
  ssl::SimCLR* simclr_ = nullptr;
  ssl::BYOL* byol_ = nullptr;
  ssl::MaeDecoder* decoder_ = nullptr;
  nn::Module* head_ = nullptr;
  nn::StateDict backbone_params_, head_params_;
  int64_t num_classes_ = 0, image_size_ = 0, feat_ = 0;
  Batch batch_;
  std::vector<std::string> notes_;
};

// Reads a direction / weights-like file of backbone tensors in PyTorch layout:
// one tensor per name in `params`, 4-D tensors OIHW -> OHWI, cast to the
// parameter's dtype and moved to its device. Missing names are errors; unused
// ones are notes (errors with strict).
std::vector<Tensor> load_param_file(const std::string& path, const nn::StateDict& params, bool strict,
                                    std::vector<std::string>& notes);

// Parameter-layout tensor -> PyTorch layout on the CPU (4-D: OHWI -> OIHW).
Tensor to_torch_layout(const Tensor& t);

}  // namespace bissl::inspect
