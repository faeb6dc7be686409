// Dataset readers: IDX (raw and gzip), CIFAR-10/100, STL-10 and image folders
// on small files written here, one test per way a file can be malformed, and
// the real Fashion-MNIST when Debian's package is installed.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <stb/stb_image_write.h>  // implemented in data/stb_write.cpp

#include "data/datasets.h"
#include "data/file_io.h"
#include "engine/error.h"

#include "tests/support.h"

using namespace bissl;
using namespace bissl::data;
namespace fs = std::filesystem;

namespace {

using bissl::testing::TempDir;

using Bytes = std::vector<uint8_t>;

void write_raw(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

void write_gz(const std::string& path, const Bytes& b) {
  gzFile g = gzopen(path.c_str(), "wb");
  REQUIRE(g != nullptr);
  if (!b.empty()) REQUIRE(gzwrite(g, b.data(), unsigned(b.size())) == int(b.size()));
  gzclose(g);
}

void put_be32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
}

Bytes idx_images(uint32_t n, uint32_t rows, uint32_t cols) {
  Bytes b = {0, 0, 8, 3};
  put_be32(b, n);
  put_be32(b, rows);
  put_be32(b, cols);
  for (uint32_t i = 0; i < n * rows * cols; ++i) b.push_back(uint8_t((i * 7) % 256));
  return b;
}

Bytes idx_labels(const std::vector<uint8_t>& labels) {
  Bytes b = {0, 0, 8, 1};
  put_be32(b, uint32_t(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

// Runs f, which must throw bissl::Error whose message contains every needle.
using bissl::testing::expect_error;

}  // namespace

TEST_CASE("file reads: every size, with and without a limit, raw and gzip") {
  // The readers size their buffers from the file (then doubling), not in
  // fixed chunks: sizes either side of each step must all read whole.
  TempDir t("file_reads");
  for (size_t n : {size_t(0), size_t(1), size_t(4095), size_t(4096), size_t(4097), size_t(5) << 20,
                   (size_t(9) << 20) + 7}) {
    CAPTURE(n);
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = uint8_t(i * 131 + (i >> 9));
    write_raw(t.file("raw"), b);
    write_gz(t.file("raw.gz"), b);
    CHECK(read_file_bytes(t.file("raw")) == b);
    bool gz = true;
    CHECK(read_maybe_gzip(t.file("raw"), &gz) == b);
    CHECK_FALSE(gz);
    CHECK(read_maybe_gzip(t.file("raw.gz"), &gz) == b);
    CHECK(gz);
    const int64_t lim = int64_t(n / 2);
    CHECK(read_file_bytes(t.file("raw"), lim) == Bytes(b.begin(), b.begin() + lim));
    CHECK(read_maybe_gzip(t.file("raw.gz"), nullptr, int64_t(n)) == b);
    if (n > 0)
      expect_error([&] { read_maybe_gzip(t.file("raw.gz"), nullptr, int64_t(n) - 1); }, {t.file("raw.gz"), "the limit"});
  }
}

TEST_CASE("idx: raw and gzip files parse to the same images and labels") {
  TempDir t("idx");
  const Bytes im = idx_images(3, 4, 5);
  const Bytes lb = idx_labels({2, 0, 9});
  write_raw(t.file("im"), im);
  write_raw(t.file("lb"), lb);
  write_gz(t.file("im.gz"), im);
  write_gz(t.file("lb.gz"), lb);

  IdxArray a = read_idx(t.file("im"));
  CHECK(a.dims == std::vector<int64_t>{3, 4, 5});
  REQUIRE(a.data.size() == 60);
  CHECK(a.data[13] == uint8_t(13 * 7));

  for (const auto& [ip, lp] : {std::pair{t.file("im"), t.file("lb")}, std::pair{t.file("im.gz"), t.file("lb.gz")},
                               std::pair{t.file("im.gz"), t.file("lb")}}) {
    ImageSet s = load_idx_pair(ip, lp, 10);
    CHECK(s.n == 3);
    CHECK(s.h == 4);
    CHECK(s.w == 5);
    CHECK(s.c == 1);
    CHECK(s.labels == std::vector<int64_t>{2, 0, 9});
    CHECK(s.image(1)[0] == uint8_t((20 * 7) % 256));
    CHECK_NOTHROW(s.validate());
  }
}

TEST_CASE("idx: mnist-style folder with .gz names and the raw fallback") {
  TempDir t("mnist");
  write_gz(t.file("train-images-idx3-ubyte.gz"), idx_images(2, 28, 28));
  write_gz(t.file("train-labels-idx1-ubyte.gz"), idx_labels({1, 8}));
  write_raw(t.file("t10k-images-idx3-ubyte"), idx_images(1, 28, 28));
  write_raw(t.file("t10k-labels-idx1-ubyte"), idx_labels({3}));
  ImageSet tr = load_fashion_mnist(t.dir.string(), true);
  CHECK(tr.n == 2);
  CHECK(tr.class_names.size() == 10);
  CHECK(tr.class_names[8] == "Bag");
  ImageSet te = load_mnist(t.dir.string(), false);
  CHECK(te.n == 1);
  CHECK(te.labels[0] == 3);
  expect_error([&] { load_mnist(t.file("nowhere"), true); }, {"train-images-idx3-ubyte", "found neither"});
}

TEST_CASE("idx: every malformed file is an error naming the file") {
  TempDir t("idxbad");
  const std::string lb = t.file("labels");
  write_raw(lb, idx_labels({1, 2, 3}));

  SUBCASE("wrong magic") {
    Bytes b = idx_images(3, 4, 5);
    b[0] = 'P';
    b[1] = 'K';
    write_raw(t.file("bad"), b);
    expect_error([&] { read_idx(t.file("bad")); }, {t.file("bad"), "magic", "found 0x504B"});
  }
  SUBCASE("wrong element type") {
    Bytes b = idx_images(3, 4, 5);
    b[2] = 0x0D;
    write_raw(t.file("bad"), b);
    expect_error([&] { read_idx(t.file("bad")); }, {t.file("bad"), "0x08", "found 0x0D"});
  }
  SUBCASE("truncated data") {
    Bytes b = idx_images(3, 4, 5);
    b.resize(b.size() - 10);
    write_raw(t.file("bad"), b);
    expect_error([&] { read_idx(t.file("bad")); }, {t.file("bad"), "truncated", "3x4x5", "60", "found 50"});
  }
  SUBCASE("truncated header") {
    Bytes b = idx_images(3, 4, 5);
    b.resize(9);
    write_raw(t.file("bad"), b);
    expect_error([&] { read_idx(t.file("bad")); }, {t.file("bad"), "truncated", "16-byte header"});
  }
  SUBCASE("dims inconsistent with size") {
    Bytes b = idx_images(3, 4, 5);
    b.push_back(0);
    b.push_back(0);
    write_raw(t.file("bad"), b);
    expect_error([&] { read_idx(t.file("bad")); }, {t.file("bad"), "inconsistent", "62"});
  }
  SUBCASE("truncated gzip stream") {
    Bytes b = idx_images(30, 28, 28);
    write_gz(t.file("full.gz"), b);
    std::ifstream f(t.file("full.gz"), std::ios::binary);
    Bytes gz((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    gz.resize(gz.size() / 2);
    write_raw(t.file("bad.gz"), gz);
    expect_error([&] { read_idx(t.file("bad.gz")); }, {t.file("bad.gz"), "gzip", "truncated"});
  }
  SUBCASE("gzip bombs: a declared size no gzip file of its size can hold; data past the declared size") {
    // The header claims 60 000 x 28 x 28 images in a gzip file of a few dozen
    // bytes: refused before anything is allocated for it.
    Bytes head = idx_images(1, 1, 1);
    head.resize(16);
    for (int k : {4, 8, 12}) head[size_t(k)] = 0, head[size_t(k + 1)] = 0;
    head[4 + 2] = 0xEA, head[4 + 3] = 0x60;  // 60000
    head[8 + 3] = 28, head[12 + 3] = 28;
    write_gz(t.file("claims.gz"), head);
    expect_error([&] { read_idx(t.file("claims.gz")); },
                 {t.file("claims.gz"), "60000x28x28 = 47040000", "more than a gzip file of", "corrupt or hostile"});
    // 1x1x1 declared, 64 MiB of zeros behind it (a 65 KB file): at most the
    // declared byte and 1 MiB more are ever decompressed.
    Bytes bomb = idx_images(1, 1, 1);
    bomb.resize(bomb.size() + (size_t(64) << 20), 0);
    write_gz(t.file("bomb.gz"), bomb);
    expect_error([&] { read_idx(t.file("bomb.gz")); }, {t.file("bomb.gz"), "inconsistent", "1048577 or more"});
    // The generic reader takes a cap.
    expect_error([&] { read_maybe_gzip(t.file("bomb.gz"), nullptr, 1 << 20); },
                 {t.file("bomb.gz"), "at most 1048576 bytes decompressed", "the limit"});
  }
  SUBCASE("label out of range") {
    write_raw(t.file("im"), idx_images(3, 4, 5));
    write_raw(t.file("lb12"), idx_labels({1, 12, 3}));
    expect_error([&] { load_idx_pair(t.file("im"), t.file("lb12"), 10); },
                 {t.file("lb12"), "label 12", "index 1", "0..9"});
  }
  SUBCASE("image count mismatch") {
    write_raw(t.file("im"), idx_images(4, 4, 5));
    expect_error([&] { load_idx_pair(t.file("im"), lb, 10); }, {"mismatch", t.file("im"), "4 images", lb, "3 labels"});
  }
  SUBCASE("labels file where images are expected") {
    expect_error([&] { load_idx_pair(lb, lb, 10); }, {lb, "3 dimensions", "found 1"});
  }
  SUBCASE("missing file") {
    expect_error([&] { read_idx(t.file("absent")); }, {t.file("absent"), "cannot open"});
  }
}

namespace {

Bytes cifar_record(int label_bytes, const std::vector<uint8_t>& labels, int seed) {
  Bytes r(labels.begin(), labels.end());
  for (int ch = 0; ch < 3; ++ch)
    for (int p = 0; p < 1024; ++p) r.push_back(uint8_t((p * 3 + ch * 50 + seed * 11) % 256));
  (void)label_bytes;
  return r;
}

}  // namespace

TEST_CASE("cifar10: records transpose from planes to HWC; malformed files fail") {
  TempDir t("cifar10");
  for (int k = 1; k <= 5; ++k) {
    Bytes b = cifar_record(1, {uint8_t(k)}, k);
    Bytes b2 = cifar_record(1, {uint8_t(9)}, k + 10);
    b.insert(b.end(), b2.begin(), b2.end());
    write_raw(t.file("data_batch_" + std::to_string(k) + ".bin"), b);
  }
  write_raw(t.file("test_batch.bin"), cifar_record(1, {4}, 99));
  ImageSet s = load_cifar10(t.dir.string(), true);
  CHECK(s.n == 10);
  CHECK(s.h == 32);
  CHECK(s.w == 32);
  CHECK(s.c == 3);
  CHECK(s.labels == std::vector<int64_t>{1, 9, 2, 9, 3, 9, 4, 9, 5, 9});
  CHECK(s.class_names[0] == "airplane");
  // Image 2 is batch 2's first record (seed 2): pixel (y, x, ch) = plane ch at y*32+x.
  for (int y : {0, 5, 31})
    for (int x : {0, 17, 31})
      for (int ch = 0; ch < 3; ++ch) CHECK(s.image(2)[(y * 32 + x) * 3 + ch] == uint8_t(((y * 32 + x) * 3 + ch * 50 + 22) % 256));
  ImageSet te = load_cifar10(t.dir.string(), false);
  CHECK(te.n == 1);
  CHECK(te.labels[0] == 4);

  SUBCASE("parent folder works") {
    TempDir p("cifar10parent");
    fs::create_directories(p.dir / "cifar-10-batches-bin");
    fs::copy_file(t.file("test_batch.bin"), p.dir / "cifar-10-batches-bin" / "test_batch.bin");
    CHECK(load_cifar10(p.dir.string(), false).n == 1);
  }
  SUBCASE("truncated record") {
    Bytes b = cifar_record(1, {1}, 0);
    b.resize(3000);
    write_raw(t.file("test_batch.bin"), b);
    expect_error([&] { load_cifar10(t.dir.string(), false); }, {t.file("test_batch.bin"), "3073-byte", "found 3000"});
  }
  SUBCASE("label out of range") {
    write_raw(t.file("test_batch.bin"), cifar_record(1, {10}, 0));
    expect_error([&] { load_cifar10(t.dir.string(), false); }, {t.file("test_batch.bin"), "label 10", "0..9"});
  }
  SUBCASE("missing batch") {
    fs::remove(t.file("data_batch_4.bin"));
    expect_error([&] { load_cifar10(t.dir.string(), true); }, {"data_batch_4.bin", "cannot open"});
  }
}

TEST_CASE("cifar100: fine and coarse labels, class names from the text files") {
  TempDir t("cifar100");
  Bytes b = cifar_record(2, {3, 77}, 1);
  Bytes b2 = cifar_record(2, {19, 99}, 2);
  b.insert(b.end(), b2.begin(), b2.end());
  write_raw(t.file("train.bin"), b);
  {
    std::ofstream f(t.file("coarse_label_names.txt"));
    for (int i = 0; i < 20; ++i) f << "super" << i << "\n";
  }
  ImageSet fine = load_cifar100(t.dir.string(), true);
  CHECK(fine.num_classes == 100);
  CHECK(fine.labels == std::vector<int64_t>{77, 99});
  CHECK(fine.class_names[77] == "77");  // no fine_label_names.txt: numbers
  ImageSet coarse = load_cifar100(t.dir.string(), true, true);
  CHECK(coarse.num_classes == 20);
  CHECK(coarse.labels == std::vector<int64_t>{3, 19});
  CHECK(coarse.class_names[19] == "super19");
  CHECK(coarse.image(1)[5 * 3 + 1] == fine.image(1)[5 * 3 + 1]);

  write_raw(t.file("train.bin"), cifar_record(2, {20, 5}, 1));
  expect_error([&] { load_cifar100(t.dir.string(), true, true); }, {t.file("train.bin"), "label 20", "0..19"});
  write_raw(t.file("train.bin"), Bytes{});
  expect_error([&] { load_cifar100(t.dir.string(), true); }, {t.file("train.bin"), "empty"});
}

namespace {

// STL-10 stores (ch, x, y) at ch*96*96 + x*96 + y.
uint8_t stl_value(int img, int ch, int x, int y) { return uint8_t((x * 7 + y * 3 + ch * 50 + img * 13) % 256); }

Bytes stl_images(int n) {
  Bytes b(size_t(n) * 27648);
  for (int i = 0; i < n; ++i)
    for (int ch = 0; ch < 3; ++ch)
      for (int x = 0; x < 96; ++x)
        for (int y = 0; y < 96; ++y) b[size_t(i) * 27648 + ch * 9216 + x * 96 + y] = stl_value(i, ch, x, y);
  return b;
}

}  // namespace

TEST_CASE("stl10: column-major channels become HWC, labels 1..10 become 0..9") {
  TempDir t("stl10");
  write_raw(t.file("train_X.bin"), stl_images(3));
  write_raw(t.file("train_y.bin"), Bytes{1, 10, 4});
  write_raw(t.file("unlabeled_X.bin"), stl_images(4));
  ImageSet s = load_stl10(t.dir.string(), Stl10Split::Train);
  CHECK(s.n == 3);
  CHECK(s.h == 96);
  CHECK(s.c == 3);
  CHECK(s.labels == std::vector<int64_t>{0, 9, 3});
  CHECK(s.class_names[7] == "monkey");
  bool ok = true;
  for (int i = 0; i < 3; ++i)
    for (int y = 0; y < 96; y += 5)
      for (int x = 0; x < 96; x += 7)
        for (int ch = 0; ch < 3; ++ch) ok = ok && s.image(i)[(y * 96 + x) * 3 + ch] == stl_value(i, ch, x, y);
  CHECK(ok);

  ImageSet u = load_stl10(t.dir.string(), Stl10Split::Unlabeled, 2);
  CHECK(u.n == 2);
  CHECK(u.labels == std::vector<int64_t>{kNoLabel, kNoLabel});
  CHECK_FALSE(u.labelled());
  CHECK(u.image(1)[(3 * 96 + 4) * 3 + 2] == stl_value(1, 2, 4, 3));

  SUBCASE("label out of range") {
    write_raw(t.file("train_y.bin"), Bytes{1, 0, 4});
    expect_error([&] { load_stl10(t.dir.string(), Stl10Split::Train); }, {t.file("train_y.bin"), "label 0", "1..10"});
  }
  SUBCASE("image count mismatch") {
    write_raw(t.file("train_y.bin"), Bytes{1, 2});
    expect_error([&] { load_stl10(t.dir.string(), Stl10Split::Train); },
                 {"mismatch", t.file("train_X.bin"), "3 images", "2 labels"});
  }
  SUBCASE("truncated images") {
    Bytes b = stl_images(2);
    b.resize(b.size() - 100);
    write_raw(t.file("train_X.bin"), b);
    expect_error([&] { load_stl10(t.dir.string(), Stl10Split::Train); }, {t.file("train_X.bin"), "27648", "truncated"});
  }
}

namespace {

void write_png(const std::string& path, int w, int h, int c, int seed) {
  std::vector<uint8_t> px(size_t(w * h * c));
  for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t((i * 5 + size_t(seed) * 31) % 256);
  REQUIRE(stbi_write_png(path.c_str(), w, h, c, px.data(), w * c) != 0);
}

void write_jpg(const std::string& path, int w, int h, int seed) {
  std::vector<uint8_t> px(size_t(w * h * 3), uint8_t(seed * 20));
  REQUIRE(stbi_write_jpg(path.c_str(), w, h, 3, px.data(), 95) != 0);
}

}  // namespace

TEST_CASE("image folder: sorted classes, PNG pixels exact, JPEG decodes, resize on load") {
  TempDir t("folder");
  fs::create_directories(t.dir / "zebra");
  fs::create_directories(t.dir / "ant");
  write_png(t.file("zebra/b.png"), 6, 4, 3, 1);
  write_png(t.file("zebra/a.png"), 6, 4, 3, 2);
  write_jpg(t.file("ant/x.JPG"), 6, 4, 5);
  write_raw(t.file("ant/notes.txt"), Bytes{'h', 'i'});

  ImageFolderOptions o;
  o.threads = 2;
  ImageSet s = load_image_folder(t.dir.string(), o);
  CHECK(s.n == 3);
  CHECK(s.h == 4);
  CHECK(s.w == 6);
  CHECK(s.c == 3);
  CHECK(s.class_names == std::vector<std::string>{"ant", "zebra"});
  CHECK(s.labels == std::vector<int64_t>{0, 1, 1});
  // zebra/a.png (seed 2) comes before zebra/b.png.
  CHECK(s.image(1)[7] == uint8_t((7 * 5 + 2 * 31) % 256));
  CHECK(s.image(2)[7] == uint8_t((7 * 5 + 1 * 31) % 256));
  CHECK(std::abs(int(s.image(0)[0]) - 100) <= 2);  // flat JPEG of 100

  SUBCASE("grey and resized") {
    o.channels = 1;
    o.resize = true;
    o.height = 8;
    o.width = 3;
    ImageSet g = load_image_folder(t.dir.string(), o);
    CHECK(g.c == 1);
    CHECK(g.h == 8);
    CHECK(g.w == 3);
    CHECK(std::abs(int(g.image(0)[5]) - 100) <= 2);
  }
  SUBCASE("wrong size when all must match the first") {
    write_png(t.file("zebra/c.png"), 5, 4, 3, 3);
    expect_error([&] { load_image_folder(t.dir.string(), o); }, {"c.png", "4x6", "found 4x5"});
  }
  SUBCASE("wrong size when a fixed size is required") {
    o.height = 4;
    o.width = 5;
    expect_error([&] { load_image_folder(t.dir.string(), o); }, {"x.JPG", "4x5", "required", "found 4x6"});
  }
  SUBCASE("undecodable image") {
    write_raw(t.file("zebra/broken.png"), Bytes{0x89, 'P', 'N', 'G', 1, 2, 3});
    expect_error([&] { load_image_folder(t.dir.string(), o); }, {"broken.png", "cannot decode"});
  }
  SUBCASE("empty class folder") {
    fs::create_directories(t.dir / "empty");
    expect_error([&] { load_image_folder(t.dir.string(), o); }, {"empty", "at least one image"});
  }
}

TEST_CASE("fashion-mnist: the real files from Debian's dataset-fashion-mnist") {
  if (!fs::exists(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz")) {
    MESSAGE("SKIPPED: " << kFashionMnistDir << " not found (apt install dataset-fashion-mnist)");
    return;
  }
  ImageSet tr = load_fashion_mnist(kFashionMnistDir, true);
  ImageSet te = load_fashion_mnist(kFashionMnistDir, false);
  CHECK(tr.n == 60000);
  CHECK(te.n == 10000);
  CHECK(tr.h == 28);
  CHECK(tr.w == 28);
  CHECK(tr.c == 1);
  CHECK(tr.num_classes == 10);
  CHECK_NOTHROW(tr.validate());
  CHECK_NOTHROW(te.validate());
  for (int64_t k : class_counts(tr)) CHECK(k == 6000);
  for (int64_t k : class_counts(te)) CHECK(k == 1000);
  ChannelStats st = channel_stats(tr);
  MESSAGE("fashion-mnist train mean " << st.mean[0] << " std " << st.std[0]);
  CHECK(st.mean[0] == doctest::Approx(0.28604).epsilon(1e-4));
  CHECK(st.std[0] == doctest::Approx(0.35302).epsilon(1e-4));
}
