#pragma once
// Building what a pretraining config describes: the unlabelled training set,
// the backbone and the pretext objective (with its heads). Shared by
// bissl-pretrain and the later stages, which rebuild the same backbone and
// pretext head from the pretraining config and load the saved weights.
#include <map>
#include <memory>
#include <string>

#include "data/image_set.h"
#include "engine/io/safetensors.h"
#include "engine/nn/module.h"
#include "engine/random.h"
#include "ssl/objective.h"
#include "tools/pretrain/config.h"

namespace bissl::pretrain {

// cuda when asked for, or with "auto" when a GPU exists; cpu otherwise.
Device device_of(const std::string& device);

// The config's training images (labels kept when the set has them).
std::shared_ptr<const data::ImageSet> load_data(const Config& c);

// The backbone (random init from `g`) on the CPU; feature_dim receives the
// size of its pooled output.
std::shared_ptr<nn::Layer> make_backbone(const Config& c, int64_t channels, Generator& g, int64_t& feature_dim);

// The pretext objective on the CPU, its heads drawn from `g`. BYOL's target
// network starts as a copy of `backbone`.
std::shared_ptr<ssl::Objective> make_objective(const Config& c, const nn::Layer& backbone, int64_t channels,
                                               int64_t feature_dim, Generator& g);

// A backbone's weights: ResNets in PyTorch's layout (loads into torchvision),
// ViTs under their own (timm) names.
void save_backbone(const nn::Layer& backbone, const std::string& path);
// Any module's state (parameters and persistent buffers, its own names) as
// safetensors on the CPU, and back: load_module's errors name the file and `what`.
void save_module(const nn::Module& m, const std::string& path, const std::map<std::string, std::string>& meta = {});
void load_module(nn::Module& m, const std::string& path, const std::string& what);

// Checkpoints hold several state dicts in one file under name prefixes
// ("backbone.", "optim.", ...): `prefixed` makes the entries (copied to the
// CPU), `with_prefix` takes one part back out with the prefix removed.
io::NamedTensors prefixed(const std::string& prefix, const nn::StateDict& sd);
nn::StateDict with_prefix(const io::SafetensorsFile& f, const std::string& prefix);

// Loads either file written by save_backbone (or torchvision's ResNet state
// saved as safetensors); unknown or missing keys are errors naming them.
void load_backbone(nn::Layer& backbone, const std::string& path);

}  // namespace bissl::pretrain
