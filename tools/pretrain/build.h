#pragma once
// What a pretraining config describes beyond its models (models/factory.h,
// ssl/factory.h): the unlabelled training set and the device.
#include <memory>
#include <string>

#include "data/image_set.h"
#include "engine/dtype.h"
#include "tools/pretrain/config.h"

namespace bissl::pretrain {

// cuda when asked for, or with "auto" when a GPU exists; cpu otherwise.
Device device_of(const std::string& device);

// The config's training images (labels kept when the set has them).
std::shared_ptr<const data::ImageSet> load_data(const Config& c);

// BYOL's target network is seeded from the config's train.seed (+1).
inline uint64_t target_seed(const Config& c) { return c.seed + 1; }

}  // namespace bissl::pretrain
