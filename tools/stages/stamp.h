#pragma once
// One reuse rule for every stage: a unit of work (pretraining, the search,
// the warm-up, one training stage, one fine-tuning seed, the evaluation)
// writes beside its outputs a stamp of the resolved settings it read, of its
// inputs (a content digest of each input file) and of the code version. A
// rerun reuses the unit only when today's stamp has the same settings and
// inputs; otherwise the unit is recomputed from scratch — and since its
// outputs then change, so is every unit that reads them, never one before.
//
//   dir/stamp.partial.json  written when the unit starts: a killed unit
//                           resumes from its own checkpoints only when the
//                           stamp it started with is today's
//   dir/stamp.json          written last, when every output is in place
//
// The code version is recorded (the report says "reused, made <when> by
// <commit>"), not compared: a new commit reuses what the same settings and
// inputs made.
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace bissl::stages {

struct Config;

// A file's content digest: 16 hex digits of FNV-1a 64 and the size
// ("9c1f...-48213"); an unreadable file is an Error naming it.
std::string file_digest(const std::string& path);

struct Stamp {
  std::string unit;                                 // "train bissl", "finetune ft seed 1"
  nlohmann::json settings = nlohmann::json::object(); // {"bissl.lambda": "0.001", ...}
  nlohmann::json inputs = nlohmann::json::object();   // {"backbone": "<digest>", ...}
  std::string made_at, code;                          // when written; the code version

  // Settings of these groups of cfg's table (Settings::values), plus the
  // device as resolved, the input files' digests and `extra` settings.
  // `except`: keys of those groups the unit does not read.
  static Stamp of(const Config& cfg, const std::string& unit, const std::vector<std::string>& groups,
                  const std::vector<std::pair<std::string, std::string>>& input_files = {},
                  const nlohmann::json& extra = nlohmann::json::object(), const std::vector<std::string>& except = {});
  // An input that is not a file: a loaded data set's content digest
  // (data::ImageSet::content_digest, Task::digest).
  Stamp& with_input(const std::string& name, const std::string& digest) {
    inputs[name] = digest;
    return *this;
  }
  nlohmann::json to_json() const;
  static Stamp from_json(const nlohmann::json& j);
  // What reuse compares: settings and inputs (one line of JSON).
  std::string signature() const;
};

// "bissl.lambda = 0.001 then, 0.5 now" for the first differing key (settings
// first, then inputs), or "" when the two agree.
std::string first_difference(const Stamp& then, const Stamp& now);

enum class UnitState { Reused, Resumed, Fresh };
struct UnitStart {
  UnitState state = UnitState::Fresh;
  Stamp made;           // Reused: the stamp on disk (when and by what it was made)
  std::string changed;  // Fresh after a mismatch: first_difference
};

// Decides what to do with the unit in `dir` (see the top). Recomputing
// removes the old outputs first (the folder is renamed aside, then deleted,
// so a kill in between leaves nothing half-removed that looks valid). With
// no_recompute a differing stamp is an Error naming the unit, the key and
// both values. A folder holding files but no stamp (an older bissl, or files
// dropped in) is an Error too: nothing is deleted that the pipeline did not
// make.
UnitStart begin_unit(const std::string& dir, const Stamp& now, bool no_recompute);
// Writes dir/stamp.json (made now, by this code) and removes the partial stamp.
void finish_unit(const std::string& dir, Stamp now);
// dir/stamp.json when it exists and parses.
bool read_stamp(const std::string& dir, Stamp& out);

}  // namespace bissl::stages
