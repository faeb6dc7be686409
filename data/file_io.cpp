#include "data/file_io.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

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

namespace {
// The next read's size while growing `have` bytes towards `cap`: first
// `first` (what the file's size says), then doubling, at most 4 MiB a step,
// so that a file costs what it holds, not a fixed chunk, and one that holds
// more than its size said (a gzip stream, a growing file) is still read to
// its end.
size_t next_read(size_t have, size_t first, int64_t cap) {
  size_t want = have == 0 ? std::max<size_t>(first, size_t(1) << 12) : std::min<size_t>(have, size_t(1) << 22);
  if (cap >= 0) want = std::min<size_t>(want, size_t(cap) - have);
  return want;
}
}  // namespace

std::vector<uint8_t> read_file_bytes(const std::string& path, int64_t limit) {
  FilePtr f = open_or_throw(path);
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  // One byte more than the size on disk, so that the end is seen in one read.
  const size_t first = ec ? size_t(1) << 16 : size_t(size) + 1;
  std::vector<uint8_t> out;
  while (limit < 0 || int64_t(out.size()) < limit) {
    const size_t want = next_read(out.size(), first, limit);
    const size_t old = out.size();
    out.resize(old + want);
    const size_t got = std::fread(out.data() + old, 1, want, f.get());
    out.resize(old + got);
    if (got < want) {
      BISSL_CHECK(!std::ferror(f.get()), path, ": read error after ", out.size(), " bytes");
      break;
    }
  }
  return out;
}

ByteReader::ByteReader(const std::string& path) : path_(path) {
  uint8_t magic[2] = {0, 0};
  {
    FilePtr f = open_or_throw(path);
    gzip_ = std::fread(magic, 1, 2, f.get()) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  }
  file_bytes_ = file_size(path);
  errno = 0;
  gzFile g = gzopen(path.c_str(), "rb");
  BISSL_CHECK(g, path, ": cannot open for reading (", errno ? std::strerror(errno) : "zlib: out of memory", ")");
  // zlib's buffers (input, and twice that for output) sized to the file: a
  // small file need not cost three quarters of a megabyte.
  gzbuffer(g, unsigned(std::clamp<int64_t>(file_bytes_, 1 << 13, 1 << 18)));
  g_ = g;
}

ByteReader::~ByteReader() {
  if (g_) gzclose(static_cast<gzFile>(g_));
}

size_t ByteReader::read(uint8_t* dst, size_t n) {
  gzFile g = static_cast<gzFile>(g_);
  size_t done = 0;
  while (done < n) {
    const unsigned want = unsigned(std::min<size_t>(n - done, size_t(1) << 30));
    const int got = gzread(g, dst + done, want);
    int code = 0;
    const char* msg = got < int(want) ? gzerror(g, &code) : nullptr;
    if (got < 0 || (code != Z_OK && code != Z_STREAM_END)) {
      throw Error(str(path_, ": expected a complete ", gzip_ ? "gzip stream" : "file", ", found a truncated or corrupt "
                      "one after ", consumed_ + int64_t(done) + std::max(got, 0), " ",
                      gzip_ ? "decompressed " : "", "bytes (zlib: ", msg ? msg : "unknown error", ")"));
    }
    done += size_t(got);
    if (got < int(want)) break;  // the end of the data
  }
  consumed_ += int64_t(done);
  return done;
}

int64_t ByteReader::skip_rest(int64_t limit) {
  uint8_t buf[size_t(1) << 14];
  int64_t n = 0;
  while (n < limit) {
    size_t got = read(buf, size_t(std::min<int64_t>(int64_t(sizeof buf), limit - n)));
    n += int64_t(got);
    if (got == 0) break;
  }
  return n;
}

int64_t max_gunzip_bytes(int64_t compressed) { return compressed * 1032 + 1024; }

std::vector<uint8_t> read_maybe_gzip(const std::string& path, bool* was_gzip, int64_t limit) {
  ByteReader r(path);
  if (was_gzip) *was_gzip = r.gzip();
  const int64_t cap = limit >= 0 ? limit : (r.gzip() ? max_gunzip_bytes(r.file_bytes()) : r.file_bytes());
  std::vector<uint8_t> out;
  // A raw file is read in one step; a gzip stream from its compressed size
  // up, doubling, so that neither allocates what it does not hold.
  const size_t first = size_t(r.file_bytes()) + 1;
  for (;;) {
    const size_t old = out.size();
    const size_t want = next_read(old, first, cap + 1);
    out.resize(old + want);
    const size_t got = r.read(out.data() + old, want);
    out.resize(old + got);
    BISSL_CHECK(int64_t(out.size()) <= cap, path, ": expected at most ", cap, " bytes",
                r.gzip() ? " decompressed" : "", ", found more (", limit >= 0 ? "the limit" : "a corrupt or hostile stream",
                ")");
    if (got < want) break;
  }
  return out;
}

}  // namespace bissl::data
