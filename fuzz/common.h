#pragma once
// What every fuzz target shares: the input as a file (the readers take
// paths), and the rule that bad input ends in a bissl::Error — the one-line
// refusal. Anything else (a crash, a sanitizer report, another exception, a
// leak, a timeout, memory over -rss_limit_mb) is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "engine/error.h"

namespace bissl::fuzz {

// A folder of this process's own (in /dev/shm when it exists: no disk I/O).
inline const std::string& work_dir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    fs::path d = base / ("bissl_fuzz_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d.string();
  }();
  // Registered after `dir` exists, so it runs before `dir` is destroyed. A
  // normal exit cleans up; a crash leaves the folder for a look.
  static const bool cleanup = [] {
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    });
    return true;
  }();
  (void)cleanup;
  return dir;
}

// Writes bytes to work_dir()/name and returns the path.
inline std::string write_file(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = work_dir() + "/" + name;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}
inline std::string write_file(const std::string& name, const std::string& text) {
  return write_file(name, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

// A valid 2x2 grey PNG, for targets that need a real image beside the input.
inline constexpr uint8_t kTinyPng[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x00, 0x00, 0x00, 0x57, 0xdd, 0x52, 0xf8, 0x00, 0x00, 0x00,
    0x0e, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x60, 0x60, 0x60, 0x00, 0x00, 0x00, 0x05, 0x00, 0x01,
    0xa5, 0xf6, 0x45, 0x40, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

// Runs f; a bissl::Error is the expected answer to bad input.
template <class F>
void refused_or_read(F&& f) {
  try {
    f();
  } catch (const Error&) {
  }
}

}  // namespace bissl::fuzz
