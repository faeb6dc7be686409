// Splits: stratified train/val, k per class, class subsets, split files.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "data/splits.h"
#include "engine/error.h"
#include "tests/support.h"

using namespace bissl;
using namespace bissl::data;
namespace fs = std::filesystem;

namespace {

// 100 of class 0, 50 of class 1, 10 of class 2, interleaved.
std::vector<int64_t> make_labels() {
  std::vector<int64_t> l;
  for (int i = 0; i < 100; ++i) {
    l.push_back(0);
    if (i % 2 == 0) l.push_back(1);
    if (i % 10 == 0) l.push_back(2);
  }
  return l;
}

std::vector<int64_t> counts(const std::vector<int64_t>& labels, const std::vector<int64_t>& idx, int k) {
  std::vector<int64_t> c(size_t(k), 0);
  for (int64_t i : idx) ++c[size_t(labels[size_t(i)])];
  return c;
}

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& tag) {
    static int counter = 0;
    path = (fs::temp_directory_path() /
            ("bissl_test_splits_" + std::to_string(::getpid()) + "_" + tag + "_" + std::to_string(counter++)))
               .string();
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove(path, ec);
  }
};

using bissl::testing::expect_error;

}  // namespace

TEST_CASE("stratified split: class proportions, disjoint, complete, deterministic") {
  const auto labels = make_labels();
  Split s = stratified_split(labels, 3, 0.2, 7);
  CHECK(counts(labels, s.val, 3) == std::vector<int64_t>{20, 10, 2});
  CHECK(counts(labels, s.train, 3) == std::vector<int64_t>{80, 40, 8});
  CHECK(std::is_sorted(s.train.begin(), s.train.end()));
  CHECK(std::is_sorted(s.val.begin(), s.val.end()));
  std::set<int64_t> all(s.train.begin(), s.train.end());
  for (int64_t i : s.val) CHECK(all.insert(i).second);  // disjoint
  CHECK(all.size() == labels.size());                   // complete

  Split again = stratified_split(labels, 3, 0.2, 7);
  CHECK(again.train == s.train);
  CHECK(again.val == s.val);
  Split other = stratified_split(labels, 3, 0.2, 8);
  CHECK(other.val != s.val);

  Split c = stratified_split_count(labels, 3, 5, 7);
  CHECK(counts(labels, c.val, 3) == std::vector<int64_t>{5, 5, 5});
  expect_error([&] { stratified_split_count(labels, 3, 11, 7); }, {"class 2", "10 images"});
  expect_error([&] { stratified_split({0, 1, 5}, 3, 0.2, 7); }, {"label 5", "index 2"});
}

TEST_CASE("k per class: k of each class, from a candidate pool, deterministic") {
  const auto labels = make_labels();
  auto k = k_per_class(labels, 3, 4, 1);
  CHECK(counts(labels, k, 3) == std::vector<int64_t>{4, 4, 4});
  CHECK(k == k_per_class(labels, 3, 4, 1));
  CHECK(k != k_per_class(labels, 3, 4, 2));
  Split s = stratified_split(labels, 3, 0.2, 3);
  auto kt = k_per_class(labels, 3, 2, 1, s.train);
  for (int64_t i : kt) CHECK(std::binary_search(s.train.begin(), s.train.end(), i));
  expect_error([&] { k_per_class(labels, 3, 11, 1); }, {"class 2", "10 images", "at least 11"});
}

TEST_CASE("class subset: labels remapped in the order given, names follow") {
  ImageSet set;
  set.n = 8;
  set.h = set.w = 2;
  set.c = 1;
  set.num_classes = 8;
  for (int i = 0; i < 8; ++i) {
    set.labels.push_back(7 - i);
    set.class_names.push_back("c" + std::to_string(i));
    for (int p = 0; p < 4; ++p) set.pixels.push_back(uint8_t(i));
  }
  ImageSet r = select_classes(set, {0, 2, 4, 6});
  CHECK(r.n == 4);
  CHECK(r.num_classes == 4);
  CHECK(r.class_names == std::vector<std::string>{"c0", "c2", "c4", "c6"});
  // Images keep their order: image 1 has label 6 -> 3, image 3 label 4 -> 2, ...
  CHECK(r.labels == std::vector<int64_t>{3, 2, 1, 0});
  CHECK(r.image(0)[0] == 1);
  CHECK(r.image(3)[3] == 7);
  CHECK_NOTHROW(r.validate());
  expect_error([&] { select_classes(set, {0, 0}); }, {"class 0", "twice"});
  expect_error([&] { select_classes(set, {9}); }, {"class 9", "out of range"});
}

TEST_CASE("split files: round trip, header comments, headerless files, and errors") {
  TempFile f("roundtrip");
  const std::vector<int64_t> idx = {5, 0, 17, 3};
  save_indices(f.path, idx, "fashion-mnist val\nseed 7");
  {
    std::ifstream in(f.path);
    std::string first;
    std::getline(in, first);
    CHECK(first.rfind("# ", 0) == 0);
  }
  CHECK(load_indices(f.path) == idx);
  CHECK(load_indices(f.path, 18) == idx);

  auto write = [&](const std::string& text) {
    std::ofstream o(f.path);
    o << text;
  };
  write("31042\n35879\r\n\n13591\n");  // the reference's format: no header
  CHECK(load_indices(f.path) == std::vector<int64_t>{31042, 35879, 13591});

  write("# h\n1\n2x\n");
  expect_error([&] { load_indices(f.path); }, {f.path + ":3", "'2x'"});
  write("1\n2\n1\n");
  expect_error([&] { load_indices(f.path); }, {f.path + ":3", "repeats line 1"});
  write("1\n-2\n");
  expect_error([&] { load_indices(f.path); }, {":2", "non-negative"});
  write("1\n20\n");
  expect_error([&] { load_indices(f.path, 20); }, {":2", "index 20", "20 images"});
  write("# count: 3\n1\n2\n");
  expect_error([&] { load_indices(f.path); }, {"header says 3", "found 2"});
}
