// IDX files, raw and gzip: the magic, the dimensions, the declared size
// against the file (and against what a gzip stream can hold), truncation,
// trailing bytes. The first byte picks how the rest reaches the reader: as
// it is (raw, or gzip when it carries the magic), or gzip-compressed here
// so that the IDX parser behind the decompressor is reached too.
#include <zlib.h>

#include <vector>

#include "data/datasets.h"
#include "fuzz/common.h"

using namespace bissl;

namespace {
std::vector<uint8_t> gzip(const uint8_t* data, size_t size) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::vector<uint8_t> out(deflateBound(&z, uLong(size)) + 32);
  z.next_in = const_cast<uint8_t*>(data);
  z.avail_in = uInt(size);
  z.next_out = out.data();
  z.avail_out = uInt(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool compress = data[0] & 1;
  std::string path;
  if (compress) {
    std::vector<uint8_t> gz = gzip(data + 1, size - 1);
    path = fuzz::write_file("input.idx", gz.data(), gz.size());
  } else {
    path = fuzz::write_file("input.idx", data + 1, size - 1);
  }
  fuzz::refused_or_read([&] {
    data::IdxArray a = data::read_idx(path);
    int64_t total = 1;
    for (int64_t d : a.dims) total *= d;
    if (int64_t(a.data.size()) != total) std::abort();  // the reader's promise
  });
  // The pair reader on the same file as images and labels.
  fuzz::refused_or_read([&] { data::load_idx_pair(path, path, 256); });
  return 0;
}
