// Labelled image collections of your own (data/datasets.h): class folders,
// flat and nested, in both image orders; split files, whitespace and CSV,
// with and without class names; decoding to one size (exact, squash, shorter
// side + centre square), grey or RGB by the first image, bad images skipped
// when asked; and the one-line errors of each.
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <stb/stb_image_write.h>  // implemented in data/stb_write.cpp

#include "data/datasets.h"
#include "engine/error.h"
#include "tests/support.h"

using namespace bissl;
using namespace bissl::data;
namespace fs = std::filesystem;
using bissl::testing::expect_error;
using bissl::testing::TempDir;

namespace {

// A w x h image of c channels whose every byte is `value`.
void png(const fs::path& p, int w, int h, int c, int value) {
  fs::create_directories(p.parent_path());
  std::vector<uint8_t> px(size_t(w * h * c), uint8_t(value));
  REQUIRE(stbi_write_png(p.string().c_str(), w, h, c, px.data(), w * c) != 0);
}

void text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << s;
}

}  // namespace

TEST_CASE("image folder lists: classes sorted, nested folders, both orders, skipped files counted") {
  TempDir t("lists_folder");
  png(t.dir / "b_dog" / "02.png", 4, 4, 3, 1);
  png(t.dir / "b_dog" / "sub" / "00.png", 4, 4, 3, 2);  // nested
  png(t.dir / "a_cat" / "01.png", 4, 4, 3, 3);
  png(t.dir / "a_cat" / "03.png", 4, 4, 3, 4);
  text(t.dir / "a_cat" / "README.txt", "not an image");
  text(t.dir / "a_cat" / ".hidden.png", "hidden files are not looked at");
  fs::create_directories(t.dir / ".cache");  // hidden folder: not a class

  ImageList l = list_image_folder(t.dir.string());
  CHECK(l.class_names == std::vector<std::string>{"a_cat", "b_dog"});
  CHECK(l.names == std::vector<std::string>{"a_cat/01.png", "a_cat/03.png", "b_dog/02.png", "b_dog/sub/00.png"});
  CHECK(l.labels == std::vector<int64_t>{0, 0, 1, 1});
  CHECK(l.skipped == 1);

  FolderListOptions by_name;
  by_name.order = "name";  // by the path below the class folder: 01, 02, 03, sub/00
  ImageList n = list_image_folder(t.dir.string(), by_name);
  CHECK(n.names == std::vector<std::string>{"a_cat/01.png", "b_dog/02.png", "a_cat/03.png", "b_dog/sub/00.png"});
  CHECK(n.labels == std::vector<int64_t>{0, 1, 0, 1});

  ImageSet s = decode_image_list(l, DecodeOptions{});
  CHECK(s.n == 4);
  CHECK(s.labels == l.labels);
  CHECK(int(s.image(0)[0]) == 3);
  CHECK(int(s.image(3)[0]) == 2);

  SUBCASE("a test folder takes the training classes; a class of its own is an error") {
    FolderListOptions o;
    o.classes = {"a_cat", "b_dog", "c_eel"};  // c_eel has no folder here: no images, no error
    CHECK(list_image_folder(t.dir.string(), o).labels == l.labels);
    o.classes = {"b_dog"};
    expect_error([&] { list_image_folder(t.dir.string(), o); }, {"a_cat", "is not among the training classes"});
  }
  SUBCASE("an empty class folder") {
    fs::create_directories(t.dir / "c_empty");
    text(t.dir / "c_empty" / "notes.txt", "x");
    expect_error([&] { list_image_folder(t.dir.string()); }, {"c_empty", "at least one image"});
  }
  SUBCASE("not a folder; no class folders") {
    expect_error([&] { list_image_folder(t.file("nothing")); }, {"nothing", "expected a directory"});
    TempDir e("lists_empty");
    expect_error([&] { list_image_folder(e.dir.string()); }, {"no sub-folders"});
  }
}

TEST_CASE("image folder lists: symbolic links to files and folders, dangling links, loops") {
  // (fuzz_folder found the loop: std::filesystem threw past the one-line errors.)
  TempDir t("lists_links");
  png(t.dir / "a" / "1.png", 2, 2, 1, 1);
  png(t.dir / "elsewhere" / "x" / "2.png", 2, 2, 1, 2);
  fs::create_directories(t.dir / "root" / "b");
  fs::create_symlink(t.dir / "a", t.dir / "root" / "a");                       // a class folder that is a link
  fs::create_symlink(t.dir / "elsewhere" / "x", t.dir / "root" / "b" / "more");  // a linked sub-folder
  fs::create_symlink(t.dir / "a" / "1.png", t.dir / "root" / "b" / "one.png");   // a linked file
  fs::create_symlink(t.dir / "gone.png", t.dir / "root" / "b" / "gone.png");     // dangling: not a file
  const std::string root = (t.dir / "root").string();
  ImageList l = list_image_folder(root);
  CHECK(l.class_names == std::vector<std::string>{"a", "b"});
  // Names are below the class folder as written, not where the links lead.
  CHECK(l.names == std::vector<std::string>{"a/1.png", "b/more/2.png", "b/one.png"});
  CHECK(l.skipped == 0);

  SUBCASE("a link that loops on itself") {
    fs::create_symlink("self.png", t.dir / "root" / "b" / "self.png");
    expect_error([&] { list_image_folder(root); }, {"self.png", "cannot tell what it is", "symbolic links"});
  }
  SUBCASE("a link back to a folder it is inside") {
    fs::create_symlink("..", t.dir / "root" / "b" / "up");  // root/b/up -> root/b
    expect_error([&] { list_image_folder(root); }, {"b/up", "a symbolic link back to", "root/b", "never end"});
  }
  SUBCASE("a class link that loops") {
    fs::create_symlink("c", t.dir / "root" / "c");
    expect_error([&] { list_image_folder(root); }, {"root/c", "cannot tell what it is"});
  }
}

TEST_CASE("decoding a list: sizes, grey or RGB from the first image, bad images") {
  TempDir t("lists_decode");
  png(t.dir / "x" / "a.png", 8, 4, 1, 10);  // grey, 4 high, 8 wide
  png(t.dir / "x" / "b.png", 6, 6, 1, 20);
  png(t.dir / "y" / "c.png", 4, 4, 3, 30);  // RGB: becomes grey (the first image decides)
  ImageList l = list_image_folder(t.dir.string());

  DecodeOptions d;
  d.channels = 0;
  expect_error([&] { decode_image_list(l, d); }, {"b.png", "expected an image of 4x8", "found 6x6"});
  d.fit = Fit::ShorterCrop;
  d.height = d.width = 4;
  ImageSet s = decode_image_list(l, d);
  CHECK(s.c == 1);
  CHECK(s.h == 4);
  CHECK(s.w == 4);
  CHECK(int(s.image(0)[0]) == 10);  // a flat image stays flat through resampling and cropping
  CHECK(int(s.image(1)[5]) == 20);
  d.fit = Fit::Squash;
  d.height = 2, d.width = 3;
  CHECK(decode_image_list(l, d).w == 3);
  d.channels = 3;
  d.fit = Fit::ShorterCrop;
  d.height = d.width = 2;
  CHECK(decode_image_list(l, d).c == 3);
  d.height = 2, d.width = 3;
  expect_error([&] { decode_image_list(l, d); }, {"centre square needs height = width"});

  SUBCASE("an unreadable or truncated image: named, or left out and counted") {
    std::ofstream(t.file("y/broken.png"), std::ios::binary) << "\x89PNG\r\n\x1a\n truncated";
    ImageList l2 = list_image_folder(t.dir.string());
    DecodeOptions e;
    e.fit = Fit::ShorterCrop;
    e.height = e.width = 4;
    expect_error([&] { decode_image_list(l2, e); }, {"broken.png", "cannot decode"});
    e.skip_bad = true;
    DecodeReport rep;
    ImageSet k = decode_image_list(l2, e, &rep);
    CHECK(k.n == 3);
    CHECK(rep.bad == 1);
    CHECK(rep.first_bad.find("broken.png") != std::string::npos);
    CHECK(k.labels == std::vector<int64_t>{0, 0, 1});
  }
  SUBCASE("skipping still works when the first image is the bad one (channels and size come from the next)") {
    std::ofstream(t.file("x/0_broken.png"), std::ios::binary) << "\x89PNG\r\n\x1a\n truncated";
    ImageList l2 = list_image_folder(t.dir.string());
    REQUIRE(l2.names.front() == "x/0_broken.png");
    DecodeOptions e;
    e.channels = 0;
    expect_error([&] { decode_image_list(l2, e); }, {"0_broken.png"});
    e.skip_bad = true;
    e.fit = Fit::ShorterCrop;
    e.height = e.width = 4;
    DecodeReport rep;
    ImageSet k = decode_image_list(l2, e, &rep);
    CHECK(rep.bad == 1);
    CHECK(k.n == 3);
    CHECK(k.c == 1);  // from x/a.png, grey
    DecodeOptions f;  // exact sizes: the first good image (4x8) sets them, b.png (6x6) is then an error
    f.skip_bad = true;
    expect_error([&] { decode_image_list(l2, f); }, {"b.png", "expected an image of 4x8"});
  }
}

TEST_CASE("split files: 'path label' lines, CSV with a header, class names, and their errors") {
  TempDir t("lists_split");
  png(t.dir / "img" / "a.png", 4, 4, 3, 1);
  png(t.dir / "img" / "b.png", 4, 4, 3, 2);
  png(t.dir / "img" / "c d.png", 4, 4, 3, 3);

  text(t.dir / "train.txt", "# a comment\nimg/b.png 1\n\nimg/a.png 0\r\n");
  ImageList l = read_split_file(t.file("train.txt"), t.dir.string());
  CHECK(l.names == std::vector<std::string>{"img/b.png", "img/a.png"});  // file order
  CHECK(l.labels == std::vector<int64_t>{1, 0});
  CHECK(l.class_names == std::vector<std::string>{"0", "1"});

  text(t.dir / "classes.txt", "cat\ndog\n# comment\n\neel\n");
  std::vector<std::string> names = read_class_names(t.file("classes.txt"));
  CHECK(names == std::vector<std::string>{"cat", "dog", "eel"});
  text(t.dir / "train.csv", "label,filename\ndog,img/a.png\n2,\"img/c d.png\"\n");
  ImageList c = read_split_file(t.file("train.csv"), t.dir.string(), names);
  CHECK(c.names == std::vector<std::string>{"img/a.png", "img/c d.png"});
  CHECK(c.labels == std::vector<int64_t>{1, 2});
  CHECK(c.class_names == names);
  CHECK(decode_image_list(c, DecodeOptions{}).n == 2);

  auto fails = [&](const std::string& body, std::initializer_list<std::string> needles,
                   const std::vector<std::string>& classes = {}) {
    text(t.dir / "bad.txt", body);
    expect_error([&] { read_split_file(t.file("bad.txt"), t.dir.string(), classes); }, needles);
  };
  fails("img/a.png 0\nimg/missing.png 1\n", {"bad.txt:2", "'img/missing.png' does not exist"});
  fails("img/a.png 0\nimg/b.png 1\nimg/a.png 1\n", {"bad.txt:3", "'img/a.png' is listed twice", "line 1"});
  fails("img/a.png 3\n", {"bad.txt:1", "label 3 is outside the 3 classes"}, names);
  fails("img/a.png zebra\n", {"bad.txt:1", "'zebra' is neither a class index nor one of the 3 class names"}, names);
  fails("img/a.png -1\n", {"bad.txt:1", "expected a class index >= 0"});
  // Without class names the classes are 0..the largest index: an index past
  // 2^20 would make millions of them (found by fuzz_split_file). The largest
  // allowed passes; with a class-names file the names bound the classes.
  fails("img/a.png 1048576\n", {"bad.txt:1", "class index below 1,048,576 without a class-names file", "found 1048576",
                                 "task.class_names_file"});
  fails("img/a.png 063095123\n", {"bad.txt:1", "found 63095123"});
  text(t.dir / "many.txt", "img/a.png 1048575\n");
  CHECK(read_split_file(t.file("many.txt"), t.dir.string()).class_names.size() == 1048576);
  {  // the fuzzer's input: a mode byte for the harness, then the split file
    std::ifstream in(std::string(BISSL_SOURCE_DIR) + "/fuzz/regressions/split_file/class_index_63_million",
                     std::ios::binary);
    REQUIRE(in.good());
    const std::string saved((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    png(t.dir / "a.png", 4, 4, 3, 1);
    fails(saved.substr(1), {"bad.txt:1", "found 63095123"});
  }
  fails("img/a.png\n", {"bad.txt:1", "expected 'relative/path label'"});
  fails("img/a.png 0 extra\n", {"bad.txt:1", "expected 'relative/path label'"});
  fails("name,kind\na,b\n", {"bad.txt:1", "header naming the columns path and label"});
  fails("# only comments\n", {"bad.txt", "one image per line, found none"});
  text(t.dir / "dup_classes.txt", "cat\ncat\n");
  expect_error([&] { read_class_names(t.file("dup_classes.txt")); }, {"dup_classes.txt:2", "'cat' is listed twice"});
  expect_error([&] { read_split_file(t.file("none.txt"), t.dir.string()); }, {"none.txt"});
}

TEST_CASE("a decompression bomb: a tiny PNG declaring 14 000 x 14 000 pixels is refused from its header") {
  TempDir t("lists_bomb");
  // A 1x1 PNG whose IHDR then claims 14000 x 14000 (stb_image does not check
  // the chunk's CRC; the header is all a size check reads).
  png(t.dir / "c" / "bomb.png", 1, 1, 1, 0);
  {
    std::fstream f(t.file("c/bomb.png"), std::ios::in | std::ios::out | std::ios::binary);
    const unsigned char dims[8] = {0, 0, 0x36, 0xB0, 0, 0, 0x36, 0xB0};  // 14000 big-endian, twice
    f.seekp(16);
    f.write(reinterpret_cast<const char*>(dims), 8);
  }
  CHECK(fs::file_size(t.file("c/bomb.png")) < 100);
  expect_error([&] { decode_image_file(t.file("c/bomb.png"), 1); },
               {"bomb.png", "declares 14000x14000 = 196,000,000 pixels", "more than the limit of 89,478,485",
                "max_image_pixels"});
  // Raised above it, the header passes; this file then fails as what it is, a truncated image.
  try {
    decode_image_file(t.file("c/bomb.png"), 1, 200000000);
    FAIL("a 1x1 file cannot hold 14000x14000 pixels");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("limit") == std::string::npos);
    CHECK(std::string(e.what()).find("cannot decode") != std::string::npos);
  }
  // A real image against a low limit, through a whole list; raising the limit lets it through.
  png(t.dir / "c" / "real.png", 20, 20, 1, 9);
  fs::remove(t.file("c/bomb.png"));
  DecodeOptions d;
  d.max_pixels = 399;
  expect_error([&] { decode_image_list(list_image_folder(t.dir.string()), d); },
               {"real.png", "declares 20x20 = 400 pixels", "limit of 399"});
  d.max_pixels = 400;
  CHECK(decode_image_list(list_image_folder(t.dir.string()), d).n == 1);
  d.max_pixels = 0;  // no limit
  CHECK(decode_image_list(list_image_folder(t.dir.string()), d).n == 1);
}

TEST_CASE("uncompressed images cut short are refused, not decoded from zeros or stale heap bytes") {
  // stb_image 2.27 decodes them without an error: a PNM's and a TGA's missing
  // rows are left as the allocator found them, a BMP's read as zeros.
  TempDir t("raw_pixels");
  auto write = [&](const std::string& name, const std::string& bytes) {
    const std::string path = t.file(name);
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  };
  auto le = [](uint32_t v, int bytes) {
    std::string r;
    for (int i = 0; i < bytes; ++i) r += char((v >> (8 * i)) & 255);
    return r;
  };
  // 5 x 3 pixels of each format, whole and one byte short.
  const std::string pgm = "P5\n# a comment\n5 3\n255\n" + std::string(15, '\x80');
  const std::string ppm = "P6 5 3 255 " + std::string(45, '\x80');
  // BMP, 24 bits: rows of 15 bytes padded to 16; a 40-byte info header.
  const std::string bmp_head = "BM" + le(54 + 48, 4) + le(0, 4) + le(54, 4) + le(40, 4) + le(5, 4) + le(3, 4) +
                               le(1, 2) + le(24, 2) + le(0, 4) + le(48, 4) + std::string(16, '\0');
  const std::string bmp = bmp_head + std::string(48, '\x80');
  // The same rows top-down (a negative height).
  std::string bmp_down = bmp;
  bmp_down.replace(22, 4, le(uint32_t(-3), 4));
  // TGA, type 2 (colour), 24 bits, an image ID of 2 bytes.
  const std::string tga = std::string("\x02\x00\x02", 3) + std::string(9, '\0') + le(5, 2) + le(3, 2) +
                          std::string("\x18\x00", 2) + "id" + std::string(45, '\x80');
  // TGA, type 3 (grey), 8 bits.
  const std::string tga_grey = std::string("\x00\x00\x03", 3) + std::string(9, '\0') + le(5, 2) + le(3, 2) +
                               std::string("\x08\x00", 2) + std::string(15, '\x80');
  const std::vector<std::pair<std::string, std::string>> files = {
      {"PNM", pgm}, {"PNM", ppm}, {"BMP", bmp}, {"BMP", bmp_down}, {"TGA", tga}, {"TGA", tga_grey}};
  for (size_t i = 0; i < files.size(); ++i) {
    CAPTURE(i);
    const auto& [format, bytes] = files[i];
    const std::string whole = write(str("whole", i), bytes);
    const DecodedImage d = decode_image_file(whole, 3);
    CHECK(d.h == 3);
    CHECK(d.w == 5);
    CHECK(d.px[0] == 0x80);
    CHECK(d.px.back() == 0x80);
    const std::string cut = write(str("cut", i), bytes.substr(0, bytes.size() - 1));
    expect_error([&] { decode_image_file(cut, 3); },
                 {cut, "cannot decode the image: its " + format + " header declares 5x3 pixels",
                  "more than the file holds after its header (", "truncated or hostile"});
  }
  // A header declaring far more than any file: the product saturates.
  const std::string huge = write("huge.bmp", "BM" + le(0, 4) + le(0, 4) + le(54, 4) + le(40, 4) + le(0x7fffffff, 4) +
                                                 le(0x7fffffff, 4) + le(1, 2) + le(32, 2) + le(0, 4) + le(0, 4) +
                                                 std::string(16, '\0'));
  expect_error([&] { decode_image_file(huge, 3, /*max_pixels=*/0); }, {huge, "BMP header declares", "truncated or hostile"});
  // The fuzzer's: a 40 x 40 PGM of 4 bytes (stale heap bytes as pixels before).
  const std::string dir = std::string(BISSL_SOURCE_DIR) + "/fuzz/regressions/image/";
  std::ifstream in(dir + "pnm_truncated_pixels", std::ios::binary);
  REQUIRE(in.good());
  const std::string saved((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string pnm = write("fuzz.pgm", saved.substr(1));  // a mode byte for the harness, then the image
  expect_error([&] { decode_image_file(pnm, 1); }, {pnm, "PNM header declares 40x40 pixels, 1,600 bytes", "(4)"});
}

TEST_CASE("what fuzz_image found in stb_image 2.27: refused before stb_image reads it, one line each") {
  // The inputs in fuzz/regressions/image/, each a file as the fuzzer saved
  // it: a mode byte for the harness, then the image.
  const std::string dir = std::string(BISSL_SOURCE_DIR) + "/fuzz/regressions/image/";
  TempDir t("stb_findings");
  auto as_image = [&](const std::string& name) {
    std::ifstream in(dir + name, std::ios::binary);
    REQUIRE(in.good());
    std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string path = t.file(name + ".img");
    std::ofstream(path, std::ios::binary) << b.substr(1);
    return path;
  };
  // A JPEG Huffman table of more than 256 codes: stb_image would write past its table.
  const std::string dht = as_image("jpeg_dht_over_256_codes");
  expect_error([&] { decode_image_file(dht, 3); }, {dht, "Huffman table of at most 256 codes", "corrupt or hostile"});
  expect_error([&] { image_file_channels(dht); }, {dht, "Huffman table"});
  // The same after a fill byte before the start marker (stb_image skips fill bytes).
  const std::string fill = as_image("jpeg_dht_after_fill_byte");
  expect_error([&] { decode_image_file(fill, 3); }, {fill, "Huffman table of at most 256 codes"});
  // A scan decoding with a Huffman table (AC 0) that no DHT segment defined:
  // stb_image read symbols from a table it never initialised.
  const std::string undefined = as_image("jpeg_scan_undefined_huffman_table");
  expect_error([&] { decode_image_file(undefined, 3); },
               {undefined, "JPEG Huffman table AC 0 to be defined before the scan that uses it", "corrupt or hostile"});
  // The check passes real JPEGs: baseline, and progressive (whose DC scans
  // name AC tables they do not use, and whose DC refinements use none).
  for (const char* name : {"jpeg", "jpeg_progressive", "jpeg_progressive_grey"}) {
    CAPTURE(name);
    std::ifstream in(std::string(BISSL_SOURCE_DIR) + "/fuzz/corpus/image/" + name, std::ios::binary);
    if (!in.good()) continue;  // written only where Pillow was at hand (fuzz/make_corpus.py)
    std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string path = t.file(std::string(name) + ".jpg");
    std::ofstream(path, std::ios::binary) << b.substr(1);
    const DecodedImage d = decode_image_file(path, 3);
    CHECK(d.h == 7);
    CHECK(d.w == 9);
  }
  // A PNM header number past int: stb_image's parser overflows.
  const std::string pnm = as_image("pnm_integer_overflow");
  expect_error([&] { image_file_channels(pnm); }, {pnm, "PNM header number of at most 9 digits"});
  // A 16-bit PNM converted to 3 channels: stb_image reads past its buffer.
  const std::string pnm16 = as_image("pnm_16bit_channel_conversion");
  expect_error([&] { decode_image_file(pnm16, 3); }, {pnm16, "8-bit PNM", "found 2555"});
  // 2 x 288 888 pixels: within the file limit, but resampled to a shorter
  // side of 16 it would hold 16 x 2 311 104. (The fuzzer's file holds 13
  // bytes of its pixels, refused as truncated now: the test writes them all.)
  const std::string cut = as_image("extreme_aspect_ratio_upscale");
  expect_error([&] { decode_image_file(cut, 3); }, {cut, "PNM header declares 2x288888 pixels", "truncated or hostile"});
  const std::string wide = t.file("wide.ppm");
  std::ofstream(wide, std::ios::binary) << "P6\n2 288888\n255\n" << std::string(2 * 288888 * 3, '\x40');
  ImageList one;
  one.files = {wide};
  one.names = {"wide"};
  one.labels = {0};
  one.class_names = {"c"};
  DecodeOptions fit;
  fit.fit = Fit::ShorterCrop;
  fit.height = fit.width = 16;
  fit.max_pixels = 1 << 20;
  expect_error([&] { decode_image_list(one, fit); }, {wide, "shorter side resampled to 16", "extreme aspect ratio"});
  // A 99-byte PNG whose IDAT chunk declares ~2 GB: stb_image would grow its
  // buffer to 2 GiB before finding the data missing.
  const std::string idat = as_image("png_idat_declares_2gb");
  expect_error([&] { decode_image_file(idat, 3); }, {idat, "cannot decode", "PNG chunk 'IDAT' at byte", "more than the file holds",
                                                     "truncated or hostile"});
  // A PNM of height 0: stb_image hands over an empty image.
  const std::string empty = as_image("zero_size_image");
  expect_error([&] { decode_image_file(empty, 3); }, {empty, "at least 1x1 pixels"});
  // The same through a lazy list's header scan.
  ImageList l;
  l.files = {dht};
  l.names = {"x"};
  l.labels = {0};
  l.class_names = {"c"};
  DecodeOptions o;
  o.lazy = true;
  expect_error([&] { decode_image_list(l, o); }, {dht, "Huffman table"});
}
