#pragma once
// Reverse mode (tape), forward mode (tangents) and forward-over-reverse HVPs.
// See docs/autodiff.md for how they fit together.
#include <functional>
#include <memory>
#include <vector>

#include "engine/op_registry.h"
#include "engine/tensor.h"

namespace bissl {

// A recorded op application on the tape.
struct Node {
  const OpDef* op = nullptr;
  Attrs attrs;
  uint64_t seq = 0;  // creation order: a node's inputs are always older
  std::vector<Tensor> saved_inputs;   // undefined where not saved
  std::vector<Tensor> saved_outputs;  // detached aliases (no grad_fn: no cycles)
  std::vector<Shape> in_shapes;
  std::vector<DType> in_dtypes;
  std::vector<Shape> out_shapes;
  std::vector<DType> out_dtypes;
  struct Edge {
    std::shared_ptr<Node> node;         // producer of this input, or
    std::shared_ptr<TensorImpl> leaf;   // a leaf that requires grad, or neither
    int output_nr = 0;
  };
  std::vector<Edge> next;  // one per input
};

// Thread-local modes.
bool grad_enabled();
bool forward_ad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
 private:
  bool prev_;
};
class EnableGradGuard {
 public:
  explicit EnableGradGuard(bool on = true);
  ~EnableGradGuard();
 private:
  bool prev_;
};
// Stops tangent propagation (used around JVP rules so they do not recurse).
class NoForwardADGuard {
 public:
  explicit NoForwardADGuard(bool off = true);
  ~NoForwardADGuard();
 private:
  bool prev_;
};

// Accumulates d(sum of outputs·seeds)/d(leaf) into leaf.grad() for every
// leaf that requires grad. Seeds default to ones (outputs must be scalars).
void backward(const Tensor& output, const Tensor& seed = Tensor(), bool create_graph = false);
void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& seeds, bool create_graph = false);

// Watches backward() (not grad()) leaf by leaf: what lets a data-parallel
// job start summing gradients over the ranks while the backward still runs
// (engine/dist/reducer.h). Installed for a scope on this thread.
//  - started(pending): once per backward(), after the graph is marked and
//    before any VJP runs; pending(leaf) is how many gradients the sweep
//    will still deliver to that leaf (0: none, its .grad is final now).
//  - leaf_ready(leaf): the leaf's last gradient of this sweep has been
//    added to its .grad, which is now final. A leaf whose producers turn
//    out to pass it no gradient (a VJP returning none) is announced all the
//    same; one whose producers never run at all (no gradient reaches them)
//    is not: the observer settles those after the sweep.
//  - progress(): after each node's VJP, a point to advance other work.
class BackwardObserver {
 public:
  virtual ~BackwardObserver() = default;
  virtual void started(const std::function<int64_t(const TensorImpl*)>& pending) = 0;
  virtual void leaf_ready(const TensorImpl* leaf) = 0;
  virtual void progress() {}
};
class BackwardObserverScope {
 public:
  explicit BackwardObserverScope(BackwardObserver* o);
  ~BackwardObserverScope();
  BackwardObserverScope(const BackwardObserverScope&) = delete;
  BackwardObserverScope& operator=(const BackwardObserverScope&) = delete;

 private:
  BackwardObserver* prev_;
};

// Gradients of outputs w.r.t. inputs (leaves or intermediates), returned
// rather than accumulated. An input that does not influence the outputs gets
// zeros (allow_unused) or raises. With create_graph the result is on the tape.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& seeds = {}, bool create_graph = false,
                         bool allow_unused = true);

// Forward mode: runs f on primals carrying the given tangents.
// Returns (outputs, output tangents); no tape is recorded.
std::pair<std::vector<Tensor>, std::vector<Tensor>> jvp(
    const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& primals,
    const std::vector<Tensor>& tangents);

// Parameters carrying directions as tangents for a scope (what hvp does
// around its forward): every parameter must be a leaf that requires grad,
// all checked before any tangent is set; the previous tangents come back
// when the scope ends, also on an exception. `who` names the caller in
// errors.
class TangentScope {
 public:
  TangentScope(const std::vector<Tensor>& params, const std::vector<Tensor>& v, const char* who);
  ~TangentScope();
  TangentScope(const TangentScope&) = delete;
  TangentScope& operator=(const TangentScope&) = delete;

 private:
  const std::vector<Tensor>& params_;
  std::vector<std::shared_ptr<TensorImpl>> old_;
};

struct HvpResult {
  Tensor loss;
  std::vector<Tensor> grad;  // ∇L(params)
  std::vector<Tensor> hv;    // H·v
};
// Forward-over-reverse: params carry v as tangents during one forward and one
// backward; the gradient's tangent is H·v. loss_fn reads the params itself
// (e.g. a closure over a module); they must be leaves requiring grad.
HvpResult hvp(const std::function<Tensor()>& loss_fn, const std::vector<Tensor>& params,
              const std::vector<Tensor>& v);

// Forward effects: state a forward pass moves besides its outputs (batch
// norm's running statistics and batch count), which a Linearization can
// repeat with every replayed product so that it leaves the same state
// behind as a fresh hvp would. A layer that moves such state calls
// record_forward_effect while forward_effects_recording(), with a closure
// that redoes exactly that update (it runs with grad and tangents off).
bool forward_effects_recording();
void record_forward_effect(std::function<void()> effect);
// Pauses the recording: for forwards whose effects are undone before the
// loss returns (BYOL's target branch restores its buffers).
class NoForwardEffectsGuard {
 public:
  NoForwardEffectsGuard();
  ~NoForwardEffectsGuard();
  NoForwardEffectsGuard(const NoForwardEffectsGuard&) = delete;
  NoForwardEffectsGuard& operator=(const NoForwardEffectsGuard&) = delete;

 private:
  std::vector<std::function<void()>>* prev_;
};

// H·v at one fixed point for many v (BiSSL's CG: up to 40 products at the
// same θP and pretext batch). The constructor runs hvp(loss_fn, params, v0)
// once, recording every JVP rule it applied together with the primal values
// of the forward and the backward pass; hvp(v) then replays only those rules
// on the recorded values: no primal forward, no backward, no tape. Side
// effects of loss_fn (BN running statistics) happen once, at recording.
// Memory: every intermediate of the forward and the backward stays alive
// while the object does. Valid while params keep the values they had.
// replay_forward_effects: each hvp(v) also repeats the forward effects
// recorded with the first pass (batch norm's running statistics move as
// they would under a fresh hvp, bit for bit; the modules must outlive the
// object). Random draws inside loss_fn (drop path) are not redrawn: every
// replay differentiates the recorded draw.
class Linearization {
 public:
  Linearization(const std::function<Tensor()>& loss_fn, const std::vector<Tensor>& params,
                const std::vector<Tensor>& v0, bool replay_forward_effects = false);
  const HvpResult& first() const { return first_; }  // the recording pass: loss, ∇L, H·v0
  std::vector<Tensor> hvp(const std::vector<Tensor>& v) const;
  int64_t steps() const { return int64_t(steps_.size()); }  // JVP rules replayed per product
  int64_t forward_effects() const { return int64_t(effects_.size()); }  // repeated per product

 private:
  std::vector<TangentStep> steps_;
  std::vector<const void*> param_keys_, hv_keys_;  // hv_keys_: nullptr where ∇L has no tangent (H·v = 0)
  std::vector<Tensor> zeros_;                      // one per parameter
  std::vector<std::vector<const void*>> release_;  // per step: tangents not needed after it
  std::vector<std::function<void()>> effects_;      // recorded forward effects (replay_forward_effects)
  HvpResult first_;
};

}  // namespace bissl
