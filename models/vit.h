#pragma once
// Vision Transformer (ViT) with timm's names: cls_token, pos_embed,
// patch_embed.proj.{weight,bias}, blocks.<i>.{norm1, attn.qkv, attn.proj,
// norm2, mlp.fc1, mlp.fc2}, norm, head. Pre-norm blocks (LayerNorm eps
// 1e-6), exact-GELU MLP, stochastic depth rising linearly over the blocks,
// attention through bissl::scaled_dot_product_attention.
//
// Input images are NHWC; the patch embedding is a kernel = stride = patch
// conv, so patch tokens come out row-major over the (h, w) grid, as timm's
// flatten(2).transpose(1, 2). Tokens are [N, T, D].
//
// forward_features(x, keep_index) runs the encoder on a per-sample subset of
// the patch tokens (MAE's encoder on visible patches).
#include <cstdint>
#include <memory>
#include <string>

#include "engine/nn/layers.h"
#include "engine/optim/optimizer.h"
#include "engine/random.h"

namespace bissl::models {

enum class ViTPool {
  Cls,   // the class token after the final norm
  Mean,  // mean of the patch tokens (class token excluded) after the final norm
};

struct ViTConfig {
  int64_t image_size = 224, patch_size = 16, in_channels = 3;
  int64_t embed_dim = 768, depth = 12, num_heads = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  double drop_path_rate = 0.0;  // block i gets drop_path_rate · i / (depth - 1)
  double ln_eps = 1e-6;
  ViTPool pool = ViTPool::Cls;
  // Fixed 2-D sine-cosine position embeddings (MAE's choice; then pos_embed
  // is a buffer, not trained) instead of learned ones.
  bool sincos_pos_embed = false;
  int64_t num_classes = 0;  // > 0 adds a Linear `head` after the pooling
  uint64_t drop_path_seed = 0;  // seeds the generator of the drop-path masks

  int64_t grid() const { return image_size / patch_size; }
  int64_t num_patches() const { return grid() * grid(); }
  int64_t patch_dim() const { return patch_size * patch_size * in_channels; }

  static ViTConfig tiny(int64_t image_size = 224, int64_t patch_size = 16);   // 192 wide, 12 deep, 3 heads
  static ViTConfig small(int64_t image_size = 224, int64_t patch_size = 16);  // 384 wide, 12 deep, 6 heads
  static ViTConfig base(int64_t image_size = 224, int64_t patch_size = 16);   // 768 wide, 12 deep, 12 heads
};

// NHWC images -> patch tokens [N, L, D] through proj (Conv2d k = s = patch, bias).
class PatchEmbed : public nn::Layer {
 public:
  PatchEmbed(int64_t image_size, int64_t patch_size, int64_t in_channels, int64_t embed_dim, Generator& g);
  Tensor forward_impl(const Tensor& x) override;
  std::string type_name() const override { return "PatchEmbed"; }
  int64_t image_size, patch_size, in_channels, embed_dim;
  std::shared_ptr<nn::Conv2d> proj;
};

// Multi-head self-attention: qkv (one Linear to 3·D), attention per head, proj.
class Attention : public nn::Layer {
 public:
  Attention(int64_t dim, int64_t num_heads, bool qkv_bias, Generator& g);
  Tensor forward_impl(const Tensor& x) override;  // [N, T, D] -> [N, T, D]
  std::string type_name() const override { return "Attention"; }
  int64_t dim, num_heads;
  std::shared_ptr<nn::Linear> qkv, proj;
};

// fc1 -> GELU (erf) -> fc2.
class Mlp : public nn::Layer {
 public:
  Mlp(int64_t dim, int64_t hidden, Generator& g);
  Tensor forward_impl(const Tensor& x) override;
  std::string type_name() const override { return "Mlp"; }
  std::shared_ptr<nn::Linear> fc1, fc2;
};

// x + drop_path(attn(norm1(x))); x + drop_path(mlp(norm2(x))).
// Drop-path masks come from the shared generator `rng` (training only).
class Block : public nn::Layer {
 public:
  Block(int64_t dim, int64_t num_heads, double mlp_ratio, bool qkv_bias, double drop_path, double ln_eps,
        std::shared_ptr<Generator> rng, Generator& g);
  Tensor forward_impl(const Tensor& x) override;
  std::string type_name() const override { return "Block"; }
  std::string extra_repr() const override;
  double drop_path;
  std::shared_ptr<nn::LayerNorm> norm1, norm2;
  std::shared_ptr<Attention> attn;
  std::shared_ptr<Mlp> mlp;

 private:
  std::shared_ptr<Generator> rng_;
};

// The timm/MAE transformer init of a module tree: every Linear weight
// trunc_normal(std 0.02) (±2 absolute bounds, as timm), biases 0, LayerNorm
// weight 1 and bias 0.
void init_transformer_(nn::Module& m, Generator& g);

// 2-D sine-cosine position embeddings as in MAE (get_2d_sincos_pos_embed):
// [1, grid·grid (+1 with cls, a zero row first), dim]; dim divisible by 4.
Tensor sincos_pos_embed_2d(int64_t dim, int64_t grid, bool cls_token, DType t = DType::F32);

// Per-sample token selection: x [N, L, D], index i64 [N, K] with values in
// [0, L) -> [N, K, D], out[n, k] = x[n, index[n, k]]. Differentiable in x
// (the gather_rows op; the index stays on its device, no host read-back).
Tensor gather_tokens(const Tensor& x, const Tensor& index);

class ViT : public nn::Layer {
 public:
  // Init (timm / MAE): pos_embed and cls_token trunc_normal(0.02) (pos_embed
  // sin-cos and fixed with sincos_pos_embed), patch_embed.proj weight
  // xavier_uniform over its flattened [D, p·p·C] view and bias 0, transformer
  // Linears trunc_normal(0.02) and bias 0, LayerNorms (1, 0); head
  // trunc_normal(0.02) (timm's default head init), bias 0.
  ViT(const ViTConfig& cfg, Generator& g);

  // Images NHWC [N, image_size, image_size, in_channels] -> pooled feature
  // [N, embed_dim] (config().pool), or logits [N, num_classes] with a head.
  Tensor forward_impl(const Tensor& x) override;
  // All tokens after the final norm: [N, 1 + K, D], the class token first.
  // keep_index i64 [N, K] (values in [0, num_patches), per sample) keeps
  // those patch tokens, in that order, after adding position embeddings;
  // undefined keeps all patches (K = num_patches).
  Tensor forward_features(const Tensor& x, const Tensor& keep_index = Tensor());
  // Pooling of forward_features's output as config().pool says.
  Tensor pool(const Tensor& tokens) const;

  int64_t feature_dim() const { return cfg_.embed_dim; }
  int64_t num_patches() const { return cfg_.num_patches(); }
  const ViTConfig& config() const { return cfg_; }
  // The generator of the drop-path masks: save and restore its state to
  // replay the same masks (e.g. for every HVP of one fixed batch).
  Generator& drop_path_rng() { return *rng_; }
  std::string type_name() const override { return "VisionTransformer"; }
  std::string extra_repr() const override;

  Tensor cls_token;  // [1, 1, D]
  Tensor pos_embed;  // [1, 1 + L, D]
  std::shared_ptr<PatchEmbed> patch_embed;
  std::shared_ptr<nn::Sequential> blocks;
  std::shared_ptr<nn::LayerNorm> norm;
  std::shared_ptr<nn::Linear> head;  // null when num_classes == 0

 private:
  ViTConfig cfg_;
  std::shared_ptr<Generator> rng_;
};

std::shared_ptr<ViT> vit_tiny(Generator& g, int64_t image_size = 224, int64_t patch_size = 16);
std::shared_ptr<ViT> vit_small(Generator& g, int64_t image_size = 224, int64_t patch_size = 16);

// Layer-wise learning-rate decay (MAE's param_groups_lrd, as in its
// fine-tuning): layer id 0 for cls_token, pos_embed and patch_embed, i + 1 for
// blocks.<i>, depth + 1 for everything after the blocks (the final norm, a
// head) and for `extra` (a separate head's parameters); lr_scale =
// layer_decay^(depth + 1 − id). Weight decay `weight_decay` except for 1-D
// tensors (biases, norms) and cls_token / pos_embed, which get 0. One group
// per (layer, decay or not), in layer order.
std::vector<optim::ParamGroup> vit_layer_decay_groups(const ViT& vit, double layer_decay, double weight_decay,
                                                      const std::vector<Tensor>& extra = {});

}  // namespace bissl::models
