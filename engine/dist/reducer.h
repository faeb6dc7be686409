#pragma once
// Gradients summed over the ranks while the backward still runs
// (docs/distributed.md, "Gradients"): the parameters' gradients are packed
// into buckets, and a bucket's all-reduce starts as soon as the backward
// has delivered the last gradient of its parameters, while the sweep goes
// on to the layers before them. Buckets follow the parameters in reverse
// order (a backward reaches the last layers first), start strictly in
// bucket order on every rank, on the group's side communicator
// (Comm::side: the backward's own collectives never have to interleave
// with them in one order), and hold one wire dtype each (F32 or F64: BF16
// travels as F32). CUDA parameters take one fused sum after the backward
// instead (a copy to the host per announced gradient would stall the GPU's
// queue) until the sums run on the device.
//
//   dist::GradReducer reducer(params);  // once: the buckets are kept
//   ...
//   opt.zero_grad();
//   reducer.backward(loss);              // backward(loss), then every .grad
//                                        // summed over the group
//
// The sums are those of one fused all_reduce_sum_ of every .grad after a
// plain backward (BISSL_BUCKET_MB=0 below): bit for bit on 2 ranks; with 3 or more, MPI may add a
// bucket's ranks in another order than one fused call does (the last bits;
// every rank still holds the same ones with this OpenMPI: tested, not an
// MPI promise). A gradient the backward leaves undefined stays undefined
// on every rank (its slot travels as zeros). One rank: a plain backward,
// no buffer, no copy. The constructor is a collective call (it takes rank
// 0's bucket size, and makes the side communicator on first use).
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "engine/autograd.h"
#include "engine/dist/comm.h"
#include "engine/tensor.h"

namespace bissl::dist {

// MiB per bucket: BISSL_BUCKET_MB in the environment (a number ≥ 0; 0 = one
// fused all-reduce after the backward, the behaviour before buckets), else
// 25 (PyTorch DDP's default); the first bucket is at most 1 MiB, so the
// first sum starts early (a parameter larger than the cap gets a bucket of
// its own). Anything else in the variable is an error naming it. Rank 0's
// value is the job's.
double default_bucket_mb();

class GradReducer final : private BackwardObserver {
 public:
  // bucket_mb < 0: default_bucket_mb(). group < 0: the current group at
  // construction.
  explicit GradReducer(const std::vector<Tensor>& params, double bucket_mb = -1, int group = -1);
  ~GradReducer() override;
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // backward(loss) with the sums above, on every rank of the group (the
  // same graph on each: whether a gradient exists must not depend on data).
  void backward(const Tensor& loss);

  int64_t buckets() const { return int64_t(buckets_.size()); }
  // Of the last backward: buckets whose sum started before the sweep ended.
  int64_t started_during_sweep() const { return started_in_sweep_; }
  // The parameter indices of each bucket, in bucket order (for tests).
  std::vector<std::vector<int64_t>> layout() const;

 private:
  struct Slot {
    int64_t param = 0, offset = 0;  // offset: elements into the bucket
  };
  struct Bucket {
    DType wire = DType::F32;
    std::vector<Slot> slots;
    int64_t numel = 0;
    Tensor buffer;  // host, wire dtype
    int64_t waiting = 0;  // parameters not ready yet in this sweep
    std::unique_ptr<Request> request;
  };

  void started(const std::function<int64_t(const TensorImpl*)>& pending) override;
  void leaf_ready(const TensorImpl* leaf) override;
  void progress() override;
  void ready(int64_t param);
  void start_ready_buckets();

  std::vector<Tensor> params_;
  int group_ = 0;
  Comm* side_ = nullptr;  // group_'s side communicator: the buckets' sums
  bool fused_ = false;  // bucket_mb == 0
  std::vector<Bucket> buckets_;
  std::vector<int64_t> bucket_of_, offset_of_;  // per parameter
  std::unordered_map<const TensorImpl*, int64_t> index_;
  // Per sweep:
  std::vector<char> is_ready_, had_grad_;
  int64_t next_start_ = 0, next_done_ = 0, started_in_sweep_ = 0;
};

}  // namespace bissl::dist
