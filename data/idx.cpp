// IDX files (MNIST, Fashion-MNIST), raw or gzip.
#include <cstdio>

#include "data/datasets.h"
#include "data/file_io.h"
#include "engine/error.h"

namespace bissl::data {

namespace {

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08X", v);
  return b;
}

std::string dims_str(const std::vector<int64_t>& d) {
  std::string s;
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "x" : "") + std::to_string(d[i]);
  return s;
}

uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }

// `name` + ".gz" or `name` in `dir`, whichever exists (the .gz first).
std::string find_variant(const std::string& dir, const std::string& name) {
  const std::string base = dir + "/" + name;
  if (file_exists(base + ".gz")) return base + ".gz";
  if (file_exists(base)) return base;
  throw Error(str(dir, ": expected ", name, " or ", name, ".gz, found neither"));
}

ImageSet load_mnist_like(const std::string& dir, bool train, std::vector<std::string> names, const char* what) {
  const std::string pre = train ? "train" : "t10k";
  const std::string images = find_variant(dir, pre + "-images-idx3-ubyte");
  const std::string labels = find_variant(dir, pre + "-labels-idx1-ubyte");
  ImageSet s = load_idx_pair(images, labels, 10);
  s.class_names = std::move(names);
  s.source = str(what, " ", train ? "train" : "test", " (", dir, ")");
  return s;
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  // Read as a stream: the header first, then exactly the data it declares,
  // once that size is checked against what the file can hold.
  ByteReader r(path);
  uint8_t head[4 + 4 * 4];
  const size_t got = r.read(head, 4);
  BISSL_CHECK(got >= 4, path, ": expected an IDX header of at least 4 bytes, found a file of ", got, " bytes");
  const uint32_t magic = be32(head);
  BISSL_CHECK(head[0] == 0 && head[1] == 0 && head[3] >= 1 && head[3] <= 4, path,
              ": expected an IDX magic number 0x000008NN (NN = 1..4 dimensions), found ", hex32(magic));
  BISSL_CHECK(head[2] == 0x08, path, ": expected IDX element type 0x08 (unsigned byte), found 0x",
              hex32(head[2]).substr(8), " in magic ", hex32(magic));
  const size_t nd = head[3];
  const size_t header = 4 + 4 * nd;
  const size_t got_dims = r.read(head + 4, 4 * nd);
  BISSL_CHECK(got_dims == 4 * nd, path, ": truncated: expected a ", header, "-byte header for ", nd,
              " dimensions, found ", 4 + got_dims, " bytes");
  IdxArray a;
  int64_t total = 1;
  for (size_t i = 0; i < nd; ++i) {
    int64_t d = be32(head + 4 + 4 * i);
    BISSL_CHECK(d > 0 && d < (int64_t(1) << 31), path, ": expected positive dimensions, found ", d, " in dimension ",
                i);
    a.dims.push_back(d);
    // Checked before multiplying: 2^40 x 2^31 would overflow.
    BISSL_CHECK(total < ((int64_t(1) << 40) + d - 1) / d, path, ": dimensions ", dims_str(a.dims),
                " are implausibly large");
    total *= d;
  }
  if (r.gzip()) {
    const int64_t most = max_gunzip_bytes(r.file_bytes());
    BISSL_CHECK(int64_t(header) + total <= most, path, ": the header declares ", dims_str(a.dims), " = ", total,
                " data bytes, more than a gzip file of ", r.file_bytes(), " bytes can hold (", most,
                " at deflate's best ratio): corrupt or hostile");
  } else {
    const int64_t have = r.file_bytes() - int64_t(header);
    BISSL_CHECK(have >= total, path, ": truncated: header says ", dims_str(a.dims), " = ", total,
                " data bytes, found ", have);
    BISSL_CHECK(have == total, path, ": dimensions ", dims_str(a.dims), " (", total,
                " data bytes) are inconsistent with the file, which holds ", have, " data bytes");
  }
  a.data.resize(size_t(total));
  const int64_t have = int64_t(r.read(a.data.data(), a.data.size()));
  BISSL_CHECK(have >= total, path, ": truncated: header says ", dims_str(a.dims), " = ", total,
              " data bytes, found ", have);
  // Trailing data: counted (up to 1 MiB more, never stored) for the message.
  const int64_t more = r.skip_rest(int64_t(1) << 20);
  BISSL_CHECK(more == 0, path, ": dimensions ", dims_str(a.dims), " (", total,
              " data bytes) are inconsistent with the file, which holds ", total + more,
              more == (int64_t(1) << 20) ? " or more" : "", " data bytes");
  return a;
}

ImageSet load_idx_pair(const std::string& images_path, const std::string& labels_path, int64_t num_classes) {
  IdxArray im = read_idx(images_path);
  BISSL_CHECK(im.dims.size() == 3, images_path, ": expected an images file with 3 dimensions (n x rows x cols), found ",
              im.dims.size(), " (", dims_str(im.dims), ")");
  IdxArray lb = read_idx(labels_path);
  BISSL_CHECK(lb.dims.size() == 1, labels_path, ": expected a labels file with 1 dimension, found ", lb.dims.size(),
              " (", dims_str(lb.dims), ")");
  BISSL_CHECK(im.dims[0] == lb.dims[0], "image count mismatch: ", images_path, " holds ", im.dims[0], " images but ",
              labels_path, " holds ", lb.dims[0], " labels");
  ImageSet s;
  s.n = im.dims[0];
  s.h = im.dims[1];
  s.w = im.dims[2];
  s.c = 1;
  s.pixels = std::move(im.data);
  s.num_classes = num_classes;
  s.labels.resize(size_t(s.n));
  for (int64_t i = 0; i < s.n; ++i) {
    int64_t l = lb.data[size_t(i)];
    BISSL_CHECK(l < num_classes, labels_path, ": label ", l, " at index ", i, " out of range: expected 0..",
                num_classes - 1);
    s.labels[size_t(i)] = l;
  }
  s.source = images_path;
  return s;
}

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

ImageSet load_mnist(const std::string& dir, bool train) {
  std::vector<std::string> names;
  for (int i = 0; i < 10; ++i) names.push_back(std::to_string(i));
  return load_mnist_like(dir, train, names, "mnist");
}

ImageSet load_fashion_mnist(const std::string& dir, bool train) {
  return load_mnist_like(dir, train, fashion_mnist_class_names(), "fashion-mnist");
}

}  // namespace bissl::data
