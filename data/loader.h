#pragma once
// Loader: batches of float32 NHWC tensors (one per view) and int64 labels,
// shuffled per epoch, built by worker threads into a bounded prefetch window.
//
// Determinism: the order of epoch e is a Philox permutation of (seed, e) and
// sample i of view v is augmented with SampleRng(seed, e, i, v), so batch
// contents depend only on (seed, epoch, step) — not on the worker count or on
// thread timing.
//
// Device hand-over: with a GPU `device`, batches are built in pinned host
// memory and copied asynchronously on the compute stream by next(): the
// host never waits for the GPU to take a batch.
//
// Stream model: batches form one stream, epoch after epoch. Workers run up
// to `prefetch` batches ahead of the consumer, across epoch boundaries too,
// so the first batch of the next epoch is usually ready when asked for.
// Asking for an epoch that is not the next one in the stream discards the
// prefetched work and restarts there.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/augment.h"
#include "data/image_set.h"
#include "engine/tensor.h"

namespace bissl::data {

struct Batch {
  std::vector<Tensor> views;     // one per view: [B, H, W, C] f32, normalised
  Tensor labels;                 // [B] i64 (kNoLabel for unlabelled images)
  // Multi-label sets only: [B, classes] f32 multi-hot (1 where the class is
  // present or difficult: the reference's targets); undefined otherwise.
  Tensor targets;
  std::vector<int64_t> indices;  // dataset index of each row
  int64_t epoch = 0, step = 0;   // step = batch number within the epoch
  // On several ranks (LoaderOptions::world): where these rows sit in the
  // whole job's batch, and its size (what objectives drawing per-row
  // randomness for the global batch slice by). One rank: 0 and size().
  int64_t row_offset = 0, global_rows = 0;
  int64_t size() const { return int64_t(indices.size()); }
};

struct LoaderOptions {
  int64_t batch_size = 256;  // the whole job's batch, over every rank
  // Rank `rank` of `world` builds a fixed block of every batch: rows
  // [rank·b, (rank+1)·b) with b = batch / world, so the ranks' blocks in rank
  // order are bitwise the one-rank batch (the same images, the same
  // augmentation draws) for any world that divides every batch. Epochs and
  // steps are the whole job's.
  int rank = 0, world = 1;
  bool shuffle = true;
  bool drop_last = false;
  // Without drop_last, what a short last batch is: the epoch's samples are
  // first cut to a multiple of epoch_multiple (PyTorch's
  // DistributedSampler(drop_last=True) over that many devices, each serving
  // its own short batch), and a last batch of fewer than min_last samples is
  // dropped.
  int64_t epoch_multiple = 1;
  int64_t min_last = 1;
  uint64_t seed = 0;
  int workers = 2;   // threads building batches; 0 builds them in next() on the caller's thread
  int prefetch = 0;  // batches finished or in flight ahead of the consumer; 0 = max(2, 2 * workers)
  // One entry per output view (two for SimCLR/BYOL, one for supervised);
  // empty = plain_view(channels).
  std::vector<ViewConfig> views;
  // The samples (dataset indices, e.g. a split); empty = every image.
  std::vector<int64_t> indices;
  // true: next() runs on into the following epoch and never returns false.
  bool cycle = false;
  // Device the batches are handed over on (views, labels, targets).
  Device device = Device::CPU;
  // With a GPU device: workers build batches in page-locked (pinned) host
  // memory and next() queues their copies to the device without waiting for
  // it (the staging buffers are reused once their copies have passed).
  // false: pageable buffers, copied with a wait for the device.
  bool pin_memory = true;
  // Runs on every finished batch in the worker thread (extra per-batch work);
  // must be thread-safe. An exception it throws reaches the consumer.
  std::function<void(Batch&)> batch_hook;
};

class Loader {
 public:
  Loader(std::shared_ptr<const ImageSet> data, LoaderOptions opts);
  Loader(ImageSet data, LoaderOptions opts) : Loader(std::make_shared<const ImageSet>(std::move(data)), std::move(opts)) {}
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t size() const { return int64_t(samples_.size()); }  // samples per epoch (before epoch_multiple)
  int64_t served() const { return served_; }                  // samples an epoch's batches hold
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t num_views() const { return int64_t(opts_.views.size()); }
  const LoaderOptions& options() const { return opts_; }

  // Makes next() continue with step 0 of `epoch`. Starts at epoch 0 without it.
  void start_epoch(int64_t epoch);
  // The next batch of the current epoch; false when the epoch is done (never
  // with cycle). Rethrows a worker's failure as bissl::Error.
  bool next(Batch& out);

  int64_t epoch() const;      // the epoch next() is in
  int64_t remaining() const;  // batches left in it
  int64_t ready() const;      // finished batches waiting to be taken
  double wait_seconds() const;  // total time next() has spent waiting for workers

  // Dataset indices of epoch `epoch` in the order they are served.
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // Builds batch `step` of `epoch` on the calling thread (what the workers
  // run). `draw` > 0 augments the same images anew (another draw of every
  // random view; 0 is what next() serves).
  Batch make_batch(int64_t epoch, int64_t step, uint64_t draw = 0) const;
  // Moves a batch from make_batch onto the loader's device (next() does this).
  void to_device(Batch& b) const;

 private:
  struct Result {
    Batch batch;
    std::string error;
  };
  void worker_loop();
  bool can_claim() const;
  std::shared_ptr<const std::vector<int64_t>> order_for(int64_t epoch) const;

  std::shared_ptr<const ImageSet> data_;
  LoaderOptions opts_;
  std::vector<int64_t> samples_;
  int64_t batches_per_epoch_ = 0;
  int64_t served_ = 0;
  int64_t out_h_ = 0, out_w_ = 0;

  mutable std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  bool stop_ = false;
  uint64_t gen_ = 0;          // bumped when prefetched work is discarded
  int64_t base_epoch_ = 0;    // epoch of stream position 0
  int64_t cur_epoch_ = 0;     // the epoch next() is in
  int64_t consume_pos_ = 0;   // stream position of the next batch to hand out
  int64_t claim_pos_ = 0;     // next stream position a worker will build
  int64_t end_pos_ = 0;       // stream position where cur_epoch_ ends
  std::map<int64_t, Result> ready_;
  double wait_s_ = 0.0;
  std::vector<std::thread> threads_;

  mutable std::mutex order_mu_;
  mutable std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> orders_;
};

}  // namespace bissl::data
