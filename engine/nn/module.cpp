#include "engine/nn/module.h"

#include <set>
#include <unordered_map>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace bissl::nn {

namespace {

void check_name(const std::string& name, const char* what) {
  BISSL_CHECK(!name.empty(), what, ": expected a non-empty name");
  BISSL_CHECK(name.find('.') == std::string::npos, what, ": expected a name without '.', found \"", name, "\"");
}

// Points an existing TensorImpl at new storage, so every handle to it sees
// the change (what keeps optimiser groups valid across to()).
void swap_storage(const Tensor& dst, const Tensor& src) {
  TensorImpl& d = dst.impl();
  const TensorImpl& s = src.impl();
  d.storage = s.storage;
  d.offset = s.offset;
  d.dtype = s.dtype;
  d.grad.reset();
  d.tangent.reset();
}

}  // namespace

// ---- registration ----

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_name(name, "register_parameter");
  BISSL_CHECK(t.defined(), "register_parameter: ", name, " is an empty tensor handle");
  BISSL_CHECK(t.is_leaf(), "register_parameter: ", name, " has tape history; parameters must be leaves (detach it)");
  t.requires_grad_(true);
  for (auto& e : params_)
    if (e.name == name) {
      e.tensor = t;
      return t;
    }
  params_.push_back({name, t, true});
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t, bool persistent, bool host_resident) {
  check_name(name, "register_buffer");
  BISSL_CHECK(t.defined(), "register_buffer: ", name, " is an empty tensor handle");
  for (auto& e : buffers_)
    if (e.name == name) {
      e.tensor = t;
      e.persistent = persistent;
      e.host = host_resident;
      return t;
    }
  buffers_.push_back({name, t, persistent, host_resident});
  return t;
}

void Module::register_module_impl(const std::string& name, std::shared_ptr<Module> m) {
  check_name(name, "register_module");
  BISSL_CHECK(m, "register_module: ", name, " is a null module pointer");
  BISSL_CHECK(m.get() != this, "register_module: a module cannot be its own child (", name, ")");
  m->local_name_ = name;
  m->range_name_.clear();
  for (auto& c : children_)
    if (c.first == name) {
      c.second = std::move(m);
      return;
    }
  children_.emplace_back(name, std::move(m));
}

const std::string& Module::range_name() const {
  if (range_name_.empty()) range_name_ = local_name_.empty() ? type_name() : local_name_ + " (" + type_name() + ")";
  return range_name_;
}

// ---- traversal ----

void Module::collect(const std::string& prefix, bool params, bool buffers, bool persistent_only,
                     std::vector<Ref>& out) const {
  if (params)
    for (auto& e : params_) out.push_back({prefix + e.name, e.tensor, this, e.name, false});
  if (buffers)
    for (auto& e : buffers_)
      if (e.persistent || !persistent_only) out.push_back({prefix + e.name, e.tensor, this, e.name, e.host});
  for (auto& c : children_) c.second->collect(prefix + c.first + ".", params, buffers, persistent_only, out);
}

StateDict Module::named_parameters() const {
  std::vector<Ref> refs;
  collect("", true, false, false, refs);
  std::set<const TensorImpl*> seen;
  StateDict r;
  for (auto& x : refs)
    if (seen.insert(x.tensor.impl_ptr().get()).second) r.emplace_back(x.name, x.tensor);
  return r;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> r;
  for (auto& p : named_parameters()) r.push_back(p.second);
  return r;
}

StateDict Module::named_buffers() const {
  std::vector<Ref> refs;
  collect("", false, true, false, refs);
  StateDict r;
  for (auto& x : refs) r.emplace_back(x.name, x.tensor);
  return r;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const { return children_; }

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> r{{"", this}};
  for (auto& c : children_)
    for (auto& [n, m] : c.second->named_modules()) r.emplace_back(n.empty() ? c.first : c.first + "." + n, m);
  return r;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : parameters()) n += p.numel();
  return n;
}

// ---- state ----

StateDict Module::state_dict() const {
  std::vector<Ref> refs;
  collect("", true, true, true, refs);
  StateDict r;
  for (auto& x : refs) r.emplace_back(x.name, x.tensor.detach());
  return r;
}

LoadResult Module::load_state_dict(const StateDict& sd, bool strict) {
  std::unordered_map<std::string, const Tensor*> file;
  for (auto& [k, t] : sd) {
    BISSL_CHECK(file.emplace(k, &t).second, "load_state_dict: key ", k, " appears twice in the file");
    BISSL_CHECK(t.defined(), "load_state_dict: ", k, " is an empty tensor in the file");
  }
  std::vector<Ref> refs;
  collect("", true, true, true, refs);

  LoadResult res;
  std::vector<std::pair<Tensor, const Tensor*>> copies;  // (model, file)
  std::set<std::string> model_keys;
  for (auto& r : refs) {
    model_keys.insert(r.name);
    auto it = file.find(r.name);
    if (it == file.end()) {
      if (r.owner->optional_on_load(r.local)) continue;
      BISSL_CHECK(!strict, "load_state_dict: missing key ", r.name, " (the model has it, the file does not)");
      res.missing_keys.push_back(r.name);
      continue;
    }
    const Tensor& src = *it->second;
    BISSL_CHECK(src.shape() == r.tensor.shape(), "load_state_dict: ", r.name, " has shape ", shape_str(src.shape()),
                " in the file, the model expects ", shape_str(r.tensor.shape()));
    BISSL_CHECK(src.dtype() == r.tensor.dtype(), "load_state_dict: ", r.name, " has dtype ", dtype_name(src.dtype()),
                " in the file, the model expects ", dtype_name(r.tensor.dtype()));
    copies.emplace_back(r.tensor, &src);
  }
  for (auto& [k, t] : sd) {
    if (model_keys.count(k)) continue;
    BISSL_CHECK(!strict, "load_state_dict: unexpected key ", k, " (the file has it, the model does not)");
    res.unexpected_keys.push_back(k);
  }
  NoGradGuard ng;
  for (auto& [dst, src] : copies) dst.copy_(src->device() == dst.device() ? *src : src->to(dst.device()));
  return res;
}

// ---- mode ----

Module& Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
  return *this;
}

Module& Module::requires_grad_(bool on) {
  for (auto& p : parameters()) p.requires_grad_(on);
  return *this;
}

void Module::zero_grad() {
  for (auto& p : parameters()) p.zero_grad();
}

Module& Module::to(DType t) {
  BISSL_CHECK(t == DType::F32 || t == DType::F64 || t == DType::BF16, "Module::to: expected a floating dtype, found ",
              dtype_name(t));
  std::vector<Ref> refs;
  collect("", true, true, false, refs);
  std::set<const TensorImpl*> done;
  NoGradGuard ng;
  for (auto& r : refs) {
    DType d = r.tensor.dtype();
    if (d == t || d == DType::I64 || !done.insert(r.tensor.impl_ptr().get()).second) continue;
    swap_storage(r.tensor, cast(r.tensor.detach(), t));
  }
  return *this;
}

Module& Module::to(Device dev) {
  std::vector<Ref> refs;
  collect("", true, true, false, refs);
  std::set<const TensorImpl*> done;
  NoGradGuard ng;
  for (auto& r : refs) {
    const Device want = r.host ? Device::CPU : dev;
    if (r.tensor.device() == want || !done.insert(r.tensor.impl_ptr().get()).second) continue;
    swap_storage(r.tensor, r.tensor.detach().to(want));
  }
  return *this;
}

// ---- printing ----

void Module::repr_into(std::string& out, int indent) const {
  out += type_name() + "(" + extra_repr();
  if (children_.empty()) {
    out += ")";
    return;
  }
  out += "\n";
  std::string pad(size_t(indent + 2), ' ');
  for (auto& c : children_) {
    out += pad + "(" + c.first + "): ";
    c.second->repr_into(out, indent + 2);
    out += "\n";
  }
  out += std::string(size_t(indent), ' ') + ")";
}

std::string Module::repr() const {
  std::string s;
  repr_into(s, 0);
  return s;
}

}  // namespace bissl::nn
