// CIFAR-10/100 and STL-10 in their binary distributions.
#include <cerrno>
#include <cstring>
#include <fstream>

#include "data/datasets.h"
#include "data/file_io.h"
#include "engine/error.h"

namespace bissl::data {

namespace {

constexpr int64_t kCifarSide = 32, kCifarPlane = 32 * 32, kCifarImage = 3 * 32 * 32;
constexpr int64_t kStlSide = 96, kStlPlane = 96 * 96, kStlImage = 3 * 96 * 96;

// `dir` when it holds `probe`, else `dir/sub` when that does.
std::string resolve_dir(const std::string& dir, const std::string& sub, const std::string& probe, const char* what) {
  if (file_exists(dir + "/" + probe)) return dir;
  if (file_exists(dir + "/" + sub + "/" + probe)) return dir + "/" + sub;
  throw Error(str(what, ": expected ", probe, " in ", dir, " or ", dir, "/", sub, ", found neither"));
}

// Non-empty lines of a text file (class-name lists).
std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path);
  BISSL_CHECK(f, path, ": cannot open for reading (", std::strerror(errno), ")");
  std::vector<std::string> r;
  std::string line;
  while (std::getline(f, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) r.push_back(line);
  }
  return r;
}

std::vector<std::string> names_or_numbers(const std::string& path, int64_t count) {
  if (!file_exists(path)) {
    std::vector<std::string> r;
    for (int64_t i = 0; i < count; ++i) r.push_back(std::to_string(i));
    return r;
  }
  auto r = read_lines(path);
  BISSL_CHECK(int64_t(r.size()) == count, path, ": expected ", count, " class names, found ", r.size());
  return r;
}

// Appends the records of one CIFAR file: `label_bytes` label bytes (the one
// at `label_at` is used, < num_classes) then R, G, B planes of 32x32.
void append_cifar_file(ImageSet& s, const std::string& path, int64_t label_bytes, int64_t label_at,
                       int64_t num_classes) {
  const int64_t rec = label_bytes + kCifarImage;
  std::vector<uint8_t> b = read_file_bytes(path);
  const int64_t size = int64_t(b.size());
  BISSL_CHECK(size > 0, path, ": expected CIFAR records of ", rec, " bytes, found an empty file");
  BISSL_CHECK(size % rec == 0, path, ": expected a whole number of ", rec, "-byte CIFAR records, found ", size,
              " bytes (", size / rec, " records and ", size % rec, " bytes over: truncated or not this format)");
  const int64_t n = size / rec;
  const int64_t base = s.n;
  s.pixels.resize(size_t((base + n) * kCifarImage));
  s.labels.resize(size_t(base + n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* r = b.data() + i * rec;
    const int64_t l = r[label_at];
    BISSL_CHECK(l < num_classes, path, ": label ", l, " of record ", i, " out of range: expected 0..",
                num_classes - 1);
    s.labels[size_t(base + i)] = l;
    const uint8_t* planes = r + label_bytes;
    uint8_t* dst = s.pixels.data() + (base + i) * kCifarImage;
    for (int64_t p = 0; p < kCifarPlane; ++p)
      for (int64_t ch = 0; ch < 3; ++ch) dst[p * 3 + ch] = planes[ch * kCifarPlane + p];
  }
  s.n += n;
}

ImageSet cifar_empty() {
  ImageSet s;
  s.h = s.w = kCifarSide;
  s.c = 3;
  return s;
}

}  // namespace

ImageSet load_cifar10(const std::string& dir_in, bool train) {
  const std::string first = train ? "data_batch_1.bin" : "test_batch.bin";
  const std::string dir = resolve_dir(dir_in, "cifar-10-batches-bin", first, "cifar10");
  ImageSet s = cifar_empty();
  s.num_classes = 10;
  s.class_names = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  if (train) {
    for (int k = 1; k <= 5; ++k) append_cifar_file(s, dir + "/data_batch_" + std::to_string(k) + ".bin", 1, 0, 10);
  } else {
    append_cifar_file(s, dir + "/test_batch.bin", 1, 0, 10);
  }
  s.source = str("cifar10 ", train ? "train" : "test", " (", dir, ")");
  return s;
}

ImageSet load_cifar100(const std::string& dir_in, bool train, bool coarse) {
  const std::string file = train ? "train.bin" : "test.bin";
  const std::string dir = resolve_dir(dir_in, "cifar-100-binary", file, "cifar100");
  ImageSet s = cifar_empty();
  s.num_classes = coarse ? 20 : 100;
  append_cifar_file(s, dir + "/" + file, 2, coarse ? 0 : 1, s.num_classes);
  s.class_names = names_or_numbers(dir + (coarse ? "/coarse_label_names.txt" : "/fine_label_names.txt"), s.num_classes);
  s.source = str("cifar100 ", train ? "train" : "test", coarse ? " coarse" : " fine", " (", dir, ")");
  return s;
}

ImageSet load_stl10(const std::string& dir_in, Stl10Split split, int64_t limit) {
  const char* pre = split == Stl10Split::Train ? "train" : split == Stl10Split::Test ? "test" : "unlabeled";
  const std::string xname = std::string(pre) + "_X.bin";
  const std::string dir = resolve_dir(dir_in, "stl10_binary", xname, "stl10");
  const std::string xpath = dir + "/" + xname;

  const int64_t xsize = file_size(xpath);
  BISSL_CHECK(xsize > 0 && xsize % kStlImage == 0, xpath, ": expected a whole number of 96x96x3 images (",
              kStlImage, " bytes each), found ", xsize, " bytes (", xsize / kStlImage, " images and ",
              xsize % kStlImage, " bytes over: truncated or not this format)");
  const int64_t total = xsize / kStlImage;
  const int64_t n = limit >= 0 ? std::min(limit, total) : total;

  ImageSet s;
  s.h = s.w = kStlSide;
  s.c = 3;
  s.n = n;
  s.num_classes = 10;
  const std::vector<std::string> def = {"airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"};
  s.class_names = file_exists(dir + "/class_names.txt") ? names_or_numbers(dir + "/class_names.txt", 10) : def;
  s.pixels.resize(size_t(n * kStlImage));

  // Read in chunks and transpose: the file stores each channel column-major
  // (Matlab order): byte (ch, x, y) at ch*96*96 + x*96 + y.
  std::ifstream f(xpath, std::ios::binary);
  BISSL_CHECK(f, xpath, ": cannot open for reading (", std::strerror(errno), ")");
  const int64_t chunk = 512;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min(chunk, n) * kStlImage));
  for (int64_t i0 = 0; i0 < n; i0 += chunk) {
    const int64_t m = std::min(chunk, n - i0);
    f.read(reinterpret_cast<char*>(buf.data()), std::streamsize(m * kStlImage));
    BISSL_CHECK(f.gcount() == std::streamsize(m * kStlImage), xpath, ": truncated: expected ", m * kStlImage,
                " bytes at offset ", i0 * kStlImage, ", found ", f.gcount());
    for (int64_t k = 0; k < m; ++k) {
      const uint8_t* src = buf.data() + k * kStlImage;
      uint8_t* dst = s.pixels.data() + (i0 + k) * kStlImage;
      for (int64_t ch = 0; ch < 3; ++ch)
        for (int64_t x = 0; x < kStlSide; ++x)
          for (int64_t y = 0; y < kStlSide; ++y) dst[(y * kStlSide + x) * 3 + ch] = src[ch * kStlPlane + x * kStlSide + y];
    }
  }

  if (split == Stl10Split::Unlabeled) {
    s.labels.assign(size_t(n), kNoLabel);
  } else {
    const std::string ypath = dir + "/" + pre + "_y.bin";
    std::vector<uint8_t> y = read_file_bytes(ypath);
    BISSL_CHECK(int64_t(y.size()) == total, "image count mismatch: ", xpath, " holds ", total, " images but ", ypath,
                " holds ", y.size(), " labels");
    s.labels.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      BISSL_CHECK(y[i] >= 1 && y[i] <= 10, ypath, ": label ", int(y[i]), " at index ", i,
                  " out of range: expected 1..10");
      s.labels[size_t(i)] = int64_t(y[i]) - 1;
    }
  }
  s.source = str("stl10 ", pre, " (", dir, ")");
  return s;
}

}  // namespace bissl::data
