#include "engine/op_registry.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>

#include "engine/autograd.h"
#include "engine/kern.h"
#include "engine/profile.h"

namespace bissl {

void register_all_ops(OpRegistry& r);  // engine/ops/register.cpp

double Attrs::f(const std::string& k) const {
  auto it = m_.find(k);
  BISSL_CHECK(it != m_.end(), "attrs: expected attribute '", k, "', found none");
  if (auto* p = std::get_if<int64_t>(&it->second)) return double(*p);
  return get<double>(k);
}

std::string Attrs::str() const {
  std::string r;
  for (auto& [k, v] : m_) {
    if (!r.empty()) r += ", ";
    r += k + "=";
    std::visit(
        [&](auto&& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>) r += x;
          else if constexpr (std::is_same_v<T, bool>) r += x ? "true" : "false";
          else if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>>) {
            r += "[";
            for (size_t i = 0; i < x.size(); ++i) r += (i ? "," : "") + bissl::str(x[i]);
            r += "]";
          } else r += bissl::str(x);
        },
        v);
  }
  return r;
}

const Tensor& OpCtx::input(int i) const {
  BISSL_CHECK(i < int(in_.size()) && in_[i].defined(), "op rule read input ", i,
              " which the op did not save (fix its save_inputs)");
  return in_[i];
}
const Tensor& OpCtx::output(int i) const {
  BISSL_CHECK(i < int(out_.size()) && out_[i].defined(), "op rule read output ", i,
              " which the op did not save (fix its save_outputs)");
  return out_[i];
}

bool OpDef::input_differentiable(int i) const {
  return std::find(nondiff_inputs.begin(), nondiff_inputs.end(), i) == nondiff_inputs.end();
}
bool OpDef::output_differentiable(int i) const {
  return std::find(nondiff_outputs.begin(), nondiff_outputs.end(), i) == nondiff_outputs.end();
}

OpRegistry& OpRegistry::get() {
  static OpRegistry* r = [] {
    auto* reg = new OpRegistry();
    register_all_ops(*reg);
    return reg;
  }();
  return *r;
}

void OpRegistry::add(OpDef def) {
  BISSL_CHECK(!ops_.count(def.name), "op registry: op '", def.name, "' registered twice");
  // Forwards call kernels through engine/kern.h, which picks the backend of
  // the running op, so one forward serves every device unless an op says otherwise.
  for (int d = 1; d < kNumDevices; ++d)
    if (!def.forward[d]) def.forward[d] = def.forward[0];
  ops_[def.name] = std::move(def);
}

const OpDef& OpRegistry::op(const std::string& name) const {
  auto it = ops_.find(name);
  BISSL_CHECK(it != ops_.end(), "op registry: no op named '", name, "'");
  return it->second;
}

std::vector<std::string> OpRegistry::names() const {
  std::vector<std::string> r;
  for (auto& kv : ops_) r.push_back(kv.first);
  return r;
}

namespace {
std::atomic<uint64_t> g_seq{0};
thread_local std::vector<TangentStep>* t_recorder = nullptr;
thread_local bool t_in_rule = false;  // inside a JVP rule: its own ops are not steps

Tensor alias_of(const Tensor& t) {
  Tensor a = t.detach();
  a.impl().tangent = t.impl().tangent;
  return a;
}
}  // namespace

void set_tangent_recorder(std::vector<TangentStep>* rec) { t_recorder = rec; }

std::vector<Tensor> call_op(const std::string& name, const std::vector<Tensor>& inputs, const Attrs& attrs) {
  return call_op(OpRegistry::get().op(name), inputs, attrs);
}

std::vector<Tensor> call_op(const OpDef& op, const std::vector<Tensor>& inputs, const Attrs& attrs) {
  BISSL_CHECK(op.num_inputs < 0 || int(inputs.size()) == op.num_inputs, op.name, ": expected ", op.num_inputs,
              " inputs, found ", inputs.size());
  Device dev = Device::CPU;
  bool first = true;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    if (first) dev = inputs[i].device(), first = false;
    BISSL_CHECK(inputs[i].device() == dev, op.name, ": inputs on different devices (input ", i, " on ",
                device_name(inputs[i].device()), ", expected ", device_name(dev), ")");
  }
  const ForwardFn& fwd = op.forward[int(dev)];
  BISSL_CHECK(fwd, op.name, ": no ", device_name(dev), " kernel in this build");

  std::vector<Tensor> outs;
  {
    // Forward functions compute values only; any engine op they use inside is
    // an implementation detail and must not touch the tape or tangents.
    NoGradGuard ng;
    NoForwardADGuard nf;
    kern::DeviceScope ds(dev);
    ScopedRange range(op.name.c_str());
    try {
      if (op_profiling()) {
        auto t0 = std::chrono::steady_clock::now();
        outs = fwd(inputs, attrs);
        op_profile_add(op.name, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      } else {
        outs = fwd(inputs, attrs);
      }
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {  // backend failures (CUDA, cuBLAS, allocation): name the op and shapes
      std::string shapes;
      for (auto& t : inputs) shapes += (shapes.empty() ? "" : ", ") + (t.defined() ? shape_str(t.shape()) : "-");
      throw Error(str(op.name, " on ", device_name(dev), " with inputs ", shapes, ": ", e.what()));
    }
  }
  BISSL_CHECK(int(outs.size()) == op.num_outputs, op.name, ": forward returned ", outs.size(),
              " outputs, expected ", op.num_outputs);

  bool any_tangent = false, record = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined() || !op.input_differentiable(int(i))) continue;
    if (forward_ad_enabled() && inputs[i].impl().tangent) any_tangent = true;
    if (grad_enabled() && inputs[i].requires_grad()) record = true;
  }
  if (!any_tangent && !record) return outs;
  BISSL_CHECK(op.vjp && op.jvp, op.name, ": has differentiable inputs that carry gradients or tangents, but the op "
              "registers no derivative rules");

  std::vector<Shape> in_shapes;
  std::vector<DType> in_dtypes;
  for (auto& t : inputs) {
    in_shapes.push_back(t.defined() ? t.shape() : Shape{});
    in_dtypes.push_back(t.defined() ? t.dtype() : DType::F32);
  }

  if (any_tangent) {
    std::vector<Tensor> tangents(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].defined() && op.input_differentiable(int(i))) tangents[i] = inputs[i].tangent();
    std::vector<Tensor> touts;
    const bool recording = t_recorder && !t_in_rule;
    {
      NoForwardADGuard nf;
      NoGradGuard ng;
      OpCtx ctx(attrs, inputs, outs, in_shapes, in_dtypes, {});
      struct InRule {
        bool prev = t_in_rule;
        InRule() { t_in_rule = true; }
        ~InRule() { t_in_rule = prev; }
      } in_rule;
      touts = op.jvp(ctx, tangents);
    }
    BISSL_CHECK(touts.size() == outs.size(), op.name, ": JVP returned ", touts.size(), " tangents for ",
                outs.size(), " outputs");
    for (size_t k = 0; k < outs.size(); ++k) {
      if (!outs[k].defined() || !op.output_differentiable(int(k)) || !touts[k].defined()) continue;
      BISSL_CHECK(touts[k].shape() == outs[k].shape(), op.name, ": JVP tangent ", k, " has shape ",
                  shape_str(touts[k].shape()), ", output has ", shape_str(outs[k].shape()));
      outs[k].impl().tangent = touts[k].detach().impl_ptr();
    }
    if (recording) {
      TangentStep st;
      st.op = &op;
      st.attrs = attrs;
      st.in_shapes = in_shapes;
      st.in_dtypes = in_dtypes;
      for (size_t i = 0; i < inputs.size(); ++i) {
        st.inputs.push_back(inputs[i].defined() ? inputs[i].detach() : Tensor());
        st.in_keys.push_back(tangents[i].defined() ? static_cast<const void*>(inputs[i].impl().tangent.get()) : nullptr);
      }
      for (auto& o : outs) {
        st.outputs.push_back(o.defined() ? o.detach() : Tensor());
        st.out_keys.push_back(o.defined() && o.impl().tangent ? static_cast<const void*>(o.impl().tangent.get()) : nullptr);
      }
      t_recorder->push_back(std::move(st));
    }
  }

  if (record) {
    auto node = std::make_shared<Node>();
    node->op = &op;
    node->attrs = attrs;
    node->seq = g_seq.fetch_add(1);
    node->in_shapes = in_shapes;
    node->in_dtypes = in_dtypes;
    node->saved_inputs.resize(inputs.size());
    node->saved_outputs.resize(outs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      bool save = op.save_all_inputs ||
                  std::find(op.save_inputs.begin(), op.save_inputs.end(), int(i)) != op.save_inputs.end();
      if (save) node->saved_inputs[i] = inputs[i];
    }
    for (int k : op.save_outputs) node->saved_outputs[size_t(k)] = alias_of(outs[size_t(k)]);
    node->next.resize(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& t = inputs[i];
      if (!t.defined() || !op.input_differentiable(int(i)) || !t.requires_grad()) continue;
      if (t.grad_fn()) {
        node->next[i].node = t.grad_fn();
        node->next[i].output_nr = t.impl().output_nr;
      } else {
        node->next[i].leaf = t.impl_ptr();
      }
    }
    for (size_t k = 0; k < outs.size(); ++k) {
      // Optional outputs (e.g. dgamma without gamma) may be absent.
      node->out_shapes.push_back(outs[k].defined() ? outs[k].shape() : Shape{});
      node->out_dtypes.push_back(outs[k].defined() ? outs[k].dtype() : DType::F32);
      if (!outs[k].defined() || !op.output_differentiable(int(k))) continue;
      outs[k].impl().grad_fn = node;
      outs[k].impl().output_nr = int(k);
      outs[k].impl().requires_grad = true;
    }
  }
  return outs;
}

std::vector<Tensor> jvp_of_composite(
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& composite,
    const std::vector<Tensor>& primals, const std::vector<Tensor>& tangents) {
  std::vector<Tensor> xs;
  for (size_t i = 0; i < primals.size(); ++i) {
    if (!primals[i].defined()) {
      xs.emplace_back();
      continue;
    }
    Tensor a = primals[i].detach();
    if (i < tangents.size() && tangents[i].defined()) a.set_tangent(tangents[i]);
    xs.push_back(a);
  }
  NoForwardADGuard on(false);
  NoGradGuard ng;
  auto outs = composite(xs);
  std::vector<Tensor> r;
  for (auto& o : outs) r.push_back(o.defined() ? o.tangent() : Tensor());
  return r;
}

std::vector<Tensor> vjp_of_composite(
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& composite,
    const std::vector<Tensor>& primals, const std::vector<Tensor>& grads) {
  // Under create_graph the composite runs on the primals themselves, so the
  // result stays on the tape (third and higher orders). Otherwise on detached
  // leaves, which keeps the caller's graph untouched.
  bool on_tape = grad_enabled();
  std::vector<Tensor> xs, wrt;
  std::vector<int> where;
  for (size_t i = 0; i < primals.size(); ++i) {
    if (!primals[i].defined() || !is_floating(primals[i].dtype())) {
      xs.push_back(primals[i]);
      continue;
    }
    Tensor a = primals[i];
    if (!on_tape) {
      a = primals[i].detach();
      a.impl().tangent = primals[i].impl().tangent;  // keeps forward-over-reverse working
      a.requires_grad_(true);
    }
    xs.push_back(a);
    if (a.requires_grad()) wrt.push_back(a), where.push_back(int(i));
  }
  std::vector<Tensor> outs;
  {
    EnableGradGuard gg(true);
    outs = composite(xs);
  }
  std::vector<Tensor> os, seeds;
  for (size_t k = 0; k < outs.size() && k < grads.size(); ++k)
    if (outs[k].defined() && grads[k].defined() && outs[k].requires_grad()) os.push_back(outs[k]), seeds.push_back(grads[k]);
  std::vector<Tensor> r(primals.size());
  if (os.empty() || wrt.empty()) return r;
  auto g = grad(os, wrt, seeds, on_tape, true);
  for (size_t j = 0; j < where.size(); ++j) r[size_t(where[j])] = g[j];
  return r;
}

}  // namespace bissl
