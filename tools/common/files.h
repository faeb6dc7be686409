#pragma once
// Small files the stages write and read back (results, hyper-parameters,
// timings, metrics): written atomically so a killed run never leaves half a
// file for the next run to trip over, and read with errors that name the file.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace bissl::files {

// Writes `text` to a temporary file beside `path`, flushes it to disk and
// renames it over `path`; errors (a full disk, an unwritable folder) name
// the file and the reason and leave the previous version intact.
// On several ranks rank 0 writes and every rank waits for it (dist::on_root):
// every rank calls these at the same point.
void write_text_atomic(const std::string& path, const std::string& text);
void write_json_atomic(const std::string& path, const nlohmann::json& j);
// The JSON document at `path`; a missing or malformed file is an Error naming it.
nlohmann::json read_json(const std::string& path);
// One JSON value per non-empty line; a malformed last line (a write cut
// short) is dropped with a warning, a malformed earlier line is an Error.
std::vector<nlohmann::json> read_jsonl(const std::string& path);
// A number from a JSON value; null (how NaN is written) reads as NaN.
double json_number(const nlohmann::json& j, const std::string& key);

}  // namespace bissl::files

// The stages call them unqualified.
namespace bissl::stages {
using namespace bissl::files;
}
