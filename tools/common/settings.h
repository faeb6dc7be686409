#pragma once
// A table of named settings bound to the members of a config struct: TOML
// loading, `section.key=value` overrides and the resolved config written back
// as TOML, with one-line errors naming the key, what it expects and what was
// found. The stage configs (tools/stages/config.h) are built on it.
//
//   Settings s;
//   s.add("finetune", "epochs", &cfg.finetune.epochs);
//   s.load_toml_file("configs/pipeline.toml");   // [finetune] epochs = 30
//   s.set("finetune.epochs=5");
//   std::string text = s.to_toml();
//
// Sections may be nested ("pretrain.train"). A section can instead be handed
// whole to a callback (`add_passthrough`): its keys go to that callback as
// "sub.key=value" assignments, which is how the pipeline config embeds the
// pretraining config.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace bissl::settings {

class Settings {
 public:
  void add(const std::string& section, const std::string& key, std::string* v);
  void add(const std::string& section, const std::string& key, double* v);
  void add(const std::string& section, const std::string& key, int64_t* v);
  void add(const std::string& section, const std::string& key, int* v);
  void add(const std::string& section, const std::string& key, uint64_t* v);
  void add(const std::string& section, const std::string& key, bool* v);
  void add(const std::string& section, const std::string& key, std::vector<int64_t>* v);
  void add(const std::string& section, const std::string& key, std::vector<double>* v);
  void add(const std::string& section, const std::string& key, std::vector<std::string>* v);
  // Every key under [section.*] goes to `set` as "rest.key=value" (rest = the
  // part of the section name after `section.`); `emit` returns that part of
  // the resolved config as TOML text, nested under [section] on output.
  void add_passthrough(const std::string& section, std::function<void(const std::string&)> set,
                       std::function<std::string()> emit);

  // "section.key=value"; lists as comma-separated values ("0,2,4,6").
  void set(const std::string& assignment);
  void load_toml_string(const std::string& text, const std::string& where);
  void load_toml_file(const std::string& path);
  std::string to_toml() const;
  std::string known_keys() const;

 private:
  struct Field {
    std::string section, key;
    std::function<void(const std::string&)> parse;  // from text
    std::function<std::string()> toml_value;        // as a TOML value literal
  };
  struct Passthrough {
    std::string section;
    std::function<void(const std::string&)> set;
    std::function<std::string()> emit;
  };
  const Field* find(const std::string& section, const std::string& key) const;
  const Passthrough* passthrough_of(const std::string& section) const;
  void add_field(Field f);
  std::vector<Field> fields_;
  std::vector<Passthrough> passthrough_;
};

// Text to values (used by add(); exposed for CLI flags): one-line errors
// naming `what`.
double parse_double(const std::string& what, const std::string& v);
int64_t parse_int(const std::string& what, const std::string& v);
bool parse_bool(const std::string& what, const std::string& v);

}  // namespace bissl::settings
