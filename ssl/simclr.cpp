#include "ssl/simclr.h"

#include <map>
#include <mutex>
#include <tuple>

#include "engine/dist/comm.h"
#include "engine/ops.h"

namespace bissl::ssl {

namespace {
// The constants of NT-Xent over 2N rows: the diagonal mask and each row's
// positive. Built on the CPU once per (2N, dtype, device) and kept: a fresh
// copy to the GPU at every loss (every step, every H·v) would wait for it.
struct NtXentConstants {
  Tensor eye, target;
};
NtXentConstants nt_xent_constants(int64_t n2, DType dt, Device dev) {  // by value: the cache may be cleared
  static std::mutex mu;
  static std::map<std::tuple<int64_t, int, int>, NtXentConstants> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_tuple(n2, int(dt), int(dev));
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  Tensor eye = zeros({n2, n2}, dt);
  std::vector<int64_t> positive(size_t(n2), 0);
  for (int64_t i = 0; i < n2; ++i) {
    eye.set_flat(i * n2 + i, 1.0);
    positive[size_t(i)] = (i + n2 / 2) % n2;
  }
  if (cache.size() >= 16) cache.clear();  // batch sizes are few; never hold many
  return cache[key] = {to_device_staged(eye, dev), to_device_staged(from_ints(positive, {n2}), dev)};
}
}  // namespace

namespace {
constexpr double kMaskedLogit = -1e9;
}  // namespace

Tensor nt_xent(const Tensor& z1, const Tensor& z2, double temperature) {
  BISSL_CHECK(temperature > 0, "nt_xent: expected a temperature > 0, found ", temperature);
  BISSL_CHECK(z1.dim() == 2 && z1.shape() == z2.shape() && z1.shape()[0] > 0,
              "nt_xent: expected two projections [N, d] of equal shape with N > 0, found ", shape_str(z1.shape()),
              " and ", shape_str(z2.shape()));
  const int64_t n = z1.shape()[0], n2 = 2 * n;
  Tensor z = l2_normalize(concat({z1, z2}, 0), 1);
  Tensor sim = mul(matmul(z, z, false, true), 1.0 / temperature);  // [2N, 2N]

  const NtXentConstants k = nt_xent_constants(n2, sim.dtype(), sim.device());
  const Tensor &eye = k.eye, &target = k.target;
  // −1e9 rather than −∞: exp underflows to exactly 0 either way (the same
  // numbers), and cross_entropy's forward kernel computes its
  // label-smoothing term even when label_smoothing = 0, where −∞ gives
  // 0·∞ = NaN. The reference code uses −1e9 too.
  sim = masked_fill(sim, eye, kMaskedLogit);
  return cross_entropy(sim, target);
}

namespace {
// Rank r's constants over the global 2B columns: its 2n anchors' own columns
// (masked) and positives. Column of local row i: view 1 rows i < n are global
// r·n + i, view 2 rows B + r·n + (i − n).
NtXentConstants gathered_constants(int64_t n, int64_t ranks, int64_t r, DType dt, Device dev) {
  static std::mutex mu;
  static std::map<std::tuple<int64_t, int64_t, int64_t, int, int>, NtXentConstants> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_tuple(n, ranks, r, int(dt), int(dev));
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  const int64_t B = n * ranks, cols = 2 * B;
  Tensor own = zeros({2 * n, cols}, dt);
  std::vector<int64_t> positive(size_t(2 * n), 0);
  for (int64_t i = 0; i < 2 * n; ++i) {
    const int64_t col = i < n ? r * n + i : B + r * n + (i - n);
    own.set_flat(i * cols + col, 1.0);
    positive[size_t(i)] = (col + B) % cols;
  }
  if (cache.size() >= 16) cache.clear();
  return cache[key] = {to_device_staged(own, dev), to_device_staged(from_ints(positive, {2 * n}), dev)};
}
}  // namespace

Tensor nt_xent_gathered(const Tensor& z1, const Tensor& z2, double temperature, int group) {
  const int gid = group < 0 ? dist::current_group() : group;
  dist::Comm& c = dist::group(gid);
  if (c.size() == 1) return nt_xent(z1, z2, temperature);
  BISSL_CHECK(temperature > 0, "nt_xent: expected a temperature > 0, found ", temperature);
  BISSL_CHECK(z1.dim() == 2 && z1.shape() == z2.shape() && z1.shape()[0] > 0,
              "nt_xent: expected two projections [n, d] of equal shape with n > 0, found ", shape_str(z1.shape()),
              " and ", shape_str(z2.shape()));
  const int64_t n = z1.shape()[0], ranks = c.size();
  Tensor a1 = l2_normalize(z1, 1), a2 = l2_normalize(z2, 1);
  Tensor anchors = concat({a1, a2}, 0);                                    // [2n, d]
  Tensor Z = concat({all_gather(a1, gid), all_gather(a2, gid)}, 0);       // [2B, d]
  Tensor sim = mul(matmul(anchors, Z, false, true), 1.0 / temperature);  // [2n, 2B]
  const NtXentConstants k = gathered_constants(n, ranks, c.rank(), sim.dtype(), sim.device());
  sim = masked_fill(sim, k.eye, kMaskedLogit);
  // cross_entropy averages over the 2n anchors; the share divides by 2B.
  return mul(cross_entropy(sim, k.target), 1.0 / double(ranks));
}

SimCLR::SimCLR(int64_t feature_dim, Generator& g, const SimclrOptions& opts) : options(opts) {
  BISSL_CHECK(opts.temperature > 0, "SimCLR: expected a temperature > 0, found ", opts.temperature);
  head_ = register_module("head", std::make_shared<models::NamedSequential>());
  projector_ = head_->push_back(
      "projector", std::make_shared<models::MLPHead>(feature_dim, opts.hidden_dim, opts.out_dim, g, opts.proj_layers));
}

Tensor SimCLR::loss(nn::Layer& backbone, const SslBatch& batch) {
  SplitLoss s = split(backbone, batch);
  return s.loss(s.z);
}

SplitLoss SimCLR::split(nn::Layer& backbone, const SslBatch& batch) {
  ScopedRange range(range_name().c_str());
  check_two_views(batch, "SimCLR");
  Tensor z1 = head_->forward(backbone.forward(batch.view1));
  Tensor z2 = head_->forward(backbone.forward(batch.view2));
  const int64_t n = z1.shape()[0];
  const double tau = options.temperature;
  // On several ranks (the current group) negatives come from every rank and
  // the loss is this rank's share; one rank: exactly nt_xent.
  return {concat({z1, z2}, 0),
          [n, tau](const Tensor& z) { return nt_xent_gathered(slice(z, 0, 0, n), slice(z, 0, n, 2 * n), tau); }};
}

std::string SimCLR::extra_repr() const { return str("temperature=", options.temperature); }

}  // namespace bissl::ssl
