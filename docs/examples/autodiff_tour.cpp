// The worked example of docs/autodiff.md: one tiny model, differentiated
// three ways (reverse, forward, forward-over-reverse), with the tape printed.
// Build: cmake --build build --target autodiff_tour && ./build/docs/autodiff_tour
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "engine/autograd.h"
#include "engine/ops.h"

using namespace bissl;

// Walks the tape from `t` and prints one line per recorded op, newest first.
void print_tape(const Tensor& t) {
  std::vector<std::shared_ptr<Node>> todo{t.grad_fn()};
  std::set<Node*> seen;
  std::vector<std::shared_ptr<Node>> nodes;
  while (!todo.empty()) {
    auto n = todo.back();
    todo.pop_back();
    if (!n || seen.count(n.get())) continue;
    seen.insert(n.get());
    nodes.push_back(n);
    for (auto& e : n->next) todo.push_back(e.node);
  }
  std::sort(nodes.begin(), nodes.end(), [](auto& a, auto& b) { return a->seq > b->seq; });
  for (auto& n : nodes) {
    std::string ins;
    for (auto& s : n->in_shapes) ins += (ins.empty() ? "" : ", ") + shape_str(s);
    std::printf("  #%-3llu %-14s inputs %s -> %s\n", (unsigned long long)n->seq, n->op->name.c_str(), ins.c_str(),
                shape_str(n->out_shapes[0]).c_str());
  }
}

int main() {
  // L(w) = mean(tanh(x·w)²): x is fixed data, w the parameters.
  Tensor x = from_vector({0.5, -1.0, 2.0, 0.3, 1.5, -0.7}, {3, 2}, DType::F64);
  Tensor w = from_vector({0.8, -0.4}, {2, 1}, DType::F64);
  w.requires_grad_();
  auto loss = [&] { return mean(pow(tanh(matmul(x, w)), 2.0)); };

  // 1. Reverse mode: record a tape, sweep it backwards.
  Tensor L = loss();
  std::printf("L = %.10f\nthe tape (newest first):\n", L.item());
  print_tape(L);
  backward(L);
  std::printf("reverse   dL/dw = [% .10f, % .10f]\n", w.grad().flat(0), w.grad().flat(1));

  // 2. Forward mode: push a tangent through the same function, no tape.
  Tensor v = from_vector({1.0, 2.0}, {2, 1}, DType::F64);
  auto [outs, tans] = jvp([&](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{mean(pow(tanh(matmul(x, in[0])), 2.0))};
  }, {w}, {v});
  double dir = w.grad().flat(0) * 1.0 + w.grad().flat(1) * 2.0;
  std::printf("forward   dL/dw·v = %.10f   (reverse gives %.10f)\n", tans[0].item(), dir);

  // 3. Forward-over-reverse: w carries v as a tangent through one forward and
  //    one backward; the gradient's tangent is H·v.
  auto r = hvp(loss, {w}, {v});
  std::printf("fwd/rev   H·v = [% .10f, % .10f]\n", r.hv[0].flat(0), r.hv[0].flat(1));

  // Check against central differences of the gradient.
  double eps = 1e-6;
  auto grad_at = [&](double s) {
    Tensor ws = add(w.detach(), mul(v, s));
    ws.requires_grad_();
    return grad({mean(pow(tanh(matmul(x, ws)), 2.0))}, {ws})[0];
  };
  Tensor gp = grad_at(eps), gm = grad_at(-eps);
  std::printf("central   H·v = [% .10f, % .10f]\n", (gp.flat(0) - gm.flat(0)) / (2 * eps),
              (gp.flat(1) - gm.flat(1)) / (2 * eps));
  double err = std::abs(r.hv[0].flat(0) - (gp.flat(0) - gm.flat(0)) / (2 * eps));
  return err < 1e-7 ? 0 : 1;
}
