// Lazy image sets (DecodeOptions::lazy, ImageSet::lazy): the same images as
// a set decoded into memory, bit for bit, through subsets, concatenations,
// channel statistics and the loader's batches; the errors a lazy set gives
// at load and at read; its decoded-image cache; and the memory bound on a
// 100 000-image folder.
#include <doctest/doctest.h>

#include <malloc.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <stb/stb_image_write.h>  // implemented in data/stb_write.cpp

#include "data/augment.h"
#include "data/datasets.h"
#include "data/loader.h"
#include "engine/error.h"
#include "engine/random.h"
#include "tests/support.h"

using namespace bissl;
using namespace bissl::data;
namespace fs = std::filesystem;
using bissl::testing::expect_error;
using bissl::testing::TempDir;

namespace {

// A w x h image of c channels of pseudo-random bytes drawn from `seed`.
void noise_png(const fs::path& p, int w, int h, int c, uint64_t seed) {
  fs::create_directories(p.parent_path());
  std::vector<uint8_t> px(size_t(w * h * c));
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& v : px) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    v = uint8_t(x >> 24);
  }
  REQUIRE(stbi_write_png(p.string().c_str(), w, h, c, px.data(), w * c) != 0);
}

// Every image of a set, read through ImageSet::read.
std::vector<uint8_t> all_pixels(const ImageSet& s) {
  std::vector<uint8_t> r(size_t(s.n * s.image_bytes()));
  for (int64_t i = 0; i < s.n; ++i) s.read(i, r.data() + i * s.image_bytes());
  return r;
}

bool same_batches(const std::shared_ptr<const ImageSet>& a, const std::shared_ptr<const ImageSet>& b,
                  const LoaderOptions& lo, int64_t epochs) {
  Loader la(a, lo), lb(b, lo);
  for (int64_t e = 0; e < epochs; ++e) {
    la.start_epoch(e), lb.start_epoch(e);
    Batch x, y;
    while (la.next(x)) {
      if (!lb.next(y) || x.indices != y.indices || x.views.size() != y.views.size()) return false;
      for (size_t v = 0; v < x.views.size(); ++v)
        if (std::memcmp(x.views[v].data<float>(), y.views[v].data<float>(), size_t(x.views[v].numel()) * 4) != 0)
          return false;
      if (std::memcmp(x.labels.data<int64_t>(), y.labels.data<int64_t>(), size_t(x.size()) * 8) != 0) return false;
    }
    if (lb.next(y)) return false;
  }
  return true;
}

// Resident memory of this process (VmRSS), bytes, after freed heap memory
// went back to the system.
int64_t rss_bytes() {
  malloc_trim(0);
  std::ifstream f("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * int64_t(sysconf(_SC_PAGESIZE));
}

}  // namespace

TEST_CASE("lazy sets: bitwise the images of the in-memory set, RGB and grey, any size, cached or not") {
  TempDir t("lazy_same");
  // RGB of several sizes and aspect ratios, two classes, one nested.
  int k = 0;
  for (auto [w, h] : std::vector<std::pair<int, int>>{{40, 30}, {30, 41}, {33, 33}, {64, 20}, {17, 50}, {25, 25}})
    noise_png(t.dir / "rgb" / (k % 2 ? "b" : "a") / (k == 3 ? "sub" : "") / (std::to_string(k) + ".png"), w, h, 3,
              uint64_t(k)),
        ++k;
  for (int g = 0; g < 5; ++g) noise_png(t.dir / "grey" / "c" / (std::to_string(g) + ".png"), 20 + g, 24, 1, 100 + g);

  for (const char* folder : {"rgb", "grey"}) {
    CAPTURE(folder);
    ImageList l = list_image_folder((t.dir / folder).string());
    for (Fit fit : {Fit::ShorterCrop, Fit::Squash}) {
      DecodeOptions o;
      o.channels = 0;  // from the first image
      o.height = o.width = 24;
      o.fit = fit;
      o.interp = Interp::Bicubic;
      ImageSet mem = decode_image_list(l, o);
      o.lazy = true;
      ImageSet lazy = decode_image_list(l, o);
      o.cache_bytes = 3 * 24 * 24 * 3;  // room for three images
      ImageSet cached = decode_image_list(l, o);
      REQUIRE(lazy.is_lazy());
      CHECK(lazy.pixels.empty());
      CHECK(lazy.n == mem.n);
      CHECK(lazy.c == mem.c);
      CHECK(lazy.c == (std::string(folder) == "grey" ? 1 : 3));
      CHECK(lazy.labels == mem.labels);
      CHECK(lazy.class_names == mem.class_names);
      CHECK_NOTHROW(lazy.validate());
      CHECK(all_pixels(lazy) == mem.pixels);
      CHECK(all_pixels(cached) == mem.pixels);
      CHECK(all_pixels(cached) == mem.pixels);  // the second time from the cache
      CHECK(cached.resident_bytes() >= 3 * 24 * 24 * mem.c);
      CHECK(cached.resident_bytes() < 3 * 24 * 24 * 3 + 4096 + 256 * mem.n);  // capped

      // Statistics, subsets, concatenations.
      ChannelStats a = channel_stats(mem), b = channel_stats(lazy, {}, 3);
      CHECK(a.mean == b.mean);
      CHECK(a.std == b.std);
      std::vector<int64_t> idx{3, 0, 0, 2};
      ImageSet ms = subset(mem, idx), ls = subset(lazy, idx);
      CHECK(ls.is_lazy());
      CHECK(all_pixels(ls) == ms.pixels);
      CHECK(ls.labels == ms.labels);
      auto mp = std::make_shared<const ImageSet>(mem), lp = std::make_shared<const ImageSet>(lazy);
      ImageSet mc = concat_images(mp, mp), lc = concat_images(lp, mp);
      CHECK(lc.is_lazy());
      CHECK(all_pixels(lc) == mc.pixels);

      // The loader's batches, two views, two epochs, 2 workers.
      LoaderOptions lo;
      lo.batch_size = 3;
      lo.seed = 7;
      lo.workers = 2;
      lo.views = {ssl_view(1, 16, mem.c), finetune_train_view(16, mem.c)};
      CHECK(same_batches(mp, lp, lo, 2));
      CHECK(same_batches(mp, std::make_shared<const ImageSet>(cached), lo, 2));
      lo.views = {eval_view(16, mem.c)};
      lo.shuffle = false;
      lo.workers = 0;
      CHECK(same_batches(mp, lp, lo, 1));
    }
  }
}

TEST_CASE("lazy sets: a digest of the files, not the pixels; it moves when a file changes") {
  TempDir t("lazy_digest");
  for (int i = 0; i < 3; ++i) noise_png(t.dir / "a" / (std::to_string(i) + ".png"), 8, 8, 3, uint64_t(i));
  DecodeOptions o;
  o.lazy = true;
  auto digest = [&] { return decode_image_list(list_image_folder(t.dir.string()), o).content_digest(); };
  const std::string d0 = digest();
  CHECK(digest() == d0);
  o.lazy = false;
  CHECK(digest() != d0);  // the in-memory set digests its pixels
  o.lazy = true;
  noise_png(t.dir / "a" / "1.png", 8, 8, 3, 99);  // new content (and size / time)
  fs::last_write_time(t.dir / "a" / "1.png", fs::last_write_time(t.dir / "a" / "1.png") + std::chrono::seconds(5));
  CHECK(digest() != d0);
}

TEST_CASE("lazy sets: headers checked at load, a bad image named at read, skips counted") {
  TempDir t("lazy_errors");
  noise_png(t.dir / "a" / "0.png", 12, 10, 3, 1);
  noise_png(t.dir / "a" / "1.png", 12, 10, 3, 2);
  DecodeOptions o;
  o.lazy = true;
  {
    // Exact size: a file of another size is refused from its header.
    noise_png(t.dir / "a" / "2.png", 12, 11, 3, 3);
    expect_error([&] { decode_image_list(list_image_folder(t.dir.string()), o); }, {"2.png", "10x12", "found 11x12"});
    // A wrong size is not a bad file: an error with skip_bad too, as in memory.
    DecodeOptions skipping = o;
    skipping.skip_bad = true;
    expect_error([&] { decode_image_list(list_image_folder(t.dir.string()), skipping); }, {"2.png", "found 11x12"});
    skipping.lazy = false;
    expect_error([&] { decode_image_list(list_image_folder(t.dir.string()), skipping); }, {"2.png", "found 11x12"});
    fs::remove(t.dir / "a" / "2.png");
  }
  {
    // A header over the pixel limit.
    noise_png(t.dir / "a" / "2.png", 12, 10, 3, 3);
    DecodeOptions small = o;
    small.max_pixels = 100;
    expect_error([&] { decode_image_list(list_image_folder(t.dir.string()), small); },
                 {"0.png", "12x10 = 120 pixels", "limit of 100"});
    fs::remove(t.dir / "a" / "2.png");
  }
  // An empty file, and one that is not an image inside: refused at load, or
  // left out and counted with skip_bad.
  { std::ofstream(t.dir / "a" / "empty.png"); }
  expect_error([&] { decode_image_list(list_image_folder(t.dir.string()), o); }, {"empty.png", "empty file"});
  fs::remove(t.dir / "a" / "empty.png");
  { std::ofstream(t.dir / "a" / "junk.png") << "not a png at all"; }
  expect_error([&] { decode_image_list(list_image_folder(t.dir.string()), o); },
               {"junk.png", "cannot read the image header"});
  DecodeOptions skip = o;
  skip.skip_bad = true;
  DecodeReport rep;
  ImageSet s = decode_image_list(list_image_folder(t.dir.string()), skip, &rep);
  CHECK(s.n == 2);
  CHECK(rep.bad == 1);
  CHECK(rep.first_bad.find("junk.png") != std::string::npos);
  fs::remove(t.dir / "a" / "junk.png");

  // A file whose header reads but whose data is cut: found when read, and the
  // loader hands the error (naming the file) to its consumer.
  noise_png(t.dir / "a" / "2.png", 12, 10, 3, 3);
  ImageSet lazy = decode_image_list(list_image_folder(t.dir.string()), o);
  {
    std::string bytes;
    {
      std::ifstream in(t.dir / "a" / "2.png", std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::ofstream(t.dir / "a" / "2.png", std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 2);
  }
  std::vector<uint8_t> buf(size_t(lazy.image_bytes()));
  CHECK_NOTHROW(lazy.read(0, buf.data()));
  expect_error([&] { lazy.read(2, buf.data()); }, {"2.png", "cannot decode"});
  LoaderOptions lo;
  lo.batch_size = 3;
  lo.workers = 2;
  Loader loader(std::make_shared<const ImageSet>(lazy), lo);
  Batch b;
  expect_error([&] { loader.next(b); }, {"2.png", "cannot decode"});
  // And once the file is gone.
  fs::remove(t.dir / "a" / "2.png");
  expect_error([&] { lazy.read(2, buf.data()); }, {"2.png"});
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

TEST_CASE("lazy sets: 100 000 images in bounded memory, an epoch through the loader") {
  // 100 distinct 48 x 48 RGB files hard-linked 1000 times each: 100 000
  // directory entries, the disk space of 100 images. In memory at 48 x 48
  // they would take 100 000 x 6912 bytes = 691 MB.
  TempDir t("lazy_large");
  const int distinct = 100, copies = 1000, side = 48;
  for (int i = 0; i < distinct; ++i) noise_png(t.dir / "src" / (std::to_string(i) + ".png"), side + i % 7, side, 3, i);
  for (int cls = 0; cls < 4; ++cls) fs::create_directories(t.dir / "set" / ("c" + std::to_string(cls)));
  for (int k = 0; k < distinct * copies; ++k) {
    const fs::path to = t.dir / "set" / ("c" + std::to_string(k % 4)) / (std::to_string(k) + ".png");
    fs::create_hard_link(t.dir / "src" / (std::to_string(k % distinct) + ".png"), to);
  }
  const int64_t rss0 = rss_bytes();
  DecodeOptions o;
  o.height = o.width = side;
  o.fit = Fit::ShorterCrop;
  o.lazy = true;
  o.cache_bytes = 8 << 20;  // 8 MiB: about 1200 images
  auto set = std::make_shared<const ImageSet>(decode_image_list(list_image_folder((t.dir / "set").string()), o));
  REQUIRE(set->n == distinct * copies);
  const int64_t listed = rss_bytes() - rss0;
  LoaderOptions lo;
  lo.batch_size = 500;
  lo.seed = 3;
  lo.workers = 2;
  lo.views = {finetune_train_view(32, 3)};
  Loader loader(set, lo);
  Batch b;
  int64_t seen = 0;
  while (loader.next(b)) seen += b.size();
  CHECK(seen == set->n);
  const int64_t grown = rss_bytes() - rss0;
  MESSAGE("lazy 100k: resident set grew by ", listed >> 20, " MiB when listed, ", grown >> 20,
          " MiB after an epoch; the set holds ", set->resident_bytes() >> 20, " MiB (list + cache)");
  // The list (two paths per image) and the cache: about 20 MB; the loader's
  // prefetch window: 4 batches of 500 x 32 x 32 x 3 floats = 24 MB.
  CHECK(set->resident_bytes() < (8 << 20) + (20 << 20));
  // Against 691 MB of decoded images. Under AddressSanitizer freed memory
  // waits in its quarantine: one sanitizer CI run read 114 MiB here (the
  // run before passed under 100), so the bound doubles there.
  CHECK(grown < (kAsan ? 200 << 20 : 100 << 20));
}
