#include "engine/optim/optimizer.h"

#include <algorithm>
#include <map>
#include <set>

#include "engine/autograd.h"
#include "engine/kern.h"
#include "engine/ops.h"

namespace bissl::optim {

namespace {

std::vector<ParamGroup> one_group(std::vector<Tensor> params) {
  ParamGroup g;
  g.params = std::move(params);
  return {std::move(g)};
}

// The update kernels see raw buffers: parameter, grad and state must share
// device, dtype and shape.
void check_update_operands(const std::string& who, size_t index, const Tensor& p, const Tensor& g) {
  BISSL_CHECK(p.device() == g.device(), who, ": parameter ", index, " is on ", device_name(p.device()),
              " but its grad is on ", device_name(g.device()));
  BISSL_CHECK(g.dtype() == p.dtype(), who, ": parameter ", index, " is ", dtype_name(p.dtype()), " but its grad is ",
              dtype_name(g.dtype()));
  BISSL_CHECK(g.shape() == p.shape(), who, ": parameter ", index, " has shape ", shape_str(p.shape()),
              " but its grad has shape ", shape_str(g.shape()));
}

bool is_scalar_like(const Tensor& t) { return t.defined() && t.numel() == 1; }

}  // namespace

// ---- Optimizer ----

Optimizer::Optimizer(std::vector<ParamGroup> groups, double lr_, double default_wd)
    : lr(lr_), weight_decay(default_wd), groups_(std::move(groups)) {
  BISSL_CHECK(lr >= 0, "optimizer: expected lr >= 0, found ", lr);
  BISSL_CHECK(weight_decay >= 0, "optimizer: expected weight_decay >= 0, found ", weight_decay);
  std::set<const TensorImpl*> seen;
  size_t n = 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    BISSL_CHECK(g.lr_scale >= 0, "optimizer: group ", gi, " has lr_scale ", g.lr_scale, ", expected >= 0");
    BISSL_CHECK(std::isnan(g.weight_decay) || g.weight_decay >= 0, "optimizer: group ", gi, " has weight_decay ",
                g.weight_decay, ", expected >= 0 (or NaN for the default)");
    for (const Tensor& p : g.params) {
      BISSL_CHECK(p.defined(), "optimizer: parameter ", n, " is an empty tensor handle");
      BISSL_CHECK(p.dtype() == DType::F32 || p.dtype() == DType::F64, "optimizer: parameter ", n,
                  " has dtype ", dtype_name(p.dtype()), ", expected f32 or f64");
      BISSL_CHECK(p.is_leaf(), "optimizer: parameter ", n, " has tape history; only leaf tensors can be optimised");
      BISSL_CHECK(seen.insert(p.impl_ptr().get()).second, "optimizer: parameter ", n,
                  " appears more than once (in one group or across groups)");
      ++n;
    }
  }
  state_.resize(n);
}

void Optimizer::step() {
  NoGradGuard ng;
  const std::vector<std::string> names = state_names();
  size_t i = 0;
  for (const ParamGroup& grp : groups_) {
    double glr = lr * grp.lr_scale;
    double wd = std::isnan(grp.weight_decay) ? weight_decay : grp.weight_decay;
    for (const Tensor& p : grp.params) {
      ParamState& st = state_[i];
      Tensor g = p.grad();
      if (g.defined()) {
        check_update_operands(name(), i, p, g);
        while (st.bufs.size() < names.size()) st.bufs.push_back(zeros(p.shape(), p.dtype(), p.device()));
        for (const Tensor& b : st.bufs)
          BISSL_CHECK(b.dtype() == p.dtype() && b.shape() == p.shape(), name(), ": the state of parameter ", i, " is ",
                      dtype_name(b.dtype()), " ", shape_str(b.shape()), " but the parameter is now ",
                      dtype_name(p.dtype()), " ", shape_str(p.shape()),
                      " (was the model converted after the optimiser stepped?)");
        ++st.step;
        update(p, g, st, glr, wd);
      }
      ++i;
    }
  }
  ++steps_;
}

void Optimizer::zero_grad() {
  for (const ParamGroup& grp : groups_)
    for (const Tensor& p : grp.params) {
      Tensor h = p;
      h.zero_grad();
    }
}

StateDict Optimizer::state_dict() const {
  StateDict sd;
  sd.emplace_back("steps", from_ints({steps_}, {}));
  sd.emplace_back("lr", scalar_tensor(lr, DType::F64));
  const std::vector<std::string> names = state_names();
  for (size_t i = 0; i < state_.size(); ++i) {
    const ParamState& st = state_[i];
    if (st.step == 0 && st.bufs.empty()) continue;
    std::string pre = "state." + std::to_string(i) + ".";
    sd.emplace_back(pre + "step", from_ints({st.step}, {}));
    for (size_t k = 0; k < st.bufs.size() && k < names.size(); ++k) sd.emplace_back(pre + names[k], st.bufs[k].detach());
  }
  return sd;
}

void Optimizer::load_state_dict(const StateDict& sd) {
  const std::string who = name() + "::load_state_dict";
  const std::vector<std::string> names = state_names();
  std::vector<Tensor> params;
  for (const ParamGroup& grp : groups_)
    for (const Tensor& p : grp.params) params.push_back(p);

  std::vector<ParamState> st(params.size());
  std::vector<std::vector<Tensor>> bufs(params.size(), std::vector<Tensor>(names.size()));
  std::vector<bool> has_step(params.size(), false);
  std::set<std::string> keys;
  bool has_steps = false;
  int64_t steps = 0;
  double new_lr = lr;
  for (const auto& [k, t] : sd) {
    BISSL_CHECK(keys.insert(k).second, who, ": key ", k, " appears twice");
    BISSL_CHECK(t.defined(), who, ": ", k, " is an empty tensor");
    if (k == "steps") {
      BISSL_CHECK(is_scalar_like(t) && t.dtype() == DType::I64, who, ": steps must be one i64 value");
      steps = int64_t(t.to(Device::CPU).item());
      has_steps = true;
      continue;
    }
    if (k == "lr") {
      BISSL_CHECK(is_scalar_like(t), who, ": lr must be one value, found shape ", shape_str(t.shape()));
      new_lr = t.to(Device::CPU).item();
      continue;
    }
    size_t dot = k.find('.', 6);
    BISSL_CHECK(k.rfind("state.", 0) == 0 && dot != std::string::npos && dot > 6, who, ": unexpected key ", k,
                " (expected steps, lr or state.<index>.<name>)");
    std::string idx_s = k.substr(6, dot - 6), field = k.substr(dot + 1);
    BISSL_CHECK(std::all_of(idx_s.begin(), idx_s.end(), [](char c) { return c >= '0' && c <= '9'; }), who,
                ": unexpected key ", k, " (the parameter index is not a number)");
    size_t idx = std::stoul(idx_s);
    BISSL_CHECK(idx < params.size(), who, ": key ", k, " names parameter ", idx, " but the optimiser has ",
                params.size(), " parameters");
    if (field == "step") {
      BISSL_CHECK(is_scalar_like(t) && t.dtype() == DType::I64, who, ": ", k, " must be one i64 value");
      st[idx].step = int64_t(t.to(Device::CPU).item());
      has_step[idx] = true;
      continue;
    }
    auto it = std::find(names.begin(), names.end(), field);
    BISSL_CHECK(it != names.end(), who, ": unexpected key ", k, " (", name(), " with this configuration keeps no ",
                field, ")");
    const Tensor& p = params[idx];
    BISSL_CHECK(t.shape() == p.shape(), who, ": ", k, " has shape ", shape_str(t.shape()),
                " in the file, the parameter has shape ", shape_str(p.shape()));
    BISSL_CHECK(t.dtype() == p.dtype(), who, ": ", k, " has dtype ", dtype_name(t.dtype()),
                " in the file, the parameter has dtype ", dtype_name(p.dtype()));
    bufs[idx][size_t(it - names.begin())] = t;
  }
  BISSL_CHECK(has_steps, who, ": missing key steps");
  for (size_t i = 0; i < params.size(); ++i) {
    size_t present = 0;
    for (auto& b : bufs[i]) present += b.defined();
    if (present == 0 && !has_step[i]) continue;
    BISSL_CHECK(has_step[i], who, ": parameter ", i, " has state buffers but no state.", i, ".step");
    if (st[i].step == 0 && present == 0) continue;
    BISSL_CHECK(present == names.size(), who, ": parameter ", i, " has ", present, " of the ", names.size(),
                " state buffers ", name(), " keeps");
    NoGradGuard ng;
    for (auto& b : bufs[i]) {
      Tensor c = empty(params[i].shape(), params[i].dtype(), params[i].device());
      c.copy_(b.device() == c.device() ? b : b.to(c.device()));
      st[i].bufs.push_back(c);
    }
  }
  state_ = std::move(st);
  steps_ = steps;
  lr = new_lr;
}

// ---- SGD ----

SGD::SGD(std::vector<Tensor> params, double lr, double momentum_, double wd, bool nesterov_)
    : SGD(one_group(std::move(params)), lr, momentum_, wd, nesterov_) {}

SGD::SGD(std::vector<ParamGroup> groups, double lr, double momentum_, double wd, bool nesterov_)
    : Optimizer(std::move(groups), lr, wd), momentum(momentum_), nesterov(nesterov_) {
  BISSL_CHECK(momentum >= 0, "SGD: expected momentum >= 0, found ", momentum);
  BISSL_CHECK(!nesterov || momentum > 0, "SGD: nesterov needs momentum > 0, found ", momentum);
}

std::vector<std::string> SGD::state_names() const {
  if (momentum == 0.0) return {};
  return {"momentum_buffer"};
}

void SGD::update(const Tensor& p, const Tensor& g, ParamState& st, double lr_, double wd) {
  kern::DeviceScope ds(p.device());
  BISSL_DISPATCH_FLOAT(p.dtype(), "SGD", [&] {
    scalar_t* mom = st.bufs.empty() ? nullptr : st.bufs[0].data<scalar_t>();
    kern::sgd_update<scalar_t>(p.data<scalar_t>(), g.data<scalar_t>(), mom, p.numel(), lr_, momentum, wd, nesterov,
                              st.step == 1);
  });
}

// ---- LARS ----

LARS::LARS(std::vector<Tensor> params, double lr, double momentum_, double wd, double eta_)
    : LARS(one_group(std::move(params)), lr, momentum_, wd, eta_) {}

LARS::LARS(std::vector<ParamGroup> groups, double lr, double momentum_, double wd, double eta_)
    : Optimizer(std::move(groups), lr, wd), momentum(momentum_), eta(eta_) {
  BISSL_CHECK(momentum >= 0, "LARS: expected momentum >= 0, found ", momentum);
  BISSL_CHECK(eta > 0, "LARS: expected eta (trust coefficient) > 0, found ", eta);
}

void LARS::update(const Tensor& p, const Tensor& g, ParamState& st, double lr_, double wd) {
  kern::DeviceScope ds(p.device());
  BISSL_DISPATCH_FLOAT(p.dtype(), "LARS", [&] {
    kern::lars_update<scalar_t>(p.data<scalar_t>(), g.data<scalar_t>(), st.bufs[0].data<scalar_t>(), p.numel(), lr_,
                               momentum, wd, eta);
  });
}

// ---- AdamW ----

AdamW::AdamW(std::vector<Tensor> params, double lr, double b1, double b2, double eps_, double wd)
    : AdamW(one_group(std::move(params)), lr, b1, b2, eps_, wd) {}

AdamW::AdamW(std::vector<ParamGroup> groups, double lr, double b1, double b2, double eps_, double wd)
    : Optimizer(std::move(groups), lr, wd), beta1(b1), beta2(b2), eps(eps_) {
  BISSL_CHECK(beta1 >= 0 && beta1 < 1, "AdamW: expected beta1 in [0, 1), found ", beta1);
  BISSL_CHECK(beta2 >= 0 && beta2 < 1, "AdamW: expected beta2 in [0, 1), found ", beta2);
  BISSL_CHECK(eps >= 0, "AdamW: expected eps >= 0, found ", eps);
}

void AdamW::update(const Tensor& p, const Tensor& g, ParamState& st, double lr_, double wd) {
  kern::DeviceScope ds(p.device());
  BISSL_DISPATCH_FLOAT(p.dtype(), "AdamW", [&] {
    kern::adamw_update<scalar_t>(p.data<scalar_t>(), g.data<scalar_t>(), st.bufs[0].data<scalar_t>(),
                                st.bufs[1].data<scalar_t>(), p.numel(), lr_, beta1, beta2, eps, wd, st.step);
  });
}

// ---- gradient clipping ----

double grad_norm(const std::vector<Tensor>& params) {
  // Host gradients are summed as they come; device gradients each put their
  // Σg² into a slot on the device, and the slots are summed there and read
  // back once: one host wait per call instead of one per parameter.
  double ss = 0.0;
  std::vector<Tensor> on_device;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (g.device() != Device::CPU) {
      on_device.push_back(g);
      continue;
    }
    kern::DeviceScope ds(g.device());
    ss += BISSL_DISPATCH_FLOAT(g.dtype(), "clip_grad_norm",
                               [&] { return kern::sum_squares<scalar_t>(g.data<scalar_t>(), g.numel()); });
  }
  if (!on_device.empty()) {
    const Device dev = on_device.front().device();
    Tensor slots = empty({int64_t(on_device.size())}, DType::F64, dev);
    kern::DeviceScope ds(dev);
    for (size_t i = 0; i < on_device.size(); ++i) {
      const Tensor& g = on_device[i];
      BISSL_CHECK(g.device() == dev, "clip_grad_norm: gradients on ", device_name(dev), " and ",
                  device_name(g.device()));
      BISSL_DISPATCH_FLOAT(g.dtype(), "clip_grad_norm", [&] {
        kern::sum_squares_into<scalar_t>(g.data<scalar_t>(), g.numel(), slots.data<double>() + i);
      });
    }
    NoGradGuard ng;
    ss += sum(slots).item();
  }
  return std::sqrt(ss);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, bool allow_nonfinite) {
  BISSL_CHECK(max_norm > 0, "clip_grad_norm: expected max_norm > 0, found ", max_norm);
  double norm = grad_norm(params);
  BISSL_CHECK(allow_nonfinite || std::isfinite(norm), "clip_grad_norm: the gradient is not finite (total norm ", norm,
              "); the step would corrupt the parameters");
  double coef = max_norm / (norm + 1e-6);  // an infinite norm: 0; NaN: NaN (PyTorch's arithmetic)
  if (!(coef >= 1.0)) {
    NoGradGuard ng;
    // Grads set by hand (set_grad) may share one buffer; scale each buffer once.
    std::set<const void*> done;
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (!g.defined() || !done.insert(g.raw()).second) continue;
      kern::DeviceScope ds(g.device());
      BISSL_DISPATCH_FLOAT(g.dtype(), "clip_grad_norm",
                           [&] { kern::scale_inplace<scalar_t>(g.data<scalar_t>(), g.numel(), coef); });
    }
  }
  return norm;
}

}  // namespace bissl::optim
