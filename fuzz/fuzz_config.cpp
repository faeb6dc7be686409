// The pipeline config: TOML through the settings table (types, ranges,
// lists, unknown keys, sections), then each line of the input as a
// `--set section.key=value` override, then the checks across keys.
#include <sstream>

#include "fuzz/common.h"
#include "tools/stages/config.h"

using namespace bissl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  stages::Config c;
  fuzz::refused_or_read([&] { c.load_toml_string(text, "fuzz.toml"); });
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    fuzz::refused_or_read([&] { c.set(line); });
  fuzz::refused_or_read([&] {
    c.validate();
    stages::Config d;
    d.load_toml_string(c.to_toml(), "resolved");  // what --print-config writes loads back
    if (d.to_toml() != c.to_toml()) std::abort();
  });
  return 0;
}
