// The pipeline config: TOML through the settings table (types, ranges,
// lists, unknown keys, sections), then each of its first lines as a
// `--set section.key=value` override, then the checks across keys.
#include <sstream>

#include "fuzz/common.h"
#include "tools/stages/config.h"

using namespace bissl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // Two tables bound once and reset to the defaults per input (assignment
  // copies values; the bindings stay): binding ~300 keys cost more than
  // the parsing under test.
  static const stages::Config fresh;
  static stages::Config c, d;
  c = fresh;
  d = fresh;
  fuzz::refused_or_read([&] { c.load_toml_string(text, "fuzz.toml"); });
  std::istringstream lines(text);
  // The first 16 lines: an unknown key's "did you mean" compares it with
  // every key, and a few hundred stray lines per input only slow the search.
  int n = 0;
  for (std::string line; n < 16 && std::getline(lines, line); ++n)
    fuzz::refused_or_read([&] { c.set(line); });
  // Most mutated inputs change nothing (a TOML syntax error, an unknown key):
  // the defaults' own round trip is checked once, not per input.
  static const std::string defaults = [] {
    stages::Config e = fresh;
    e.load_toml_string(fresh.to_toml(), "defaults");
    if (e.to_toml() != fresh.to_toml()) std::abort();
    return fresh.to_toml();
  }();
  const std::string resolved = c.to_toml();
  if (resolved == defaults) return 0;
  fuzz::refused_or_read([&] {
    c.validate();
    d.load_toml_string(resolved, "resolved");  // what --print-config writes loads back
    if (d.to_toml() != resolved) std::abort();
  });
  return 0;
}
