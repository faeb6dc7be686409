// Multi-label sets: PASCAL VOC 2007 classification and the mosaic task.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "data/augment.h"
#include "data/datasets.h"
#include "data/file_io.h"
#include "engine/error.h"

namespace bissl::data {

namespace fs = std::filesystem;

const std::vector<std::string>& voc_class_names() {
  static const std::vector<std::string> names = {
      "aeroplane", "bicycle", "bird",  "boat",        "bottle", "bus",         "car",   "cat",  "chair", "cow",
      "diningtable", "dog",   "horse", "motorbike",   "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"};
  return names;
}

namespace {

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

// The text of the first <tag>…</tag> in s; found = false when absent.
std::string element_text(const std::string& s, const std::string& tag, bool& found, const std::string& where) {
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  size_t a = s.find(open);
  found = a != std::string::npos;
  if (!found) return {};
  a += open.size();
  size_t b = s.find(close, a);
  BISSL_CHECK(b != std::string::npos, where, ": expected ", close, " after ", open, ", found none");
  return trim(s.substr(a, b - a));
}

// s with every <tag>…</tag> block removed.
std::string without_blocks(std::string s, const std::string& tag, const std::string& where) {
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  for (size_t a; (a = s.find(open)) != std::string::npos;) {
    size_t b = s.find(close, a);
    BISSL_CHECK(b != std::string::npos, where, ": expected ", close, " after ", open, ", found none");
    s.erase(a, b + close.size() - a);
  }
  return s;
}

std::string voc_dir(const std::string& root) {
  for (const fs::path& p : {fs::path(root), fs::path(root) / "VOC2007", fs::path(root) / "VOCdevkit" / "VOC2007"})
    if (fs::is_directory(p / "ImageSets" / "Main")) return p.string();
  throw Error(str("VOC2007 at '", root,
                  "': expected ImageSets/Main/ in it, in VOC2007/ or in VOCdevkit/VOC2007/ under it, found none"));
}

}  // namespace

std::vector<std::pair<int64_t, bool>> parse_voc_objects(const std::string& xml, const std::string& where) {
  BISSL_CHECK(xml.find("<annotation") != std::string::npos, where,
              ": expected a VOC annotation (<annotation> element), found none");
  const auto& names = voc_class_names();
  std::vector<std::pair<int64_t, bool>> r;
  const std::string open = "<object>", close = "</object>";
  for (size_t pos = 0;;) {
    size_t a = xml.find(open, pos);
    if (a == std::string::npos) break;
    size_t b = xml.find(close, a);
    BISSL_CHECK(b != std::string::npos, where, ": expected </object> after the <object> at byte ", a, ", found none");
    // The object's own fields; a person's <part> entries have names too.
    const std::string obj = without_blocks(xml.substr(a + open.size(), b - a - open.size()), "part", where);
    bool has_name = false, has_difficult = false;
    const std::string name = element_text(obj, "name", has_name, where);
    BISSL_CHECK(has_name, where, ": expected a <name> in the <object> at byte ", a, ", found none");
    auto it = std::find(names.begin(), names.end(), name);
    BISSL_CHECK(it != names.end(), where, ": expected one of the 20 VOC class names, found '", name, "'");
    const std::string diff = element_text(obj, "difficult", has_difficult, where);
    BISSL_CHECK(!has_difficult || diff == "0" || diff == "1", where, ": expected <difficult> 0 or 1, found '", diff,
                "'");
    r.emplace_back(int64_t(it - names.begin()), has_difficult && diff == "1");
    pos = b + close.size();
  }
  return r;
}

ImageSet load_voc2007(const std::string& root, const std::string& image_set, const VocOptions& opts) {
  BISSL_CHECK(image_set == "train" || image_set == "val" || image_set == "trainval" || image_set == "test",
              "VOC2007: expected the image set train, val, trainval or test, found '", image_set, "'");
  BISSL_CHECK(opts.channels == 1 || opts.channels == 3, "VOC2007: expected 1 or 3 channels, found ", opts.channels);
  BISSL_CHECK(opts.height > 0 && opts.width > 0, "VOC2007: expected a positive image size, found ", opts.height, "x",
              opts.width);
  const std::string dir = voc_dir(root);
  const std::string list = dir + "/ImageSets/Main/" + image_set + ".txt";
  std::ifstream in(list);
  BISSL_CHECK(in, list, ": cannot open the image list");
  std::vector<std::string> ids;
  std::string line;
  for (int64_t ln = 1; std::getline(in, line); ++ln) {
    line = trim(line);
    if (line.empty()) continue;
    BISSL_CHECK(line.find_first_of(" \t") == std::string::npos, list, ":", ln,
                ": expected one image id per line, found '", line, "'");
    ids.push_back(line);
    if (opts.limit >= 0 && int64_t(ids.size()) >= opts.limit) break;
  }
  BISSL_CHECK(!ids.empty(), list, ": expected image ids, found none");

  ImageSet s;
  s.n = int64_t(ids.size());
  s.h = opts.height, s.w = opts.width, s.c = opts.channels;
  s.num_classes = int64_t(voc_class_names().size());
  s.class_names = voc_class_names();
  s.labels.assign(size_t(s.n), kNoLabel);
  s.targets.assign(size_t(s.n * s.num_classes), kAbsent);
  s.pixels.resize(size_t(s.n * s.image_bytes()));
  s.source = str("VOC2007 ", image_set, " (", dir, ")");

  auto load_one = [&](int64_t i) {
    const std::string xml_path = dir + "/Annotations/" + ids[size_t(i)] + ".xml";
    std::vector<uint8_t> bytes = read_file_bytes(xml_path);
    uint8_t* row = s.targets.data() + i * s.num_classes;
    for (auto [c, difficult] : parse_voc_objects(std::string(bytes.begin(), bytes.end()), xml_path)) {
      if (!difficult)
        row[c] = kPresent;
      else if (row[c] == kAbsent)
        row[c] = kDifficult;
    }
    DecodedImage d = decode_image_file(dir + "/JPEGImages/" + ids[size_t(i)] + ".jpg", s.c);
    if (d.h == s.h && d.w == s.w)
      std::copy(d.px.begin(), d.px.end(), s.image(i));
    else
      to_uint8(resize(from_uint8(d.px.data(), d.h, d.w, s.c), s.h, s.w, Interp::Bilinear), s.image(i));
  };
  int threads = opts.threads > 0 ? opts.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<int64_t>(threads, s.n));
  std::vector<std::string> errors(size_t(s.n));
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < s.n;) {
      try {
        load_one(i);
      } catch (const std::exception& e) {
        errors[size_t(i)] = e.what();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  for (const auto& e : errors)  // the first failure in file order, independent of timing
    if (!e.empty()) throw Error(e);
  s.validate();
  return s;
}

ImageSet make_mosaics(const ImageSet& tiles, const MosaicOptions& o) {
  BISSL_CHECK(!tiles.multi_label() && tiles.num_classes > 0 && tiles.n > 0, "mosaics: expected a non-empty ",
              "single-label set of tiles, found '", tiles.source, "' with ", tiles.n, " images, ", tiles.num_classes,
              " classes", tiles.multi_label() ? " (multi-label)" : "");
  BISSL_CHECK(!tiles.lazy, "mosaics: expected tiles in memory, found the lazy set '", tiles.source, "'");
  BISSL_CHECK(o.grid >= 1 && o.grid <= 8, "mosaics: expected a grid of 1 to 8 cells per side, found ", o.grid);
  BISSL_CHECK(o.count > 0, "mosaics: expected a positive count, found ", o.count);
  BISSL_CHECK(o.fill > 0 && o.fill <= 1, "mosaics: expected a fill probability in (0, 1], found ", o.fill);
  std::vector<int64_t> pool = o.pool;
  if (pool.empty())
    for (int64_t i = 0; i < tiles.n; ++i) pool.push_back(i);
  for (int64_t i : pool) {
    BISSL_CHECK(i >= 0 && i < tiles.n, "mosaics: tile index ", i, " out of range for ", tiles.n, " images");
    BISSL_CHECK(tiles.labels[size_t(i)] >= 0, "mosaics: tile ", i, " has no label");
  }
  ImageSet s;
  s.n = o.count;
  s.h = tiles.h * o.grid, s.w = tiles.w * o.grid, s.c = tiles.c;
  s.num_classes = tiles.num_classes;
  s.class_names = tiles.class_names;
  s.labels.assign(size_t(s.n), kNoLabel);
  s.targets.assign(size_t(s.n * s.num_classes), kAbsent);
  s.pixels.assign(size_t(s.n * s.image_bytes()), 0);
  s.source = str(o.grid, "x", o.grid, " mosaics of ", tiles.source);
  const int64_t cells = o.grid * o.grid, th = tiles.h, tw = tiles.w, c = tiles.c;
  for (int64_t i = 0; i < s.n; ++i) {
    SampleRng rng(o.seed, 0, uint64_t(i), 0x6d6f0000u);
    std::vector<char> filled(static_cast<size_t>(cells), 0);
    int64_t any = 0;
    for (int64_t k = 0; k < cells; ++k) any += (filled[size_t(k)] = char(rng.bernoulli(o.fill)));
    if (any == 0) filled[size_t(rng.randint(0, cells - 1))] = 1;
    for (int64_t k = 0; k < cells; ++k) {
      if (!filled[size_t(k)]) continue;
      const int64_t t = pool[size_t(rng.randint(0, int64_t(pool.size()) - 1))];
      s.targets[size_t(i * s.num_classes + tiles.labels[size_t(t)])] = kPresent;
      const int64_t r0 = (k / o.grid) * th, c0 = (k % o.grid) * tw;
      for (int64_t y = 0; y < th; ++y)
        std::copy(tiles.image(t) + y * tw * c, tiles.image(t) + (y + 1) * tw * c,
                  s.image(i) + ((r0 + y) * s.w + c0) * c);
    }
  }
  return s;
}

}  // namespace bissl::data
