// safetensors: the header (length, JSON, dtypes, shapes, data offsets, the
// tiling of the data buffer, metadata) and the data it points at.
#include "engine/io/safetensors.h"
#include "fuzz/common.h"

using namespace bissl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_file("input.safetensors", data, size);
  fuzz::refused_or_read([&] {
    io::SafetensorsFile f = io::load_safetensors(path);
    // Touch every loaded byte (a sanitizer sees any read past a buffer).
    uint64_t sum = 0;
    for (auto& [name, t] : f.tensors) {
      const auto* p = static_cast<const uint8_t*>(t.raw());
      for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
    }
    for (auto& [k, v] : f.metadata) sum += k.size() + v.size();
    if (sum == 0xFFFFFFFFFFFFFFFFull) std::abort();
  });
  return 0;
}
