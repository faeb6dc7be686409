// Multi-label sets: the VOC 2007 reader on a small tree written here (the
// annotation rules, resizing, every malformed input), the mosaic task, and
// multi-label targets through subset() and the loader.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_image_write.h>  // implemented in data/stb_write.cpp
#pragma GCC diagnostic pop

#include "data/datasets.h"
#include "data/loader.h"
#include "engine/error.h"

#include "tests/support.h"

using namespace bissl;
using namespace bissl::data;
namespace fs = std::filesystem;

namespace {

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

using bissl::testing::expect_error;

std::string object(const std::string& name, int difficult, const std::string& extra = "") {
  return "  <object>\n    <name>" + name + "</name>\n    <pose>Left</pose>\n    <truncated>0</truncated>\n" +
         "    <difficult>" + std::to_string(difficult) + "</difficult>\n" + extra +
         "    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>\n  </object>\n";
}

std::string annotation(const std::string& objects) {
  return "<annotation>\n  <folder>VOC2007</folder>\n  <filename>x.jpg</filename>\n" + objects + "</annotation>\n";
}

// A VOC tree: VOCdevkit/VOC2007/{ImageSets/Main, Annotations, JPEGImages}.
struct VocTree {
  bissl::testing::TempDir t{"voc"};
  std::string dir() const { return t.file("VOCdevkit/VOC2007"); }
  void image(const std::string& id, int w, int h, uint8_t v) {
    fs::create_directories(dir() + "/JPEGImages");
    std::vector<uint8_t> px(size_t(w * h * 3), v);
    // PNG bytes under the .jpg name: stb_image tells formats apart by content.
    REQUIRE(stbi_write_png((dir() + "/JPEGImages/" + id + ".jpg").c_str(), w, h, 3, px.data(), w * 3) != 0);
  }
  void ann(const std::string& id, const std::string& objects) {
    write_text(dir() + "/Annotations/" + id + ".xml", annotation(objects));
  }
  void list(const std::string& set, const std::string& text) { write_text(dir() + "/ImageSets/Main/" + set + ".txt", text); }
};

}  // namespace

TEST_CASE("VOC annotations: object names, not part names; difficult flags") {
  const std::string person_with_parts =
      object("person", 0, "    <part><name>head</name><bndbox><xmin>1</xmin></bndbox></part>\n"
                          "    <part><name>hand</name></part>\n");
  auto objs = parse_voc_objects(annotation(object("dog", 0) + person_with_parts + object("chair", 1)), "a.xml");
  REQUIRE(objs.size() == 3);
  CHECK(objs[0] == std::pair<int64_t, bool>{11, false});  // dog
  CHECK(objs[1] == std::pair<int64_t, bool>{14, false});  // person (its parts ignored)
  CHECK(objs[2] == std::pair<int64_t, bool>{8, true});    // chair, difficult
  CHECK(parse_voc_objects(annotation(""), "empty.xml").empty());
  // No <difficult> element: not difficult.
  auto plain = parse_voc_objects("<annotation><object><name> cat </name></object></annotation>", "p.xml");
  REQUIRE(plain.size() == 1);
  CHECK(plain[0] == std::pair<int64_t, bool>{7, false});
  CHECK(voc_class_names().size() == 20);
  CHECK(voc_class_names()[0] == "aeroplane");
  CHECK(voc_class_names()[19] == "tvmonitor");

  expect_error([] { parse_voc_objects("<html></html>", "b.xml"); }, {"b.xml", "<annotation>"});
  expect_error([] { parse_voc_objects(annotation(object("unicorn", 0)), "c.xml"); }, {"c.xml", "unicorn", "20 VOC"});
  expect_error([] { parse_voc_objects(annotation("<object><name>dog</name>"), "d.xml"); }, {"d.xml", "</object>"});
  expect_error([] { parse_voc_objects(annotation("<object><pose>x</pose></object>"), "e.xml"); }, {"e.xml", "<name>"});
  expect_error([] { parse_voc_objects(annotation(object("dog", 3)), "f.xml"); }, {"f.xml", "difficult", "'3'"});
}

TEST_CASE("VOC2007 reader: image sets, targets, resize on load, root forms, limit") {
  VocTree v;
  v.image("000001", 8, 6, 10);
  v.image("000002", 4, 4, 200);
  v.image("000003", 5, 7, 90);
  v.ann("000001", object("dog", 0) + object("person", 0) + object("dog", 1));
  v.ann("000002", object("cat", 1) + object("cat", 1));
  v.ann("000003", object("cat", 1) + object("cat", 0));
  v.list("train", "000001\n000002\n");
  v.list("test", "000003\n\n");
  VocOptions o;
  o.height = 4, o.width = 4, o.threads = 2;
  for (const std::string& root : {v.dir(), v.t.file("VOCdevkit"), v.t.dir.string()}) {
    ImageSet s = load_voc2007(root, "train", o);
    CHECK(s.n == 2);
    CHECK(s.h == 4);
    CHECK(s.w == 4);
    CHECK(s.c == 3);
    CHECK(s.num_classes == 20);
    CHECK(s.multi_label());
    CHECK(s.labelled());
    CHECK(s.labels == std::vector<int64_t>{kNoLabel, kNoLabel});
    std::vector<uint8_t> row0(s.target_row(0), s.target_row(0) + 20), row1(s.target_row(1), s.target_row(1) + 20);
    std::vector<uint8_t> want0(20, kAbsent), want1(20, kAbsent);
    want0[11] = kPresent;  // dog: one instance is not difficult
    want0[14] = kPresent;
    want1[7] = kDifficult;  // cat: every instance difficult
    CHECK(row0 == want0);
    CHECK(row1 == want1);
    // Uniform images stay uniform through the resize; the 4x4 one is copied.
    CHECK(s.image(0)[0] == 10);
    CHECK(s.image(0)[4 * 4 * 3 - 1] == 10);
    CHECK(s.image(1)[5] == 200);
  }
  ImageSet te = load_voc2007(v.dir(), "test", o);
  CHECK(te.n == 1);
  CHECK(te.target_row(0)[7] == kPresent);
  CHECK(class_counts(te)[7] == 1);
  o.limit = 1;
  CHECK(load_voc2007(v.dir(), "train", o).n == 1);
}

TEST_CASE("VOC2007 reader: malformed trees give one-line errors naming the file") {
  VocTree v;
  v.image("000001", 4, 4, 1);
  v.ann("000001", object("dog", 0));
  v.list("train", "000001\n");
  VocOptions o;
  o.height = o.width = 4;
  expect_error([&] { load_voc2007(v.t.file("nowhere"), "train", o); }, {"nowhere", "ImageSets/Main"});
  expect_error([&] { load_voc2007(v.dir(), "trainval", o); }, {"trainval.txt", "cannot open"});
  expect_error([&] { load_voc2007(v.dir(), "everything", o); }, {"train, val, trainval or test", "everything"});
  v.list("val", "000001 1\n");
  expect_error([&] { load_voc2007(v.dir(), "val", o); }, {"val.txt:1", "one image id"});
  v.list("val", "\n");
  expect_error([&] { load_voc2007(v.dir(), "val", o); }, {"val.txt", "no"});
  v.list("val", "000001\n000009\n");
  expect_error([&] { load_voc2007(v.dir(), "val", o); }, {"000009.xml"});
  v.ann("000009", object("dog", 0));
  expect_error([&] { load_voc2007(v.dir(), "val", o); }, {"000009.jpg"});
  write_text(v.dir() + "/JPEGImages/000009.jpg", "not an image");
  expect_error([&] { load_voc2007(v.dir(), "val", o); }, {"000009.jpg", "decode"});
}

TEST_CASE("mosaics: tiles in place, targets = tile classes, deterministic, pool respected") {
  ImageSet tiles;
  tiles.n = 6, tiles.h = 2, tiles.w = 3, tiles.c = 1, tiles.num_classes = 3;
  tiles.source = "tiles";
  for (int64_t i = 0; i < tiles.n; ++i) {
    tiles.labels.push_back(i % 3);
    for (int64_t k = 0; k < 6; ++k) tiles.pixels.push_back(uint8_t(1 + 10 * i + k));  // tile i: 10i+1 .. 10i+6
  }
  MosaicOptions o;
  o.count = 50, o.grid = 2, o.fill = 0.6, o.seed = 3;
  o.pool = {0, 1, 3, 4};  // classes 0 and 1 only
  ImageSet m = make_mosaics(tiles, o);
  m.validate();
  CHECK(m.n == 50);
  CHECK(m.h == 4);
  CHECK(m.w == 6);
  CHECK(m.multi_label());
  int64_t empty_cells = 0, cells_with_classes[3] = {0, 0, 0};
  for (int64_t i = 0; i < m.n; ++i) {
    std::vector<uint8_t> want(3, kAbsent);
    int64_t filled = 0;
    for (int64_t cell = 0; cell < 4; ++cell) {
      const int64_t r0 = (cell / 2) * 2, c0 = (cell % 2) * 3;
      const uint8_t first = m.image(i)[r0 * 6 + c0];
      if (first == 0) {  // an empty cell is all black
        ++empty_cells;
        for (int64_t y = 0; y < 2; ++y)
          for (int64_t x = 0; x < 3; ++x) CHECK(m.image(i)[(r0 + y) * 6 + c0 + x] == 0);
        continue;
      }
      ++filled;
      const int64_t t = (first - 1) / 10;
      REQUIRE(std::find(o.pool.begin(), o.pool.end(), t) != o.pool.end());
      for (int64_t y = 0; y < 2; ++y)
        for (int64_t x = 0; x < 3; ++x) CHECK(m.image(i)[(r0 + y) * 6 + c0 + x] == uint8_t(1 + 10 * t + y * 3 + x));
      want[size_t(tiles.labels[size_t(t)])] = kPresent;
      ++cells_with_classes[tiles.labels[size_t(t)]];
    }
    CHECK(filled >= 1);
    CHECK(std::vector<uint8_t>(m.target_row(i), m.target_row(i) + 3) == want);
  }
  CHECK(empty_cells > 0);
  CHECK(cells_with_classes[0] > 0);
  CHECK(cells_with_classes[1] > 0);
  CHECK(cells_with_classes[2] == 0);
  ImageSet again = make_mosaics(tiles, o);
  CHECK(again.pixels == m.pixels);
  CHECK(again.targets == m.targets);
  o.seed = 4;
  CHECK(make_mosaics(tiles, o).pixels != m.pixels);

  expect_error([&] { make_mosaics(m, o); }, {"single-label", "multi-label"});
  MosaicOptions bad = o;
  bad.fill = 0;
  expect_error([&] { make_mosaics(tiles, bad); }, {"fill", "(0, 1]"});
  bad = o;
  bad.pool = {6};
  expect_error([&] { make_mosaics(tiles, bad); }, {"tile index 6", "6 images"});
}

TEST_CASE("multi-label targets through subset, validate and the loader") {
  ImageSet s;
  s.n = 4, s.h = 2, s.w = 2, s.c = 1, s.num_classes = 3;
  s.pixels.assign(16, 100);
  s.labels.assign(4, kNoLabel);
  s.targets = {1, 0, 0, /**/ 0, 2, 1, /**/ 0, 0, 0, /**/ 1, 1, 1};
  s.validate();
  ImageSet sub = subset(s, {3, 1});
  CHECK(sub.targets == std::vector<uint8_t>{1, 1, 1, 0, 2, 1});
  CHECK(class_counts(s) == std::vector<int64_t>{2, 2, 2});

  LoaderOptions lo;
  lo.batch_size = 4, lo.shuffle = false, lo.workers = 0;
  Loader loader(s, lo);
  Batch b;
  REQUIRE(loader.next(b));
  REQUIRE(b.targets.defined());
  CHECK(b.targets.shape() == Shape{4, 3});
  // Difficult counts as present in the training targets (the reference's).
  CHECK(b.targets.to_vector() == std::vector<double>{1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1});

  ImageSet bad = s;
  bad.targets[4] = 3;
  expect_error([&] { bad.validate(); }, {"target 3", "image 1", "class 1"});
  bad = s;
  bad.targets.pop_back();
  expect_error([&] { bad.validate(); }, {"4 x 3", "found 11"});
  bad = s;
  bad.labels[2] = 0;
  expect_error([&] { bad.validate(); }, {"multi-label", "single label 0"});
}
