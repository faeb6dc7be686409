#pragma once
// Whole-file reads for the dataset readers. Errors name the file.
#include <cstdint>
#include <string>
#include <vector>

namespace bissl::data {

// The bytes of a file, read as they are. `limit` >= 0 reads at most that many.
std::vector<uint8_t> read_file_bytes(const std::string& path, int64_t limit = -1);

// The bytes of a file, decompressed when it starts with the gzip magic
// (1f 8b). A truncated or corrupt gzip stream is an error, and so is one
// that expands beyond `limit` bytes (>= 0).
std::vector<uint8_t> read_maybe_gzip(const std::string& path, bool* was_gzip = nullptr, int64_t limit = -1);

// A file read front to back through zlib: decompressed when it starts with
// the gzip magic, as it is otherwise. Nothing is allocated from what the
// file says: the caller sizes its reads, after checking them against
// file_bytes() (and max_gunzip_bytes for a gzip stream).
class ByteReader {
 public:
  explicit ByteReader(const std::string& path);
  ~ByteReader();
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;
  bool gzip() const { return gzip_; }
  int64_t file_bytes() const { return file_bytes_; }  // on disk
  int64_t consumed() const { return consumed_; }      // (decompressed) bytes read so far
  // Up to n bytes into dst; fewer only at the end of the data. A corrupt or
  // truncated gzip stream throws, naming the file and how far it got.
  size_t read(uint8_t* dst, size_t n);
  // Reads on, without keeping anything, until the end or `limit` more bytes;
  // returns how many there were.
  int64_t skip_rest(int64_t limit);

 private:
  std::string path_;
  void* g_ = nullptr;  // gzFile
  bool gzip_ = false;
  int64_t file_bytes_ = 0, consumed_ = 0;
};

// The most bytes a gzip file of `compressed` bytes can decompress to:
// deflate's best ratio is 1032:1 (258-byte matches coded in 2 bits), so a
// header declaring more is corrupt or hostile and is refused before
// anything is allocated for it.
int64_t max_gunzip_bytes(int64_t compressed);

bool file_exists(const std::string& path);
int64_t file_size(const std::string& path);  // throws when the file cannot be read

}  // namespace bissl::data
