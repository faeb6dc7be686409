// The collectives on 1-4 ranks (ctest: test_dist_np1 directly, np2-np4
// under mpirun): values against hand-computed ones, bitwise agreement
// across ranks, the op table's derivative checks with inner products summed
// over the ranks, and a gathered-negatives loss in miniature on N ranks ×
// B/N rows against one process × B rows: loss, gradient, H·v fresh and
// replayed. Negative controls (wrong gathers, as published code has them)
// must fail the same comparisons by far.
//
// Only CHECK here, never REQUIRE: a rank leaving a test case early would
// skip collectives the other ranks wait in.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "engine/autograd.h"
#include "engine/check/gradcheck.h"
#include "engine/check/op_table.h"
#include "engine/dist/comm.h"
#include "engine/op_registry.h"
#include "engine/ops.h"
#include "tests/dist/dist_support.h"

using namespace bissl;
using namespace bissl::dist_test;

TEST_CASE("collectives: values against hand-computed ones") {
  const double n = N(), tri = n * (n + 1) / 2;  // Σ_r (r+1)
  for (DType dt : {DType::F64, DType::F32, DType::I64, DType::BF16}) {
    CAPTURE(dtype_name(dt));
    Tensor x = full({2, 3}, R() + 1, dt);
    Tensor s = all_reduce_sum(x);
    CHECK(s.shape() == Shape{2, 3});
    for (double v : s.to_vector()) CHECK(v == tri);
    CHECK(x.to_vector()[0] == R() + 1);  // the input is left alone

    Tensor g = all_gather(x);
    CHECK(g.shape() == Shape{2 * N(), 3});
    for (int64_t i = 0; i < 2 * N(); ++i) CHECK(g.at({i, 2}) == double(i / 2 + 1));

    Tensor y = broadcast(x, N() - 1);
    for (double v : y.to_vector()) CHECK(v == n);
  }
  // Block i of rank r holds (r+1)·(i+1): rank r receives Σ_s (s+1)·(r+1).
  for (DType dt : {DType::F64, DType::F32, DType::I64, DType::BF16}) {
    CAPTURE(dtype_name(dt));
    std::vector<double> v;
    for (int i = 0; i < N(); ++i)
      for (int k = 0; k < 2 * 3; ++k) v.push_back(double((R() + 1) * (i + 1)));
    Tensor x = from_vector(v, {2 * N(), 3}, DType::F64).to(dt);
    Tensor y = reduce_scatter_sum(x);
    CHECK(y.shape() == Shape{2, 3});
    for (double e : y.to_vector()) CHECK(e == tri * (R() + 1));
  }
  // Untracked helpers.
  CHECK(dist::all_reduce_sum(double(R() + 1)) == tri);
  CHECK(dist::all_reduce_max(double(R())) == n - 1);
  Tensor t = full({4}, R(), DType::F64);
  dist::broadcast_(t, N() - 1);
  for (double e : t.to_vector()) CHECK(e == n - 1);
}

TEST_CASE("collectives: errors name what was expected") {
  if (N() > 1) {  // a leading axis the ranks cannot split
    bool threw = false;
    try {
      reduce_scatter_sum(zeros({2 * N() + 1, 2}, DType::F64));
    } catch (const Error& e) {
      threw = std::string(e.what()).find("divisible by the") != std::string::npos;
    }
    CHECK(threw);
  }
  bool threw = false;
  try {
    broadcast(zeros({2}, DType::F64), N());
  } catch (const Error& e) {
    threw = std::string(e.what()).find("root rank") != std::string::npos;
  }
  CHECK(threw);
}

TEST_CASE("collectives: all_reduce_sum gives every rank the same bits") {
  // Values with heavy cancellation, different on every rank.
  Generator g(100 + uint64_t(R()));
  for (int64_t n : {int64_t(5), int64_t(4097), int64_t(100003)}) {
    Tensor x = mul(randn({n}, g, DType::F64), 1e8);
    x = add(x, randn({n}, g, DType::F64));
    Tensor s = all_reduce_sum(x);
    CHECK(same_bits_everywhere(s));
    // reduce_scatter may sum in another order than all_reduce: a tolerance, not bits.
    Tensor big = mul(randn({4 * N(), 7}, g, DType::F64), 1e3);
    Tensor rs = reduce_scatter_sum(big), ar = slice(all_reduce_sum(big), 0, 4 * R(), 4 * R() + 4);
    CHECK(rel(flat({rs}), flat({ar})) < 1e-14);
  }
}

TEST_CASE("collectives: the op table's derivative checks, inner products over the ranks") {
  // Each rank's inputs, directions and weights are its own (seeded by rank).
  for (const auto& e : check::op_table()) {
    if (e.op != "all_reduce_sum" && e.op != "all_gather" && e.op != "reduce_scatter_sum" && e.op != "broadcast" &&
        e.op != "collectives_nonlinear")
      continue;
    Generator g(7 + 1000 * uint64_t(R()));
    for (const auto& c : e.cases(g, DType::F64, 1)) {
      for (const auto& r : check::check_case(c, 11 + uint64_t(R()))) {
        INFO(e.op << " " << c.label << " " << r.check << ": error " << r.error << " bound " << r.bound);
        CHECK(r.passed());
      }
    }
  }
}

// ---- a gathered-negatives loss on N ranks against one process ----

namespace {

constexpr int64_t kB = 12, kD = 4, kK = 3;  // global rows (divisible by 1-4), inputs, features
constexpr double kTau = 0.5;

using Gather = std::function<Tensor(const Tensor&)>;

// Rank r's share of the loss: its anchors' cross-entropy over every row,
// divided by the global count. Rows [off, off + rows) of the global batch;
// anchor i's positive is (i + B/2) mod B. full_loss: the anchors are every
// row (the reference code's scheme, every rank the whole loss).
Tensor share(const Tensor& W, const Tensor& X, int64_t off, const Gather& gather, bool full_loss = false) {
  const int64_t rows = X.shape()[0];
  Tensor z = tanh(matmul(X, W, false, true));  // [rows, K]
  Tensor Z = gather(z);                        // [B, K]
  Tensor anchors = full_loss ? Z : z;
  const int64_t first = full_loss ? 0 : off, count = full_loss ? kB : rows;
  std::vector<double> p(size_t(count * kB), 0.0);
  for (int64_t i = 0; i < count; ++i) p[size_t(i * kB + (first + i + kB / 2) % kB)] = 1.0;
  Tensor P = from_vector(p, {count, kB}, DType::F64);
  Tensor logp = log_softmax(mul(matmul(anchors, Z, false, true), 1.0 / kTau), 1);
  return mul(sum(mul(logp, P)), -1.0 / double(kB));
}

struct Problem {
  Tensor X, W0, v, v2;
  Problem() {
    Generator g(5);  // the same on every rank
    X = randn({kB, kD}, g, DType::F64);
    W0 = randn({kK, kD}, g, DType::F64, 0.0, 0.7);
    v = randn({kK, kD}, g, DType::F64);
    v2 = randn({kK, kD}, g, DType::F64);
  }
  Tensor leaf() const { return W0.clone().requires_grad_(true); }
  Tensor local_rows() const {
    const int64_t b = kB / N();
    return slice(X, 0, R() * b, (R() + 1) * b);
  }
};

Result reference(const Problem& pb) {
  dist::CommScope self(dist::kSelf);  // every rank computes the whole batch alone
  return evaluate(pb.W0, pb.v, pb.v2, [&](const Tensor& W) { return share(W, pb.X, 0, [](const Tensor& z) { return all_gather(z); }); });
}

// Test-local ops: gathers with wrong derivatives, as published code has them.
void register_wrong_gathers() {
  static const bool once = [] {
    auto& reg = OpRegistry::get();
    const OpDef& good = reg.op("all_gather");
    auto own_block = [](const Tensor& g) {  // this rank's rows of [N·b, ...]
      const int64_t b = g.shape()[0] / N();
      return slice(g, 0, R() * b, (R() + 1) * b);
    };
    {  // (c2) the backward keeps this rank's slice of its own cotangent: no sum over ranks
      OpDef d = good;
      d.name = "test_gather_local_vjp";
      d.vjp = [own_block](const OpCtx&, const std::vector<Tensor>& g) { return std::vector<Tensor>{own_block(g[0])}; };
      reg.add(d);
    }
    {  // (c3) the tangent of the gathered rows is this rank's alone: no tangent all_gather
      OpDef d = good;
      d.name = "test_gather_local_jvp";
      d.jvp = [](const OpCtx& c, const std::vector<Tensor>& t) {
        const Shape& s = c.input_shape(0);
        Shape out = s;
        out[0] *= N();
        return std::vector<Tensor>{call_op("slice_backward", {t[0]},
                                           {{"axis", int64_t(0)}, {"start", int64_t(R()) * s[0]}, {"step", int64_t(1)},
                                            {"shape", out}})[0]};
      };
      reg.add(d);
    }
    {  // (c4) the reference's FullGatherLayer: the backward's sum over ranks is an untracked
       // all_reduce, so what is differentiated further is this rank's own cotangent
      OpDef d = good;
      d.name = "test_gather_untracked";
      d.vjp = [own_block](const OpCtx&, const std::vector<Tensor>& g) {
        Tensor summed = g[0].detach().clone();
        dist::all_reduce_sum_(summed);
        Tensor mine = own_block(g[0]);
        return std::vector<Tensor>{add(mine, sub(own_block(summed), mine.detach()).detach())};
      };
      reg.add(d);
    }
    return true;
  }();
  (void)once;
}
Gather gather_op(const char* name) {
  return [name](const Tensor& z) { return call_op(name, {z}, {{"group", int64_t(dist::current_group())}})[0]; };
}

}  // namespace

TEST_CASE("collectives: gathered negatives on N ranks equal one process") {
  Problem pb;
  const Result ref = reference(pb);
  const Tensor X = pb.local_rows();
  const int64_t off = R() * (kB / N());
  const Result got = evaluate(pb.W0, pb.v, pb.v2, [&](const Tensor& W) { return share(W, X, off, gather_op("all_gather")); });
  CAPTURE(N());
  CHECK(std::abs(got.loss - ref.loss) <= 1e-12 * std::abs(ref.loss));
  CHECK(rel(got.grad, ref.grad) <= 1e-12);
  CHECK(rel(got.hv, ref.hv) <= 1e-12);
  CHECK(rel(got.hv2, ref.hv2) <= 1e-12);
  CHECK(rel(got.replayed, ref.hv2) <= 1e-12);
  // Symmetric in the global inner product; every rank holds the same bits.
  CHECK(std::abs(dot(flat({pb.v}), got.hv2) - dot(flat({pb.v2}), got.hv)) <= 1e-12 * std::abs(dot(flat({pb.v}), got.hv2)));
  Tensor g = from_vector(got.hv, {int64_t(got.hv.size())}, DType::F64);
  CHECK(same_bits_everywhere(g));
}

TEST_CASE("collectives: wrong gathers fail the same comparisons by far") {
  register_wrong_gathers();
  Problem pb;
  const Result ref = reference(pb);
  const Tensor X = pb.local_rows();
  const int64_t off = R() * (kB / N());
  auto local = [&](const char* op) {
    return evaluate(pb.W0, pb.v, pb.v2, [&](const Tensor& W) { return share(W, X, off, gather_op(op)); });
  };
  const Result c2 = local("test_gather_local_vjp");
  const Result c3 = local("test_gather_local_jvp");
  // (c4): the whole loss on every rank, gradient and H·v summed and divided by N.
  const Result c4 = evaluate(
      pb.W0, pb.v, pb.v2, [&](const Tensor& W) { return share(W, X, off, gather_op("test_gather_untracked"), true); },
      1.0 / double(N()));
  const double c3_asym = std::abs(dot(flat({pb.v}), c3.hv2) - dot(flat({pb.v2}), c3.hv)) /
                         std::abs(dot(flat({pb.v}), ref.hv2));
  if (R() == 0) MESSAGE("np " << N() << ": (c2) gradient error " << rel(c2.grad, ref.grad) << "; (c3) H·v error "
                << rel(c3.hv, ref.hv) << ", asymmetry " << c3_asym << "; (c4) gradient error "
                << rel(c4.grad, ref.grad) << ", H·v error " << rel(c4.hv, ref.hv));
  if (N() == 1) {  // one rank: nothing to get wrong
    CHECK(rel(c2.grad, ref.grad) <= 1e-12);
    CHECK(rel(c3.hv, ref.hv) <= 1e-12);
    CHECK(rel(c4.hv, ref.hv) <= 1e-12);
  } else {
    CHECK(rel(c2.grad, ref.grad) > 1e-2);  // the gradient of another function
    CHECK(rel(c3.grad, ref.grad) <= 1e-12);  // right gradient, ...
    CHECK(rel(c3.hv, ref.hv) > 1e-2);        // ... wrong and asymmetric H·v
    CHECK(c3_asym > 1e-6);
    CHECK(rel(c4.grad, ref.grad) <= 1e-12);  // right gradient, ...
    CHECK(rel(c4.hv, ref.hv) > 1e-2);        // ... the Gauss-Newton part scaled by 1/N
  }
}

TEST_CASE("collectives: BISSL_DIST_DEBUG names a call that differs between ranks") {
  if (!std::getenv("BISSL_DIST_DEBUG") || N() == 1) return;  // ctest: test_dist_np2_debug
  bool named = false;
  try {
    all_gather(zeros({R() == 0 ? 2 : 3, 3}, DType::F64));  // rank 0's shape differs
  } catch (const Error& e) {
    named = std::string(e.what()).find("called another collective or shape") != std::string::npos;
  }
  CHECK(named);  // on every rank, and no rank is left waiting
}
