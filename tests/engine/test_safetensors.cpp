// safetensors I/O: round trips, byte-exact compatibility with the reference
// format, and one test per way a file can be corrupt or hostile.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/io/safetensors.h"
#include "tests/support.h"

using namespace bissl;
using namespace bissl::io;
namespace fs = std::filesystem;

namespace {

using bissl::testing::TempDir;

template <class T>
Tensor make(const Shape& s, DType dt, const std::vector<T>& v) {
  Tensor t = empty(s, dt);
  REQUIRE(t.nbytes() == v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(t.raw(), v.data(), t.nbytes());
  return t;
}

std::string bytes_of(const Tensor& t) {
  return std::string(static_cast<const char*>(t.raw()), t.nbytes());
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xff);
  return s;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(f.good());
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A file exactly as the format describes it: length, header, buffer.
std::string st_file(const std::string& header, const std::string& buffer) {
  return le64(header.size()) + header + buffer;
}

// Loads `bytes` from a file and returns the Error message ("" if it loaded).
std::string load_error(const TempDir& td, const std::string& bytes) {
  const std::string path = td.file("bad.safetensors");
  write_file(path, bytes);
  try {
    load_safetensors(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Every load failure names the file, contains `phrase`, and is one line.
void check_load_fails(const TempDir& td, const std::string& bytes, const std::string& phrase) {
  const std::string msg = load_error(td, bytes);
  INFO("message: " << msg);
  CHECK(msg.find(phrase) != std::string::npos);
  CHECK(msg.find(td.file("bad.safetensors")) != std::string::npos);
  CHECK(msg.find('\n') == std::string::npos);
}

const std::string kF32x2 = std::string("\x00\x00\x80\x3f\x00\x00\x20\xc0", 8);  // 1.0f, -2.5f

std::string entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
}

}  // namespace

TEST_SUITE("safetensors") {

TEST_CASE("round trip of every dtype, a scalar, empty tensors and metadata") {
  TempDir td("roundtrip");
  const std::string path = td.file("w.safetensors");

  const float nan_f = std::numeric_limits<float>::quiet_NaN();
  Tensor f32 = make<float>({2, 3}, DType::F32, {1.5f, -2.0f, 0.0f, -0.0f, 3.25e-38f, nan_f});
  Tensor f64 = make<double>({4}, DType::F64, {1.0 / 3.0, -1e300, 4.9e-324, 2.0});
  Tensor i64 = make<int64_t>({3}, DType::I64,
                             {std::numeric_limits<int64_t>::min(), -1, std::numeric_limits<int64_t>::max()});
  // bf16 bits: 1.0, -2.0, +inf, a NaN payload, -0, smallest subnormal.
  Tensor bf16 = make<uint16_t>({2, 3}, DType::BF16, {0x3f80, 0xc000, 0x7f80, 0x7fc1, 0x8000, 0x0001});
  Tensor scalar = make<float>({}, DType::F32, {42.0f});
  Tensor empty0 = make<float>({0}, DType::F32, {});
  Tensor empty3 = make<int64_t>({2, 0, 3}, DType::I64, {});

  NamedTensors in = {{"layer1.0.conv1.weight", f32}, {"f64", f64},       {"labels", i64},
                     {"bf16", bf16},                 {"step", scalar},   {"none", empty0},
                     {"none3", empty3}};
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"stage", "bissl"}, {"empty", ""}};
  save_safetensors(path, in, meta);

  SafetensorsFile out = load_safetensors(path);
  REQUIRE(out.tensors.size() == in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    INFO("tensor " << in[i].first);
    CHECK(out.tensors[i].first == in[i].first);  // order preserved
    const Tensor& a = in[i].second;
    const Tensor& b = out.tensors[i].second;
    CHECK(b.dtype() == a.dtype());
    CHECK(b.shape() == a.shape());
    CHECK(b.device() == Device::CPU);
    CHECK(bytes_of(b) == bytes_of(a));  // bit-exact, NaN payloads included
  }
  CHECK(out.metadata == meta);
  CHECK(out.path == path);
  CHECK(out.get("step").dim() == 0);
  CHECK(out.get("step").numel() == 1);
  CHECK(out.get("none3").shape() == Shape{2, 0, 3});
  CHECK(out.has("bf16"));
  CHECK_FALSE(out.has("BF16"));
}

TEST_CASE("written files have the reference layout, byte for byte") {
  TempDir td("layout");
  const std::string path = td.file("a.safetensors");
  Tensor a = make<float>({2}, DType::F32, {1.0f, -2.5f});
  Tensor b = make<uint16_t>({1}, DType::BF16, {0x3f80});
  save_safetensors(path, {{"a", a}, {"b", b}}, {{"format", "pt"}});

  std::string header =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[8,10]}}";
  header.append((8 - header.size() % 8) % 8, ' ');  // padded to 8 like the HF writer
  const std::string expected = le64(header.size()) + header + kF32x2 + std::string("\x80\x3f", 2);
  CHECK(read_file(path) == expected);
  CHECK(header.size() % 8 == 0);
}

TEST_CASE("a hand-built file in the reference format loads") {
  TempDir td("handbuilt");
  // As PyTorch/HF writers produce it: header keys in any order, data ordered
  // by offset, __metadata__ first, no padding needed for the reader.
  const std::string header =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"z_i64\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[8,24]},"
      "\"a_f32\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[0,8]},"
      "\"s_f64\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[24,32]},"
      "\"h_bf16\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[32,36]}}";
  const std::string buffer = kF32x2 +                                        // 1.0f, -2.5f
                             std::string("\x07\x00\x00\x00\x00\x00\x00\x00", 8) +  // 7
                             std::string(8, '\xff') +                        // -1
                             std::string("\x00\x00\x00\x00\x00\x00\xf0\x3f", 8) +  // 1.0
                             std::string("\x80\x3f\x00\xc0", 4);             // bf16 1.0, -2.0
  const std::string path = td.file("hf.safetensors");
  write_file(path, st_file(header, buffer));

  SafetensorsFile f = load_safetensors(path);
  REQUIRE(f.tensors.size() == 4);
  // Returned in data order.
  CHECK(f.tensors[0].first == "a_f32");
  CHECK(f.tensors[1].first == "z_i64");
  CHECK(f.tensors[2].first == "s_f64");
  CHECK(f.tensors[3].first == "h_bf16");
  CHECK(f.metadata.at("format") == "pt");

  const Tensor& a = f.get("a_f32");
  CHECK(a.dtype() == DType::F32);
  CHECK(a.shape() == Shape{2, 1});
  CHECK(a.data<float>()[0] == 1.0f);
  CHECK(a.data<float>()[1] == -2.5f);
  const Tensor& z = f.get("z_i64");
  CHECK(z.dtype() == DType::I64);
  CHECK(z.data<int64_t>()[0] == 7);
  CHECK(z.data<int64_t>()[1] == -1);
  const Tensor& s = f.get("s_f64");
  CHECK(s.dtype() == DType::F64);
  CHECK(s.dim() == 0);
  CHECK(s.data<double>()[0] == 1.0);
  const Tensor& h = f.get("h_bf16");
  CHECK(h.dtype() == DType::BF16);
  CHECK(h.data<uint16_t>()[0] == 0x3f80);
  CHECK(bf16_to_f32(h.data<uint16_t>()[1]) == -2.0f);

  // A header with only metadata, and a completely empty one.
  write_file(path, st_file("{\"__metadata__\":{}}", ""));
  CHECK(load_safetensors(path).tensors.empty());
  write_file(path, st_file("{}      ", ""));
  CHECK(load_safetensors(path).tensors.empty());
  // Extra entry fields are ignored, a null __metadata__ means none.
  write_file(path, st_file("{\"__metadata__\":null,\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                           "\"data_offsets\":[0,8],\"extra\":1}}",
                           kF32x2));
  CHECK(load_safetensors(path).get("a").numel() == 2);
}

TEST_CASE("get names the file and its keys when a tensor is absent") {
  TempDir td("get");
  const std::string path = td.file("g.safetensors");
  save_safetensors(path, {{"conv1.weight", make<float>({1}, DType::F32, {1.0f})},
                          {"fc.bias", make<float>({1}, DType::F32, {2.0f})}});
  SafetensorsFile f = load_safetensors(path);
  CHECK_THROWS_WITH_AS(f.get("module.conv1.weight"), doctest::Contains("\"module.conv1.weight\""), Error);
  CHECK_THROWS_WITH_AS(f.get("x"), doctest::Contains("\"conv1.weight\", \"fc.bias\""), Error);
  CHECK_THROWS_WITH_AS(f.get("x"), doctest::Contains(path.c_str()), Error);
}

TEST_CASE("unreadable and truncated files") {
  TempDir td("unreadable");
  const std::string missing = td.file("missing.safetensors");
  CHECK_THROWS_WITH_AS(load_safetensors(missing), doctest::Contains("No such file or directory"), Error);
  CHECK_THROWS_WITH_AS(load_safetensors(missing), doctest::Contains(missing.c_str()), Error);
  CHECK_THROWS_WITH_AS(load_safetensors(td.dir.string()), doctest::Contains("found a directory"), Error);

  check_load_fails(td, "", "expected at least 8 bytes");
  check_load_fails(td, "abc", "expected at least 8 bytes");
  // Header length larger than the file, and absurdly large.
  check_load_fails(td, le64(100) + "{}", "header length within the 2 bytes");
  check_load_fails(td, le64(200'000'000) + "{}", "at most 100000000");
  check_load_fails(td, le64(std::numeric_limits<uint64_t>::max()) + "{}", "at most 100000000");

  // A valid file cut short anywhere: in the length, the header or the data.
  const std::string good_path = td.file("good.safetensors");
  save_safetensors(good_path, {{"w", make<float>({4}, DType::F32, {1, 2, 3, 4})}});
  const std::string good = read_file(good_path);
  check_load_fails(td, good.substr(0, 5), "expected at least 8 bytes");
  check_load_fails(td, good.substr(0, 20), "expected a header length within");
  check_load_fails(td, good.substr(0, good.size() - 4), "(truncated file?)");
  // Extra bytes after the last tensor.
  check_load_fails(td, good + "xyz", "3 trailing bytes");
}

TEST_CASE("malformed headers") {
  TempDir td("header");
  check_load_fails(td, st_file("", ""), "expected the header to be valid JSON");
  check_load_fails(td, st_file("{\"a\":", ""), "expected the header to be valid JSON");
  check_load_fails(td, st_file("{} x", ""), "expected the header to be valid JSON");
  check_load_fails(td, st_file("{\"a\xff\":1}", ""), "expected the header to be valid JSON");  // bad UTF-8
  check_load_fails(td, st_file("[1,2]", ""), "expected the header to be a JSON object, found array");
  check_load_fails(td, st_file("null", ""), "expected the header to be a JSON object, found null");
  check_load_fails(td, st_file("{\"a\":3}", ""), "tensor \"a\": expected an object {dtype, shape, data_offsets}");
  check_load_fails(td, st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                               kF32x2 + kF32x2),
                   "found \"a\" twice");
  // Hostile names are escaped so the message stays on one line.
  check_load_fails(td, st_file("{\"line\\nbreak\":3}", ""), "tensor \"line\\nbreak\"");
}

TEST_CASE("limits: entry count and nesting depth, refused while parsing") {
  TempDir td("limits");
  // 50 001 empty tensors: more entries than any model holds.
  std::string h = "{";
  for (int i = 0; i <= 50000; ++i) h += (i ? ",\"t" : "\"t") + std::to_string(i) + "\":" + entry("F32", "[0]", "[0,0]");
  h += "}";
  check_load_fails(td, st_file(h, ""), "expected at most 50000 entries in the header, found more");
  // 50 000 load.
  const size_t last = h.rfind(",\"t50000\"");
  REQUIRE(last != std::string::npos);
  const std::string ok = h.substr(0, last) + "}";
  const std::string path = td.file("many.safetensors");
  write_file(path, st_file(ok, ""));
  CHECK(load_safetensors(path).tensors.size() == 50000);
  // 1 001 metadata keys.
  std::string meta = "{\"__metadata__\":{";
  for (int i = 0; i <= 1000; ++i) meta += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":\"v\"";
  check_load_fails(td, st_file(meta + "}}", ""), "expected at most 1000 keys in an entry or in");
  // Nesting deeper than object > entry > shape.
  check_load_fails(td, st_file("{\"a\":" + entry("F32", "[[2]]", "[0,8]") + "}", kF32x2), "nested at most 4");
  check_load_fails(td, st_file("{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}", ""), "nested at most 4");
  check_load_fails(td, st_file(std::string(5000, '[') + std::string(5000, ']'), ""), "nested at most 4");
}

TEST_CASE("entries with missing fields or wrong JSON types") {
  TempDir td("fields");
  auto one = [](const std::string& e) { return st_file("{\"w\":" + e + "}", kF32x2); };
  check_load_fails(td, one("{\"shape\":[2],\"data_offsets\":[0,8]}"), "expected a \"dtype\" field");
  check_load_fails(td, one("{\"dtype\":\"F32\",\"data_offsets\":[0,8]}"), "expected a \"shape\" field");
  check_load_fails(td, one("{\"dtype\":\"F32\",\"shape\":[2]}"), "expected a \"data_offsets\" field");
  check_load_fails(td, one("{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}"),
                   "expected \"dtype\" to be a string, found number");
  check_load_fails(td, one(entry("F32", "2", "[0,8]")), "expected \"shape\" to be an array of integers");
  check_load_fails(td, one(entry("F32", "[2.0]", "[0,8]")), "expected \"shape\" to hold integers, found 2.0");
  check_load_fails(td, one(entry("F32", "[\"2\"]", "[0,8]")), "expected \"shape\" to hold integers");
  check_load_fails(td, one(entry("F32", "[2]", "{}")), "expected \"data_offsets\" to be [begin, end]");
  check_load_fails(td, one(entry("F32", "[2]", "[0]")), "expected \"data_offsets\" to be [begin, end]");
  check_load_fails(td, one(entry("F32", "[2]", "[0,8,8]")), "expected \"data_offsets\" to be [begin, end]");
  check_load_fails(td, one(entry("F32", "[2]", "[0,\"8\"]")), "\"data_offsets\" to hold non-negative integers");
  check_load_fails(td, one(entry("F32", "[2]", "[0,8.0]")), "\"data_offsets\" to hold non-negative integers");
}

TEST_CASE("unsupported dtypes, bad shapes and lying offsets") {
  TempDir td("values");
  auto one = [](const std::string& e, const std::string& buf = kF32x2) {
    return st_file("{\"w\":" + e + "}", buf);
  };
  const std::string f16 = load_error(td, one(entry("F16", "[4]", "[0,8]")));
  CHECK(f16.find("unsupported dtype \"F16\"") != std::string::npos);
  CHECK(f16.find("F32, F64, BF16, I64") != std::string::npos);
  check_load_fails(td, one(entry("f32", "[2]", "[0,8]")), "unsupported dtype \"f32\"");

  check_load_fails(td, one(entry("F32", "[2,-1]", "[0,8]")), "expected non-negative dims, found -1");
  check_load_fails(td, one(entry("F32", "[4294967296,4294967296]", "[0,8]")), "fits in int64");
  check_load_fails(td, one(entry("F32", "[9223372036854775808]", "[0,8]")), "fits in int64");
  check_load_fails(td, one(entry("F32", "[18446744073709551615]", "[0,8]")), "fits in int64");
  // Zero elements, but an intermediate product the engine could overflow on.
  check_load_fails(td, one(entry("F32", "[4611686018427387904,4,0]", "[0,0]"), ""), "fits in int64");
  // numel fits in int64 but numel * 8 bytes does not fit in 64 bits.
  check_load_fails(td, one(entry("F64", "[4611686018427387904]", "[0,8]")), "fits in 64 bits");

  check_load_fails(td, one(entry("F32", "[2]", "[8,0]")), "begin <= end, found [8, 0]");
  check_load_fails(td, one(entry("F32", "[4]", "[0,16]")), "within the 8-byte data buffer");
  // Offsets at the top of the u64 range must not wrap around.
  check_load_fails(td, one(entry("F32", "[0]", "[18446744073709551615,18446744073709551615]")),
                   "(truncated file?)");
  check_load_fails(td, one(entry("F32", "[2]", "[18446744073709551615,7]")), "begin <= end");
  check_load_fails(td, one(entry("F32", "[2]", "[18446744073709551608,0]")), "begin <= end");
  check_load_fails(td, one(entry("F32", "[2]", "[0,18446744073709551616]")), "non-negative integers below 2^64");
  check_load_fails(td, one(entry("F32", "[2]", "[-8,0]")), "non-negative integers below 2^64");
  // A lying header: offsets fit the buffer but not the shape.
  check_load_fails(td, one(entry("F32", "[3]", "[0,8]")), "header does not match the data");
  check_load_fails(td, one(entry("F64", "[2]", "[0,8]")), "expected 16 bytes for shape [2] of F64");
  check_load_fails(td, one(entry("F32", "[]", "[0,8]")), "expected 4 bytes for shape [] of F32");
}

TEST_CASE("tensors must tile the data buffer") {
  TempDir td("tiling");
  const std::string buf12(12, '\0');
  check_load_fails(td,
                   st_file("{\"a\":" + entry("F32", "[2]", "[0,8]") + ",\"b\":" + entry("F32", "[2]", "[4,12]") + "}",
                           buf12),
                   "\"a\" [0, 8] and \"b\" [4, 12] overlapping");
  check_load_fails(td,
                   st_file("{\"a\":" + entry("F32", "[2]", "[0,8]") + ",\"b\":" + entry("F32", "[2]", "[0,8]") + "}",
                           std::string(8, '\0')),
                   "overlapping");
  // An empty tensor pointing into the middle of another one.
  check_load_fails(td,
                   st_file("{\"a\":" + entry("F32", "[2]", "[0,8]") + ",\"z\":" + entry("F32", "[0]", "[4,4]") + "}",
                           std::string(8, '\0')),
                   "overlapping");
  check_load_fails(td,
                   st_file("{\"a\":" + entry("F32", "[1]", "[0,4]") + ",\"b\":" + entry("F32", "[1]", "[8,12]") + "}",
                           buf12),
                   "found a gap: bytes [4, 8)");
  check_load_fails(td, st_file("{\"b\":" + entry("F32", "[1]", "[8,12]") + "}", buf12), "found a gap: bytes [0, 8)");
  // Empty tensors at a shared offset are fine, and keep their header order.
  const std::string ok = td.file("ok.safetensors");
  write_file(ok, st_file("{\"e2\":" + entry("F32", "[0]", "[8,8]") + ",\"a\":" + entry("F32", "[2]", "[0,8]") +
                             ",\"e1\":" + entry("I64", "[0,5]", "[8,8]") + "}",
                         kF32x2));
  SafetensorsFile f = load_safetensors(ok);
  REQUIRE(f.tensors.size() == 3);
  CHECK(f.tensors[0].first == "a");
  CHECK(f.tensors[1].first == "e2");
  CHECK(f.tensors[2].first == "e1");
}

TEST_CASE("metadata values must be strings") {
  TempDir td("meta");
  check_load_fails(td, st_file("{\"__metadata__\":{\"k\":1}}", ""), "values to be strings, found number");
  check_load_fails(td, st_file("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", ""), "values to be strings");
  check_load_fails(td, st_file("{\"__metadata__\":[\"k\"]}", ""), "\"__metadata__\" to be an object of strings");
  check_load_fails(td, st_file("{\"__metadata__\":\"k\"}", ""), "\"__metadata__\" to be an object of strings");
}

TEST_CASE("save rejects what it cannot write faithfully") {
  TempDir td("save_errors");
  const std::string path = td.file("s.safetensors");
  Tensor t = make<float>({1}, DType::F32, {1.0f});
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"a", t}, {"b", t}, {"a", t}}),
                       doctest::Contains("expected unique tensor names, found \"a\" twice"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"__metadata__", t}}), doctest::Contains("reserved"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"a", Tensor()}}), doctest::Contains("expected a defined tensor"),
                       Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"bad\xff", t}}), doctest::Contains("valid UTF-8"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"a", t}}, {{"k", "bad\xfe"}}), doctest::Contains("valid UTF-8"),
                       Error);
  const std::string nodir = td.file("no/such/dir/s.safetensors");
  CHECK_THROWS_WITH_AS(save_safetensors(nodir, {{"a", t}}), doctest::Contains("to exist, found nothing"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors("", {{"a", t}}), doctest::Contains("expected a file path"), Error);
  CHECK_FALSE(fs::exists(path));
  CHECK(fs::is_empty(td.dir));
}

TEST_CASE("atomic save: no temp file left behind, old file kept on failure") {
  TempDir td("atomic");
  const std::string path = td.file("ckpt.safetensors");
  save_safetensors(path, {{"w", make<float>({2}, DType::F32, {1.0f, 2.0f})}});
  save_safetensors(path, {{"w", make<float>({3}, DType::F32, {3.0f, 4.0f, 5.0f})}});  // overwrite
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(td.dir)) names.push_back(e.path().filename().string());
  REQUIRE(names.size() == 1);
  CHECK(names[0] == "ckpt.safetensors");
  CHECK(load_safetensors(path).get("w").numel() == 3);

  // A failed save leaves the previous file untouched.
  const std::string before = read_file(path);
  Tensor t = make<float>({1}, DType::F32, {9.0f});
  CHECK_THROWS_AS(save_safetensors(path, {{"x", t}, {"x", t}}), Error);
  CHECK(read_file(path) == before);

  // A rename that fails (the target is a directory) removes its temp file.
  const std::string dir_target = td.file("a_dir");
  fs::create_directories(fs::path(dir_target) / "inside");
  CHECK_THROWS_WITH_AS(save_safetensors(dir_target, {{"x", t}}), doctest::Contains("rename"), Error);
  size_t count = 0;
  for (const auto& e : fs::directory_iterator(td.dir)) {
    ++count;
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
  }
  CHECK(count == 2);
}

TEST_CASE("corrupted and truncated bytes give an Error or a valid load, never a crash") {
  TempDir td("fuzz");
  const std::string path = td.file("f.safetensors");
  save_safetensors(path,
                   {{"a", make<float>({2, 2}, DType::F32, {1, 2, 3, 4})},
                    {"b", make<int64_t>({2}, DType::I64, {5, 6})},
                    {"c", make<uint16_t>({}, DType::BF16, {0x3f80})}},
                   {{"k", "v"}});
  const std::string good = read_file(path);
  size_t errors = 0, loads = 0;
  auto attempt = [&](const std::string& bytes) {
    write_file(path, bytes);
    try {
      SafetensorsFile f = load_safetensors(path);
      for (const auto& kv : f.tensors) CHECK(kv.second.nbytes() <= bytes.size());
      ++loads;
    } catch (const Error&) {
      ++errors;
    }
  };
  for (size_t n = 0; n < good.size(); ++n) attempt(good.substr(0, n));
  std::mt19937_64 rng(1234);
  for (int i = 0; i < 1500; ++i) {
    std::string bytes = good;
    const int flips = 1 + int(rng() % 3);
    for (int k = 0; k < flips; ++k) bytes[rng() % bytes.size()] = char(rng() & 0xff);
    attempt(bytes);
  }
  CHECK(errors > 0);
  CHECK(loads > 0);  // flips in the data buffer still load
}

}  // TEST_SUITE
