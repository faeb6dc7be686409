#include "models/torch_state.h"

#include <unordered_map>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace bissl::models {

namespace {

Shape oihw_shape(const Shape& ohwi) { return {ohwi[0], ohwi[3], ohwi[1], ohwi[2]}; }

bool is_float_like(DType t) { return t == DType::F32 || t == DType::F64 || t == DType::BF16; }

Tensor on_cpu(const Tensor& t) { return t.device() == Device::CPU ? t : t.to(Device::CPU); }

}  // namespace

Tensor ohwi_to_oihw(const Tensor& w) {
  BISSL_CHECK(w.dim() == 4, "ohwi_to_oihw: expected a 4-D OHWI tensor, found shape ", shape_str(w.shape()));
  NoGradGuard ng;
  return permute(w.detach(), {0, 3, 1, 2});
}

Tensor oihw_to_ohwi(const Tensor& w) {
  BISSL_CHECK(w.dim() == 4, "oihw_to_ohwi: expected a 4-D OIHW tensor, found shape ", shape_str(w.shape()));
  NoGradGuard ng;
  return permute(w.detach(), {0, 2, 3, 1});
}

io::NamedTensors torch_state_dict(const nn::Module& m) {
  io::NamedTensors out;
  NoGradGuard ng;
  for (auto& [name, t] : m.state_dict()) {
    Tensor c = on_cpu(t);
    out.emplace_back(name, c.dim() == 4 ? ohwi_to_oihw(c) : c.clone());
  }
  return out;
}

nn::LoadResult load_torch_state_dict(nn::Module& m, const io::NamedTensors& sd, bool strict) {
  std::unordered_map<std::string, Tensor> model;
  for (auto& [name, t] : m.state_dict()) model.emplace(name, t);
  nn::StateDict conv;
  conv.reserve(sd.size());
  NoGradGuard ng;
  for (auto& [name, t] : sd) {
    BISSL_CHECK(t.defined(), "load_torch_state: ", name, " is an empty tensor in the file");
    auto it = model.find(name);
    if (it == model.end()) {  // unexpected: Module::load_state_dict reports it (strict) or skips it
      conv.emplace_back(name, t);
      continue;
    }
    const Tensor& dst = it->second;
    Tensor src = on_cpu(t);
    if (dst.dim() == 4) {
      BISSL_CHECK(src.shape() == oihw_shape(dst.shape()), "load_torch_state: ", name, " has shape ",
                  shape_str(src.shape()), " in the file, the model expects OIHW ", shape_str(oihw_shape(dst.shape())),
                  " (OHWI ", shape_str(dst.shape()), " here)");
      src = oihw_to_ohwi(src);
    }
    if (src.dtype() != dst.dtype() && is_float_like(src.dtype()) && is_float_like(dst.dtype()))
      src = cast(src, dst.dtype());
    conv.emplace_back(name, src);
  }
  return m.load_state_dict(conv, strict);
}

void save_torch_state(const nn::Module& m, const std::string& path, const std::map<std::string, std::string>& meta) {
  std::map<std::string, std::string> all = meta;
  all["format"] = "pt";
  io::save_safetensors(path, torch_state_dict(m), all);
}

nn::LoadResult load_torch_state(nn::Module& m, const std::string& path, bool strict) {
  io::SafetensorsFile f = io::load_safetensors(path);
  try {
    return load_torch_state_dict(m, f.tensors, strict);
  } catch (const Error& e) {
    throw Error(str(path, ": ", e.what()));
  }
}

}  // namespace bissl::models
