#pragma once
// The op registry: every op registers forward (per device), VJP and JVP in one
// place. `call_op` runs the forward kernel, pushes tangents through the JVP
// rule when inputs carry tangents, and records a tape node when gradients are
// enabled. VJP and JVP rules are written with engine ops only, so backward
// passes are themselves differentiable and carry tangents.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "engine/tensor.h"

namespace bissl {

using AttrValue = std::variant<int64_t, double, bool, std::string, std::vector<int64_t>, std::vector<double>>;

class Attrs {
 public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<const std::string, AttrValue>> kv) : m_(kv) {}
  Attrs& set(const std::string& k, AttrValue v) {
    m_[k] = std::move(v);
    return *this;
  }
  bool has(const std::string& k) const { return m_.count(k) > 0; }
  int64_t i(const std::string& k) const { return get<int64_t>(k); }
  double f(const std::string& k) const;  // accepts an int too
  bool b(const std::string& k) const { return get<bool>(k); }
  const std::string& s(const std::string& k) const { return get<std::string>(k); }
  const std::vector<int64_t>& ints(const std::string& k) const { return get<std::vector<int64_t>>(k); }
  const std::vector<double>& floats(const std::string& k) const { return get<std::vector<double>>(k); }
  std::string str() const;

 private:
  template <class T>
  const T& get(const std::string& k) const {
    auto it = m_.find(k);
    BISSL_CHECK(it != m_.end(), "attrs: expected attribute '", k, "', found none");
    auto* p = std::get_if<T>(&it->second);
    BISSL_CHECK(p, "attrs: attribute '", k, "' has another type than the op expects");
    return *p;
  }
  std::map<std::string, AttrValue> m_;
};

struct OpDef;

// What a VJP or JVP rule sees of the forward call.
class OpCtx {
 public:
  const Attrs& attrs;
  OpCtx(const Attrs& a, const std::vector<Tensor>& in, const std::vector<Tensor>& out,
        const std::vector<Shape>& in_shapes, const std::vector<DType>& in_dtypes, std::vector<bool> needs)
      : attrs(a), in_(in), out_(out), in_shapes_(in_shapes), in_dtypes_(in_dtypes), needs_(std::move(needs)) {}
  const Tensor& input(int i) const;   // only inputs the op chose to save
  // A saved input that may legitimately be absent (an optional operand).
  Tensor input_opt(int i) const { return i < int(in_.size()) ? in_[size_t(i)] : Tensor(); }
  const Tensor& output(int i) const;  // only outputs the op chose to save
  const Shape& input_shape(int i) const { return in_shapes_.at(i); }
  DType input_dtype(int i) const { return in_dtypes_.at(i); }
  int num_inputs() const { return int(in_shapes_.size()); }
  // VJP: whether input i needs a gradient (rules may skip work otherwise).
  bool needs_grad(int i) const { return i < int(needs_.size()) && needs_[i]; }

 private:
  const std::vector<Tensor>& in_;
  const std::vector<Tensor>& out_;
  const std::vector<Shape>& in_shapes_;
  const std::vector<DType>& in_dtypes_;
  std::vector<bool> needs_;
};

using ForwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs, const Attrs&)>;
// grads: one per output; undefined where an output received no gradient
// (only possible for ops with several outputs: a node runs because some
// output got one). Returns one per input (undefined = no gradient).
using VjpFn = std::function<std::vector<Tensor>(const OpCtx&, const std::vector<Tensor>& grads)>;
// tangents: one per input (undefined = zero). Returns one per output.
using JvpFn = std::function<std::vector<Tensor>(const OpCtx&, const std::vector<Tensor>& tangents)>;

struct OpDef {
  std::string name;
  std::string doc;
  int num_inputs = 1;   // -1: variadic
  int num_outputs = 1;
  std::vector<std::string> attrs;          // "name: type" descriptions, for listing
  std::vector<int> nondiff_inputs;         // indices, masks, running statistics
  std::vector<int> nondiff_outputs;        // indices, masks
  bool save_all_inputs = false;
  std::vector<int> save_inputs;            // which inputs the rules read
  std::vector<int> save_outputs;           // which outputs the rules read
  ForwardFn forward[kNumDevices];
  VjpFn vjp;  // empty: op is not differentiable (all outputs non-diff)
  JvpFn jvp;

  bool input_differentiable(int i) const;
  bool output_differentiable(int i) const;
};

class OpRegistry {
 public:
  static OpRegistry& get();
  void add(OpDef def);
  const OpDef& op(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::map<std::string, OpDef> ops_;
};

// Runs an op with autodiff bookkeeping.
std::vector<Tensor> call_op(const OpDef& op, const std::vector<Tensor>& inputs, const Attrs& attrs = {});

// One JVP rule application as call_op ran it: the op, its primal inputs and
// outputs (detached), and the identities of the tangents it read and wrote
// (the tangent objects' addresses at the time: aliases of a tensor share its
// tangent, so this follows a value through the tape's saved aliases).
struct TangentStep {
  const OpDef* op = nullptr;
  Attrs attrs;
  std::vector<Tensor> inputs, outputs;
  std::vector<Shape> in_shapes;
  std::vector<DType> in_dtypes;
  std::vector<const void*> in_keys, out_keys;  // nullptr: no tangent
};
// While set, call_op appends every JVP rule it runs on this thread to *rec
// (not the ops a rule runs inside itself). Linearization (autograd.h) uses it.
void set_tangent_recorder(std::vector<TangentStep>* rec);
std::vector<Tensor> call_op(const std::string& name, const std::vector<Tensor>& inputs, const Attrs& attrs = {});

// Computes a JVP by running an engine-op composite with forward-mode
// tangents: used by fused ops (e.g. batch-norm backward) whose JVP is the
// derivative of their unfused definition.
std::vector<Tensor> jvp_of_composite(
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& composite,
    const std::vector<Tensor>& primals, const std::vector<Tensor>& tangents);

// Computes a VJP by recording an engine-op composite and differentiating it
// (used for the second derivative of fused backward ops).
std::vector<Tensor> vjp_of_composite(
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& composite,
    const std::vector<Tensor>& primals, const std::vector<Tensor>& grads);

}  // namespace bissl
