#pragma once
// Optimisers (SGD, LARS, AdamW) and global gradient-norm clipping.
//
// Usage per step: set `opt.lr` (from a schedule), call `opt.step()`, which
// updates every parameter with a defined gradient in place; parameters with
// no gradient are skipped (their state does not advance). Updates run under
// NoGradGuard with the cpu:: kernels on raw buffers, f32 or f64, computing
// in double; optimiser state has the parameter's dtype.
//
// Per-parameter state (momentum / Adam moments and an update count) is
// indexed by the parameter's position over all groups in order, as PyTorch.
// state_dict() names it "state.<i>.<buffer>" plus "state.<i>.step" (i64),
// "steps" (i64) and "lr" (f64), so a killed run resumes exactly.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace bissl::optim {

using StateDict = std::vector<std::pair<std::string, Tensor>>;

// A group's effective learning rate is opt.lr · lr_scale; a NaN weight
// decay means the optimiser's own default.
struct ParamGroup {
  std::vector<Tensor> params;
  double lr_scale = 1.0;
  double weight_decay = std::numeric_limits<double>::quiet_NaN();
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  double lr;            // base learning rate; the schedule sets it before each step
  double weight_decay;  // used by groups whose weight_decay is NaN

  void step();
  void zero_grad();                      // drops every parameter's grad
  int64_t steps() const { return steps_; }  // completed step() calls
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  virtual std::string name() const = 0;

  // Shares storage with the live state: clone to keep a snapshot while
  // training continues.
  StateDict state_dict() const;
  // Replaces all state by the file's (copied). Errors on unknown keys, on
  // a parameter index out of range, on shape/dtype mismatch with the
  // parameter, and on a parameter whose state is incomplete.
  void load_state_dict(const StateDict& sd);

 protected:
  Optimizer(std::vector<ParamGroup> groups, double lr, double default_wd);

  struct ParamState {
    int64_t step = 0;          // updates applied to this parameter
    std::vector<Tensor> bufs;  // named by state_names(), allocated lazily
  };
  // Names of the per-parameter buffers (depends on the configuration, e.g.
  // SGD without momentum keeps none).
  virtual std::vector<std::string> state_names() const = 0;
  // One in-place update; st.step is already incremented and st.bufs
  // allocated (zeros) when this is called.
  virtual void update(const Tensor& p, const Tensor& g, ParamState& st, double lr, double wd) = 0;

 private:
  std::vector<ParamGroup> groups_;
  std::vector<ParamState> state_;   // one per parameter over all groups
  int64_t steps_ = 0;
};

// PyTorch SGD: d = g + wd·p; with momentum, buf = d on the first update, then
// buf = m·buf + d (no dampening); nesterov uses d + m·buf; p -= lr·d.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, double lr, double momentum = 0.0, double weight_decay = 0.0,
      bool nesterov = false);
  SGD(std::vector<ParamGroup> groups, double lr, double momentum = 0.0, double weight_decay = 0.0,
      bool nesterov = false);
  std::string name() const override { return "SGD"; }
  double momentum;
  bool nesterov;

 protected:
  std::vector<std::string> state_names() const override;
  void update(const Tensor& p, const Tensor& g, ParamState& st, double lr, double wd) override;
};

// LARS exactly as BiSSL's code (BISSL_SPEC.md): for every tensor (biases and
// BN included) u = (g + wd·p)·trust, trust = eta·‖p‖/‖g + wd·p‖ (1 when
// either norm is 0); mu = m·mu + u; p -= lr·mu.
class LARS : public Optimizer {
 public:
  LARS(std::vector<Tensor> params, double lr, double momentum = 0.9, double weight_decay = 1e-6,
       double eta = 0.001);
  LARS(std::vector<ParamGroup> groups, double lr, double momentum = 0.9, double weight_decay = 1e-6,
       double eta = 0.001);
  std::string name() const override { return "LARS"; }
  double momentum, eta;

 protected:
  std::vector<std::string> state_names() const override { return {"momentum_buffer"}; }
  void update(const Tensor& p, const Tensor& g, ParamState& st, double lr, double wd) override;
};

// PyTorch AdamW: p *= 1 - lr·wd; m = b1·m + (1-b1)·g; v = b2·v + (1-b2)·g²;
// p -= lr·(m/(1-b1^t)) / (√(v/(1-b2^t)) + eps), t the parameter's step.
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Tensor> params, double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0.01);
  AdamW(std::vector<ParamGroup> groups, double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0.01);
  std::string name() const override { return "AdamW"; }
  double beta1, beta2, eps;

 protected:
  std::vector<std::string> state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  void update(const Tensor& p, const Tensor& g, ParamState& st, double lr, double wd) override;
};

// Global L2 norm over all defined grads (accumulated in double). As
// PyTorch's clip_grad_norm_: grads are multiplied in place by
// min(1, max_norm/(norm + 1e-6)) when that is below 1. Returns the norm
// before clipping. A NaN/Inf norm throws bissl::Error, unless
// allow_nonfinite: then PyTorch's arithmetic (error_if_nonfinite=False):
// an infinite norm multiplies every grad by 0, a NaN norm by NaN.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, bool allow_nonfinite = false);

// The global L2 norm alone (no clipping, no finiteness check).
double grad_norm(const std::vector<Tensor>& params);

}  // namespace bissl::optim
