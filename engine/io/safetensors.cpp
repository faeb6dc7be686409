#include "engine/io/safetensors.h"

#include "engine/dist/comm.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <new>
#include <set>

#include <nlohmann/json.hpp>

namespace bissl::io {
namespace {

// Tensor bytes go to and from the file with memcpy/fread, which is only the
// little-endian layout the format demands on a little-endian host.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors I/O copies host bytes verbatim and needs a little-endian host");

// ordered_json keeps the header in the order we write it, so a file lists
// its tensors the way the caller gave them. A header is read into plain json
// (a sorted map: ordered_json's inserts search linearly, which made a
// 50 000-entry header cost seconds) and its key order recorded while parsing.
using Json = nlohmann::ordered_json;
using ReadJson = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kSupported = "F32, F64, BF16, I64";
constexpr const char* kMetadataKey = "__metadata__";

const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
  }
  return nullptr;
}

bool st_dtype_from(const std::string& s, DType* out) {
  for (DType t : {DType::F32, DType::F64, DType::BF16, DType::I64}) {
    if (s == st_dtype_name(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

// JSON-quoted and escaped, so a hostile name cannot break a one-line message.
std::string quote(const std::string& s) {
  return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// A JSON value, shortened for messages.
std::string brief(const ReadJson& j) {
  std::string s = j.dump(-1, ' ', false, ReadJson::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

std::string range_str(uint64_t b, uint64_t e) { return str("[", b, ", ", e, "]"); }

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// One tensor's header entry after validation.
struct Entry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

// `where` prefixes every message: "load_safetensors('x'): tensor "w": ".
Entry parse_entry(const std::string& where, const std::string& name, const ReadJson& v,
                  uint64_t buffer_size) {
  const std::string at = str(where, "tensor ", quote(name), ": ");
  BISSL_CHECK(v.is_object(), at, "expected an object {dtype, shape, data_offsets}, found ",
              v.type_name(), " ", brief(v));
  auto field = [&](const char* key) -> const ReadJson& {
    auto it = v.find(key);
    BISSL_CHECK(it != v.end(), at, "expected a \"", key, "\" field, found only ", brief(v));
    return *it;
  };
  Entry e;
  e.name = name;

  const ReadJson& dt = field("dtype");
  BISSL_CHECK(dt.is_string(), at, "expected \"dtype\" to be a string, found ", dt.type_name(), " ",
              brief(dt));
  BISSL_CHECK(st_dtype_from(dt.get_ref<const std::string&>(), &e.dtype), at,
              "expected a dtype among ", kSupported, ", found unsupported dtype ", brief(dt));

  const ReadJson& sh = field("shape");
  BISSL_CHECK(sh.is_array(), at, "expected \"shape\" to be an array of integers, found ", sh.type_name(),
              " ", brief(sh));
  // Bound the product of the non-zero dims too: the engine computes strides
  // and sizes in int64 in any order, so even a 0-element shape must not
  // hide an overflowing partial product.
  uint64_t bound = 1, n = 1;
  for (const ReadJson& d : sh) {
    BISSL_CHECK(d.is_number_integer(), at, "expected \"shape\" to hold integers, found ", brief(d),
                " in ", brief(sh));
    BISSL_CHECK(d.is_number_unsigned(), at, "expected non-negative dims, found ", brief(d), " in shape ",
                brief(sh));
    uint64_t u = d.get<uint64_t>();
    bool over = u > uint64_t(std::numeric_limits<int64_t>::max()) ||
                __builtin_mul_overflow(bound, std::max<uint64_t>(u, 1), &bound) ||
                bound > uint64_t(std::numeric_limits<int64_t>::max());
    BISSL_CHECK(!over, at, "expected a shape whose element count fits in int64, found ", brief(sh));
    n *= u;  // <= bound, cannot overflow
    e.shape.push_back(int64_t(u));
  }
  uint64_t nbytes = 0;
  BISSL_CHECK(!__builtin_mul_overflow(n, uint64_t(dtype_size(e.dtype)), &nbytes), at,
              "expected a byte size that fits in 64 bits, found shape ", brief(sh), " of ", brief(dt));

  const ReadJson& off = field("data_offsets");
  BISSL_CHECK(off.is_array() && off.size() == 2, at,
              "expected \"data_offsets\" to be [begin, end], found ", brief(off));
  for (const ReadJson& o : off)
    BISSL_CHECK(o.is_number_unsigned(), at,
                "expected \"data_offsets\" to hold non-negative integers below 2^64, found ", brief(o),
                " in ", brief(off));
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  BISSL_CHECK(e.begin <= e.end, at, "expected data_offsets [begin, end] with begin <= end, found ",
              range_str(e.begin, e.end));
  BISSL_CHECK(e.end <= buffer_size, at, "expected data_offsets within the ", buffer_size,
              "-byte data buffer, found ", range_str(e.begin, e.end), " (truncated file?)");
  BISSL_CHECK(e.end - e.begin == nbytes, at, "expected ", nbytes, " bytes for shape ", shape_str(e.shape),
              " of ", st_dtype_name(e.dtype), ", found data_offsets ", range_str(e.begin, e.end),
              " spanning ", e.end - e.begin, " (header does not match the data)");
  return e;
}

std::map<std::string, std::string> parse_metadata(const std::string& where, const ReadJson& m) {
  std::map<std::string, std::string> out;
  if (m.is_null()) return out;  // what an Option<HashMap> writer may emit
  BISSL_CHECK(m.is_object(), where, "expected \"__metadata__\" to be an object of strings, found ",
              m.type_name(), " ", brief(m));
  for (auto it = m.begin(); it != m.end(); ++it) {
    BISSL_CHECK(it.value().is_string(), where, "expected \"__metadata__\" values to be strings, found ",
                it.value().type_name(), " ", brief(it.value()), " for key ", quote(it.key()));
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

// Most entries (tensors + metadata) a header may hold: a ResNet-152 state
// dict has ~1 000. Entries past it are discarded while parsing, then the
// file is refused.
constexpr int64_t kMaxSafetensorsEntries = 50'000;
// Most keys of one nested object: an entry has three, "__metadata__" a few.
constexpr size_t kMaxSafetensorsNestedKeys = 1'000;
// Deepest nesting a header has (object > entry > shape list); more is refused.
constexpr int kMaxSafetensorsDepth = 4;

// The header's shape, checked by a SAX pass before any DOM is built: depth,
// entry count, keys per nested object, repeated keys (JSON parsers silently
// keep one of two, and which one differs between tools), and the top-level
// keys in the file's order. It stops at the first violation, so a hostile
// header costs one linear scan. (nlohmann's callback parser cannot do this
// cheaply: it rescans the parent object at every object's end, quadratic in
// the number of entries.)
class HeaderShape : public nlohmann::json_sax<ReadJson> {
 public:
  std::vector<std::string> order;
  std::string dup, syntax;
  bool too_deep = false, too_many = false, too_wide = false;

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool start_object(std::size_t) override {
    if (!value()) return false;
    open_.push_back({true, {}});
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override {
    if (!value()) return false;
    open_.push_back({false, {}});
    return true;
  }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    const size_t depth = open_.size();
    if (depth >= size_t(kMaxSafetensorsDepth)) return !(too_deep = true);
    std::set<std::string>& keys = open_.back().keys;
    if (depth == 1 && keys.size() >= size_t(kMaxSafetensorsEntries)) return !(too_many = true);
    if (depth > 1 && keys.size() >= kMaxSafetensorsNestedKeys) return !(too_wide = true);
    if (!keys.insert(k).second) {
      dup = k;
      return false;
    }
    if (depth == 1) order.push_back(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    syntax = e.what();
    return false;
  }

 private:
  struct Open {
    bool object;
    std::set<std::string> keys;
  };
  std::vector<Open> open_;
  // A value (or a container's start) at the current depth.
  bool value() {
    if (open_.size() >= size_t(kMaxSafetensorsDepth)) return !(too_deep = true);
    return true;
  }
  bool close() {
    if (!open_.empty()) open_.pop_back();
    return true;
  }
};

// Parses the header after HeaderShape has passed it; `order` receives the
// top-level keys in the file's order.
ReadJson parse_header(const std::string& where, const std::string& text, std::vector<std::string>& order) {
  HeaderShape shape;
  const bool ok = ReadJson::sax_parse(text.begin(), text.end(), &shape, nlohmann::detail::input_format_t::json,
                                      /*strict=*/true, /*ignore_comments=*/false);
  BISSL_CHECK(shape.syntax.empty(), where, "expected the header to be valid JSON, found a syntax error: ", shape.syntax);
  BISSL_CHECK(!shape.too_deep, where, "expected a header nested at most ", kMaxSafetensorsDepth,
              " levels deep (object, entry, shape), found deeper nesting");
  BISSL_CHECK(!shape.too_many, where, "expected at most ", kMaxSafetensorsEntries,
              " entries in the header, found more (not a model, or hostile)");
  BISSL_CHECK(!shape.too_wide, where, "expected at most ", kMaxSafetensorsNestedKeys,
              " keys in an entry or in \"__metadata__\", found more (not a model, or hostile)");
  BISSL_CHECK(shape.dup.empty(), where, "expected unique keys in the header, found ", quote(shape.dup), " twice");
  BISSL_CHECK(ok, where, "expected the header to be valid JSON, found it could not be read");
  ReadJson j;
  try {
    j = ReadJson::parse(text.begin(), text.end());
  } catch (const ReadJson::exception& e) {
    throw Error(str(where, "expected the header to be valid JSON, found a syntax error: ", e.what()));
  }
  BISSL_CHECK(j.is_object(), where, "expected the header to be a JSON object, found ", j.type_name());
  order = std::move(shape.order);
  return j;
}

}  // namespace

// ---------------------------------------------------------------- load ----

SafetensorsFile load_safetensors(const std::string& path) {
  const std::string where = str("load_safetensors('", path, "'): ");
  std::error_code ec;
  BISSL_CHECK(!fs::is_directory(path, ec), where, "expected a file, found a directory");
  errno = 0;
  FilePtr f(std::fopen(path.c_str(), "rb"));
  BISSL_CHECK(f, where, "expected a readable file, found it cannot be opened (",
              errno ? std::strerror(errno) : "unknown error", ")");

  BISSL_CHECK(::fseeko(f.get(), 0, SEEK_END) == 0, where, "expected a seekable file, found ",
              std::strerror(errno));
  const off_t size_signed = ::ftello(f.get());
  BISSL_CHECK(size_signed >= 0, where, "expected a seekable file, found ", std::strerror(errno));
  const uint64_t size = uint64_t(size_signed);
  BISSL_CHECK(size >= 8, where, "expected at least 8 bytes (the header length), found a ", size,
              "-byte file");
  std::rewind(f.get());

  unsigned char len_bytes[8];
  BISSL_CHECK(std::fread(len_bytes, 1, 8, f.get()) == 8, where,
              "expected to read the 8-byte header length, found a read error");
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= uint64_t(len_bytes[i]) << (8 * i);
  BISSL_CHECK(header_len <= kMaxSafetensorsHeader, where, "expected a header length of at most ",
              kMaxSafetensorsHeader, " bytes, found ", header_len, " (not a safetensors file, or corrupt)");
  BISSL_CHECK(header_len <= size - 8, where, "expected a header length within the ", size - 8,
              " bytes that follow it, found ", header_len, " (truncated file, or not safetensors)");

  std::string text(size_t(header_len), '\0');
  BISSL_CHECK(std::fread(text.data(), 1, text.size(), f.get()) == text.size(), where, "expected ",
              header_len, " header bytes, found fewer (file changed while reading?)");
  std::vector<std::string> order;
  const ReadJson header = parse_header(where, text, order);
  const uint64_t buffer_size = size - 8 - header_len;

  SafetensorsFile out;
  out.path = path;
  std::vector<Entry> entries;
  for (const std::string& key : order) {  // the file's order
    auto found = header.find(key);
    if (found == header.end()) continue;  // (discarded while parsing: refused above)
    const ReadJson& value = *found;
    if (key == kMetadataKey)
      out.metadata = parse_metadata(where, value);
    else
      entries.push_back(parse_entry(where, key, value, buffer_size));
  }

  // The format requires the buffer to be exactly tiled by the tensors: no
  // overlap (aliasing), no holes or trailing bytes (room for a polyglot file).
  // Stable sort keeps header order among empty tensors at the same offset.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    BISSL_CHECK(e.begin >= covered, where, "expected non-overlapping tensors, found ", quote(prev->name),
                " ", range_str(prev->begin, prev->end), " and ", quote(e.name), " ",
                range_str(e.begin, e.end), " overlapping");
    BISSL_CHECK(e.begin == covered, where, "expected the tensors to tile the data buffer, found a gap: bytes [",
                covered, ", ", e.begin, ") belong to no tensor");
    covered = e.end;
    prev = &e;
  }
  BISSL_CHECK(covered == buffer_size, where, "expected the tensors to tile the ", buffer_size,
              "-byte data buffer, found ", buffer_size - covered, " trailing bytes that belong to no tensor");

  // Sizes below are checked against the file's length, so no allocation is
  // larger than the file; entries are contiguous, so one sequential read.
  BISSL_CHECK(::fseeko(f.get(), off_t(8 + header_len), SEEK_SET) == 0, where,
              "expected to seek to the data buffer, found ", std::strerror(errno));
  out.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    const size_t nbytes = size_t(e.end - e.begin);
    Tensor t;
    try {
      t = empty(e.shape, e.dtype);
    } catch (const std::bad_alloc&) {
      throw Error(str(where, "tensor ", quote(e.name), ": expected to allocate ", nbytes,
                      " bytes, found the allocation failing"));
    }
    if (nbytes > 0) {
      const size_t got = std::fread(t.raw(), 1, nbytes, f.get());
      BISSL_CHECK(got == nbytes, where, "tensor ", quote(e.name), ": expected ", nbytes,
                  " bytes of data, found ", got, " (file changed while reading?)");
    }
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

const Tensor& SafetensorsFile::get(const std::string& name) const {
  for (const auto& kv : tensors)
    if (kv.first == name) return kv.second;
  // Listing the keys is what makes a wrong prefix ("module.", "backbone.")
  // obvious; cap it so a 300-tensor checkpoint stays one readable line.
  constexpr size_t kShown = 32;
  std::string keys;
  for (size_t i = 0; i < tensors.size() && i < kShown; ++i) keys += (i ? ", " : "") + quote(tensors[i].first);
  if (tensors.size() > kShown) keys += str(", ... (", tensors.size() - kShown, " more)");
  throw Error(str("safetensors file '", path, "': expected a tensor named ", quote(name),
                  ", found none among its ", tensors.size(), " tensors: ", keys.empty() ? "(none)" : keys));
}

bool SafetensorsFile::has(const std::string& name) const {
  for (const auto& kv : tensors)
    if (kv.first == name) return true;
  return false;
}

// ---------------------------------------------------------------- save ----

static void save_here(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string where = str("save_safetensors('", path, "'): ");
  BISSL_CHECK(!path.empty(), where, "expected a file path, found an empty string");

  Json header = Json::object();
  if (!metadata.empty()) {
    Json m = Json::object();
    for (const auto& kv : metadata) m[kv.first] = kv.second;
    header[kMetadataKey] = std::move(m);
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const std::string at = str(where, "tensor ", quote(name), ": ");
    BISSL_CHECK(name != kMetadataKey, where, "expected tensor names other than the reserved \"",
                kMetadataKey, "\", found it");
    BISSL_CHECK(seen.insert(name).second, where, "expected unique tensor names, found ", quote(name),
                " twice");
    BISSL_CHECK(t.defined(), at, "expected a defined tensor, found an empty handle");
    BISSL_CHECK(t.device() == Device::CPU, at, "expected a CPU tensor, found one on ",
                device_name(t.device()), " (copy it to the CPU first)");
    const char* dt = st_dtype_name(t.dtype());
    BISSL_CHECK(dt, at, "expected a dtype among ", kSupported, ", found ", dtype_name(t.dtype()));
    const auto& impl = t.impl();
    BISSL_CHECK(impl.storage && impl.offset + t.nbytes() <= impl.storage->nbytes, at,
                "expected ", t.nbytes(), " bytes of storage, found a storage too small");
    const uint64_t end = offset + t.nbytes();
    header[name] = Json{{"dtype", dt}, {"shape", t.shape()}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::exception&) {
    throw Error(str(where, "expected tensor names and metadata in valid UTF-8, found invalid bytes"));
  }
  // Padded with spaces (valid JSON whitespace) so the data starts 8-byte
  // aligned, as the reference writer does; readers can then map it in place.
  text.append((8 - text.size() % 8) % 8, ' ');

  const fs::path target(path);
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  BISSL_CHECK(fs::is_directory(parent, ec), where, "expected the directory '", parent.string(),
              "' to exist, found ", fs::exists(parent, ec) ? "something that is not a directory" : "nothing");

  const std::string tmp = str(path, ".tmp.", ::getpid());
  errno = 0;
  FilePtr f(std::fopen(tmp.c_str(), "wb"));
  BISSL_CHECK(f, where, "expected to create '", tmp, "', found ", errno ? std::strerror(errno) : "an error");
  // Removes the temp file on every failure path below.
  struct TmpGuard {
    const std::string& p;
    bool keep = false;
    ~TmpGuard() {
      if (!keep) std::remove(p.c_str());
    }
  } guard{tmp};

  auto write = [&](const void* p, size_t n) {
    if (n == 0) return;
    BISSL_CHECK(std::fwrite(p, 1, n, f.get()) == n, where, "expected to write ", n, " bytes to '", tmp,
                "', found ", std::strerror(errno));
  };
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = (uint64_t(text.size()) >> (8 * i)) & 0xff;
  write(len_bytes, 8);
  write(text.data(), text.size());
  for (const auto& kv : tensors) write(kv.second.raw(), kv.second.nbytes());

  // Flushed to disk before the rename, or a crash could leave the new name
  // pointing at an empty file — the opposite of what the rename is for.
  BISSL_CHECK(std::fflush(f.get()) == 0 && ::fsync(::fileno(f.get())) == 0, where,
              "expected to flush '", tmp, "' to disk, found ", std::strerror(errno));
  BISSL_CHECK(std::fclose(f.release()) == 0, where, "expected to close '", tmp, "', found ",
              std::strerror(errno));
  BISSL_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, where, "expected to rename '", tmp,
              "' over it, found ", std::strerror(errno));
  guard.keep = true;

  // Best effort: make the rename itself durable.
  int dfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

// On several ranks rank 0 writes and the others wait (dist::on_root).
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  dist::on_root([&] { save_here(path, tensors, metadata); });
}

}  // namespace bissl::io
