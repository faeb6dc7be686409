#pragma once
// The settings table of a tool: option structs that describe their fields
// once (engine/schema.h) bound to sections, and everything derived from that
// one description — TOML loading, `section.key=value` overrides, the
// resolved config as TOML with each key's doc and range as a comment,
// validation of every value against its range, the nearest known key for a
// misspelt one, and the resolved values of chosen sections for stage stamps.
//
//   Settings s;
//   s.section("bissl", cfg.bissl);                      // cfg.bissl.fields(v)
//   s.section("pretrain.data", [&](auto& v) { v("root", root, schema::any(), "…"); });
//   s.load_toml_file("configs/pipeline.toml");           // [bissl] lambda = 0.01
//   s.set("bissl.lambda=0.5");
//   s.validate();                                        // "config: bissl.lambda must be > 0, found -1"
//   std::string text = s.to_toml(/*docs=*/true);
//
// A section may take several structs; each registration has a group name
// (default: the section) so that a stamp can take part of a section.
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/schema.h"

namespace bissl::settings {

class Settings {
 public:
  // Binds the fields of `s` (s.fields(v), or s(v) for a callable) under [name].
  template <class S>
  void section(const std::string& name, S& s, const std::string& group = "") {
    Binder b{*this, name, group.empty() ? name : group};
    if constexpr (std::is_invocable_v<S&, Binder&>) s(b);
    else s.fields(b);
  }
  template <class S>
  void section(const std::string& name, S&& s, const std::string& group = "") {  // a temporary lambda
    Binder b{*this, name, group.empty() ? name : group};
    s(b);
  }

  // "section.key=value"; lists as comma-separated values ("0,2,4,6") or "[0, 2]".
  void set(const std::string& assignment);
  void load_toml_string(const std::string& text, const std::string& where);
  void load_toml_file(const std::string& path);
  // The resolved config; with docs, each key preceded by "# doc (range)".
  std::string to_toml(bool docs = false) const;
  // Every value inside its range; the first that is not is an Error naming
  // key, range and value.
  void validate() const;
  // The resolved values (TOML literals) of every stamped key whose group is
  // one of `groups` or lies under one ("pretrain" takes "pretrain.data", ...),
  // or whose "section.key" is one of them,
  // as {"section.key": "value"}.
  nlohmann::json values(const std::vector<std::string>& groups) const;
  std::vector<std::string> keys() const;  // "section.key", in order
  // The defaults shown by to_toml(docs) are the values when a key was bound;
  // a table bound to a copy (or to a config already changed) takes them from
  // a table bound at the defaults.
  void take_defaults_from(const Settings& o);
  // The known key nearest to `key` by edit distance, or "" when none is close.
  std::string nearest(const std::string& key) const;

  struct Field {
    std::string section, key, group, doc;
    schema::Rule rule;
    std::function<void(const std::string&)> parse;  // from text
    std::function<std::string()> toml_value;        // as a TOML value literal
    std::function<void()> check;                    // throws when out of range
    std::string default_value;                      // toml_value() when bound
  };
  const std::vector<Field>& fields() const { return fields_; }

  struct Binder {
    Settings& s;
    std::string section, group;
    template <class T>
    void operator()(const std::string& key, T& member, const schema::Rule& rule, const char* doc) {
      s.add(section, group, key, &member, rule, doc);
    }
    template <class E>
    void operator()(const std::string& key, E& member, const schema::Names<E>& names, const char* doc) {
      s.add_enum(section, group, key, &member, names, doc);
    }
  };

 private:
  // The supported member types.
#define BISSL_SETTINGS_ADD(T)                                                                                  \
  void add(const std::string& section, const std::string& group, const std::string& key, T* v, const schema::Rule& rule, \
           const char* doc);
  BISSL_SETTINGS_ADD(std::string)
  BISSL_SETTINGS_ADD(double)
  BISSL_SETTINGS_ADD(int64_t)
  BISSL_SETTINGS_ADD(int)
  BISSL_SETTINGS_ADD(uint64_t)
  BISSL_SETTINGS_ADD(bool)
  BISSL_SETTINGS_ADD(std::vector<int64_t>)
  BISSL_SETTINGS_ADD(std::vector<double>)
  BISSL_SETTINGS_ADD(std::vector<std::string>)
#undef BISSL_SETTINGS_ADD
  template <class E>
  void add_enum(const std::string& section, const std::string& group, const std::string& key, E* v,
                const schema::Names<E>& names, const char* doc) {
    std::string w = section + "." + key;
    Field f{section, key, group, doc, schema::one_of(names.names()), nullptr, nullptr, nullptr, ""};
    f.parse = [v, w, names](const std::string& t) {
      const E* e = names.value_of(t);
      if (!e) throw_choice(w, schema::one_of(names.names()), t);
      *v = *e;
    };
    f.toml_value = [v, names] {
      const std::string* n = names.name_of(*v);
      return quote(n ? *n : std::string("?"));
    };
    f.check = [] {};
    add_field(std::move(f));
  }
  [[noreturn]] static void throw_choice(const std::string& what, const schema::Rule& r, const std::string& found);
  static std::string quote(const std::string& s);
  const Field* find(const std::string& section, const std::string& key) const;
  [[noreturn]] void unknown_key(const std::string& full, const std::string& where) const;
  void add_field(Field f);
  std::vector<Field> fields_;
  std::map<std::pair<std::string, std::string>, size_t> index_;  // (section, key) -> position in fields_
};

// Text to values (used by the binder; exposed for CLI flags): one-line
// errors naming `what`.
double parse_double(const std::string& what, const std::string& v);
int64_t parse_int(const std::string& what, const std::string& v);
bool parse_bool(const std::string& what, const std::string& v);

// Levenshtein distance (the nearest-key suggestion); any answer over
// `at_most` is given as at_most + 1, found without the whole table.
size_t edit_distance(const std::string& a, const std::string& b, size_t at_most = SIZE_MAX);

}  // namespace bissl::settings
