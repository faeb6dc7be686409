#include "engine/check/gradcheck.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/dist/comm.h"

namespace bissl::check {

double rel_error(double a, double b) {
  double d = std::max({std::abs(a), std::abs(b), kRelFloor});
  return std::abs(a - b) / d;
}

double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  BISSL_CHECK(a.size() == b.size(), "rel_error: sizes ", a.size(), " and ", b.size(), " differ");
  double na = 0, nb = 0, nd = 0;
  for (size_t i = 0; i < a.size(); ++i) na += a[i] * a[i], nb += b[i] * b[i], nd += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(nd) / std::max({std::sqrt(na), std::sqrt(nb), kRelFloor});
}

namespace {

constexpr double kEps = 1e-6;  // central-difference step

// On several ranks (the current group), every rank holds its own values of
// the inputs and outputs: inner products, norms and the objective are sums
// over the ranks (one rank: the local values).
double over_ranks(double v) { return dist::all_reduce_sum(v); }
double rel_error_ranks(const std::vector<double>& a, const std::vector<double>& b) {
  BISSL_CHECK(a.size() == b.size(), "rel_error: sizes ", a.size(), " and ", b.size(), " differ");
  double na = 0, nb = 0, nd = 0;
  for (size_t i = 0; i < a.size(); ++i) na += a[i] * a[i], nb += b[i] * b[i], nd += (a[i] - b[i]) * (a[i] - b[i]);
  na = over_ranks(na), nb = over_ranks(nb), nd = over_ranks(nd);
  return std::sqrt(nd) / std::max({std::sqrt(na), std::sqrt(nb), kRelFloor});
}

double dot(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].defined() || !b[i].defined()) continue;
    auto x = a[i].to_vector(), y = b[i].to_vector();
    for (size_t j = 0; j < x.size(); ++j) s += x[j] * y[j];
  }
  return over_ranks(s);
}

std::vector<double> flat(const std::vector<Tensor>& ts) {
  std::vector<double> r;
  for (auto& t : ts)
    if (t.defined()) {
      auto v = t.to_vector();
      r.insert(r.end(), v.begin(), v.end());
    }
  return r;
}

bool is_diff_output(const Tensor& y) { return y.defined() && is_floating(y.dtype()); }

struct Harness {
  const OpCase& c;
  std::vector<Tensor> w;  // objective weights per output

  std::vector<Tensor> outputs(const std::vector<Tensor>& in) const { return c.fn(in); }

  // L = Σ ⟨w_k, y_k⟩ in engine ops (differentiable).
  Tensor objective(const std::vector<Tensor>& in) const {
    auto ys = outputs(in);
    Tensor L;
    for (size_t k = 0; k < ys.size(); ++k) {
      if (!is_diff_output(ys[k])) continue;
      Tensor term = sum(mul(ys[k], w[k]));
      L = L.defined() ? add(L, term) : term;
    }
    return L;
  }
  double objective_value(const std::vector<Tensor>& in) const {
    NoGradGuard ng;
    return over_ranks(objective(in).item());
  }

  // inputs with x_i + s·d_i on the differentiated ones.
  std::vector<Tensor> shifted(const std::vector<Tensor>& d, double s) const {
    std::vector<Tensor> r;
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      if (!c.diff[i] || !d[i].defined()) {
        r.push_back(c.inputs[i]);
        continue;
      }
      Tensor t = c.inputs[i].clone();
      auto xv = t.to_vector(), dv = d[i].to_vector();
      for (size_t j = 0; j < xv.size(); ++j) t.set_flat(int64_t(j), xv[j] + s * dv[j]);
      r.push_back(t);
    }
    return r;
  }

  // Gradient of L w.r.t. the differentiated inputs (undefined elsewhere).
  std::vector<Tensor> gradient(const std::vector<Tensor>& in) const {
    std::vector<Tensor> leaves, xs;
    for (size_t i = 0; i < in.size(); ++i) {
      Tensor x = in[i].defined() ? in[i].detach() : Tensor();
      if (c.diff[i]) x.requires_grad_(true), leaves.push_back(x);
      xs.push_back(x);
    }
    Tensor L;
    {
      EnableGradGuard g(true);
      L = objective(xs);
    }
    auto g = grad({L}, leaves);
    std::vector<Tensor> r(in.size());
    for (size_t i = 0, j = 0; i < in.size(); ++i)
      if (c.diff[i]) r[i] = g[j++];
    return r;
  }

  std::vector<Tensor> leaves_of(std::vector<Tensor>& xs) const {
    std::vector<Tensor> leaves;
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      xs.push_back(c.inputs[i].defined() ? c.inputs[i].detach() : Tensor());
      if (c.diff[i]) xs.back().requires_grad_(true), leaves.push_back(xs.back());
    }
    return leaves;
  }

  // Forward-over-reverse H·v (v given per input; undefined where not diff).
  std::vector<double> hvp_fwd(const std::vector<Tensor>& v) const {
    std::vector<Tensor> xs;
    auto leaves = leaves_of(xs);
    std::vector<Tensor> vs;
    for (size_t i = 0; i < c.inputs.size(); ++i)
      if (c.diff[i]) vs.push_back(v[i]);
    auto r = hvp([&] { return objective(xs); }, leaves, vs);
    return flat(r.hv);
  }

  // Reverse-over-reverse H·v.
  std::vector<double> hvp_rev(const std::vector<Tensor>& v) const {
    std::vector<Tensor> xs;
    auto leaves = leaves_of(xs);
    EnableGradGuard g(true);
    Tensor L = objective(xs);
    auto gs = grad({L}, leaves, {}, /*create_graph=*/true);
    Tensor s;
    for (size_t i = 0, j = 0; i < c.inputs.size(); ++i) {
      if (!c.diff[i]) continue;
      Tensor t = sum(mul(gs[j++], v[i]));
      s = s.defined() ? add(s, t) : t;
    }
    if (!s.requires_grad()) return std::vector<double>(flat(leaves).size(), 0.0);  // gradient is constant
    return flat(grad({s}, leaves));
  }
};

std::vector<Tensor> random_like(const std::vector<Tensor>& xs, const std::vector<bool>& diff, Generator& g) {
  std::vector<Tensor> r;
  for (size_t i = 0; i < xs.size(); ++i)
    r.push_back(diff[i] ? randn(xs[i].shape(), g, xs[i].dtype()) : Tensor());
  return r;
}

}  // namespace

std::vector<CheckResult> check_case(const OpCase& c, uint64_t seed, double tol) {
  Generator g(seed);
  std::vector<Tensor> ys;
  {
    NoGradGuard ng;
    ys = c.fn(c.inputs);
  }
  Harness h{c, {}};
  for (auto& y : ys) h.w.push_back(is_diff_output(y) ? randn(y.shape(), g, y.dtype()) : Tensor());
  std::vector<CheckResult> out;
  auto u = random_like(c.inputs, c.diff, g), v = random_like(c.inputs, c.diff, g);

  // Reverse gradient at x.
  auto grad_x = h.gradient(c.inputs);
  // Forward tangents along u.
  std::vector<Tensor> tangents(c.inputs.size());
  for (size_t i = 0; i < c.inputs.size(); ++i) tangents[i] = u[i];
  auto [prim, tan] = jvp(c.fn, c.inputs, tangents);

  // vjp_identity: Σ_k ⟨J_k u, w_k⟩ vs ⟨u, Jᵀ w⟩.
  double jvp_w = 0;
  for (size_t k = 0; k < ys.size(); ++k)
    if (is_diff_output(ys[k])) jvp_w += dot({tan[k]}, {h.w[k]});
  double vjp_u = dot(grad_x, u);
  out.push_back({"vjp_identity", rel_error(jvp_w, vjp_u), tol});

  // vjp_fd: full per-element differences for small inputs, else directional.
  size_t n_diff = 0;
  for (size_t i = 0; i < c.inputs.size(); ++i)
    if (c.diff[i]) n_diff += size_t(c.inputs[i].numel());
  // Per element on one rank; along u (every rank's part at once) on several.
  if (n_diff <= 256 && dist::group(dist::current_group()).size() == 1) {
    std::vector<double> fd, an;
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      if (!c.diff[i]) continue;
      auto gv = grad_x[i].to_vector();
      for (int64_t j = 0; j < c.inputs[i].numel(); ++j) {
        std::vector<Tensor> e(c.inputs.size());
        e[i] = zeros_like(c.inputs[i]);
        e[i].set_flat(j, 1.0);
        fd.push_back((h.objective_value(h.shifted(e, kEps)) - h.objective_value(h.shifted(e, -kEps))) / (2 * kEps));
        an.push_back(gv[size_t(j)]);
      }
    }
    out.push_back({"vjp_fd", rel_error_ranks(fd, an), tol});
  } else {
    double fd = (h.objective_value(h.shifted(u, kEps)) - h.objective_value(h.shifted(u, -kEps))) / (2 * kEps);
    out.push_back({"vjp_fd", rel_error(fd, vjp_u), tol});
  }

  // jvp_fd: every output element along u.
  {
    NoGradGuard ng;
    auto yp = c.fn(h.shifted(u, kEps)), ym = c.fn(h.shifted(u, -kEps));
    std::vector<double> fd, an;
    for (size_t k = 0; k < ys.size(); ++k) {
      if (!is_diff_output(ys[k])) continue;
      auto a = yp[k].to_vector(), b = ym[k].to_vector(), t = tan[k].to_vector();
      for (size_t j = 0; j < a.size(); ++j) fd.push_back((a[j] - b[j]) / (2 * kEps)), an.push_back(t[j]);
    }
    out.push_back({"jvp_fd", rel_error_ranks(fd, an), tol});
  }

  // Second order.
  auto hv = h.hvp_fwd(v), hu = h.hvp_fwd(u);
  {
    auto uf = flat(u), vf = flat(v);
    double uhv = 0, vhu = 0;
    for (size_t j = 0; j < uf.size(); ++j) uhv += uf[j] * hv[j], vhu += vf[j] * hu[j];
    const double uhv_all = over_ranks(uhv), vhu_all = over_ranks(vhu);  // in this order on every rank
    out.push_back({"hvp_symmetry", rel_error(uhv_all, vhu_all), tol});
  }
  {
    auto gp = flat(h.gradient(h.shifted(v, kEps))), gm = flat(h.gradient(h.shifted(v, -kEps)));
    std::vector<double> fd(gp.size());
    for (size_t j = 0; j < gp.size(); ++j) fd[j] = (gp[j] - gm[j]) / (2 * kEps);
    out.push_back({"hvp_fd", rel_error_ranks(fd, hv), tol});
  }
  out.push_back({"hvp_rev", rel_error_ranks(h.hvp_rev(v), hv), tol});
  return out;
}

}  // namespace bissl::check
