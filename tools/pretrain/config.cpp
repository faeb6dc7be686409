#include "tools/pretrain/config.h"

#include <toml++/toml.h>

#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "engine/error.h"

namespace bissl::pretrain {

namespace {

// One entry per key: how to read it from text, and how to write it.
struct Field {
  std::string section;
  std::function<void(Config&, const std::string&)> parse;
  std::function<void(const Config&, toml::table&)> emit;
};

template <class T>
T parse_as(const std::string& key, const std::string& v);
template <>
std::string parse_as(const std::string&, const std::string& v) {
  return v;
}
template <>
double parse_as(const std::string& key, const std::string& v) {
  try {
    size_t used = 0;
    double d = std::stod(v, &used);
    if (used == v.size()) return d;
  } catch (...) {
  }
  throw Error(str("config: ", key, " expects a number, found '", v, "'"));
}
template <>
int64_t parse_as(const std::string& key, const std::string& v) {
  try {
    size_t used = 0;
    long long d = std::stoll(v, &used);
    if (used == v.size()) return int64_t(d);
  } catch (...) {
  }
  throw Error(str("config: ", key, " expects an integer, found '", v, "'"));
}
template <>
int parse_as(const std::string& key, const std::string& v) {
  return int(parse_as<int64_t>(key, v));
}
template <>
uint64_t parse_as(const std::string& key, const std::string& v) {
  return uint64_t(parse_as<int64_t>(key, v));
}

template <class T>
Field field(const std::string& section, const std::string& key, T Config::*m) {
  std::string full = section + "." + key;
  return {section, [full, m](Config& c, const std::string& v) { c.*m = parse_as<T>(full, v); },
          [section, key, m](const Config& c, toml::table& t) {
            auto* sec = t[section].as_table();
            if constexpr (std::is_same_v<T, uint64_t>) sec->insert_or_assign(key, int64_t(c.*m));
            else sec->insert_or_assign(key, c.*m);
          }};
}

const std::vector<std::pair<std::string, Field>>& fields() {
  static const std::vector<std::pair<std::string, Field>> f = {
      {"dataset", field("data", "dataset", &Config::dataset)},
      {"root", field("data", "root", &Config::root)},
      {"image_size", field("data", "image_size", &Config::image_size)},
      {"limit", field("data", "limit", &Config::limit)},
      {"workers", field("data", "workers", &Config::workers)},
      {"arch", field("model", "arch", &Config::arch)},
      {"stem", field("model", "stem", &Config::stem)},
      {"width", field("model", "width", &Config::width)},
      {"patch_size", field("model", "patch_size", &Config::patch_size)},
      {"name", field("method", "name", &Config::method)},
      {"temperature", field("method", "temperature", &Config::temperature)},
      {"proj_hidden", field("method", "proj_hidden", &Config::proj_hidden)},
      {"proj_out", field("method", "proj_out", &Config::proj_out)},
      {"ema", field("method", "ema", &Config::ema)},
      {"mask_ratio", field("method", "mask_ratio", &Config::mask_ratio)},
      {"decoder_dim", field("method", "decoder_dim", &Config::decoder_dim)},
      {"decoder_depth", field("method", "decoder_depth", &Config::decoder_depth)},
      {"batch_size", field("train", "batch_size", &Config::batch_size)},
      {"epochs", field("train", "epochs", &Config::epochs)},
      {"steps", field("train", "steps", &Config::steps)},
      {"optimizer", field("train", "optimizer", &Config::optimizer)},
      {"lr", field("train", "lr", &Config::lr)},
      {"weight_decay", field("train", "weight_decay", &Config::weight_decay)},
      {"momentum", field("train", "momentum", &Config::momentum)},
      {"trust", field("train", "trust", &Config::trust)},
      {"warmup", field("train", "warmup", &Config::warmup)},
      {"final_lr_ratio", field("train", "final_lr_ratio", &Config::final_lr_ratio)},
      {"seed", field("train", "seed", &Config::seed)},
      {"device", field("train", "device", &Config::device)},
      {"dir", field("output", "dir", &Config::out)},
      {"checkpoint_every", field("output", "checkpoint_every", &Config::checkpoint_every)},
      {"log_every", field("output", "log_every", &Config::log_every)},
  };
  return f;
}

const Field* find(const std::string& section, const std::string& key) {
  for (auto& [k, f] : fields())
    if (k == key && (section.empty() || f.section == section)) return &f;
  return nullptr;
}

std::string known_keys() {
  std::string r;
  for (auto& [k, f] : fields()) r += (r.empty() ? "" : ", ") + f.section + "." + k;
  return r;
}

std::string node_text(const toml::node& n) {
  if (auto s = n.value<std::string>()) return *s;
  if (n.is_integer()) return std::to_string(*n.value<int64_t>());
  if (n.is_floating_point()) {
    std::ostringstream os;
    os.precision(17);
    os << *n.value<double>();
    return os.str();
  }
  if (auto b = n.value<bool>()) return *b ? "1" : "0";
  return "";
}

}  // namespace

void Config::set(const std::string& a) {
  auto eq = a.find('=');
  BISSL_CHECK(eq != std::string::npos, "config: expected section.key=value, found '", a, "'");
  std::string lhs = a.substr(0, eq), value = a.substr(eq + 1);
  std::string section, key = lhs;
  if (auto dot = lhs.find('.'); dot != std::string::npos) section = lhs.substr(0, dot), key = lhs.substr(dot + 1);
  const Field* f = find(section, key);
  BISSL_CHECK(f, "config: unknown key '", lhs, "'; known keys: ", known_keys());
  f->parse(*this, value);
}

void Config::load_toml_string(const std::string& text, const std::string& where) {
  toml::table t;
  try {
    t = toml::parse(text, where);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << e.description() << " (line " << e.source().begin.line << ")";
    throw Error(str("config: ", where, ": ", os.str()));
  }
  for (auto& [sec, node] : t) {
    auto* tab = node.as_table();
    BISSL_CHECK(tab, "config: ", where, ": expected [section] tables at the top level, found key '", sec.str(), "'");
    for (auto& [key, val] : *tab) {
      const Field* f = find(std::string(sec.str()), std::string(key.str()));
      BISSL_CHECK(f, "config: ", where, ": unknown key '", sec.str(), ".", key.str(), "'; known keys: ", known_keys());
      f->parse(*this, node_text(val));
    }
  }
}

void Config::load_toml(const std::string& path) {
  std::ifstream in(path);
  BISSL_CHECK(in, "config: expected a readable TOML file, found none at '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  load_toml_string(ss.str(), path);
}

std::string Config::to_toml() const {
  toml::table t;
  for (const char* s : {"data", "model", "method", "train", "output"}) t.insert(s, toml::table{});
  for (auto& [k, f] : fields()) f.emit(*this, t);
  std::ostringstream os;
  os << t;
  return os.str() + "\n";
}

void Config::validate() const {
  BISSL_CHECK(method == "simclr" || method == "byol" || method == "mae",
              "config: method.name must be simclr, byol or mae, found '", method, "'");
  BISSL_CHECK(optimizer == "lars" || optimizer == "adamw" || optimizer == "sgd",
              "config: train.optimizer must be lars, adamw or sgd, found '", optimizer, "'");
  BISSL_CHECK(device == "cpu" || device == "cuda" || device == "auto", "config: train.device must be cpu, cuda or auto, found '",
              device, "'");
  BISSL_CHECK(batch_size >= 2, "config: train.batch_size must be >= 2, found ", batch_size);
  BISSL_CHECK(image_size > 0, "config: data.image_size must be > 0, found ", image_size);
  BISSL_CHECK(lr > 0, "config: train.lr must be > 0, found ", lr);
  BISSL_CHECK(method != "mae" || arch.rfind("vit", 0) == 0, "config: MAE needs a ViT (model.arch vit_tiny or vit_small), found '",
              arch, "'");
  BISSL_CHECK(method == "mae" || arch.rfind("resnet", 0) == 0, "config: ", method,
              " is set up for ResNet backbones here (model.arch resnet18/34/50), found '", arch, "'");
}

}  // namespace bissl::pretrain
