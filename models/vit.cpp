#include "models/vit.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/nn/init.h"
#include "engine/ops.h"

namespace bissl::models {

// ---- configs ----

namespace {
ViTConfig preset(int64_t image_size, int64_t patch_size, int64_t dim, int64_t heads) {
  ViTConfig c;
  c.image_size = image_size;
  c.patch_size = patch_size;
  c.embed_dim = dim;
  c.depth = 12;
  c.num_heads = heads;
  return c;
}
}  // namespace

ViTConfig ViTConfig::tiny(int64_t image_size, int64_t patch_size) { return preset(image_size, patch_size, 192, 3); }
ViTConfig ViTConfig::small(int64_t image_size, int64_t patch_size) { return preset(image_size, patch_size, 384, 6); }
ViTConfig ViTConfig::base(int64_t image_size, int64_t patch_size) { return preset(image_size, patch_size, 768, 12); }

// ---- patch embedding ----

PatchEmbed::PatchEmbed(int64_t image_size_, int64_t patch_size_, int64_t in_channels_, int64_t embed_dim_, Generator& g)
    : image_size(image_size_), patch_size(patch_size_), in_channels(in_channels_), embed_dim(embed_dim_) {
  BISSL_CHECK(patch_size > 0 && image_size > 0 && image_size % patch_size == 0, "PatchEmbed: image size ",
              image_size, " must be a positive multiple of the patch size ", patch_size);
  proj = register_module("proj", std::make_shared<nn::Conv2d>(in_channels, embed_dim, patch_size, g, patch_size, 0,
                                                               1, 1, /*bias=*/true));
}

Tensor PatchEmbed::forward_impl(const Tensor& x) {
  BISSL_CHECK(x.dim() == 4 && x.shape()[1] == image_size && x.shape()[2] == image_size && x.shape()[3] == in_channels,
              "PatchEmbed: expected NHWC images [N, ", image_size, ", ", image_size, ", ", in_channels,
              "], found shape ", shape_str(x.shape()));
  Tensor y = proj->forward(x);  // [N, g, g, D]
  return reshape(y, {x.shape()[0], -1, embed_dim});
}

// ---- attention, MLP, block ----

Attention::Attention(int64_t dim_, int64_t heads, bool qkv_bias, Generator& g) : dim(dim_), num_heads(heads) {
  BISSL_CHECK(heads > 0 && dim % heads == 0, "Attention: width ", dim, " is not divisible by ", heads, " heads");
  qkv = register_module("qkv", std::make_shared<nn::Linear>(dim, 3 * dim, g, qkv_bias));
  proj = register_module("proj", std::make_shared<nn::Linear>(dim, dim, g));
}

Tensor Attention::forward_impl(const Tensor& x) {
  BISSL_CHECK(x.dim() == 3 && x.shape()[2] == dim, "Attention: expected tokens [N, T, ", dim, "], found shape ",
              shape_str(x.shape()));
  int64_t n = x.shape()[0], t = x.shape()[1], hd = dim / num_heads;
  // [N, T, 3, H, hd] -> [3, N, H, T, hd], as timm.
  Tensor qkv_ = permute(reshape(qkv->forward(x), {n, t, 3, num_heads, hd}), {2, 0, 3, 1, 4});
  Shape one = {n, num_heads, t, hd};
  Tensor q = reshape(slice(qkv_, 0, 0, 1), one);
  Tensor k = reshape(slice(qkv_, 0, 1, 2), one);
  Tensor v = reshape(slice(qkv_, 0, 2, 3), one);
  Tensor o = scaled_dot_product_attention(q, k, v);           // [N, H, T, hd]
  o = reshape(permute(o, {0, 2, 1, 3}), {n, t, dim});        // [N, T, D]
  return proj->forward(o);
}

Mlp::Mlp(int64_t dim, int64_t hidden, Generator& g) {
  fc1 = register_module("fc1", std::make_shared<nn::Linear>(dim, hidden, g));
  fc2 = register_module("fc2", std::make_shared<nn::Linear>(hidden, dim, g));
}

Tensor Mlp::forward_impl(const Tensor& x) { return fc2->forward(gelu(fc1->forward(x))); }

Block::Block(int64_t dim, int64_t num_heads, double mlp_ratio, bool qkv_bias, double drop_path_, double ln_eps,
             std::shared_ptr<Generator> rng, Generator& g)
    : drop_path(drop_path_), rng_(std::move(rng)) {
  BISSL_CHECK(drop_path >= 0 && drop_path < 1, "Block: expected a drop-path rate in [0, 1), found ", drop_path);
  BISSL_CHECK(mlp_ratio > 0, "Block: expected mlp_ratio > 0, found ", mlp_ratio);
  norm1 = register_module("norm1", std::make_shared<nn::LayerNorm>(dim, ln_eps));
  attn = register_module("attn", std::make_shared<Attention>(dim, num_heads, qkv_bias, g));
  norm2 = register_module("norm2", std::make_shared<nn::LayerNorm>(dim, ln_eps));
  mlp = register_module("mlp", std::make_shared<Mlp>(dim, int64_t(double(dim) * mlp_ratio), g));
}

Tensor Block::forward_impl(const Tensor& x) {
  auto residual = [&](const Tensor& h) {
    if (!is_training() || drop_path == 0.0) return h;
    BISSL_CHECK(rng_, "Block: drop path in training mode needs a generator");
    return bissl::drop_path(h, drop_path, *rng_, true);
  };
  Tensor y = add(x, residual(attn->forward(norm1->forward(x))));
  return add(y, residual(mlp->forward(norm2->forward(y))));
}

std::string Block::extra_repr() const { return drop_path > 0 ? str("drop_path=", drop_path) : ""; }

// ---- helpers ----

void init_transformer_(nn::Module& m, Generator& g) {
  for (auto& [name, mod] : m.named_modules()) {
    if (auto* l = dynamic_cast<nn::Linear*>(mod)) {
      nn::init::trunc_normal_(l->weight, g, 0.0, 0.02);
      if (l->bias.defined()) nn::init::zeros_(l->bias);
    } else if (auto* ln = dynamic_cast<nn::LayerNorm*>(mod)) {
      if (ln->weight.defined()) nn::init::ones_(ln->weight);
      if (ln->bias.defined()) nn::init::zeros_(ln->bias);
    }
  }
}

Tensor sincos_pos_embed_2d(int64_t dim, int64_t grid, bool cls_token, DType t) {
  BISSL_CHECK(dim > 0 && dim % 4 == 0, "sincos_pos_embed_2d: expected a width divisible by 4, found ", dim);
  BISSL_CHECK(grid > 0, "sincos_pos_embed_2d: expected grid > 0, found ", grid);
  int64_t rows = grid * grid + (cls_token ? 1 : 0), q = dim / 4;
  std::vector<double> e(size_t(rows * dim), 0.0);
  // MAE's layout: the first half embeds the column (w) coordinate, the second
  // the row (h); each half is [sin(pos·ω_k)]_k then [cos(pos·ω_k)]_k with
  // ω_k = 10000^(-k/q).
  for (int64_t i = 0; i < grid; ++i)
    for (int64_t j = 0; j < grid; ++j) {
      double* r = &e[size_t(((cls_token ? 1 : 0) + i * grid + j) * dim)];
      for (int64_t k = 0; k < q; ++k) {
        double omega = 1.0 / std::pow(10000.0, double(k) / double(q));
        r[k] = std::sin(double(j) * omega);
        r[q + k] = std::cos(double(j) * omega);
        r[2 * q + k] = std::sin(double(i) * omega);
        r[3 * q + k] = std::cos(double(i) * omega);
      }
    }
  return from_vector(e, {1, rows, dim}, t);
}

Tensor gather_tokens(const Tensor& x, const Tensor& index) {
  BISSL_CHECK(x.dim() == 3, "gather_tokens: expected tokens [N, L, D], found shape ", shape_str(x.shape()));
  const int64_t n = x.shape()[0];
  BISSL_CHECK(index.dtype() == DType::I64 && index.dim() == 2 && index.shape()[0] == n,
              "gather_tokens: expected an i64 index [", n, ", K], found ", dtype_name(index.dtype()), " ",
              shape_str(index.shape()));
  // Per-row gather on the tokens' device: the range check runs there too
  // (deferred on a GPU), so the host never reads the index back. An index
  // still on the host goes over through pinned staging (no wait).
  if (index.device() != x.device()) return gather_rows(x, 1, to_device_staged(index, x.device()));
  return gather_rows(x, 1, index);
}

// ---- the network ----

ViT::ViT(const ViTConfig& cfg, Generator& g) : cfg_(cfg), rng_(std::make_shared<Generator>(cfg.drop_path_seed)) {
  BISSL_CHECK(cfg.depth > 0, "ViT: expected depth > 0, found ", cfg.depth);
  BISSL_CHECK(cfg.embed_dim > 0, "ViT: expected embed_dim > 0, found ", cfg.embed_dim);
  BISSL_CHECK(cfg.drop_path_rate >= 0 && cfg.drop_path_rate < 1, "ViT: expected drop_path_rate in [0, 1), found ",
              cfg.drop_path_rate);
  int64_t d = cfg.embed_dim, l = cfg.num_patches();
  cls_token = register_parameter("cls_token", zeros({1, 1, d}));
  if (cfg.sincos_pos_embed)
    pos_embed = register_buffer("pos_embed", sincos_pos_embed_2d(d, cfg.grid(), true));
  else
    pos_embed = register_parameter("pos_embed", zeros({1, 1 + l, d}));
  patch_embed = register_module("patch_embed",
                                std::make_shared<PatchEmbed>(cfg.image_size, cfg.patch_size, cfg.in_channels, d, g));
  blocks = register_module("blocks", std::make_shared<nn::Sequential>());
  for (int64_t i = 0; i < cfg.depth; ++i) {
    double dp = cfg.depth > 1 ? cfg.drop_path_rate * double(i) / double(cfg.depth - 1) : 0.0;
    blocks->push_back(std::make_shared<Block>(d, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, dp, cfg.ln_eps, rng_, g));
  }
  norm = register_module("norm", std::make_shared<nn::LayerNorm>(d, cfg.ln_eps));
  if (cfg.num_classes > 0) head = register_module("head", std::make_shared<nn::Linear>(d, cfg.num_classes, g));

  if (!cfg.sincos_pos_embed) nn::init::trunc_normal_(pos_embed, g, 0.0, 0.02);
  nn::init::trunc_normal_(cls_token, g, 0.0, 0.02);
  // MAE: the patch projection initialised like a Linear [D, p·p·C].
  nn::init::xavier_uniform_(reshape(patch_embed->proj->weight.detach(), {d, -1}), g);
  nn::init::zeros_(patch_embed->proj->bias);
  init_transformer_(*blocks, g);
  if (head) init_transformer_(*head, g);
}

Tensor ViT::forward_features(const Tensor& x, const Tensor& keep_index) {
  ScopedRange range((range_name() + " features").c_str());
  int64_t n = x.dim() == 4 ? x.shape()[0] : 0, l = cfg_.num_patches(), d = cfg_.embed_dim;
  Tensor t = patch_embed->forward(x);  // [N, L, D]
  t = add(t, slice(pos_embed, 1, 1, 1 + l));
  if (keep_index.defined()) t = gather_tokens(t, keep_index);
  Tensor cls = expand(add(cls_token, slice(pos_embed, 1, 0, 1)), {n, 1, d});
  t = concat({cls, t}, 1);
  t = blocks->forward(t);
  return norm->forward(t);
}

Tensor ViT::pool(const Tensor& tokens) const {
  BISSL_CHECK(tokens.dim() == 3 && tokens.shape()[1] >= 2, "ViT::pool: expected tokens [N, 1 + K, D] with K >= 1, found ",
              shape_str(tokens.shape()));
  if (cfg_.pool == ViTPool::Cls) return squeeze(slice(tokens, 1, 0, 1), 1);
  return mean(slice(tokens, 1, 1, tokens.shape()[1]), {1});
}

Tensor ViT::forward_impl(const Tensor& x) {
  Tensor f = pool(forward_features(x));
  return head ? head->forward(f) : f;
}

std::string ViT::extra_repr() const {
  return str("image_size=", cfg_.image_size, ", patch_size=", cfg_.patch_size, ", embed_dim=", cfg_.embed_dim,
             ", depth=", cfg_.depth, ", num_heads=", cfg_.num_heads, ", pool=", cfg_.pool == ViTPool::Cls ? "cls" : "mean");
}

std::shared_ptr<ViT> vit_tiny(Generator& g, int64_t image_size, int64_t patch_size) {
  return std::make_shared<ViT>(ViTConfig::tiny(image_size, patch_size), g);
}
std::shared_ptr<ViT> vit_small(Generator& g, int64_t image_size, int64_t patch_size) {
  return std::make_shared<ViT>(ViTConfig::small(image_size, patch_size), g);
}

std::vector<optim::ParamGroup> vit_layer_decay_groups(const ViT& vit, double layer_decay, double weight_decay,
                                                      const std::vector<Tensor>& extra) {
  BISSL_CHECK(layer_decay > 0 && layer_decay <= 1, "vit_layer_decay_groups: expected layer_decay in (0, 1], found ",
              layer_decay);
  const int64_t top = vit.config().depth + 1;
  // groups[2 * id + (decay ? 1 : 0)]
  std::vector<optim::ParamGroup> groups(size_t(2 * (top + 1)));
  for (int64_t id = 0; id <= top; ++id)
    for (int d = 0; d < 2; ++d) {
      auto& g = groups[size_t(2 * id + d)];
      g.lr_scale = std::pow(layer_decay, double(top - id));
      g.weight_decay = d ? weight_decay : 0.0;
    }
  auto layer_of = [&](const std::string& name) -> int64_t {
    if (name == "cls_token" || name == "pos_embed" || name.rfind("patch_embed.", 0) == 0) return 0;
    if (name.rfind("blocks.", 0) == 0) return std::stoll(name.substr(7, name.find('.', 7) - 7)) + 1;
    return top;
  };
  for (auto& [name, p] : vit.named_parameters()) {
    bool no_decay = p.dim() == 1 || name == "cls_token" || name == "pos_embed";
    groups[size_t(2 * layer_of(name) + (no_decay ? 0 : 1))].params.push_back(p);
  }
  for (auto& p : extra) groups[size_t(2 * top + (p.dim() == 1 ? 0 : 1))].params.push_back(p);
  std::vector<optim::ParamGroup> out;
  for (auto& g : groups)
    if (!g.params.empty()) out.push_back(std::move(g));
  return out;
}

}  // namespace bissl::models
