#pragma once
// ImageSet: a whole dataset in memory as uint8 HWC images plus int64 labels.
// Every loader in data/ returns one; splits, subsets and the loader take one.
// Small enough for every dataset this project trains on (STL-10's 100k
// unlabelled images are 2.8 GB; load a prefix with `limit` if that is too much).
#include <cstdint>
#include <string>
#include <vector>

#include "engine/digest.h"

namespace bissl::data {

// Label of an image that has none (STL-10 unlabelled split, and every image
// of a multi-label set, whose classes are in `targets`).
constexpr int64_t kNoLabel = -1;

// Values of ImageSet::targets (multi-label sets).
constexpr uint8_t kAbsent = 0;
constexpr uint8_t kPresent = 1;
// Present, but every instance is marked "difficult" in the annotation (VOC).
// Trained on as present (the reference's targets); evaluation may ignore it.
constexpr uint8_t kDifficult = 2;

struct ImageSet {
  std::vector<uint8_t> pixels;  // n * h * w * c bytes, image after image, each HWC
  int64_t n = 0, h = 0, w = 0, c = 0;
  std::vector<int64_t> labels;  // n entries in [0, num_classes) or kNoLabel
  // Multi-label sets only: n rows of num_classes bytes (kAbsent, kPresent,
  // kDifficult); empty for single-label sets. Their labels are all kNoLabel.
  std::vector<uint8_t> targets;
  int64_t num_classes = 0;
  std::vector<std::string> class_names;  // num_classes entries (may be empty)
  std::string source;                    // where it came from, for messages

  int64_t image_bytes() const { return h * w * c; }
  const uint8_t* image(int64_t i) const { return pixels.data() + i * image_bytes(); }
  uint8_t* image(int64_t i) { return pixels.data() + i * image_bytes(); }
  bool multi_label() const { return !targets.empty(); }
  const uint8_t* target_row(int64_t i) const { return targets.data() + i * num_classes; }
  // true when every image has a class: a multi-label set, or no label is kNoLabel
  bool labelled() const;

  // Throws bissl::Error when sizes, labels or class names are inconsistent.
  void validate() const;
  // Everything a stage reads of the set (sizes, pixels, labels, targets,
  // class names; not `source`) into a content digest (engine/digest.h):
  // equal digests, equal sets.
  void add_to(Digest& d) const;
  std::string content_digest() const;
};

// Images (and labels) at `indices`, in that order; repeats allowed.
ImageSet subset(const ImageSet& set, const std::vector<int64_t>& indices);

// Per-channel mean and standard deviation of the pixels scaled to [0, 1]
// (over `indices`, or all images when empty) — normalisation constants.
struct ChannelStats {
  std::vector<double> mean, std;
};
ChannelStats channel_stats(const ImageSet& set, const std::vector<int64_t>& indices = {});

// Number of images per class (kNoLabel images are not counted; in a
// multi-label set, the images where the class is present or difficult).
std::vector<int64_t> class_counts(const ImageSet& set);

}  // namespace bissl::data
