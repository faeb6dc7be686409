#include "data/splits.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <unordered_map>

#include "data/augment.h"
#include "engine/error.h"

namespace bissl::data {

namespace {

// Stream ids for SampleRng, kept apart from the augmentation views.
constexpr uint32_t kSplitStream = 0x5b11u;

std::vector<std::vector<int64_t>> by_class(const std::vector<int64_t>& labels, int64_t num_classes,
                                           const std::vector<int64_t>& from, const char* what) {
  BISSL_CHECK(num_classes > 0, what, ": expected a positive number of classes, found ", num_classes);
  std::vector<std::vector<int64_t>> r(static_cast<size_t>(num_classes));
  auto add = [&](int64_t i) {
    BISSL_CHECK(i >= 0 && i < int64_t(labels.size()), what, ": index ", i, " out of range for ", labels.size(),
                " labels");
    const int64_t l = labels[size_t(i)];
    BISSL_CHECK(l >= 0 && l < num_classes, what, ": label ", l, " of index ", i, " out of range [0, ", num_classes,
                ")");
    r[size_t(l)].push_back(i);
  };
  if (from.empty())
    for (int64_t i = 0; i < int64_t(labels.size()); ++i) add(i);
  else
    for (int64_t i : from) add(i);
  return r;
}

// Fisher-Yates with a Philox stream per (seed, class).
void shuffle(std::vector<int64_t>& v, uint64_t seed, int64_t cls) {
  SampleRng rng(seed, 0, uint64_t(cls), kSplitStream);
  for (int64_t i = int64_t(v.size()) - 1; i > 0; --i) std::swap(v[size_t(i)], v[size_t(rng.randint(0, i))]);
}

Split split_with(const std::vector<int64_t>& labels, int64_t num_classes, uint64_t seed, const char* what,
                 const std::function<int64_t(int64_t)>& val_count) {
  auto cls = by_class(labels, num_classes, {}, what);
  Split s;
  for (int64_t c = 0; c < num_classes; ++c) {
    auto& v = cls[size_t(c)];
    const int64_t k = val_count(int64_t(v.size()));
    BISSL_CHECK(k <= int64_t(v.size()), what, ": class ", c, " has ", v.size(), " images, fewer than the ", k,
                " to hold out");
    shuffle(v, seed, c);
    s.val.insert(s.val.end(), v.begin(), v.begin() + k);
    s.train.insert(s.train.end(), v.begin() + k, v.end());
  }
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.val.begin(), s.val.end());
  return s;
}

}  // namespace

Split stratified_split(const std::vector<int64_t>& labels, int64_t num_classes, double val_fraction, uint64_t seed) {
  BISSL_CHECK(val_fraction >= 0.0 && val_fraction <= 1.0, "stratified_split: expected a fraction in [0, 1], found ",
              val_fraction);
  return split_with(labels, num_classes, seed, "stratified_split",
                    [&](int64_t n) { return int64_t(std::nearbyint(val_fraction * double(n))); });
}

Split stratified_split_count(const std::vector<int64_t>& labels, int64_t num_classes, int64_t val_per_class,
                             uint64_t seed) {
  BISSL_CHECK(val_per_class >= 0, "stratified_split_count: expected a non-negative count, found ", val_per_class);
  return split_with(labels, num_classes, seed, "stratified_split_count", [&](int64_t) { return val_per_class; });
}

std::vector<int64_t> k_per_class(const std::vector<int64_t>& labels, int64_t num_classes, int64_t k, uint64_t seed,
                                 const std::vector<int64_t>& from) {
  BISSL_CHECK(k >= 0, "k_per_class: expected a non-negative k, found ", k);
  auto cls = by_class(labels, num_classes, from, "k_per_class");
  std::vector<int64_t> r;
  for (int64_t c = 0; c < num_classes; ++c) {
    auto& v = cls[size_t(c)];
    BISSL_CHECK(int64_t(v.size()) >= k, "k_per_class: class ", c, " has ", v.size(), " images, expected at least ", k);
    shuffle(v, seed ^ 0x6b70636c61737321ull, c);
    r.insert(r.end(), v.begin(), v.begin() + k);
  }
  std::sort(r.begin(), r.end());
  return r;
}

std::vector<int64_t> indices_of_classes(const std::vector<int64_t>& labels, const std::vector<int64_t>& classes) {
  std::vector<int64_t> r;
  for (int64_t i = 0; i < int64_t(labels.size()); ++i)
    if (std::find(classes.begin(), classes.end(), labels[size_t(i)]) != classes.end()) r.push_back(i);
  return r;
}

ImageSet select_classes(const ImageSet& set, const std::vector<int64_t>& classes) {
  BISSL_CHECK(!classes.empty(), "select_classes: expected at least one class, found none");
  BISSL_CHECK(!set.multi_label(), "select_classes: expected a single-label set, found the multi-label '", set.source,
              "'");
  std::vector<int64_t> map(size_t(set.num_classes), -1);
  for (size_t k = 0; k < classes.size(); ++k) {
    const int64_t c = classes[k];
    BISSL_CHECK(c >= 0 && c < set.num_classes, "select_classes: class ", c, " out of range for ", set.num_classes,
                " classes");
    BISSL_CHECK(map[size_t(c)] < 0, "select_classes: class ", c, " listed twice");
    map[size_t(c)] = int64_t(k);
  }
  ImageSet r = subset(set, indices_of_classes(set.labels, classes));
  for (auto& l : r.labels) l = map[size_t(l)];
  r.num_classes = int64_t(classes.size());
  r.class_names.clear();
  if (!set.class_names.empty())
    for (int64_t c : classes) r.class_names.push_back(set.class_names[size_t(c)]);
  return r;
}

void save_indices(const std::string& path, const std::vector<int64_t>& indices, const std::string& comment) {
  // Written to a temporary name and renamed, so a reader never sees half a file.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    BISSL_CHECK(f, tmp, ": cannot open for writing (", std::strerror(errno), ")");
    f << "# bissl index list: one dataset index per line\n";
    std::string line;
    for (char ch : comment) {
      if (ch == '\n') {
        f << "# " << line << "\n";
        line.clear();
      } else {
        line += ch;
      }
    }
    if (!line.empty()) f << "# " << line << "\n";
    f << "# count: " << indices.size() << "\n";
    for (int64_t i : indices) f << i << "\n";
    f.flush();
    BISSL_CHECK(f, tmp, ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  BISSL_CHECK(!ec, path, ": cannot rename from ", tmp, " (", ec.message(), ")");
}

std::vector<int64_t> load_indices(const std::string& path, int64_t max_index) {
  std::ifstream f(path);
  BISSL_CHECK(f, path, ": cannot open for reading (", std::strerror(errno), ")");
  std::vector<int64_t> r;
  std::unordered_map<int64_t, int64_t> seen;  // index -> line
  std::string line;
  int64_t lineno = 0;
  int64_t declared = -1;
  while (std::getline(f, line)) {
    ++lineno;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos) continue;
    if (line[b] == '#') {
      const std::string key = "# count:";
      if (line.compare(b, key.size(), key) == 0) declared = std::atoll(line.c_str() + b + key.size());
      continue;
    }
    const std::string tok = line.substr(b);
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(tok.c_str(), &end, 10);
    BISSL_CHECK(end && *end == '\0' && errno == 0 && !tok.empty(), path, ":", lineno,
                ": expected one integer index, found '", tok, "'");
    BISSL_CHECK(v >= 0, path, ":", lineno, ": expected a non-negative index, found ", v);
    BISSL_CHECK(max_index < 0 || v < max_index, path, ":", lineno, ": index ", v, " out of range for ", max_index,
                " images");
    auto it = seen.find(v);
    BISSL_CHECK(it == seen.end(), path, ":", lineno, ": index ", v, " repeats line ",
                it == seen.end() ? 0 : it->second);
    seen[v] = lineno;
    r.push_back(v);
  }
  BISSL_CHECK(declared < 0 || declared == int64_t(r.size()), path, ": header says ", declared, " indices, found ",
              r.size(), " (truncated file?)");
  return r;
}

}  // namespace bissl::data
