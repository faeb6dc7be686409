#include "tools/stages/files.h"

#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "engine/error.h"

namespace bissl::stages {

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    BISSL_CHECK(out, "cannot write '", tmp, "'");
    out << text;
    out.flush();
    BISSL_CHECK(out, "writing '", tmp, "' failed (disk full?)");
  }
  BISSL_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '", tmp, "' to '", path, "'");
}

void write_json_atomic(const std::string& path, const nlohmann::json& j) { write_text_atomic(path, j.dump(1) + "\n"); }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  BISSL_CHECK(in, "expected a JSON file at '", path, "', found none");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str("'", path, "' is not valid JSON (", e.what(), "); delete it to recompute that result"));
  }
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  for (size_t i = 0; i < lines.size(); ++i) {
    try {
      rows.push_back(nlohmann::json::parse(lines[i]));
    } catch (const nlohmann::json::exception& e) {
      if (i + 1 == lines.size()) {
        std::fprintf(stderr, "warning: dropping the unreadable last line of %s (a write cut short?)\n", path.c_str());
        break;
      }
      throw Error(str("'", path, "' line ", i + 1, " is not valid JSON (", e.what(), ")"));
    }
  }
  return rows;
}

double json_number(const nlohmann::json& j, const std::string& key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::numeric_limits<double>::quiet_NaN();
  return it->get<double>();
}

}  // namespace bissl::stages
