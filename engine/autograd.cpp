#include "engine/autograd.h"

#include <algorithm>
#include <chrono>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"
#include "engine/profile.h"

namespace bissl {

namespace {
thread_local bool t_grad_enabled = true;
thread_local bool t_forward_ad_enabled = true;
thread_local std::vector<std::function<void()>>* t_effects = nullptr;
thread_local BackwardObserver* t_observer = nullptr;
}  // namespace

BackwardObserverScope::BackwardObserverScope(BackwardObserver* o) : prev_(t_observer) { t_observer = o; }
BackwardObserverScope::~BackwardObserverScope() { t_observer = prev_; }

bool forward_effects_recording() { return t_effects != nullptr; }
void record_forward_effect(std::function<void()> effect) {
  if (t_effects) t_effects->push_back(std::move(effect));
}
NoForwardEffectsGuard::NoForwardEffectsGuard() : prev_(t_effects) { t_effects = nullptr; }
NoForwardEffectsGuard::~NoForwardEffectsGuard() { t_effects = prev_; }

bool grad_enabled() { return t_grad_enabled; }
bool forward_ad_enabled() { return t_forward_ad_enabled; }
NoGradGuard::NoGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = prev_; }
EnableGradGuard::EnableGradGuard(bool on) : prev_(t_grad_enabled) { t_grad_enabled = on; }
EnableGradGuard::~EnableGradGuard() { t_grad_enabled = prev_; }
NoForwardADGuard::NoForwardADGuard(bool off) : prev_(t_forward_ad_enabled) { t_forward_ad_enabled = !off; }
NoForwardADGuard::~NoForwardADGuard() { t_forward_ad_enabled = prev_; }

namespace {

Tensor accumulate(const Tensor& acc, const Tensor& g) { return acc.defined() ? add(acc, g) : g; }

struct Run {
  // Gradients waiting at each node's outputs.
  std::unordered_map<Node*, std::vector<Tensor>> pending;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep;
  // Which nodes lead to a target (and so must run).
  std::unordered_map<Node*, bool> needed;
};

// Does any path from `n` reach a target? Targets: leaves in `leaf_targets`
// (or any leaf requiring grad when `all_leaves`), and node outputs in
// `node_targets`. Iterative post-order to survive deep graphs.
void mark_needed(const std::shared_ptr<Node>& root, Run& run, bool all_leaves,
                 const std::unordered_set<TensorImpl*>& leaf_targets,
                 const std::unordered_set<Node*>& node_targets) {
  // needed[n]: some path from n's inputs reaches a target, so n must run.
  // A node that is itself a target only has its output gradient captured.
  if (!root || run.needed.count(root.get())) return;
  auto leads = [&](Node* m) { return node_targets.count(m) > 0 || run.needed[m]; };
  std::vector<std::pair<Node*, size_t>> stack{{root.get(), 0}};
  run.keep[root.get()] = root;
  run.needed[root.get()] = false;
  while (!stack.empty()) {
    auto& [n, i] = stack.back();
    if (i < n->next.size()) {
      auto& e = n->next[i++];
      if (e.leaf) {
        if (all_leaves || leaf_targets.count(e.leaf.get())) run.needed[n] = true;
      } else if (e.node) {
        if (!run.needed.count(e.node.get())) {
          run.keep[e.node.get()] = e.node;
          run.needed[e.node.get()] = false;
          stack.push_back({e.node.get(), 0});
        } else if (leads(e.node.get())) {
          run.needed[n] = true;
        }
      }
    } else {
      Node* done = n;
      stack.pop_back();
      if (!stack.empty() && leads(done)) run.needed[stack.back().first] = true;
    }
  }
}

// The core reverse sweep. Leaf gradients go to `on_leaf`; gradients at node
// outputs listed in `node_targets` are captured into `captured` before the
// node runs.
void run_backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& seeds, bool create_graph,
                  bool all_leaves, const std::unordered_set<TensorImpl*>& leaf_targets,
                  const std::unordered_set<Node*>& node_targets,
                  const std::function<void(const std::shared_ptr<TensorImpl>&, const Tensor&)>& on_leaf,
                  std::unordered_map<Node*, std::vector<Tensor>>* captured, BackwardObserver* observer = nullptr) {
  Run run;
  auto cmp = [](Node* a, Node* b) { return a->seq < b->seq; };
  std::priority_queue<Node*, std::vector<Node*>, decltype(cmp)> queue(cmp);
  std::unordered_set<Node*> queued;

  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    Tensor seed = seeds[i];
    if (!out.grad_fn()) {
      if (out.requires_grad() && (all_leaves || leaf_targets.count(out.impl_ptr().get())))
        on_leaf(out.impl_ptr(), seed);
      continue;
    }
    mark_needed(out.grad_fn(), run, all_leaves, leaf_targets, node_targets);
    Node* n = out.grad_fn().get();
    auto& slot = run.pending[n];
    slot.resize(n->out_shapes.size());
    slot[size_t(out.impl().output_nr)] = accumulate(slot[size_t(out.impl().output_nr)], seed);
    if (!queued.count(n)) queue.push(n), queued.insert(n);
  }

  // The observer's count: gradients each leaf still gets from nodes that run.
  std::unordered_map<const TensorImpl*, int64_t> pending_leaf;
  if (observer) {
    for (const auto& [n, needed] : run.needed) {
      if (!needed) continue;
      for (const auto& e : n->next)
        if (e.leaf && (all_leaves || leaf_targets.count(e.leaf.get()))) ++pending_leaf[e.leaf.get()];
    }
    observer->started([&](const TensorImpl* leaf) {
      auto it = pending_leaf.find(leaf);
      return it == pending_leaf.end() ? int64_t(0) : it->second;
    });
  }

  EnableGradGuard gg(create_graph);
  while (!queue.empty()) {
    Node* n = queue.top();
    queue.pop();
    auto grads = std::move(run.pending[n]);
    run.pending.erase(n);
    grads.resize(n->out_shapes.size());
    if (captured && node_targets.count(n)) (*captured)[n] = grads;
    if (!run.needed[n]) continue;
    const OpDef& op = *n->op;
    std::vector<bool> needs(n->next.size());
    for (size_t i = 0; i < n->next.size(); ++i) {
      auto& e = n->next[i];
      needs[i] = (e.leaf && (all_leaves || leaf_targets.count(e.leaf.get()))) ||
                 (e.node && (run.needed[e.node.get()] || node_targets.count(e.node.get())));
    }
    // With create_graph, saved outputs must lead back to this node so the
    // gradient is differentiable through them.
    std::vector<Tensor> outs = n->saved_outputs;
    if (create_graph) {
      std::shared_ptr<Node> self = run.keep.count(n) ? run.keep[n] : nullptr;
      for (size_t k = 0; k < outs.size(); ++k) {
        if (!outs[k].defined() || !self) continue;
        Tensor o = outs[k].detach();
        o.impl().tangent = outs[k].impl().tangent;
        o.impl().grad_fn = self;
        o.impl().output_nr = int(k);
        o.impl().requires_grad = true;
        outs[k] = o;
      }
    }
    OpCtx ctx(n->attrs, n->saved_inputs, outs, n->in_shapes, n->in_dtypes, needs);
    std::string range_name = op.name + ":vjp";
    ScopedRange range(range_name.c_str());
    // A VJP is made of ops (profiled on their own); this row is the whole rule.
    auto t0 = op_profiling() ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    auto gin = op.vjp(ctx, grads);
    if (op_profiling())
      op_profile_add(range_name, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    BISSL_CHECK(gin.size() == n->next.size(), op.name, ": VJP returned ", gin.size(), " gradients for ",
                n->next.size(), " inputs");
    for (size_t i = 0; i < gin.size(); ++i) {
      if (!needs[i] || !gin[i].defined()) continue;
      BISSL_CHECK(gin[i].shape() == n->in_shapes[i], op.name, ": VJP gradient for input ", i, " has shape ",
                  shape_str(gin[i].shape()), ", input has ", shape_str(n->in_shapes[i]));
      auto& e = n->next[i];
      if (e.leaf) {
        on_leaf(e.leaf, gin[i]);
      } else {
        Node* m = e.node.get();
        auto& slot = run.pending[m];
        slot.resize(m->out_shapes.size());
        slot[size_t(e.output_nr)] = accumulate(slot[size_t(e.output_nr)], gin[i]);
        if (!queued.count(m)) queue.push(m), queued.insert(m);
      }
    }
    if (observer) {
      for (size_t i = 0; i < n->next.size(); ++i) {
        const auto& e = n->next[i];
        if (e.leaf && needs[i] && --pending_leaf[e.leaf.get()] == 0) observer->leaf_ready(e.leaf.get());
      }
      observer->progress();
    }
  }
}

std::vector<Tensor> default_seeds(const std::vector<Tensor>& outputs, const std::vector<Tensor>& seeds) {
  std::vector<Tensor> s(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (i < seeds.size() && seeds[i].defined()) {
      BISSL_CHECK(seeds[i].shape() == outputs[i].shape(), "backward: seed ", i, " has shape ",
                  shape_str(seeds[i].shape()), ", output has ", shape_str(outputs[i].shape()));
      s[i] = seeds[i];
    } else {
      BISSL_CHECK(outputs[i].numel() == 1, "backward: output ", i, " has shape ", shape_str(outputs[i].shape()),
                  "; a seed is needed for non-scalar outputs");
      s[i] = ones_like(outputs[i]);
    }
    BISSL_CHECK(outputs[i].requires_grad(), "backward: output ", i,
                " does not require grad (computed without tape, or from inputs that need no gradient)");
  }
  return s;
}

}  // namespace

void backward(const Tensor& output, const Tensor& seed, bool create_graph) {
  backward(std::vector<Tensor>{output}, std::vector<Tensor>{seed}, create_graph);
}

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& seeds, bool create_graph) {
  auto s = default_seeds(outputs, seeds);
  BackwardObserver* observer = t_observer;
  BackwardObserverScope none(nullptr);  // a backward inside a VJP is not the one observed
  run_backward(
      outputs, s, create_graph, true, {}, {},
      [&](const std::shared_ptr<TensorImpl>& leaf, const Tensor& g) {
        Tensor cur(leaf->grad);
        // A stored gradient owns its buffer: VJPs may hand the same tensor to
        // several inputs (add), and optimisers and clipping write in place.
        Tensor ng = cur.defined() ? add(cur, g) : g;
        if (!cur.defined() && !create_graph) {
          ng = g.clone();
          ng.impl().tangent = g.impl().tangent;
        }
        if (!create_graph) {
          Tensor d = ng.detach();
          d.impl().tangent = ng.impl().tangent;
          ng = d;
        }
        leaf->grad = ng.impl_ptr();
      },
      nullptr, observer);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& seeds, bool create_graph, bool allow_unused) {
  auto s = default_seeds(outputs, seeds);
  std::unordered_set<TensorImpl*> leaf_targets;
  std::unordered_set<Node*> node_targets;
  for (auto& x : inputs) {
    BISSL_CHECK(x.requires_grad(), "grad: an input does not require grad; mark leaves with requires_grad_()");
    if (x.grad_fn()) node_targets.insert(x.grad_fn().get());
    else leaf_targets.insert(x.impl_ptr().get());
  }
  std::unordered_map<TensorImpl*, Tensor> leaf_grads;
  std::unordered_map<Node*, std::vector<Tensor>> captured;
  run_backward(
      outputs, s, create_graph, false, leaf_targets, node_targets,
      [&](const std::shared_ptr<TensorImpl>& leaf, const Tensor& g) {
        auto& slot = leaf_grads[leaf.get()];
        slot = accumulate(slot, g);
      },
      &captured);
  std::vector<Tensor> r;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    Tensor g;
    if (x.grad_fn()) {
      auto it = captured.find(x.grad_fn().get());
      if (it != captured.end() && size_t(x.impl().output_nr) < it->second.size())
        g = it->second[size_t(x.impl().output_nr)];
    } else {
      auto it = leaf_grads.find(x.impl_ptr().get());
      if (it != leaf_grads.end()) g = it->second;
    }
    if (!g.defined()) {
      BISSL_CHECK(allow_unused, "grad: input ", i, " is not used to compute the outputs");
      g = zeros_like(x);
    }
    if (!create_graph) {
      Tensor d = g.detach();
      d.impl().tangent = g.impl().tangent;  // keep forward-over-reverse tangents
      g = d;
    }
    r.push_back(g);
  }
  return r;
}

std::pair<std::vector<Tensor>, std::vector<Tensor>> jvp(
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& primals,
    const std::vector<Tensor>& tangents) {
  BISSL_CHECK(primals.size() == tangents.size(), "jvp: ", primals.size(), " primals but ", tangents.size(),
              " tangents");
  std::vector<Tensor> xs;
  for (size_t i = 0; i < primals.size(); ++i) {
    if (!primals[i].defined()) {  // an absent optional operand
      xs.emplace_back();
      continue;
    }
    Tensor a = primals[i].detach();
    if (tangents[i].defined()) a.set_tangent(tangents[i]);
    xs.push_back(a);
  }
  NoGradGuard ng;
  NoForwardADGuard on(false);
  auto outs = f(xs);
  std::vector<Tensor> touts;
  std::vector<Tensor> plain;
  for (auto& o : outs) {
    if (!o.defined()) {
      touts.emplace_back();
      plain.emplace_back();
      continue;
    }
    Tensor t = o.tangent();
    touts.push_back(t.defined() ? t : zeros_like(o));
    plain.push_back(o.detach());
  }
  return {plain, touts};
}

TangentScope::TangentScope(const std::vector<Tensor>& params, const std::vector<Tensor>& v, const char* who)
    : params_(params) {
  BISSL_CHECK(params.size() == v.size(), who, ": ", params.size(), " parameters but ", v.size(), " directions");
  for (size_t i = 0; i < params.size(); ++i)
    BISSL_CHECK(params[i].is_leaf() && params[i].requires_grad(), who, ": parameter ", i,
                " must be a leaf that requires grad");
  for (size_t i = 0; i < params.size(); ++i) {
    old_.push_back(params[i].impl().tangent);
    const_cast<Tensor&>(params[i]).set_tangent(v[i]);
  }
}

TangentScope::~TangentScope() {
  for (size_t i = 0; i < old_.size(); ++i) params_[i].impl().tangent = old_[i];
}

namespace {

// hvp, also reporting the identity of each gradient's tangent object
// (nullptr where the gradient carries none: H·v is zero there).
HvpResult hvp_impl(const std::function<Tensor()>& loss_fn, const std::vector<Tensor>& params,
                   const std::vector<Tensor>& v, std::vector<const void*>* hv_keys) {
  TangentScope tangents(params, v, "hvp");
  NoForwardADGuard on(false);
  HvpResult r;
  {
    EnableGradGuard gg(true);
    r.loss = loss_fn();
  }
  auto g = grad({r.loss}, params, {}, false, true);
  for (size_t i = 0; i < g.size(); ++i) {
    Tensor t = g[i].tangent();
    if (hv_keys) hv_keys->push_back(t.defined() ? static_cast<const void*>(t.impl_ptr().get()) : nullptr);
    r.hv.push_back(t.defined() ? t : zeros_like(params[i]));
    r.grad.push_back(g[i].detach());
  }
  r.loss = r.loss.detach();
  return r;
}

}  // namespace

HvpResult hvp(const std::function<Tensor()>& loss_fn, const std::vector<Tensor>& params,
              const std::vector<Tensor>& v) {
  return hvp_impl(loss_fn, params, v, nullptr);
}

Linearization::Linearization(const std::function<Tensor()>& loss_fn, const std::vector<Tensor>& params,
                             const std::vector<Tensor>& v0, bool replay_forward_effects) {
  BISSL_CHECK(params.size() == v0.size(), "linearize: ", params.size(), " parameters but ", v0.size(), " directions");
  // The parameters' tangents are v0's tensors while hvp runs (set_tangent).
  std::vector<TangentStep> rec;
  struct Stop {
    std::vector<std::function<void()>>* prev_effects = t_effects;
    ~Stop() {
      set_tangent_recorder(nullptr);
      t_effects = prev_effects;
    }
  } stop;
  set_tangent_recorder(&rec);
  t_effects = replay_forward_effects ? &effects_ : nullptr;  // not an enclosing recording's
  // hvp sets the tangents itself; record their identities from inside the loss.
  first_ = hvp_impl(
      [&] {
        for (auto& p : params) param_keys_.push_back(p.impl().tangent.get());
        return loss_fn();
      },
      params, v0, &hv_keys_);
  set_tangent_recorder(nullptr);
  t_effects = stop.prev_effects;
  steps_ = std::move(rec);
  for (auto& p : params) zeros_.push_back(zeros_like(p));
  // A gradient's tangent is alive when hvp returns, so no other tangent had
  // its address after it was made: the last step writing that key made it.
  std::unordered_set<const void*> produced;
  for (auto& st : steps_)
    for (const void* k : st.out_keys)
      if (k) produced.insert(k);
  for (size_t i = 0; i < hv_keys_.size(); ++i)
    BISSL_CHECK(!hv_keys_[i] || produced.count(hv_keys_[i]) || hv_keys_[i] == param_keys_[i],
                "linearize: the gradient of parameter ", i, " got its tangent outside the recorded rules");
  // Free each tangent after its last use in the replay (not H·v's own).
  std::unordered_map<const void*, size_t> last;
  for (size_t s = 0; s < steps_.size(); ++s)
    for (const void* k : steps_[s].in_keys)
      if (k) last[k] = s;
  release_.resize(steps_.size());
  std::unordered_set<const void*> keep(hv_keys_.begin(), hv_keys_.end());
  for (auto& [k, s] : last)
    if (!keep.count(k)) release_[s].push_back(k);
}

std::vector<Tensor> Linearization::hvp(const std::vector<Tensor>& v) const {
  BISSL_CHECK(v.size() == param_keys_.size(), "linearize: ", param_keys_.size(), " parameters but ", v.size(),
              " directions");
  std::unordered_map<const void*, Tensor> tan;
  for (size_t i = 0; i < v.size(); ++i) {
    BISSL_CHECK(v[i].shape() == zeros_[i].shape() && v[i].dtype() == zeros_[i].dtype() &&
                    v[i].device() == zeros_[i].device(),
                "linearize: direction ", i, " is ", dtype_name(v[i].dtype()), " ", shape_str(v[i].shape()), " on ",
                device_name(v[i].device()), ", its parameter ", dtype_name(zeros_[i].dtype()), " ",
                shape_str(zeros_[i].shape()), " on ", device_name(zeros_[i].device()));
    tan[param_keys_[i]] = v[i].detach();
  }
  NoGradGuard ng;
  NoForwardADGuard nf;
  for (size_t s = 0; s < steps_.size(); ++s) {
    const TangentStep& st = steps_[s];
    std::vector<Tensor> t(st.inputs.size());
    bool any = false;
    for (size_t i = 0; i < t.size(); ++i) {
      if (!st.in_keys[i]) continue;
      auto it = tan.find(st.in_keys[i]);
      if (it != tan.end()) t[i] = it->second, any = true;
    }
    if (any) {
      OpCtx ctx(st.attrs, st.inputs, st.outputs, st.in_shapes, st.in_dtypes, {});
      std::vector<Tensor> out = st.op->jvp(ctx, t);
      for (size_t k = 0; k < out.size() && k < st.out_keys.size(); ++k)
        if (st.out_keys[k] && out[k].defined()) tan[st.out_keys[k]] = out[k].detach();
    }
    for (const void* k : release_[s]) tan.erase(k);
  }
  // The state a fresh product's forward would have moved, moved the same way.
  for (const auto& effect : effects_) effect();
  std::vector<Tensor> hv;
  for (size_t i = 0; i < v.size(); ++i) {
    auto it = hv_keys_[i] ? tan.find(hv_keys_[i]) : tan.end();
    hv.push_back(it != tan.end() ? it->second : zeros_[i].clone());
  }
  return hv;
}

}  // namespace bissl
