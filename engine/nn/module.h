#pragma once
// nn::Module: a tree of named parameters, buffers and child modules with a
// train/eval flag. Names and order follow PyTorch exactly (own parameters,
// own buffers, then each child recursively, dotted prefixes), so a
// state_dict lines up key for key with torchvision's.
//
// Parameters are leaf tensors owned by the module. Everything that changes
// them (optimisers, load_state_dict, to(DType)) works in place on the same
// TensorImpl, so handles taken earlier (layer members, optimiser groups) stay
// valid.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/profile.h"
#include "engine/tensor.h"

namespace bissl::nn {

// Ordered (name, tensor) pairs: the format of state_dict and checkpoints.
using StateDict = std::vector<std::pair<std::string, Tensor>>;

// What a non-strict load_state_dict skipped.
struct LoadResult {
  std::vector<std::string> missing_keys;     // in the model, not in the file
  std::vector<std::string> unexpected_keys;  // in the file, not in the model
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Copying would silently share parameters; build a new module and
  // load_state_dict instead.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Short type name for printing ("Linear", "BatchNorm2d", ...).
  virtual std::string type_name() const { return "Module"; }
  // Constructor arguments for printing ("in_features=3, out_features=4").
  virtual std::string extra_repr() const { return ""; }
  // Torch-style multi-line tree of the module.
  std::string repr() const;
  // The NVTX range a forward of this module opens: "conv1 (Conv2d)" — its
  // name in its parent and its type — or the type alone for a root module.
  // Ranges nest, so an Nsight Systems timeline reads like the model.
  const std::string& range_name() const;

  // ---- traversal (recursive, registration order, dotted names) ----
  // Shared parameters (the same tensor registered twice) appear once.
  StateDict named_parameters() const;
  std::vector<Tensor> parameters() const;
  StateDict named_buffers() const;  // persistent and non-persistent
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  // This module (name "") and every descendant, depth first.
  std::vector<std::pair<std::string, Module*>> named_modules();
  int64_t num_parameters() const;  // total elements over parameters()

  // ---- state ----
  // Own parameters, own persistent buffers, then each child recursively
  // (PyTorch's order). Tensors are detached handles sharing storage with the
  // module: clone them to keep a snapshot while training continues.
  StateDict state_dict() const;
  // Copies each tensor into the matching parameter or buffer in place.
  // Validates everything before copying anything. Errors (one line):
  // missing key and unexpected key (strict only), shape or dtype mismatch
  // (always). Non-strict returns what was skipped.
  LoadResult load_state_dict(const StateDict& sd, bool strict = true);

  // ---- mode ----
  virtual Module& train(bool on = true);  // this module and all descendants
  Module& eval() { return train(false); }
  bool is_training() const { return training_; }
  // Sets requires_grad on every parameter (false freezes the module).
  Module& requires_grad_(bool on = true);
  // Drops every parameter's gradient (PyTorch's set_to_none).
  void zero_grad();

  // Converts floating parameters and buffers (f32, f64, bf16) to `t` in
  // place; integer buffers (num_batches_tracked) keep their dtype.
  // Gradients and tangents are dropped.
  Module& to(DType t);
  // Moves parameters and buffers to `d`, except host-resident buffers
  // (counters the host reads every step, such as BN's num_batches_tracked):
  // they stay on the CPU, so reading them needs no device synchronisation.
  Module& to(Device d);

 protected:
  // Registering a name again replaces the entry and keeps its position.
  // Names must be non-empty and contain no '.'.
  Tensor register_parameter(const std::string& name, Tensor t);  // marks requires_grad_
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = true, bool host_resident = false);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    register_module_impl(name, m);
    return m;
  }
  // A key (local name of one of this module's buffers) that may be absent
  // from a file without error; PyTorch tolerates a missing
  // num_batches_tracked in old BatchNorm checkpoints.
  virtual bool optional_on_load(const std::string& local_name) const { return false; }

 private:
  struct Entry {
    std::string name;
    Tensor tensor;
    bool persistent = true;
    bool host = false;  // host-resident: to(Device) leaves it on the CPU
  };
  struct Ref {
    std::string name;
    Tensor tensor;
    const Module* owner;
    std::string local;
    bool host = false;
  };
  void register_module_impl(const std::string& name, std::shared_ptr<Module> m);
  void collect(const std::string& prefix, bool params, bool buffers, bool persistent_only,
               std::vector<Ref>& out) const;
  void repr_into(std::string& out, int indent) const;

  std::vector<Entry> params_;
  std::vector<Entry> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
  std::string local_name_;           // name in the parent that registered it last
  mutable std::string range_name_;   // built at the first forward
};

// A module with one tensor in and one tensor out. forward() opens the
// module's NVTX range and runs forward_impl(), which subclasses define.
class Layer : public Module {
 public:
  Tensor forward(const Tensor& x) {
    ScopedRange range(range_name().c_str());
    return forward_impl(x);
  }
  Tensor operator()(const Tensor& x) { return forward(x); }

 protected:
  virtual Tensor forward_impl(const Tensor& x) = 0;
};

}  // namespace bissl::nn
