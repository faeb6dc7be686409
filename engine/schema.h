#pragma once
// Option structs that describe their fields once.
//
// A struct of settings lists its fields in one member template,
//
//   struct CgOptions {
//     int iterations = 5;
//     double tolerance = 0.0;
//     template <class V> void fields(V& v) {
//       v("iterations", iterations, schema::ge(0), "maximum number of CG iterations");
//       v("tolerance", tolerance, schema::ge(0), "stop once ‖r‖ ≤ tolerance·‖b‖; 0 = never early");
//     }
//   };
//
// and everything else is derived by handing it a visitor: TOML binding,
// `--set`, the printed and saved config with the docs as comments, range
// validation, stage-reuse stamps (tools/common/settings.h), a result
// struct's JSON (to_json below). The library that owns the struct owns its
// description; nothing else spells its keys.
//
// A visitor is called as v(key, member, rule, doc) for plain members
// (numbers, bool, string, lists of those) and v(key, member, names, doc)
// for enums, with `names` the value <-> text table. `Prefixed` adapts a
// visitor so a nested struct's keys get a prefix (BilevelOptions lists its
// CgOptions as cg_iterations, cg_layerwise, ...).
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace bissl::schema {

// The values a setting accepts. Numbers (and each element of a list of
// numbers): an interval, each end closed, open or absent, plus optionally
// one special value outside it (`or_value`: -1 = "the fine-tuning lr").
// Strings (and each element of a list of strings): `choices`, empty = any.
struct Rule {
  double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;
  bool has_special = false;
  double special = 0;
  std::vector<std::string> choices;
  int64_t min_length = 0, max_length = -1;  // lists: allowed number of elements (-1: any)
  // False for settings that cannot change a stage's results (output folders,
  // worker counts, logging): left out of the stamps that decide reuse.
  bool stamped = true;
  // A key added after stamps existed: left out of the stamps while it holds
  // its default, so that the stamps made before it still match.
  bool only_if_changed = false;

  bool allows(double x) const {
    if (has_special && x == special) return true;
    if (std::isnan(x)) return false;
    if (lo_open ? !(x > lo) : !(x >= lo)) return false;
    if (hi_open ? !(x < hi) : !(x <= hi)) return false;
    return true;
  }
  bool allows(const std::string& s) const {
    if (choices.empty()) return true;
    for (auto& c : choices)
      if (c == s) return true;
    return false;
  }
  bool allows_length(size_t n) const {
    return int64_t(n) >= min_length && (max_length < 0 || int64_t(n) <= max_length);
  }
  // "> 0", "in [0, 1]", "one of sgd, adamw", "any value".
  std::string text() const {
    auto num = [](double d) {
      char b[32];
      std::snprintf(b, sizeof b, "%.6g", d);
      return std::string(b);
    };
    std::string r;
    if (!choices.empty()) {
      r = "one of ";
      for (size_t i = 0; i < choices.size(); ++i) r += (i ? ", " : "") + choices[i];
    } else {
      bool has_lo = std::isfinite(lo), has_hi = std::isfinite(hi);
      if (has_lo && has_hi) r = std::string("in ") + (lo_open ? "(" : "[") + num(lo) + ", " + num(hi) + (hi_open ? ")" : "]");
      else if (has_lo) r = (lo_open ? "> " : ">= ") + num(lo);
      else if (has_hi) r = (hi_open ? "< " : "<= ") + num(hi);
      else r = "any value";
      if (has_special) r += " (or " + num(special) + ")";
    }
    if (min_length > 0 || max_length >= 0) {
      if (min_length == max_length) r += ", " + std::to_string(min_length) + " values";
      else if (max_length < 0) r += ", at least " + std::to_string(min_length) + " value" + (min_length == 1 ? "" : "s");
      else r += ", " + std::to_string(min_length) + " to " + std::to_string(max_length) + " values";
    }
    return r;
  }

  Rule& or_value(double v) {
    has_special = true, special = v;
    return *this;
  }
  Rule& length(int64_t n) {
    min_length = max_length = n;
    return *this;
  }
  Rule& length(int64_t lo_n, int64_t hi_n) {
    min_length = lo_n, max_length = hi_n;
    return *this;
  }
  Rule& unstamped() {
    stamped = false;
    return *this;
  }
  Rule& stamped_if_changed() {
    only_if_changed = true;
    return *this;
  }
};

inline Rule any() { return {}; }
inline Rule gt(double x) {
  Rule r;
  r.lo = x, r.lo_open = true;
  return r;
}
inline Rule ge(double x) {
  Rule r;
  r.lo = x;
  return r;
}
// Closed [lo, hi]; the open variants say which end is open.
inline Rule in(double lo, double hi) {
  Rule r;
  r.lo = lo, r.hi = hi;
  return r;
}
inline Rule in_open_hi(double lo, double hi) {  // [lo, hi)
  Rule r = in(lo, hi);
  r.hi_open = true;
  return r;
}
inline Rule in_open_lo(double lo, double hi) {  // (lo, hi]
  Rule r = in(lo, hi);
  r.lo_open = true;
  return r;
}
inline Rule in_open(double lo, double hi) {  // (lo, hi)
  Rule r = in(lo, hi);
  r.lo_open = r.hi_open = true;
  return r;
}
inline Rule probability() { return in(0, 1); }
inline Rule one_of(std::vector<std::string> c) {
  Rule r;
  r.choices = std::move(c);
  return r;
}

// An enum's text form.
template <class E>
struct Names {
  std::vector<std::pair<std::string, E>> table;
  std::vector<std::string> names() const {
    std::vector<std::string> r;
    for (auto& p : table) r.push_back(p.first);
    return r;
  }
  const std::string* name_of(E e) const {
    for (auto& p : table)
      if (p.second == e) return &p.first;
    return nullptr;
  }
  const E* value_of(const std::string& s) const {
    for (auto& p : table)
      if (p.first == s) return &p.second;
    return nullptr;
  }
};

// A visitor that prefixes every key (nested option structs).
template <class V>
struct Prefixed {
  V& v;
  std::string prefix;
  template <class T, class R>
  void operator()(const std::string& key, T& member, const R& rule, const char* doc) {
    v(prefix + key, member, rule, doc);
  }
};
template <class S, class V>
void fields_prefixed(S& s, V& v, const std::string& prefix) {
  Prefixed<V> p{v, prefix};
  s.fields(p);
}

// A struct's fields as one JSON object (results, metrics lines): numbers,
// bools, strings and lists as themselves, enums by name; NaN as null.
namespace detail {
struct JsonWriter {
  nlohmann::json& out;
  template <class T>
  void operator()(const std::string& key, T& member, const Rule&, const char*) {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isfinite(member)) out[key] = member;
      else out[key] = nullptr;
    } else {
      out[key] = member;
    }
  }
  template <class E>
  void operator()(const std::string& key, E& member, const Names<E>& names, const char*) {
    const std::string* n = names.name_of(member);
    out[key] = n ? *n : std::string("?");
  }
};
}  // namespace detail

// Every field of `s` inside its rule; the first that is not is an Error
// naming `section.key`, the rule and the value ("bissl.lambda must be > 0,
// found -1").
namespace detail {
std::string value_text(double d);
[[noreturn]] void out_of_range(const std::string& what, const Rule& r, const std::string& found);
struct Validator {
  std::string section;
  std::string name(const std::string& key) const { return section.empty() ? key : section + "." + key; }
  template <class T>
  void operator()(const std::string& key, T& m, const Rule& r, const char*) {
    if constexpr (std::is_same_v<T, bool>) {
    } else if constexpr (std::is_arithmetic_v<T>) {
      if (!r.allows(double(m))) out_of_range(name(key), r, value_text(double(m)));
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!r.allows(m)) out_of_range(name(key), r, "'" + m + "'");
    } else {  // a list
      if (!r.allows_length(m.size())) out_of_range(name(key), r, std::to_string(m.size()) + " values");
      for (auto& e : m) {
        if constexpr (std::is_same_v<std::decay_t<decltype(e)>, std::string>) {
          if (!r.allows(e)) out_of_range(name(key), r, "'" + e + "'");
        } else {
          if (!r.allows(double(e))) out_of_range(name(key), r, value_text(double(e)));
        }
      }
    }
  }
  template <class E>
  void operator()(const std::string&, E&, const Names<E>&, const char*) {}  // an enum holds a named value
};
}  // namespace detail

template <class S>
void validate(const S& s, const std::string& section) {
  detail::Validator v{section};
  const_cast<S&>(s).fields(v);  // the validator only reads
}

template <class S>
nlohmann::json to_json(const S& s) {
  nlohmann::json j = nlohmann::json::object();
  detail::JsonWriter w{j};
  const_cast<S&>(s).fields(w);  // the writer only reads
  return j;
}

}  // namespace bissl::schema
