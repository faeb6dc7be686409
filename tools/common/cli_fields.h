#pragma once
// Command-line flags from an option struct's own description
// (engine/schema.h): one flag per field, `--key-with-dashes` unless renamed,
// the field's doc as its help, its current value as the default shown, and
// its rule checked when the flag is parsed ("--width: must be > 0, found -1").
// For tools that take a spec as flags instead of a config file
// (bissl-inspect); nothing here spells a key.
//
//   models::BackboneSpec spec;      // the tool's defaults set beforehand
//   add_field_flags(app, spec, {{"arch", "--model"}}, {"drop_path"});
#include <CLI/CLI.hpp>

#include <map>
#include <set>
#include <string>
#include <type_traits>

#include "engine/schema.h"

namespace bissl::settings {

namespace detail {

struct FlagAdder {
  CLI::App* app;
  const std::map<std::string, std::string>& rename;
  const std::set<std::string>& skip;

  std::string flag(const std::string& key) const {
    auto it = rename.find(key);
    if (it != rename.end()) return it->second;
    std::string f = "--" + key;
    for (auto& c : f)
      if (c == '_') c = '-';
    return f;
  }

  template <class T>
  void operator()(const std::string& key, T& m, const schema::Rule& r, const char* doc) {
    static_assert(std::is_arithmetic_v<T> || std::is_same_v<T, std::string>,
                  "add_field_flags: lists have no flag form yet");
    if (skip.count(key)) return;
    CLI::Option* o = app->add_option(flag(key), m, doc)->capture_default_str();
    if constexpr (std::is_same_v<T, bool>) {
      return;
    } else {
      schema::Rule rule = r;
      o->check(CLI::Validator(
          [rule](std::string& text) -> std::string {
            if constexpr (std::is_same_v<T, std::string>) {
              if (rule.allows(text)) return {};
              return "must be " + rule.text() + ", found '" + text + "'";
            } else {
              char* end = nullptr;
              double x = std::strtod(text.c_str(), &end);
              if (end == text.c_str() || *end != 0) return {};  // not a number: CLI11's own conversion says so
              if (rule.allows(x)) return {};
              return "must be " + rule.text() + ", found " + text;
            }
          },
          rule.text(), ""));
    }
  }
  // An enum: its names as the flag's choices, the value set when parsed.
  template <class E>
  void operator()(const std::string& key, E& m, const schema::Names<E>& names, const char* doc) {
    if (skip.count(key)) return;
    const std::string* now = names.name_of(m);
    app->add_option_function<std::string>(
           flag(key), [&m, names](const std::string& text) { m = *names.value_of(text); }, doc)
        ->check(CLI::IsMember(names.names()))
        ->default_str(now ? *now : "");
  }
};

}  // namespace detail

// One flag per field of `s`, bound to it; `rename` maps a key to the flag it
// is known by, `skip` leaves keys out (settings the tool fixes itself).
template <class S>
void add_field_flags(CLI::App* app, S& s, const std::map<std::string, std::string>& rename = {},
                     const std::set<std::string>& skip = {}) {
  detail::FlagAdder a{app, rename, skip};
  s.fields(a);
}

}  // namespace bissl::settings
