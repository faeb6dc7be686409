#pragma once
// PyTorch interop for model weights: state dicts in PyTorch's layout.
//
// Our conv weights are OHWI (channels-last); PyTorch's are OIHW. Every other
// tensor (linear weights [out, in], BN parameters and buffers, tokens,
// position embeddings) has the same layout in both. The names are already
// PyTorch's (torchvision for ResNet, timm for ViT), so converting a state
// dict is: permute every 4-D tensor, keep everything else.
//
// A torchvision `resnet18().state_dict()` written with
// `safetensors.torch.save_file(sd, path)` loads with load_torch_state
// unchanged, and what save_torch_state writes loads into torchvision with
// `model.load_state_dict(safetensors.torch.load_file(path))`.
#include <map>
#include <string>

#include "engine/io/safetensors.h"
#include "engine/nn/module.h"

namespace bissl::models {

// OHWI [O, kh, kw, I] -> OIHW [O, I, kh, kw] and back (copies; no history).
Tensor ohwi_to_oihw(const Tensor& w);
Tensor oihw_to_ohwi(const Tensor& w);

// The module's state_dict in PyTorch layout (4-D tensors permuted to OIHW),
// in state_dict order. Tensors are copies on the CPU.
io::NamedTensors torch_state_dict(const nn::Module& m);

// Loads a PyTorch-layout state dict: 4-D tensors are permuted OIHW -> OHWI
// (after checking that the file's shape is the OIHW form of the model's),
// floating tensors are cast to the model's dtype (an f32 torch file loads
// into an f64 model for gradient checks), then Module::load_state_dict runs
// with `strict`. Errors name the key and both shapes.
nn::LoadResult load_torch_state_dict(nn::Module& m, const io::NamedTensors& sd, bool strict = true);

// The same through a safetensors file (metadata {"format": "pt"}, as
// safetensors.torch writes).
// `meta`: more safetensors metadata entries (beside format = pt).
void save_torch_state(const nn::Module& m, const std::string& path, const std::map<std::string, std::string>& meta = {});
nn::LoadResult load_torch_state(nn::Module& m, const std::string& path, bool strict = true);

}  // namespace bissl::models
