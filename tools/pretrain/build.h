#pragma once
// What a pretraining config describes beyond its models (models/factory.h,
// ssl/factory.h): the unlabelled training set and the device.
#include <map>
#include <memory>
#include <string>

#include "data/augment.h"
#include "data/image_set.h"
#include "engine/dtype.h"
#include "tools/pretrain/config.h"

namespace bissl::pretrain {

// cuda when asked for, or with "auto" when a GPU exists; cpu otherwise.
Device device_of(const std::string& device);

// The config's training images (labels kept when the set has them).
std::shared_ptr<const data::ImageSet> load_data(const Config& c);

// The normalisation [data] normalize names for the pretext images `train`:
// default: empty (data::default_mean / default_std); imagenet: its constants;
// pretext: the channel statistics of stats_images evenly spaced images of
// `train` as loaded (before augmentation).
data::Normalization compute_normalization(const Config& c, const data::ImageSet& train);
// How a backbone file carries it (metadata "normalize_mean", "normalize_std":
// JSON arrays; none for an empty one), and reads it back (empty when absent).
std::map<std::string, std::string> normalization_metadata(const data::Normalization& n);
data::Normalization normalization_in_file(const std::string& safetensors_path);
// The normalisation of a run that starts from `backbone` (empty: none) on
// images of `channels` channels: default / imagenet: the constants; pretext:
// the backbone's (an error when it has none). A backbone carrying other
// constants than the config names is an error that says both.
data::Normalization normalization_for(const Config& c, const std::string& backbone, int64_t channels);
// "mean [0.2860], std [0.3530]" (default: "default (...)").
std::string describe_normalization(const data::Normalization& n, int64_t channels);

// The pretext views of a config (two SSL views, one for MAE), normalised by
// c.norm_mean / norm_std: what pretraining and BiSSL's lower level augment with.
std::vector<data::ViewConfig> pretext_views(const Config& c, int64_t channels);

// BYOL's target network is seeded from the config's train.seed (+1).
inline uint64_t target_seed(const Config& c) { return c.seed + 1; }

}  // namespace bissl::pretrain
