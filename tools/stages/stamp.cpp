#include "tools/stages/stamp.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "engine/backend.h"
#include "engine/dist/comm.h"
#include "engine/digest.h"
#include "engine/error.h"
#include "tools/common/version.h"
#include "tools/stages/classify.h"
#include "tools/stages/config.h"
#include "tools/common/files.h"

namespace bissl::stages {

namespace fs = std::filesystem;

std::string file_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  BISSL_CHECK(in, "stamp: expected a readable input file, found none at '", path, "'");
  Digest d;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    d.add(buf.data(), size_t(in.gcount()));
  }
  BISSL_CHECK(in.eof(), "stamp: could not read '", path, "' to the end");
  return d.text();
}

Stamp Stamp::of(const Config& cfg, const std::string& unit, const std::vector<std::string>& groups,
                const std::vector<std::pair<std::string, std::string>>& input_files, const nlohmann::json& extra,
                const std::vector<std::string>& except) {
  Stamp s;
  s.unit = unit;
  s.settings = cfg.settings().values(groups);
  for (auto& k : except) s.settings.erase(k);
  // "auto" is a different device on another machine.
  s.settings["device (resolved)"] = device_name(resolve_device(cfg.device, cfg.deterministic));
  for (auto& [k, v] : extra.items()) s.settings[k] = v;
  for (auto& [name, path] : input_files) s.inputs[name] = file_digest(path);
  return s;
}

nlohmann::json Stamp::to_json() const {
  return {{"unit", unit}, {"settings", settings}, {"inputs", inputs}, {"made_at", made_at}, {"code", code}};
}

Stamp Stamp::from_json(const nlohmann::json& j) {
  Stamp s;
  s.unit = j.value("unit", "");
  s.settings = j.value("settings", nlohmann::json::object());
  s.inputs = j.value("inputs", nlohmann::json::object());
  s.made_at = j.value("made_at", "");
  s.code = j.value("code", "");
  return s;
}

std::string Stamp::signature() const { return nlohmann::json{{"settings", settings}, {"inputs", inputs}}.dump(); }

std::string first_difference(const Stamp& then, const Stamp& now) {
  auto text = [](const nlohmann::json& j, const std::string& k) {
    if (!j.contains(k)) return std::string("(not set)");
    return j[k].is_string() ? j[k].get<std::string>() : j[k].dump();
  };
  for (const auto* part : {"settings", "inputs"}) {
    const nlohmann::json& a = std::string(part) == "settings" ? then.settings : then.inputs;
    const nlohmann::json& b = std::string(part) == "settings" ? now.settings : now.inputs;
    // Keys in today's order first, then keys only the old stamp has.
    for (auto& [k, v] : b.items())
      if (!a.contains(k) || a[k] != v)
        return std::string(part) == "settings" ? str(k, " = ", text(a, k), " then, ", text(b, k), " now")
                                               : str("input ", k, " changed (", text(a, k), " then, ", text(b, k), " now)");
    for (auto& [k, v] : a.items())
      if (!b.contains(k))
        return std::string(part) == "settings" ? str(k, " = ", text(a, k), " then, ", text(b, k), " now")
                                               : str("input ", k, " was read then, not now");
  }
  return "";
}

namespace {

const char* kDone = "/stamp.json";
const char* kPartial = "/stamp.partial.json";

std::string now_text() {
  std::time_t t = std::time(nullptr);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
  return b;
}

bool read_stamp_file(const std::string& path, Stamp& out) {
  if (!fs::exists(path)) return false;
  try {
    out = Stamp::from_json(read_json(path));
    return true;
  } catch (const std::exception&) {
    return false;  // a stamp cut short: the unit did not finish
  }
}

// Removes a unit's old outputs: rename aside (atomic), then delete.
void clear_unit(const std::string& dir) {
  std::string aside = dir + ".stale";
  std::error_code ec;
  fs::remove_all(aside, ec);
  fs::rename(dir, aside, ec);
  BISSL_CHECK(!ec, "stamp: could not move the old outputs in '", dir, "' aside to recompute them: ", ec.message());
  fs::remove_all(aside, ec);
}

// A folder holding nothing but temporaries of a partial stamp whose write a
// kill interrupted (before its rename): the unit never started.
bool only_stamp_leftovers(const std::string& dir) {
  std::vector<fs::path> tmp;
  for (auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("stamp.partial.json.tmp.", 0) != 0) return false;
    tmp.push_back(e.path());
  }
  std::error_code ec;
  for (auto& p : tmp) fs::remove(p, ec);
  return true;
}

}  // namespace

bool read_stamp(const std::string& dir, Stamp& out) { return read_stamp_file(dir + kDone, out); }

namespace {
UnitStart begin_here(const std::string& dir, const Stamp& now, bool no_recompute) {
  UnitStart r;
  std::error_code ec;
  fs::remove_all(dir + ".stale", ec);  // a recompute killed between rename and delete
  Stamp old;
  bool have_done = read_stamp_file(dir + kDone, old);
  bool have_partial = !have_done && read_stamp_file(dir + kPartial, old);
  if (have_done || have_partial) {
    std::string diff = first_difference(old, now);
    if (diff.empty()) {
      r.state = have_done ? UnitState::Reused : UnitState::Resumed;
      r.made = old;
      if (have_partial) std::fprintf(stderr, "%s: continuing the unfinished run in %s (from its checkpoints, where it has any)\n", now.unit.c_str(), dir.c_str());
      return r;
    }
    BISSL_CHECK(!no_recompute, "pipeline: ", now.unit, " (", dir, ") was made with other settings: ", diff,
                " (--no-recompute: stopped before recomputing it)");
    std::fprintf(stderr, "%s: recomputing (%s)\n", now.unit.c_str(), diff.c_str());
    r.changed = diff;
    clear_unit(dir);
  } else if (fs::exists(dir) && !fs::is_empty(dir) && !only_stamp_leftovers(dir)) {
    throw Error(str("pipeline: ", dir, " holds files but no stamp (made by an older bissl, or dropped in), so ", now.unit,
                    " cannot tell what made them; delete the folder to recompute it",
                    now.unit == "pretrain" ? ", or point pipeline.pretrained at a backbone made elsewhere" : ""));
  }
  fs::create_directories(dir);
  write_json_atomic(dir + kPartial, now.to_json());
  r.state = UnitState::Fresh;
  return r;
}
}  // namespace

UnitStart begin_unit(const std::string& dir, const Stamp& now, bool no_recompute) {
  dist::Comm& c = dist::group(dist::current_group());
  if (c.size() == 1) return begin_here(dir, now, no_recompute);
  // Several ranks: rank 0 decides and acts (it may move old outputs aside),
  // every rank learns the decision.
  UnitStart r;
  std::string packed;
  dist::on_root([&] {
    r = begin_here(dir, now, no_recompute);
    nlohmann::json j{{"state", int(r.state)}, {"changed", r.changed}};
    if (r.state != UnitState::Fresh) j["made"] = r.made.to_json();
    packed = j.dump();
  });
  dist::broadcast_string(packed);
  if (c.rank() != 0) {
    const nlohmann::json j = nlohmann::json::parse(packed);
    r.state = UnitState(j.at("state").get<int>());
    r.changed = j.at("changed").get<std::string>();
    if (j.contains("made")) r.made = Stamp::from_json(j.at("made"));
  }
  return r;
}

void finish_unit(const std::string& dir, Stamp now) {
  now.made_at = now_text();
  now.code = code_version();
  write_json_atomic(dir + kDone, now.to_json());
  dist::on_root([&] {
    std::error_code ec;
    fs::remove(dir + kPartial, ec);
  });
}

}  // namespace bissl::stages
