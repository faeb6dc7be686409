#include "data/image_set.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <thread>

#include "engine/error.h"

namespace bissl::data {

namespace {

// Image k of a lazy subset is image indices[k] of its parent.
class SubsetSource final : public ImageSource {
 public:
  SubsetSource(std::shared_ptr<const ImageSource> parent, std::vector<int64_t> indices)
      : parent_(std::move(parent)), indices_(std::move(indices)) {}
  void read(int64_t i, uint8_t* dst) const override { parent_->read(indices_[size_t(i)], dst); }
  void add_to(Digest& d) const override {
    d.add_text("subset");
    parent_->add_to(d);
    d.add_value(int64_t(indices_.size()));
    d.add(indices_.data(), indices_.size() * sizeof(int64_t));
  }
  int64_t resident_bytes() const override {
    return parent_->resident_bytes() + int64_t(indices_.size() * sizeof(int64_t));
  }

 private:
  std::shared_ptr<const ImageSource> parent_;
  std::vector<int64_t> indices_;
};

// The images of a, then those of b.
class ConcatSource final : public ImageSource {
 public:
  ConcatSource(std::shared_ptr<const ImageSet> a, std::shared_ptr<const ImageSet> b)
      : a_(std::move(a)), b_(std::move(b)) {}
  void read(int64_t i, uint8_t* dst) const override { i < a_->n ? a_->read(i, dst) : b_->read(i - a_->n, dst); }
  void add_to(Digest& d) const override {
    d.add_text("concat");
    a_->add_to(d);
    b_->add_to(d);
  }
  int64_t resident_bytes() const override { return a_->resident_bytes() + b_->resident_bytes(); }

 private:
  std::shared_ptr<const ImageSet> a_, b_;
};

}  // namespace

void ImageSet::read(int64_t i, uint8_t* dst) const {
  BISSL_CHECK(i >= 0 && i < n, source.empty() ? "image set" : source, ": image ", i, " out of range for ", n,
              " images");
  if (lazy) {
    lazy->read(i, dst);
    return;
  }
  std::memcpy(dst, image(i), size_t(image_bytes()));
}

int64_t ImageSet::resident_bytes() const { return lazy ? lazy->resident_bytes() : int64_t(pixels.size()); }

void ImageSet::add_to(Digest& d) const {
  for (int64_t v : {n, h, w, c, num_classes, int64_t(labels.size()), int64_t(targets.size()),
                    int64_t(class_names.size())})
    d.add_value(v);
  if (lazy) {
    d.add_text("lazy");
    lazy->add_to(d);
  } else {
    d.add(pixels.data(), pixels.size());
  }
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
  BISSL_CHECK(lazy ? pixels.empty() : int64_t(pixels.size()) == n * image_bytes(), what, ": expected ",
              lazy ? 0 : n * image_bytes(), " pixel bytes for ", n, lazy ? " lazy" : "", " images of ", h, "x", w,
              "x", c, ", found ", pixels.size());
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
  if (!set.lazy) r.pixels.resize(size_t(r.n * b));
  r.labels.resize(size_t(r.n));
  const int64_t nc = set.num_classes;
  if (set.multi_label()) r.targets.resize(size_t(r.n * nc));
  for (int64_t k = 0; k < r.n; ++k) {
    int64_t i = indices[k];
    BISSL_CHECK(i >= 0 && i < set.n, "subset: index ", i, " at position ", k, " out of range for ", set.n,
                " images");
    if (!set.lazy) std::copy(set.image(i), set.image(i) + b, r.pixels.begin() + k * b);
    r.labels[k] = set.labels[i];
    if (set.multi_label()) std::copy(set.target_row(i), set.target_row(i) + nc, r.targets.begin() + k * nc);
  }
  if (set.lazy) r.lazy = std::make_shared<const SubsetSource>(set.lazy, indices);
  return r;
}

ImageSet concat_images(std::shared_ptr<const ImageSet> a, std::shared_ptr<const ImageSet> b) {
  BISSL_CHECK(a->h == b->h && a->w == b->w && a->c == b->c, "concat: images of ", a->h, "x", a->w, "x", a->c,
              " and ", b->h, "x", b->w, "x", b->c, " differ in size or channels");
  ImageSet r;
  r.n = a->n + b->n;
  r.h = a->h, r.w = a->w, r.c = a->c;
  r.source = a->source + " + " + b->source;
  if (a->lazy || b->lazy) {
    r.lazy = std::make_shared<const ConcatSource>(a, b);
  } else {
    r.pixels = a->pixels;
    r.pixels.insert(r.pixels.end(), b->pixels.begin(), b->pixels.end());
  }
  return r;
}

std::vector<int64_t> evenly_spaced(int64_t n, int64_t count) {
  if (count <= 0 || count >= n) count = n;
  std::vector<int64_t> r(size_t(std::max<int64_t>(count, 0)));
  for (int64_t i = 0; i < count; ++i) r[size_t(i)] = int64_t((__int128)i * n / count);
  return r;
}

ChannelStats channel_stats(const ImageSet& set, const std::vector<int64_t>& indices, int threads) {
  const int64_t c = set.c, per = set.h * set.w;
  std::vector<int64_t> all;
  const std::vector<int64_t>* idx = &indices;
  if (indices.empty()) {
    all = evenly_spaced(set.n, 0);
    idx = &all;
  }
  const int64_t m = int64_t(idx->size());
  BISSL_CHECK(m > 0, "channel_stats: expected at least one image, found none");
  for (int64_t i : *idx)
    BISSL_CHECK(i >= 0 && i < set.n, "channel_stats: index ", i, " out of range for ", set.n, " images");
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<int64_t>(threads, m));
  // Integer sums: exact, so the result does not depend on the thread count
  // (255² x 2^32 pixels still fit in 64 bits).
  std::vector<std::vector<uint64_t>> sums(size_t(threads), std::vector<uint64_t>(size_t(2 * c), 0));
  std::vector<std::string> errors(static_cast<size_t>(threads));
  std::atomic<int64_t> next{0};
  auto work = [&](int t) {
    std::vector<uint8_t> buf(size_t(set.image_bytes()));
    std::vector<uint64_t>& a = sums[size_t(t)];
    try {
      for (int64_t k; (k = next.fetch_add(1)) < m;) {
        const uint8_t* p = buf.data();
        if (set.lazy) set.read((*idx)[size_t(k)], buf.data());
        else p = set.image((*idx)[size_t(k)]);
        for (int64_t q = 0; q < per; ++q)
          for (int64_t ch = 0; ch < c; ++ch) {
            uint64_t v = p[q * c + ch];
            a[size_t(ch)] += v;
            a[size_t(c + ch)] += v * v;
          }
      }
    } catch (const std::exception& e) {
      errors[size_t(t)] = e.what();
      next = m;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (!e.empty()) throw Error(e);
  ChannelStats r;
  const double count = double(m) * double(per);
  for (int64_t ch = 0; ch < c; ++ch) {
    uint64_t s1 = 0, s2 = 0;
    for (auto& a : sums) s1 += a[size_t(ch)], s2 += a[size_t(c + ch)];
    double mean = double(s1) / count, var = double(s2) / count - mean * mean;
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
