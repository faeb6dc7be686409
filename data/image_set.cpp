#include "data/image_set.h"

#include <cmath>

#include "engine/error.h"

namespace bissl::data {

void ImageSet::add_to(Digest& d) const {
  for (int64_t v : {n, h, w, c, num_classes, int64_t(labels.size()), int64_t(targets.size()),
                    int64_t(class_names.size())})
    d.add_value(v);
  d.add(pixels.data(), pixels.size());
  d.add(labels.data(), labels.size() * sizeof(int64_t));
  d.add(targets.data(), targets.size());
  for (auto& name : class_names) d.add_text(name);
}

std::string ImageSet::content_digest() const {
  Digest d;
  add_to(d);
  return d.text();
}

bool ImageSet::labelled() const {
  if (multi_label()) return true;
  for (int64_t l : labels)
    if (l == kNoLabel) return false;
  return true;
}

void ImageSet::validate() const {
  const std::string what = source.empty() ? std::string("image set") : source;
  BISSL_CHECK(n >= 0, what, ": expected a non-negative image count, found ", n);
  BISSL_CHECK(n == 0 || (h > 0 && w > 0 && (c == 1 || c == 3 || c == 4)), what,
              ": expected positive height and width and 1, 3 or 4 channels, found ", h, "x", w, "x", c);
  BISSL_CHECK(int64_t(pixels.size()) == n * image_bytes(), what, ": expected ", n * image_bytes(),
              " pixel bytes for ", n, " images of ", h, "x", w, "x", c, ", found ", pixels.size());
  BISSL_CHECK(int64_t(labels.size()) == n, what, ": expected ", n, " labels, found ", labels.size());
  BISSL_CHECK(class_names.empty() || int64_t(class_names.size()) == num_classes, what, ": expected ",
              num_classes, " class names, found ", class_names.size());
  for (int64_t i = 0; i < n; ++i)
    BISSL_CHECK(labels[i] == kNoLabel || (labels[i] >= 0 && labels[i] < num_classes), what, ": label ",
                labels[i], " of image ", i, " out of range [0, ", num_classes, ")");
  if (multi_label()) {
    BISSL_CHECK(num_classes > 0 && int64_t(targets.size()) == n * num_classes, what, ": expected ", n, " x ",
                num_classes, " multi-label targets, found ", targets.size());
    for (int64_t i = 0; i < n; ++i) {
      BISSL_CHECK(labels[i] == kNoLabel, what, ": image ", i, " of a multi-label set has the single label ", labels[i],
                  " (expected kNoLabel; its classes are its targets)");
      for (int64_t c = 0; c < num_classes; ++c)
        BISSL_CHECK(target_row(i)[c] <= kDifficult, what, ": target ", int(target_row(i)[c]), " of image ", i,
                    ", class ", c, " is not 0 (absent), 1 (present) or 2 (difficult)");
    }
  }
}

ImageSet subset(const ImageSet& set, const std::vector<int64_t>& indices) {
  ImageSet r;
  r.h = set.h;
  r.w = set.w;
  r.c = set.c;
  r.n = int64_t(indices.size());
  r.num_classes = set.num_classes;
  r.class_names = set.class_names;
  r.source = set.source;
  const int64_t b = set.image_bytes();
  r.pixels.resize(size_t(r.n * b));
  r.labels.resize(size_t(r.n));
  const int64_t nc = set.num_classes;
  if (set.multi_label()) r.targets.resize(size_t(r.n * nc));
  for (int64_t k = 0; k < r.n; ++k) {
    int64_t i = indices[k];
    BISSL_CHECK(i >= 0 && i < set.n, "subset: index ", i, " at position ", k, " out of range for ", set.n,
                " images");
    std::copy(set.image(i), set.image(i) + b, r.pixels.begin() + k * b);
    r.labels[k] = set.labels[i];
    if (set.multi_label()) std::copy(set.target_row(i), set.target_row(i) + nc, r.targets.begin() + k * nc);
  }
  return r;
}

ChannelStats channel_stats(const ImageSet& set, const std::vector<int64_t>& indices) {
  const int64_t c = set.c, per = set.h * set.w;
  std::vector<double> s(c, 0.0), s2(c, 0.0);
  int64_t count = 0;
  auto add = [&](int64_t i) {
    BISSL_CHECK(i >= 0 && i < set.n, "channel_stats: index ", i, " out of range for ", set.n, " images");
    const uint8_t* p = set.image(i);
    // Integer sums per image keep the totals exact.
    std::vector<uint64_t> a(c, 0), a2(c, 0);
    for (int64_t k = 0; k < per; ++k)
      for (int64_t ch = 0; ch < c; ++ch) {
        uint64_t v = p[k * c + ch];
        a[ch] += v;
        a2[ch] += v * v;
      }
    for (int64_t ch = 0; ch < c; ++ch) {
      s[ch] += double(a[ch]);
      s2[ch] += double(a2[ch]);
    }
    ++count;
  };
  if (indices.empty())
    for (int64_t i = 0; i < set.n; ++i) add(i);
  else
    for (int64_t i : indices) add(i);
  BISSL_CHECK(count > 0, "channel_stats: expected at least one image, found none");
  ChannelStats r;
  const double m = double(count) * double(per);
  for (int64_t ch = 0; ch < c; ++ch) {
    double mean = s[ch] / m, var = s2[ch] / m - mean * mean;
    r.mean.push_back(mean / 255.0);
    r.std.push_back(std::sqrt(std::max(var, 0.0)) / 255.0);
  }
  return r;
}

std::vector<int64_t> class_counts(const ImageSet& set) {
  std::vector<int64_t> r(size_t(std::max<int64_t>(set.num_classes, 0)), 0);
  if (set.multi_label()) {
    for (int64_t i = 0; i < set.n; ++i)
      for (int64_t c = 0; c < set.num_classes; ++c) r[size_t(c)] += set.target_row(i)[c] != kAbsent;
    return r;
  }
  for (int64_t l : set.labels)
    if (l >= 0 && l < set.num_classes) ++r[l];
  return r;
}

}  // namespace bissl::data
