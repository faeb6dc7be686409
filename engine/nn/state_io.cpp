#include "engine/nn/state_io.h"

#include "engine/error.h"

namespace bissl::nn {

void save_module(const Module& m, const std::string& path, const std::map<std::string, std::string>& meta) {
  io::NamedTensors all;
  for (auto& [k, t] : m.state_dict()) all.emplace_back(k, t.to(Device::CPU));
  io::save_safetensors(path, all, meta);
}

void load_module(Module& m, const io::SafetensorsFile& f, const std::string& what) {
  try {
    m.load_state_dict(StateDict(f.tensors.begin(), f.tensors.end()));
  } catch (const Error& e) {
    throw Error(str("loading ", what, " '", f.path, "': ", e.what()));
  }
}

void load_module(Module& m, const std::string& path, const std::string& what) {
  load_module(m, io::load_safetensors(path), what);
}

io::NamedTensors prefixed(const std::string& prefix, const StateDict& sd) {
  io::NamedTensors r;
  for (auto& [k, t] : sd) r.emplace_back(prefix + k, t.to(Device::CPU));
  return r;
}

StateDict with_prefix(const io::SafetensorsFile& f, const std::string& prefix) {
  StateDict r;
  for (auto& [k, t] : f.tensors)
    if (k.rfind(prefix, 0) == 0) r.emplace_back(k.substr(prefix.size()), t);
  return r;
}

}  // namespace bissl::nn
