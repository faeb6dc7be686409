#include "data/file_io.h"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "engine/error.h"

namespace bissl::data {

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

FilePtr open_or_throw(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "rb"));
  BISSL_CHECK(f, path, ": cannot open for reading (", std::strerror(errno), ")");
  return f;
}

}  // namespace

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

int64_t file_size(const std::string& path) {
  std::error_code ec;
  auto s = std::filesystem::file_size(path, ec);
  BISSL_CHECK(!ec, path, ": cannot read the file size (", ec.message(), ")");
  return int64_t(s);
}

std::vector<uint8_t> read_file_bytes(const std::string& path, int64_t limit) {
  FilePtr f = open_or_throw(path);
  std::vector<uint8_t> out;
  const size_t chunk = size_t(1) << 20;
  while (limit < 0 || int64_t(out.size()) < limit) {
    size_t want = chunk;
    if (limit >= 0) want = std::min(want, size_t(limit) - out.size());
    size_t old = out.size();
    out.resize(old + want);
    size_t got = std::fread(out.data() + old, 1, want, f.get());
    out.resize(old + got);
    if (got < want) {
      BISSL_CHECK(!std::ferror(f.get()), path, ": read error after ", out.size(), " bytes");
      break;
    }
  }
  return out;
}

std::vector<uint8_t> read_maybe_gzip(const std::string& path, bool* was_gzip) {
  uint8_t magic[2] = {0, 0};
  size_t got;
  {
    FilePtr f = open_or_throw(path);
    got = std::fread(magic, 1, 2, f.get());
  }
  const bool gz = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  if (was_gzip) *was_gzip = gz;
  if (!gz) return read_file_bytes(path);

  gzFile g = gzopen(path.c_str(), "rb");
  BISSL_CHECK(g, path, ": cannot open as gzip (", std::strerror(errno), ")");
  gzbuffer(g, 1 << 18);
  std::vector<uint8_t> out;
  const size_t chunk = size_t(1) << 22;
  std::string err;
  for (;;) {
    size_t old = out.size();
    out.resize(old + chunk);
    int n = gzread(g, out.data() + old, unsigned(chunk));
    if (n < 0) {
      int code = 0;
      const char* msg = gzerror(g, &code);
      err = msg ? msg : "unknown zlib error";
      out.resize(old);
      break;
    }
    out.resize(old + size_t(n));
    if (size_t(n) < chunk) {
      // A short read is either the end of the stream or an error.
      int code = 0;
      const char* msg = gzerror(g, &code);
      if (code != Z_OK && code != Z_STREAM_END) err = msg ? msg : "unknown zlib error";
      break;
    }
  }
  gzclose(g);
  BISSL_CHECK(err.empty(), path, ": expected a complete gzip stream, found a truncated or corrupt one after ",
              out.size(), " decompressed bytes (zlib: ", err, ")");
  return out;
}

}  // namespace bissl::data
