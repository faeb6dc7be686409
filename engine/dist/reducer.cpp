#include "engine/dist/reducer.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/error.h"
#include "engine/profile.h"

namespace bissl::dist {

double default_bucket_mb() {
  const char* v = std::getenv("BISSL_BUCKET_MB");
  if (!v || !*v) return 25.0;
  char* end = nullptr;
  const double mb = std::strtod(v, &end);
  BISSL_CHECK(end && *end == '\0' && std::isfinite(mb) && mb >= 0, "BISSL_BUCKET_MB: expected MiB per gradient ",
              "bucket, a number >= 0 (0 = one all-reduce after the backward), found '", v, "'");
  return mb;
}

GradReducer::GradReducer(const std::vector<Tensor>& params, double bucket_mb, int group)
    : group_(group < 0 ? current_group() : group) {
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    BISSL_CHECK(p.defined() && !p.grad_fn(), "GradReducer: expected parameters (defined leaf tensors), found ",
                p.defined() ? "a computed tensor" : "an undefined tensor", " at position ", i);
    if (index_.emplace(p.impl_ptr().get(), int64_t(params_.size())).second) params_.push_back(p);
  }
  Comm& c = dist::group(group_);
  if (c.size() == 1) return;
  if (bucket_mb < 0) bucket_mb = default_bucket_mb();
  // Rank 0's setting on every rank (environments may differ across hosts):
  // the same buckets everywhere, or the ranks' collectives would not match.
  c.broadcast(&bucket_mb, int64_t(sizeof bucket_mb), 0);
  // CUDA gradients would each need a waiting copy to the host as the sweep
  // announces them, which stalls the GPU's queue: they take one fused sum
  // after the backward until the sums run on the device (NCCL).
  bool host = true;
  for (const Tensor& p : params_) host = host && p.device() == Device::CPU;
  fused_ = bucket_mb == 0 || !host;
  if (fused_) return;
  side_ = &c.side();  // the buckets' own communicator (Comm::side)
  const double cap = bucket_mb * 1048576.0, first_cap = std::min(cap, 1048576.0);
  bucket_of_.assign(params_.size(), -1);
  offset_of_.assign(params_.size(), 0);
  for (int64_t i = int64_t(params_.size()) - 1; i >= 0; --i) {
    const Tensor& p = params_[size_t(i)];
    const DType w = wire_dtype(p.dtype());
    const double bytes = double(p.numel()) * double(dtype_size(w));
    bool fresh = buckets_.empty() || buckets_.back().wire != w;
    if (!fresh) {
      const Bucket& b = buckets_.back();
      const double room = buckets_.size() == 1 ? first_cap : cap;
      fresh = double(b.numel) * double(dtype_size(w)) + bytes > room;
    }
    if (fresh) buckets_.emplace_back(), buckets_.back().wire = w;
    Bucket& b = buckets_.back();
    b.slots.push_back({i, b.numel});
    offset_of_[size_t(i)] = b.numel;
    b.numel += p.numel();
    bucket_of_[size_t(i)] = int64_t(buckets_.size()) - 1;
  }
  for (Bucket& b : buckets_) b.buffer = empty({b.numel}, b.wire);
}

GradReducer::~GradReducer() {
  // A sum still running (an exception left the backward): MPI may still
  // write into its buffer, which therefore stays until the job's end.
  for (Bucket& b : buckets_) {
    bool finished = false;
    try {
      finished = !b.request || b.request->done();
    } catch (...) {  // an MPI error: treat it as still running
    }
    if (!finished) static_cast<void>(new Tensor(b.buffer));
  }
}

std::vector<std::vector<int64_t>> GradReducer::layout() const {
  std::vector<std::vector<int64_t>> r;
  for (const Bucket& b : buckets_) {
    r.emplace_back();
    for (const Slot& s : b.slots) r.back().push_back(s.param);
  }
  return r;
}

void GradReducer::backward(const Tensor& loss) {
  if (dist::group(group_).size() == 1) return bissl::backward(loss);
  if (fused_) {
    bissl::backward(loss);
    std::vector<Tensor> grads;
    for (const Tensor& p : params_) grads.push_back(p.grad());
    return all_reduce_sum_(grads, group_);
  }
  for (Bucket& b : buckets_) {
    if (b.request && !b.request->done()) {  // left running by an earlier exception
      static_cast<void>(new Tensor(b.buffer));
      b.buffer = empty({b.numel}, b.wire);
    }
    b.request.reset();
    b.waiting = int64_t(b.slots.size());
  }
  is_ready_.assign(params_.size(), 0);
  had_grad_.assign(params_.size(), 0);
  next_start_ = next_done_ = started_in_sweep_ = 0;
  {
    BackwardObserverScope watch(this);
    bissl::backward(loss);
  }
  started_in_sweep_ = next_start_;
  // Parameters whose producers never ran (no gradient reached them) are
  // final now; then every bucket has started.
  for (int64_t i = 0; i < int64_t(params_.size()); ++i) ready(i);
  ScopedRange range("gradient all-reduce wait");
  for (Bucket& b : buckets_) {
    b.request->wait();
    const size_t es = dtype_size(b.wire);
    for (const Slot& s : b.slots) {
      if (!had_grad_[size_t(s.param)]) continue;
      copy_from_wire(params_[size_t(s.param)].grad(), static_cast<const char*>(b.buffer.raw()) + size_t(s.offset) * es,
                     b.wire);
    }
  }
}

void GradReducer::started(const std::function<int64_t(const TensorImpl*)>& pending) {
  for (int64_t i = 0; i < int64_t(params_.size()); ++i)
    if (pending(params_[size_t(i)].impl_ptr().get()) == 0) ready(i);
}

void GradReducer::leaf_ready(const TensorImpl* leaf) {
  auto it = index_.find(leaf);
  if (it != index_.end()) ready(it->second);
}

void GradReducer::progress() {
  // One test moves every started sum along (MPI's progress engine).
  while (next_done_ < next_start_ && buckets_[size_t(next_done_)].request->done()) ++next_done_;
}

void GradReducer::ready(int64_t i) {
  if (is_ready_[size_t(i)]) return;
  is_ready_[size_t(i)] = 1;
  Bucket& b = buckets_[size_t(bucket_of_[size_t(i)])];
  const size_t es = dtype_size(b.wire);
  char* at = static_cast<char*>(b.buffer.raw()) + size_t(offset_of_[size_t(i)]) * es;
  const Tensor g = params_[size_t(i)].grad();
  const size_t bytes = size_t(params_[size_t(i)].numel()) * es;
  if (g.defined()) {
    BISSL_CHECK(g.numel() == params_[size_t(i)].numel(), "GradReducer: parameter ", i, " has ",
                params_[size_t(i)].numel(), " values but its gradient ", g.numel());
    had_grad_[size_t(i)] = 1;
    const Tensor h = to_wire(g, b.wire);
    std::memcpy(at, h.raw(), bytes);
  } else {
    std::memset(at, 0, bytes);
  }
  if (--b.waiting == 0) start_ready_buckets();
}

void GradReducer::start_ready_buckets() {
  // Strictly in bucket order, so that every rank starts the same collectives
  // in the same order whatever order its gradients arrive in.
  Comm& c = *side_;
  while (next_start_ < int64_t(buckets_.size()) && buckets_[size_t(next_start_)].waiting == 0) {
    Bucket& b = buckets_[size_t(next_start_)];
    b.request = c.all_reduce_sum_async(b.buffer.raw(), b.numel, b.wire);
    ++next_start_;
  }
}

}  // namespace bissl::dist
