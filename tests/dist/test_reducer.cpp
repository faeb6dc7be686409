// Gradient buckets (engine/dist/reducer.h) on 1-4 ranks: the sums against
// one fused all-reduce after a plain backward, the same bits on every rank,
// buckets started while the backward runs, strictly in bucket order, and
// the backward's leaf-ready announcements (each leaf once, its gradient
// final). Only CHECK, never REQUIRE (tests/dist/test_collectives.cpp).
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "engine/autograd.h"
#include "engine/dist/comm.h"
#include "engine/dist/reducer.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "tests/dist/dist_support.h"

using namespace bissl;
using namespace bissl::dist_test;

namespace {

// W1 [6, 8], b1 [8], W2 [8, 3] in f64, F [3] in f32, U [5] unused; W1 is
// used twice (two gradients reach it). This rank's rows of data.
struct Net {
  std::vector<Tensor> params;
  Tensor x, x2;
  Net() {
    Generator g(11);
    for (const Shape& s : {Shape{6, 8}, Shape{8}, Shape{8, 3}})
      params.push_back(randn(s, g, DType::F64).requires_grad_(true));
    params.push_back(randn({3}, g, DType::F32).requires_grad_(true));
    params.push_back(randn({5}, g, DType::F64).requires_grad_(true));
    Generator d(100 + uint64_t(R()));
    x = randn({4, 6}, d, DType::F64);
    x2 = randn({2, 6}, d, DType::F64);
  }
  Tensor loss() const {
    const Tensor& W1 = params[0];
    Tensor h = tanh(add(matmul(x, W1), params[1]));
    Tensor o = mul(matmul(h, params[2]), cast(params[3], DType::F64));
    return add(sum(mul(o, o)), sum(tanh(matmul(x2, W1))));
  }
  void zero_grad() {
    for (Tensor& p : params) p.zero_grad();
  }
  std::vector<Tensor> grads() const {
    std::vector<Tensor> g;
    for (const Tensor& p : params) g.push_back(p.grad());
    return g;
  }
};

std::vector<Tensor> reference_grads(Net& net, const std::vector<Tensor>& before = {}) {
  net.zero_grad();
  for (size_t i = 0; i < before.size(); ++i) net.params[i].set_grad(before[i].clone());
  backward(net.loss());
  std::vector<Tensor> g = net.grads();
  dist::all_reduce_sum_(g);
  return g;
}

}  // namespace

TEST_CASE("gradient buckets: the sums of one fused all-reduce, the same bits on every rank") {
  Net net;
  const std::vector<Tensor> want = reference_grads(net);
  CHECK(!want[4].defined());  // U: no gradient
  // A gradient already in .grad (accumulation) is summed with the new one.
  Generator g(300 + uint64_t(R()));
  std::vector<Tensor> before;
  for (int i = 0; i < 3; ++i) before.push_back(randn(net.params[size_t(i)].shape(), g, DType::F64));
  const std::vector<Tensor> want_acc = reference_grads(net, before);
  for (double mb : {0.0, 1e-6, 1e-4, 25.0}) {
    CAPTURE(mb);
    dist::GradReducer r(net.params, mb);
    for (int rep = 0; rep < 2; ++rep) {  // the buffers are reused
      CAPTURE(rep);
      net.zero_grad();
      r.backward(net.loss());
      std::vector<Tensor> got = net.grads();
      CHECK(!got[4].defined());
      for (int i = 0; i < 4; ++i) {
        CAPTURE(i);
        if (!got[size_t(i)].defined()) {
          CHECK(false);
          continue;
        }
        CHECK(got[size_t(i)].dtype() == net.params[size_t(i)].dtype());
        CHECK(same_bits_everywhere(got[size_t(i)]));
        const double e = rel(got[size_t(i)].to_vector(), want[size_t(i)].to_vector());
        // 2 ranks: a + b either way; 3 or more: MPI may order a bucket's sum
        // otherwise than the fused call's.
        if (N() <= 2) CHECK(e == 0.0);
        else CHECK(e <= 1e-15 * (i == 3 ? 1e8 : 1.0));  // F in f32
      }
    }
    net.zero_grad();
    for (size_t i = 0; i < before.size(); ++i) net.params[i].set_grad(before[i].clone());
    r.backward(net.loss());
    for (int i = 0; i < 4; ++i) {
      CAPTURE(i);
      const double e = rel(net.params[size_t(i)].grad().to_vector(), want_acc[size_t(i)].to_vector());
      CHECK(e <= (N() <= 2 ? 0.0 : 1e-15 * (i == 3 ? 1e8 : 1.0)));
    }
    // Every node of this graph runs, so every bucket starts before the
    // sweep ends (U's at its start, the last at W1's second VJP).
    if (N() == 1 || mb == 0.0) CHECK(r.buckets() == 0);
    CHECK(r.started_during_sweep() == r.buckets());
  }
}

TEST_CASE("gradient buckets: beside collectives that the backward itself calls") {
  // all_gather's VJP is a reduce-scatter on the group's communicator, run
  // mid-sweep while earlier buckets are running on their own (Comm::side).
  Net net;
  auto loss = [&] {
    Tensor h = tanh(matmul(net.x, net.params[0]));
    Tensor g = all_gather(mul(h, net.params[1]));  // rows of every rank
    return add(net.loss(), sum(mul(g, g)));
  };
  net.zero_grad();
  backward(loss());
  std::vector<Tensor> want = net.grads();
  dist::all_reduce_sum_(want);
  for (double mb : {0.0, 1e-6, 25.0}) {
    CAPTURE(mb);
    dist::GradReducer r(net.params, mb);
    net.zero_grad();
    r.backward(loss());
    for (int i = 0; i < 4; ++i) {
      CAPTURE(i);
      CHECK(same_bits_everywhere(net.params[size_t(i)].grad()));
      const double e = rel(net.params[size_t(i)].grad().to_vector(), want[size_t(i)].to_vector());
      CHECK(e <= (N() <= 2 ? 0.0 : 1e-15 * (i == 3 ? 1e8 : 1.0)));
    }
  }
}

TEST_CASE("gradient buckets: parameters backwards, one wire dtype each, split by size") {
  // Backwards: U (5 f64, 40 bytes), F (3 f32), W2 (24 f64, 192 bytes),
  // b1 (64 bytes), W1 (384 bytes). F's dtype closes U's bucket and opens
  // its own; W2's opens the next.
  Net net;
  using L = std::vector<std::vector<int64_t>>;
  auto layout = [&](double mb) { return dist::GradReducer(net.params, mb).layout(); };
  if (N() == 1) {
    CHECK(layout(25).empty());  // one rank: no buckets
    return;
  }
  CHECK(layout(25) == L{{4}, {3}, {2, 1, 0}});
  CHECK(layout(1e-4) == L{{4}, {3}, {2}, {1}, {0}});          // 104 bytes: each alone
  CHECK(layout(400.0 / 1048576) == L{{4}, {3}, {2, 1}, {0}});  // 400 bytes: W2 + b1, then W1
  CHECK(layout(0).empty());                                    // 0: one fused all-reduce
}

TEST_CASE("gradient buckets: BISSL_BUCKET_MB") {
  const char* old = std::getenv("BISSL_BUCKET_MB");
  const std::string keep = old ? old : "";
  unsetenv("BISSL_BUCKET_MB");
  CHECK(dist::default_bucket_mb() == 25.0);
  setenv("BISSL_BUCKET_MB", "0", 1);
  CHECK(dist::default_bucket_mb() == 0.0);
  setenv("BISSL_BUCKET_MB", "2.5", 1);
  CHECK(dist::default_bucket_mb() == 2.5);
  for (const char* bad : {"-1", "lots", "3MB", "nan"}) {
    setenv("BISSL_BUCKET_MB", bad, 1);
    CHECK_THROWS_WITH_AS(dist::default_bucket_mb(), doctest::Contains("BISSL_BUCKET_MB: expected"), Error);
  }
  if (old) setenv("BISSL_BUCKET_MB", keep.c_str(), 1);
  else unsetenv("BISSL_BUCKET_MB");
}

namespace {
// Records each announcement with the gradient the leaf holds at that time.
struct Recorder : BackwardObserver {
  std::vector<const TensorImpl*> order;
  std::vector<Tensor> at_ready;
  std::vector<const TensorImpl*> settled_at_start;
  const std::vector<Tensor>* params = nullptr;
  int64_t progress_calls = 0;
  void started(const std::function<int64_t(const TensorImpl*)>& pending) override {
    for (const Tensor& p : *params)
      if (pending(p.impl_ptr().get()) == 0) settled_at_start.push_back(p.impl_ptr().get());
  }
  void leaf_ready(const TensorImpl* leaf) override {
    order.push_back(leaf);
    at_ready.push_back(Tensor(const_cast<TensorImpl*>(leaf)->grad).clone());
  }
  void progress() override { ++progress_calls; }
};
}  // namespace

TEST_CASE("backward observer: each leaf announced once, with its final gradient") {
  Net net;
  Recorder rec;
  rec.params = &net.params;
  net.zero_grad();
  {
    BackwardObserverScope scope(&rec);
    backward(net.loss());
  }
  // U is settled at the start (no gradient reaches it); the four others are
  // announced once each, W1 after both of its gradients.
  CHECK(rec.settled_at_start == std::vector<const TensorImpl*>{net.params[4].impl_ptr().get()});
  CHECK(rec.order.size() == 4);
  for (size_t k = 0; k < rec.order.size(); ++k) {
    int idx = -1;
    for (int i = 0; i < 5; ++i)
      if (net.params[size_t(i)].impl_ptr().get() == rec.order[k]) idx = i;
    CAPTURE(idx);
    CHECK(idx >= 0);
    CHECK(idx != 4);
    if (idx < 0) continue;
    CHECK(rel(rec.at_ready[k].to_vector(), net.params[size_t(idx)].grad().to_vector()) == 0.0);
  }
  CHECK(rec.progress_calls > 0);
  // grad() and a backward outside the scope announce nothing.
  const size_t n = rec.order.size();
  net.zero_grad();
  backward(net.loss());
  {
    BackwardObserverScope scope(&rec);
    (void)grad({net.loss()}, {net.params[0]});
  }
  CHECK(rec.order.size() == n);
}
