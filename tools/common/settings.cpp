#include "tools/common/settings.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "engine/error.h"
#include "engine/schema.h"

namespace bissl::settings {

namespace {

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// "a,b", or the TOML-looking "[a, b]" (what --print-config shows); "" and "[]" are empty.
std::vector<std::string> split_list(const std::string& v_in) {
  std::vector<std::string> out;
  std::string v = trim(v_in);
  if (v.size() >= 2 && v.front() == '[' && v.back() == ']') v = trim(v.substr(1, v.size() - 2));
  if (v.empty()) return out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    // A quoted element, as --print-config writes it: ["ft", "bissl"].
    if (item.size() >= 2 && item.front() == '"' && item.back() == '"') {
      std::string u;
      for (size_t i = 1; i + 1 < item.size(); ++i) {
        if (item[i] == '\\' && i + 2 < item.size()) ++i;
        u += item[i];
      }
      item = u;
    }
    out.push_back(item);
  }
  return out;
}

std::string quote_text(const std::string& s) {
  std::string r = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') r += '\\', r += ch;
    else if (ch == '\n') r += "\\n";
    else if (ch == '\t') r += "\\t";
    else if (static_cast<unsigned char>(ch) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", unsigned(ch));
      r += b;
    } else r += ch;
  }
  return r + "\"";
}

std::string double_literal(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char b[64];
  for (int prec : {15, 16, 17}) {  // the shortest text that reads back exactly
    std::snprintf(b, sizeof b, "%.*g", prec, d);
    if (std::strtod(b, nullptr) == d) break;
  }
  std::string s = b;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string node_text(const toml::node& n, const std::string& what) {
  if (auto s = n.value_exact<std::string>()) return *s;
  if (auto i = n.value_exact<int64_t>()) return std::to_string(*i);
  if (auto d = n.value_exact<double>()) return double_literal(*d);
  if (auto b = n.value_exact<bool>()) return *b ? "true" : "false";
  if (auto* a = n.as_array()) {
    std::string r;
    for (auto& e : *a) {
      BISSL_CHECK(!e.is_array() && !e.is_table(), "config: ", what, ": expected a list of plain values, found a nested list or table");
      r += (r.empty() ? "" : ",") + node_text(e, what);
    }
    return r;
  }
  throw Error(str("config: ", what, ": expected a string, number, boolean or list, found another TOML type"));
}

}  // namespace

double parse_double(const std::string& what, const std::string& v) {
  std::string t = trim(v);
  try {
    size_t used = 0;
    double d = std::stod(t, &used);
    if (used == t.size()) return d;
  } catch (...) {
  }
  throw Error(str("config: ", what, " expects a number, found '", v, "'"));
}

int64_t parse_int(const std::string& what, const std::string& v) {
  std::string t = trim(v);
  try {
    size_t used = 0;
    long long d = std::stoll(t, &used);
    if (used == t.size()) return int64_t(d);
  } catch (...) {
  }
  throw Error(str("config: ", what, " expects an integer, found '", v, "'"));
}

bool parse_bool(const std::string& what, const std::string& v) {
  std::string t = trim(v);
  if (t == "true" || t == "1" || t == "yes" || t == "on") return true;
  if (t == "false" || t == "0" || t == "no" || t == "off") return false;
  throw Error(str("config: ", what, " expects true or false, found '", v, "'"));
}

std::string Settings::quote(const std::string& s) { return quote_text(s); }

void Settings::throw_choice(const std::string& what, const schema::Rule& r, const std::string& found) {
  throw Error(str("config: ", what, " must be ", r.text(), ", found '", found, "'"));
}

void Settings::add_field(Field f) {
  const bool fresh = index_.emplace(std::make_pair(f.section, f.key), fields_.size()).second;
  BISSL_CHECK(fresh, "settings: ", f.section, ".", f.key, " registered twice");
  f.default_value = f.toml_value();
  fields_.push_back(std::move(f));
}

namespace {

using schema::Rule;

template <class T>
std::string list_literal(const std::vector<T>& v, std::string (*one)(const T&)) {
  std::string r;
  for (auto& x : v) r += (r.empty() ? "" : ", ") + one(x);
  return "[" + r + "]";
}
std::string int_text(const int64_t& x) { return std::to_string(x); }
std::string dbl_text(const double& x) { return double_literal(x); }
std::string str_text(const std::string& x) { return quote_text(x); }

[[noreturn]] void bad(const std::string& what, const Rule& r, const std::string& found) {
  throw Error(str("config: ", what, " must be ", r.text(), ", found ", found));
}
void check_number(const std::string& what, const Rule& r, double x) {
  if (!r.allows(x)) bad(what, r, schema::detail::value_text(x));
}
void check_length(const std::string& what, const Rule& r, size_t n) {
  if (!r.allows_length(n)) bad(what, r, str(n, " value", n == 1 ? "" : "s"));
}

}  // namespace

void Settings::add(const std::string& s, const std::string& g, const std::string& k, std::string* v, const Rule& r,
                   const char* doc) {
  std::string w = s + "." + k;
  add_field({s, k, g, doc, r, [v](const std::string& t) { *v = t; }, [v] { return quote_text(*v); },
             [v, w, r] {
               if (!r.allows(*v)) bad(w, r, "'" + *v + "'");
             },
             ""});
}
void Settings::add(const std::string& s, const std::string& g, const std::string& k, double* v, const Rule& r,
                   const char* doc) {
  std::string w = s + "." + k;
  add_field({s, k, g, doc, r, [v, w](const std::string& t) { *v = parse_double(w, t); },
             [v] { return double_literal(*v); }, [v, w, r] { check_number(w, r, *v); }, ""});
}
void Settings::add(const std::string& s, const std::string& g, const std::string& k, int64_t* v, const Rule& r,
                   const char* doc) {
  std::string w = s + "." + k;
  add_field({s, k, g, doc, r, [v, w](const std::string& t) { *v = parse_int(w, t); },
             [v] { return std::to_string(*v); }, [v, w, r] { check_number(w, r, double(*v)); }, ""});
}
void Settings::add(const std::string& s, const std::string& g, const std::string& k, int* v, const Rule& r,
                   const char* doc) {
  std::string w = s + "." + k;
  add_field({s, k, g, doc, r,
             [v, w](const std::string& t) {
               int64_t i = parse_int(w, t);
               BISSL_CHECK(i >= INT32_MIN && i <= INT32_MAX, "config: ", w, " expects a 32-bit integer, found ", i);
               *v = int(i);
             },
             [v] { return std::to_string(*v); }, [v, w, r] { check_number(w, r, double(*v)); }, ""});
}
void Settings::add(const std::string& s, const std::string& g, const std::string& k, uint64_t* v, const Rule& r,
                   const char* doc) {
  std::string w = s + "." + k;
  add_field({s, k, g, doc, r,
             [v, w](const std::string& t) {
               int64_t i = parse_int(w, t);
               BISSL_CHECK(i >= 0, "config: ", w, " expects a non-negative integer, found ", i);
               *v = uint64_t(i);
             },
             [v] { return std::to_string(*v); }, [v, w, r] { check_number(w, r, double(*v)); }, ""});
}
void Settings::add(const std::string& s, const std::string& g, const std::string& k, bool* v, const Rule& r,
                   const char* doc) {
  std::string w = s + "." + k;
  add_field({s, k, g, doc, r, [v, w](const std::string& t) { *v = parse_bool(w, t); },
             [v] { return std::string(*v ? "true" : "false"); }, [] {}, ""});
}
void Settings::add(const std::string& s, const std::string& g, const std::string& k, std::vector<int64_t>* v,
                   const Rule& r, const char* doc) {
  std::string w = s + "." + k;
  add_field({s, k, g, doc, r,
             [v, w](const std::string& t) {
               v->clear();
               for (auto& e : split_list(t)) v->push_back(parse_int(w, e));
             },
             [v] { return list_literal(*v, int_text); },
             [v, w, r] {
               check_length(w, r, v->size());
               for (auto x : *v) check_number(w, r, double(x));
             },
             ""});
}
void Settings::add(const std::string& s, const std::string& g, const std::string& k, std::vector<double>* v,
                   const Rule& r, const char* doc) {
  std::string w = s + "." + k;
  add_field({s, k, g, doc, r,
             [v, w](const std::string& t) {
               v->clear();
               for (auto& e : split_list(t)) v->push_back(parse_double(w, e));
             },
             [v] { return list_literal(*v, dbl_text); },
             [v, w, r] {
               check_length(w, r, v->size());
               for (auto x : *v) check_number(w, r, x);
             },
             ""});
}
void Settings::add(const std::string& s, const std::string& g, const std::string& k, std::vector<std::string>* v,
                   const Rule& r, const char* doc) {
  std::string w = s + "." + k;
  add_field({s, k, g, doc, r, [v](const std::string& t) { *v = split_list(t); },
             [v] { return list_literal(*v, str_text); },
             [v, w, r] {
               check_length(w, r, v->size());
               for (auto& x : *v)
                 if (!r.allows(x)) bad(w, r, "'" + x + "'");
             },
             ""});
}

const Settings::Field* Settings::find(const std::string& section, const std::string& key) const {
  auto it = index_.find(std::make_pair(section, key));
  return it == index_.end() ? nullptr : &fields_[it->second];
}

void Settings::take_defaults_from(const Settings& o) {
  for (auto& f : fields_)
    if (const Field* g = o.find(f.section, f.key)) f.default_value = g->default_value;
}

std::vector<std::string> Settings::keys() const {
  std::vector<std::string> r;
  for (auto& f : fields_) r.push_back(f.section + "." + f.key);
  return r;
}

// Arithmetic on small numbers only: kept out of the fuzzers' coverage
// feedback, whose comparison hooks cost more than the comparisons and whose
// features here (distances reached) guide no search (docs/security.md).
#if defined(__clang__)
__attribute__((no_sanitize("coverage")))
#endif
size_t edit_distance(const std::string& a, const std::string& b, size_t at_most) {
  const size_t n = a.size(), m = b.size();
  const size_t k = std::min(at_most, std::max(n, m));  // the distance never exceeds the longer length
  const size_t over = k + 1;                            // "more than at_most"
  if ((n > m ? n - m : m - n) > k) return over;
  // Only cells within k of the diagonal can hold k or less (Ukkonen's band);
  // a row whose band is all over k ends the search.
  // Two rows; on the stack for names of usual length ("did you mean" compares
  // a stray key with every name, and an allocation each cost more than the rows).
  constexpr size_t kStackRow = 96;
  size_t stack_rows[2 * kStackRow];
  std::vector<size_t> heap_rows;
  size_t* prev = stack_rows;
  if (m + 2 > kStackRow) {
    heap_rows.resize(2 * (m + 2));
    prev = heap_rows.data();
  }
  size_t* cur = prev + (m + 2);
  std::fill(prev, prev + 2 * (m + 2), over);
  for (size_t j = 0; j <= std::min(m, k); ++j) prev[j] = j;
  for (size_t i = 1; i <= n; ++i) {
    const size_t lo = i > k ? i - k : 1, hi = std::min(m, i + k);
    cur[lo - 1] = lo == 1 && i <= k ? i : over;
    size_t row_min = cur[lo - 1];
    for (size_t j = lo; j <= hi; ++j) {
      // (Plain comparisons: std::min of a list is a call out of this function.)
      const size_t del = prev[j] + 1, ins = cur[j - 1] + 1, sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      size_t d = del < ins ? del : ins;
      if (sub < d) d = sub;
      cur[j] = d < over ? d : over;
      if (cur[j] < row_min) row_min = cur[j];
    }
    cur[hi + 1] = over;  // the next row's band reaches one further
    if (row_min > k) return over;
    std::swap(prev, cur);
  }
  return prev[m];
}

std::string Settings::nearest(const std::string& key) const {
  std::string best;
  size_t best_d = SIZE_MAX;
  const auto dot = key.rfind('.');
  const std::string bare = dot == std::string::npos ? key : key.substr(dot + 1);
  // Close enough to be a typo: at most a third of the key's letters, at least 2.
  const size_t limit = std::max<size_t>(2, bare.size() / 3);
  // Two strings' distance is at least the difference of their lengths: a
  // name that cannot come within the limit (or beat the best so far) is not
  // compared, so a long stray key costs no quadratic work per field.
  auto far = [&](size_t a, size_t b) { return (a > b ? a - b : b - a) > std::min(limit, best_d); };
  const std::string section = key.substr(0, dot);
  for (auto& f : fields_) {
    // The whole name, or the key alone (a key put under the wrong section).
    if (!far(key.size(), f.section.size() + 1 + f.key.size())) {
      std::string full = f.section + "." + f.key;
      size_t d = edit_distance(key, full, std::min(limit, best_d));
      if (d < best_d) best_d = d, best = std::move(full);
    }
    if (!far(bare.size(), f.key.size())) {
      size_t d = edit_distance(bare, f.key, std::min(limit, best_d)) + (f.section == section ? 0 : 1);
      if (d < best_d) best_d = d, best = f.section + "." + f.key;
    }
  }
  return best_d <= limit ? best : "";
}

void Settings::unknown_key(const std::string& full, const std::string& where) const {
  std::string near = nearest(full);
  throw Error(str("config: ", where.empty() ? "" : where + ": ", "unknown key '", full, "'",
                  near.empty() ? std::string("; --print-config lists every key") : "; did you mean '" + near + "'?"));
}

void Settings::set(const std::string& a) {
  auto eq = a.find('=');
  BISSL_CHECK(eq != std::string::npos, "config: expected section.key=value, found '", a, "'");
  std::string lhs = trim(a.substr(0, eq)), value = a.substr(eq + 1);
  auto dot = lhs.rfind('.');
  BISSL_CHECK(dot != std::string::npos, "config: expected section.key=value, found '", a, "'");
  const Field* f = find(lhs.substr(0, dot), lhs.substr(dot + 1));
  if (!f) unknown_key(lhs, "");
  f->parse(trim(value));
}

void Settings::load_toml_string(const std::string& text, const std::string& where) {
  toml::table t;
  try {
    t = toml::parse(text, where);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << e.description() << " (line " << e.source().begin.line << ")";
    throw Error(str("config: ", where, ": ", os.str()));
  }
  std::function<void(const toml::table&, const std::string&)> walk = [&](const toml::table& tab,
                                                                         const std::string& section) {
    for (auto& [k, node] : tab) {
      std::string key(k.str());
      if (auto* sub = node.as_table()) {
        walk(*sub, section.empty() ? key : section + "." + key);
        continue;
      }
      BISSL_CHECK(!section.empty(), "config: ", where, ": expected [section] tables at the top level, found key '",
                  key, "'");
      std::string what = where + ": " + section + "." + key;
      const Field* f = find(section, key);
      if (!f) unknown_key(section + "." + key, where);
      f->parse(node_text(node, what));
    }
  };
  walk(t, "");
}

void Settings::load_toml_file(const std::string& path) {
  std::ifstream in(path);
  BISSL_CHECK(in, "config: expected a readable TOML file, found none at '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  load_toml_string(ss.str(), path);
}

void Settings::validate() const {
  for (auto& f : fields_) f.check();
}

nlohmann::json Settings::values(const std::vector<std::string>& groups) const {
  nlohmann::json j = nlohmann::json::object();
  for (auto& f : fields_) {
    if (!f.rule.stamped) continue;
    if (f.rule.only_if_changed && f.toml_value() == f.default_value) continue;
    bool take = false;
    for (auto& g : groups) take |= f.group == g || f.group.rfind(g + ".", 0) == 0 || f.section + "." + f.key == g;
    if (take) j[f.section + "." + f.key] = f.toml_value();
  }
  return j;
}

std::string Settings::to_toml(bool docs) const {
  std::string out;
  std::vector<std::string> order;
  for (auto& f : fields_)
    if (std::find(order.begin(), order.end(), f.section) == order.end()) order.push_back(f.section);
  for (auto& s : order) {
    out += (out.empty() ? "[" : "\n[") + s + "]\n";
    for (auto& f : fields_) {
      if (f.section != s) continue;
      if (docs) {
        std::string range = f.rule.text();
        out += "# " + f.doc + " (" + (range == "any value" ? "" : range + "; ") + "default " + f.default_value + ")\n";
      }
      out += f.key + " = " + f.toml_value() + "\n";
    }
  }
  return out;
}

}  // namespace bissl::settings
