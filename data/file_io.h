#pragma once
// Whole-file reads for the dataset readers. Errors name the file.
#include <cstdint>
#include <string>
#include <vector>

namespace bissl::data {

// The bytes of a file, read as they are. `limit` >= 0 reads at most that many.
std::vector<uint8_t> read_file_bytes(const std::string& path, int64_t limit = -1);

// The bytes of a file, decompressed when it starts with the gzip magic
// (1f 8b). A truncated or corrupt gzip stream is an error.
std::vector<uint8_t> read_maybe_gzip(const std::string& path, bool* was_gzip = nullptr);

bool file_exists(const std::string& path);
int64_t file_size(const std::string& path);  // throws when the file cannot be read

}  // namespace bissl::data
