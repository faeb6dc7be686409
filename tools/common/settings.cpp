#include "tools/common/settings.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "engine/error.h"

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
  while (std::getline(ss, item, ',')) out.push_back(trim(item));
  return out;
}

std::string quote(const std::string& s) {
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

void Settings::add_field(Field f) {
  BISSL_CHECK(!find(f.section, f.key), "settings: ", f.section, ".", f.key, " registered twice");
  fields_.push_back(std::move(f));
}

void Settings::add(const std::string& s, const std::string& k, std::string* v) {
  add_field({s, k, [v](const std::string& t) { *v = t; }, [v] { return quote(*v); }});
}
void Settings::add(const std::string& s, const std::string& k, double* v) {
  std::string w = s + "." + k;
  add_field({s, k, [v, w](const std::string& t) { *v = parse_double(w, t); }, [v] { return double_literal(*v); }});
}
void Settings::add(const std::string& s, const std::string& k, int64_t* v) {
  std::string w = s + "." + k;
  add_field({s, k, [v, w](const std::string& t) { *v = parse_int(w, t); }, [v] { return std::to_string(*v); }});
}
void Settings::add(const std::string& s, const std::string& k, int* v) {
  std::string w = s + "." + k;
  add_field({s, k, [v, w](const std::string& t) { *v = int(parse_int(w, t)); }, [v] { return std::to_string(*v); }});
}
void Settings::add(const std::string& s, const std::string& k, uint64_t* v) {
  std::string w = s + "." + k;
  add_field({s, k,
             [v, w](const std::string& t) {
               int64_t i = parse_int(w, t);
               BISSL_CHECK(i >= 0, "config: ", w, " expects a non-negative integer, found ", i);
               *v = uint64_t(i);
             },
             [v] { return std::to_string(*v); }});
}
void Settings::add(const std::string& s, const std::string& k, bool* v) {
  std::string w = s + "." + k;
  add_field({s, k, [v, w](const std::string& t) { *v = parse_bool(w, t); }, [v] { return std::string(*v ? "true" : "false"); }});
}
void Settings::add(const std::string& s, const std::string& k, std::vector<int64_t>* v) {
  std::string w = s + "." + k;
  add_field({s, k,
             [v, w](const std::string& t) {
               v->clear();
               for (auto& e : split_list(t)) v->push_back(parse_int(w, e));
             },
             [v] {
               std::string r;
               for (auto x : *v) r += (r.empty() ? "" : ", ") + std::to_string(x);
               return "[" + r + "]";
             }});
}
void Settings::add(const std::string& s, const std::string& k, std::vector<double>* v) {
  std::string w = s + "." + k;
  add_field({s, k,
             [v, w](const std::string& t) {
               v->clear();
               for (auto& e : split_list(t)) v->push_back(parse_double(w, e));
             },
             [v] {
               std::string r;
               for (auto x : *v) r += (r.empty() ? "" : ", ") + double_literal(x);
               return "[" + r + "]";
             }});
}
void Settings::add(const std::string& s, const std::string& k, std::vector<std::string>* v) {
  add_field({s, k, [v](const std::string& t) { *v = split_list(t); },
             [v] {
               std::string r;
               for (auto& x : *v) r += (r.empty() ? "" : ", ") + quote(x);
               return "[" + r + "]";
             }});
}

void Settings::add_passthrough(const std::string& section, std::function<void(const std::string&)> set,
                               std::function<std::string()> emit) {
  passthrough_.push_back({section, std::move(set), std::move(emit)});
}

const Settings::Field* Settings::find(const std::string& section, const std::string& key) const {
  for (auto& f : fields_)
    if (f.section == section && f.key == key) return &f;
  return nullptr;
}

const Settings::Passthrough* Settings::passthrough_of(const std::string& section) const {
  for (auto& p : passthrough_)
    if (section.rfind(p.section + ".", 0) == 0) return &p;
  return nullptr;
}

std::string Settings::known_keys() const {
  std::string r;
  for (auto& f : fields_) r += (r.empty() ? "" : ", ") + f.section + "." + f.key;
  for (auto& p : passthrough_) r += (r.empty() ? "" : ", ") + p.section + ".<section>.<key>";
  return r;
}

void Settings::set(const std::string& a) {
  auto eq = a.find('=');
  BISSL_CHECK(eq != std::string::npos, "config: expected section.key=value, found '", a, "'");
  std::string lhs = trim(a.substr(0, eq)), value = a.substr(eq + 1);
  auto dot = lhs.rfind('.');
  BISSL_CHECK(dot != std::string::npos, "config: expected section.key=value, found '", a, "'");
  std::string section = lhs.substr(0, dot), key = lhs.substr(dot + 1);
  if (const Passthrough* p = passthrough_of(section)) {
    p->set(section.substr(p->section.size() + 1) + "." + key + "=" + trim(value));
    return;
  }
  const Field* f = find(section, key);
  BISSL_CHECK(f, "config: unknown key '", lhs, "'; known keys: ", known_keys());
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
      if (const Passthrough* p = passthrough_of(section)) {
        p->set(section.substr(p->section.size() + 1) + "." + key + "=" + node_text(node, what));
        continue;
      }
      const Field* f = find(section, key);
      BISSL_CHECK(f, "config: ", where, ": unknown key '", section, ".", key, "'; known keys: ", known_keys());
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

std::string Settings::to_toml() const {
  std::string out;
  std::vector<std::string> order;
  for (auto& f : fields_)
    if (std::find(order.begin(), order.end(), f.section) == order.end()) order.push_back(f.section);
  for (auto& s : order) {
    out += (out.empty() ? "[" : "\n[") + s + "]\n";
    for (auto& f : fields_)
      if (f.section == s) out += f.key + " = " + f.toml_value() + "\n";
  }
  for (auto& p : passthrough_) {
    std::stringstream ss(p.emit());
    std::string line;
    while (std::getline(ss, line)) {
      if (line.empty()) continue;  // the blank line before each header is added here
      if (line[0] == '[') line = "[" + p.section + "." + line.substr(1);
      if (!line.empty() && line[0] == '[') out += "\n";
      out += line + "\n";
    }
  }
  return out;
}

}  // namespace bissl::settings
