#pragma once
// The downstream task of a config ([task]): labelled train / validation /
// test sets, and the loaders and batch streams every stage draws from.
#include <memory>
#include <string>
#include <vector>

#include "bilevel/streams.h"
#include "data/image_set.h"
#include "data/loader.h"
#include "tools/stages/config.h"

namespace bissl::stages {

struct Task {
  // Single-label: labels 0..num_classes-1. Multi-label: targets (data::ImageSet).
  std::shared_ptr<const data::ImageSet> train, val, test;
  int64_t num_classes = 0;
  bool multi_label = false;
  std::vector<std::string> class_names;
  // Indices into the dataset's own train / test files (for the split files);
  // for mosaics, the tiles each split's mosaics were drawn from.
  std::vector<int64_t> train_index, val_index, test_index;
  std::string describe() const;  // "4 classes (T-shirt/top, ...): 800 train, 400 val, 4000 test"
  // The content digest of the three splits (what the stamps of the units
  // that read the task compare; engine/digest.h): computed once by
  // load_task, or from the splits for a task assembled by hand.
  std::string digest() const;
  std::string loaded_digest;  // set by load_task
};

// Loads the dataset and draws the splits (a pure function of the config).
// Mosaics: the tiles are split as a single-label task would be (classes,
// validation share, train_per_class), then each split's mosaics are drawn
// from its own tiles (the test mosaics from the test file).
Task load_task(const TaskConfig& t);
// Writes train.txt, val.txt, test.txt (dataset indices) into `dir`.
void save_task_splits(const Task& task, const TaskConfig& t, const std::string& dir);

// Images of `a` then `b` (same size and channels), unlabelled: the
// pretext + downstream mix of the "mix" baseline (lazy when either is).
data::ImageSet concat_unlabelled(std::shared_ptr<const data::ImageSet> a, std::shared_ptr<const data::ImageSet> b);

// The downstream train view of the task config ([task] crop_scale,
// crop_ratio, flip, train_interp; otherwise data::finetune_train_view),
// normalised by t.norm_mean / norm_std (with_normalization).
data::ViewConfig downstream_train_view(const TaskConfig& t, int64_t channels);
// Its evaluation view: data::eval_view (shorter side to image_size / 0.875,
// centre crop), normalised the same way.
data::ViewConfig downstream_eval_view(const TaskConfig& t, int64_t channels);

// Loader options shared by the stages: shuffled cycling batches on `dev`.
// On several ranks each rank builds its block of every batch (rank, world).
data::LoaderOptions train_loader_options(int64_t batch, uint64_t seed, int workers, Device dev);

// bilevel::BatchStream over a data::Loader (cycling, prefetching across
// epoch boundaries). Pretext batches carry two SSL views (one for MAE) and a
// per-batch seed; downstream batches the task's train view and labels.
template <class B>
class LoaderStream : public bilevel::BatchStream<B> {
 public:
  int64_t batches_per_epoch() const override { return loader_.batches_per_epoch(); }
  int64_t epoch() const override { return loader_.epoch(); }
  int64_t remaining() const override { return loader_.remaining(); }
  void new_epoch() override { loader_.start_epoch(loader_.epoch() + 1); }
  void seek(int64_t epoch, int64_t consumed) override {
    loader_.start_epoch(epoch);
    data::Batch b;
    for (int64_t i = 0; i < consumed; ++i) loader_.next(b);
  }

 protected:
  LoaderStream(std::shared_ptr<const data::ImageSet> set, data::LoaderOptions lo, const char* what)
      : loader_(set, std::move(lo)) {
    BISSL_CHECK(loader_.batches_per_epoch() > 0, what, ": ", set->n, " images make no batch of ",
                loader_.options().batch_size);
  }
  data::Batch next_batch() {
    data::Batch b;
    loader_.next(b);
    return b;
  }
  // The ghost BN size of a batch of n images: 0 (the trainer's) for a full
  // one, n / devices for a short last batch kept over `devices` (> 1).
  // n: the batch's rows over every rank (data::Batch::global_rows).
  int64_t ghost_of(int64_t n) const {
    return devices_ > 1 && n < loader_.options().batch_size ? n / devices_ : 0;
  }
  data::Loader loader_;
  int64_t devices_ = 0;
};

// Loader options that keep a short last batch as `devices` data-parallel
// devices would (bissl.short_batches = keep): the epoch cut to a multiple of
// devices, each device's share at least 2 images (batch norm). devices <= 0:
// the short batch is dropped.
data::LoaderOptions keep_short_batches(data::LoaderOptions lo, int64_t devices);

class LoaderPretextStream : public LoaderStream<ssl::SslBatch> {
 public:
  // devices > 0: short last batches kept (keep_short_batches).
  LoaderPretextStream(std::shared_ptr<const data::ImageSet> set, const pretrain::Config& pc, int64_t batch,
                      uint64_t seed, int workers, Device dev, int64_t devices = 0);
  ssl::SslBatch next_in_epoch() override;
  // Built on the calling thread; the workers' prefetch is untouched.
  ssl::SslBatch first_of_epoch(int64_t epoch, uint64_t draw) override;

 private:
  ssl::SslBatch from(const data::Batch& b, uint64_t draw) const;
  uint64_t seed_;
};

class LoaderDownstreamStream : public LoaderStream<bilevel::DownstreamBatch> {
 public:
  LoaderDownstreamStream(std::shared_ptr<const data::ImageSet> set, const TaskConfig& t, int64_t batch, uint64_t seed,
                         int workers, Device dev, int64_t devices = 0);
  bilevel::DownstreamBatch next_in_epoch() override;
};

}  // namespace bissl::stages
