#pragma once
// ImageSet: a dataset as uint8 HWC images of one size plus int64 labels.
// Every loader in data/ returns one; splits, subsets and the loader take one.
// Its images are in memory (`pixels`), or, for a set larger than memory,
// decoded on demand by an ImageSource (`lazy`: an image folder or split
// file read with DecodeOptions::lazy; subsets and concatenations of it stay
// lazy). read(i, dst) serves both.
#include <cstdint>
#include <memory>
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

// Images of one size decoded on demand. read() is called by the loader's
// worker threads at once: it must be thread-safe, and deterministic (the
// same bytes for the same i, every time).
class ImageSource {
 public:
  virtual ~ImageSource() = default;
  // Image i (h * w * c bytes, HWC) into dst. Throws bissl::Error naming the file.
  virtual void read(int64_t i, uint8_t* dst) const = 0;
  // What identifies its images without decoding them (files with their sizes
  // and modification times, decode settings) into a digest.
  virtual void add_to(Digest& d) const = 0;
  // Bytes it holds now (decoded-image cache, file list), for reports and tests.
  virtual int64_t resident_bytes() const = 0;
};

struct ImageSet {
  std::vector<uint8_t> pixels;  // n * h * w * c bytes, image after image, each HWC (empty when lazy)
  // Non-null: a lazy set; its n images come from here, `pixels` is empty.
  std::shared_ptr<const ImageSource> lazy;
  int64_t n = 0, h = 0, w = 0, c = 0;
  std::vector<int64_t> labels;  // n entries in [0, num_classes) or kNoLabel
  // Multi-label sets only: n rows of num_classes bytes (kAbsent, kPresent,
  // kDifficult); empty for single-label sets. Their labels are all kNoLabel.
  std::vector<uint8_t> targets;
  int64_t num_classes = 0;
  std::vector<std::string> class_names;  // num_classes entries (may be empty)
  std::string source;                    // where it came from, for messages

  int64_t image_bytes() const { return h * w * c; }
  bool is_lazy() const { return lazy != nullptr; }
  // In-memory sets only (a lazy set has no pixels to point at): use read().
  const uint8_t* image(int64_t i) const { return pixels.data() + i * image_bytes(); }
  uint8_t* image(int64_t i) { return pixels.data() + i * image_bytes(); }
  // Image i into dst (image_bytes() bytes), in memory or lazy.
  void read(int64_t i, uint8_t* dst) const;
  // Bytes of images held now: all pixels, or a lazy source's cache and list.
  int64_t resident_bytes() const;
  bool multi_label() const { return !targets.empty(); }
  const uint8_t* target_row(int64_t i) const { return targets.data() + i * num_classes; }
  // true when every image has a class: a multi-label set, or no label is kNoLabel
  bool labelled() const;

  // Throws bissl::Error when sizes, labels or class names are inconsistent.
  void validate() const;
  // Everything a stage reads of the set (sizes, pixels, labels, targets,
  // class names; not `source`) into a content digest (engine/digest.h):
  // equal digests, equal sets. A lazy set digests its source's identity
  // (files, their sizes and times, decode settings) instead of its pixels,
  // so it differs from the digest of the same images loaded into memory.
  void add_to(Digest& d) const;
  std::string content_digest() const;
};

// Images (and labels) at `indices`, in that order; repeats allowed. A lazy
// set's subset is lazy (it reads through the parent's source).
ImageSet subset(const ImageSet& set, const std::vector<int64_t>& indices);

// The images of `a` then those of `b` (same size and channels); lazy when
// either is. Labels, targets and classes are left to the caller.
ImageSet concat_images(std::shared_ptr<const ImageSet> a, std::shared_ptr<const ImageSet> b);

// Per-channel mean and standard deviation of the pixels scaled to [0, 1]
// (over `indices`, or all images when empty) — normalisation constants.
// Exact integer sums per image; the images are read in parallel on
// `threads` threads (0 = hardware concurrency) with the same result.
struct ChannelStats {
  std::vector<double> mean, std;
};
ChannelStats channel_stats(const ImageSet& set, const std::vector<int64_t>& indices = {}, int threads = 1);
// At most `count` indices of n, evenly spaced (all when count is 0 or >= n):
// i * n / count for i < count.
std::vector<int64_t> evenly_spaced(int64_t n, int64_t count);

// Number of images per class (kNoLabel images are not counted; in a
// multi-label set, the images where the class is present or difficult).
std::vector<int64_t> class_counts(const ImageSet& set);

}  // namespace bissl::data
