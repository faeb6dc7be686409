#pragma once
// Batch streams of the two levels (BISSL_SPEC.md, "Data cycling"): each level
// draws from its own stream, epoch after epoch, and a stream is reshuffled
// (a new epoch started) only when fewer batches remain in the current epoch
// than the next phase needs. A set smaller than one phase (a tiny downstream
// set) starts a new epoch whenever it runs dry inside the phase, so it is
// cycled several times per phase.
//
// A stream is an interface so the trainer does not depend on data/: the
// stage tools adapt data::Loader (tools/stages/streams.h), tests use
// in-memory streams. A stream's batches are a pure function of (epoch,
// position in the epoch), so a checkpoint stores (epoch, consumed) and
// `seek` restores it exactly.
#include <cstdint>

#include "engine/error.h"
#include "engine/tensor.h"
#include "ssl/objective.h"

namespace bissl::bilevel {

// One labelled downstream batch: x [N, H, W, C] (or whatever the backbone
// takes), y [N] int64 class indices, or [N, classes] float multi-hot
// targets for a multi-label task.
struct DownstreamBatch {
  Tensor x, y;
  // > 0: this batch's ghost BN size instead of BilevelOptions::ghost_upper
  // (a short last batch split over the reference's devices).
  int64_t ghost = 0;
};

template <class B>
class BatchStream {
 public:
  virtual ~BatchStream() = default;
  virtual int64_t batches_per_epoch() const = 0;
  virtual int64_t epoch() const = 0;      // the epoch being served
  virtual int64_t remaining() const = 0;  // batches left in it
  // Starts epoch epoch() + 1 (a fresh shuffle), abandoning what is left.
  virtual void new_epoch() = 0;
  // Continues at batch `consumed` of `epoch`.
  virtual void seek(int64_t epoch, int64_t consumed) = 0;
  // The next batch of the current epoch; only called with remaining() > 0.
  virtual B next_in_epoch() = 0;
  // Batch 0 of `epoch` as a fresh iterator over that epoch would serve it:
  // the same images, augmented anew by `draw` (0: exactly as next() served
  // it), the stream's position unchanged (the reference's
  // next(iter(loader)); BiSSL's CG batch).
  virtual B first_of_epoch(int64_t epoch, uint64_t draw) {
    (void)epoch, (void)draw;
    throw Error("batch stream: this stream cannot serve an epoch's first batch again");
  }

  int64_t consumed() const { return batches_per_epoch() - remaining(); }
  // The epoch of the last batch next() served (epoch() before any).
  int64_t served_epoch() const { return served_any_ ? served_epoch_ : epoch(); }
  void set_served_epoch(int64_t e) { served_epoch_ = e, served_any_ = true; }  // restored from checkpoints
  int64_t reshuffles() const { return reshuffles_; }  // new epochs started by reserve/next

  // Before a phase that takes n batches: a new epoch when fewer than n remain.
  void reserve(int64_t n) {
    if (remaining() < n) start_next();
  }
  // The next batch; a new epoch first when this one is used up.
  B next() {
    if (remaining() <= 0) start_next();
    BISSL_CHECK(remaining() > 0, "batch stream: a new epoch has no batches (", batches_per_epoch(),
                " per epoch)");
    set_served_epoch(epoch());
    return next_in_epoch();
  }
  void set_reshuffles(int64_t n) { reshuffles_ = n; }  // restored from checkpoints

 private:
  void start_next() {
    new_epoch();
    ++reshuffles_;
  }
  int64_t reshuffles_ = 0;
  int64_t served_epoch_ = 0;
  bool served_any_ = false;
};

using PretextStream = BatchStream<ssl::SslBatch>;
using DownstreamStream = BatchStream<DownstreamBatch>;

}  // namespace bissl::bilevel
