#include "data/loader.h"

#include <chrono>
#include <numeric>

#include "engine/error.h"

namespace bissl::data {

namespace {
constexpr uint32_t kShuffleStream = 0x5f1e0000u;  // apart from the view streams 0, 1, ...
}

Loader::Loader(std::shared_ptr<const ImageSet> data, LoaderOptions opts) : data_(std::move(data)), opts_(std::move(opts)) {
  BISSL_CHECK(data_, "loader: expected an image set, found none");
  const ImageSet& d = *data_;
  BISSL_CHECK(int64_t(d.pixels.size()) == (d.lazy ? 0 : d.n * d.image_bytes()) && int64_t(d.labels.size()) == d.n,
              "loader: image set '", d.source, "' is inconsistent: ", d.n, " images, ", d.pixels.size(),
              " pixel bytes, ", d.labels.size(), " labels");
  BISSL_CHECK(!d.multi_label() || int64_t(d.targets.size()) == d.n * d.num_classes, "loader: image set '", d.source,
              "' is inconsistent: ", d.n, " images of ", d.num_classes, " classes, ", d.targets.size(),
              " multi-label targets");
  BISSL_CHECK(opts_.batch_size > 0, "loader: expected a positive batch size, found ", opts_.batch_size);
  BISSL_CHECK(opts_.workers >= 0, "loader: expected a non-negative worker count, found ", opts_.workers);
  BISSL_CHECK(opts_.prefetch >= 0, "loader: expected a non-negative prefetch, found ", opts_.prefetch);
  if (opts_.views.empty()) opts_.views.push_back(plain_view(d.c));
  for (auto& v : opts_.views) v.validate(d.c);
  // Every view must produce the same size so the batch tensors are uniform per view.
  auto hw = opts_.views[0].out_hw(d.h, d.w);
  out_h_ = hw[0];
  out_w_ = hw[1];
  for (size_t v = 1; v < opts_.views.size(); ++v) {
    auto o = opts_.views[v].out_hw(d.h, d.w);
    BISSL_CHECK(o == hw, "loader: view ", v, " makes ", o[0], "x", o[1], " images but view 0 makes ", hw[0], "x",
                hw[1], "; every view must make the same size");
  }
  if (opts_.indices.empty()) {
    samples_.resize(size_t(d.n));
    std::iota(samples_.begin(), samples_.end(), int64_t(0));
  } else {
    samples_ = opts_.indices;
    for (int64_t i : samples_)
      BISSL_CHECK(i >= 0 && i < d.n, "loader: sample index ", i, " out of range for ", d.n, " images of '", d.source,
                  "'");
  }
  const int64_t n = size(), b = opts_.batch_size;
  BISSL_CHECK(opts_.epoch_multiple >= 1 && opts_.min_last >= 1, "loader: expected epoch_multiple >= 1 and min_last >= 1, found ",
              opts_.epoch_multiple, " and ", opts_.min_last);
  if (opts_.drop_last) {
    batches_per_epoch_ = n / b;
    served_ = batches_per_epoch_ * b;
  } else {
    const int64_t kept = n / opts_.epoch_multiple * opts_.epoch_multiple, tail = kept % b;
    batches_per_epoch_ = kept / b + (tail >= opts_.min_last ? 1 : 0);
    served_ = tail >= opts_.min_last ? kept : kept - tail;
  }
  BISSL_CHECK(opts_.world >= 1 && opts_.rank >= 0 && opts_.rank < opts_.world,
              "loader: expected 0 <= rank < world, found rank ", opts_.rank, " of ", opts_.world);
  if (opts_.world > 1) {
    BISSL_CHECK(b % opts_.world == 0, "loader: a batch of ", b, " does not split over ", opts_.world,
                " ranks; choose a batch size divisible by the number of ranks");
    const int64_t last = served_ - (batches_per_epoch_ - 1) * b;
    BISSL_CHECK(batches_per_epoch_ == 0 || last % opts_.world == 0, "loader: the epoch's last batch of ", last,
                " samples does not split over ", opts_.world, " ranks; drop it (drop_last) or cut the epoch to a multiple ",
                "of the ranks (epoch_multiple)");
  }
  BISSL_CHECK(!opts_.cycle || batches_per_epoch_ > 0, "loader: cycling needs at least one batch per epoch, found ", n,
              " samples for batches of ", b, opts_.drop_last ? " with drop_last" : "");
  if (opts_.prefetch == 0) opts_.prefetch = std::max(2, 2 * opts_.workers);
  end_pos_ = batches_per_epoch_;
  for (int t = 0; t < opts_.workers; ++t) threads_.emplace_back([this] { worker_loop(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  ready_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

std::shared_ptr<const std::vector<int64_t>> Loader::order_for(int64_t epoch) const {
  std::lock_guard<std::mutex> lk(order_mu_);
  auto it = orders_.find(epoch);
  if (it != orders_.end()) return it->second;
  auto v = std::make_shared<std::vector<int64_t>>(samples_);
  if (opts_.shuffle) {
    BISSL_CHECK(epoch >= 0, "loader: expected a non-negative epoch, found ", epoch);
    SampleRng rng(opts_.seed, uint64_t(epoch), 0, kShuffleStream);
    for (int64_t i = int64_t(v->size()) - 1; i > 0; --i) std::swap((*v)[size_t(i)], (*v)[size_t(rng.randint(0, i))]);
  }
  // Workers may straddle two epochs; keep a few.
  if (orders_.size() >= 4) orders_.erase(orders_.begin());
  orders_[epoch] = v;
  return v;
}

std::vector<int64_t> Loader::epoch_order(int64_t epoch) const { return *order_for(epoch); }

Batch Loader::make_batch(int64_t epoch, int64_t step, uint64_t draw) const {
  BISSL_CHECK(epoch >= 0, "loader: expected a non-negative epoch, found ", epoch);
  BISSL_CHECK(step >= 0 && step < batches_per_epoch_, "loader: step ", step, " out of range for ", batches_per_epoch_,
              " batches per epoch");
  auto order = order_for(epoch);
  const ImageSet& d = *data_;
  // This rank's block of the whole job's batch.
  const int64_t g0 = step * opts_.batch_size, gn = std::min(opts_.batch_size, served_ - g0);
  const int64_t bn = gn / opts_.world, b0 = g0 + opts_.rank * bn;
  Batch out;
  out.epoch = epoch;
  out.step = step;
  out.row_offset = opts_.rank * bn;
  out.global_rows = gn;
  out.indices.assign(order->begin() + b0, order->begin() + b0 + bn);
  // Staging for the device copy when the batches go to a GPU.
  const bool pin = opts_.device != Device::CPU && opts_.pin_memory;
  auto alloc = [pin](const Shape& shape, DType t) { return pin ? empty_pinned(shape, t) : empty(shape, t); };
  out.labels = alloc({bn}, DType::I64);
  int64_t* lab = out.labels.data<int64_t>();
  for (int64_t k = 0; k < bn; ++k) lab[k] = d.labels[size_t(out.indices[size_t(k)])];
  if (d.multi_label()) {
    const int64_t nc = d.num_classes;
    out.targets = alloc({bn, nc}, DType::F32);
    float* t = out.targets.data<float>();
    for (int64_t k = 0; k < bn; ++k) {
      const uint8_t* row = d.target_row(out.indices[size_t(k)]);
      for (int64_t c = 0; c < nc; ++c) t[k * nc + c] = row[c] != kAbsent ? 1.0f : 0.0f;
    }
  }
  const int64_t per = out_h_ * out_w_ * d.c;
  // A lazy set's images are decoded once per batch, for all its views.
  std::vector<uint8_t> decoded;
  if (d.lazy) {
    decoded.resize(size_t(bn * d.image_bytes()));
    for (int64_t k = 0; k < bn; ++k) d.read(out.indices[size_t(k)], decoded.data() + size_t(k * d.image_bytes()));
  }
  for (size_t v = 0; v < opts_.views.size(); ++v) {
    Tensor t = alloc({bn, out_h_, out_w_, d.c}, DType::F32);
    float* dst = t.data<float>();
    for (int64_t k = 0; k < bn; ++k) {
      const int64_t idx = out.indices[size_t(k)];
      // Another draw: the seed moved by a multiple of the golden-ratio constant.
      SampleRng rng(opts_.seed + draw * 0x9E3779B97F4A7C15ull, uint64_t(epoch), uint64_t(idx), uint32_t(v));
      const uint8_t* src = d.lazy ? decoded.data() + size_t(k * d.image_bytes()) : d.image(idx);
      apply_view(opts_.views[v], src, d.h, d.w, d.c, rng, dst + k * per);
    }
    out.views.push_back(std::move(t));
  }
  if (opts_.batch_hook) opts_.batch_hook(out);
  return out;
}

bool Loader::can_claim() const {
  return batches_per_epoch_ > 0 && claim_pos_ < consume_pos_ + opts_.prefetch;
}

void Loader::worker_loop() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    work_cv_.wait(lk, [&] { return stop_ || can_claim(); });
    if (stop_) return;
    const int64_t pos = claim_pos_++;
    const uint64_t gen = gen_;
    const int64_t epoch = base_epoch_ + pos / batches_per_epoch_, step = pos % batches_per_epoch_;
    lk.unlock();
    Result r;
    try {
      r.batch = make_batch(epoch, step);
    } catch (const std::exception& e) {
      r.error = str("loader: epoch ", epoch, " batch ", step, ": ", e.what());
    }
    lk.lock();
    if (gen == gen_) {
      ready_[pos] = std::move(r);
      ready_cv_.notify_all();
    }
  }
}

void Loader::start_epoch(int64_t epoch) {
  BISSL_CHECK(epoch >= 0, "loader: expected a non-negative epoch, found ", epoch);
  std::lock_guard<std::mutex> lk(mu_);
  if ((epoch - base_epoch_) * batches_per_epoch_ == consume_pos_ && epoch >= base_epoch_) {
    // The stream is already heading there: keep what is prefetched.
    cur_epoch_ = epoch;
    end_pos_ = consume_pos_ + batches_per_epoch_;
    return;
  }
  ++gen_;
  ready_.clear();
  base_epoch_ = cur_epoch_ = epoch;
  consume_pos_ = claim_pos_ = 0;
  end_pos_ = batches_per_epoch_;
  work_cv_.notify_all();
}

bool Loader::next(Batch& out) {
  std::unique_lock<std::mutex> lk(mu_);
  if (!opts_.cycle && consume_pos_ >= end_pos_) return false;
  const int64_t pos = consume_pos_;
  Result r;
  if (opts_.workers == 0) {
    auto it = ready_.find(pos);  // a failure kept from an earlier call
    if (it != ready_.end()) throw Error(it->second.error);
    const int64_t epoch = base_epoch_ + pos / batches_per_epoch_, step = pos % batches_per_epoch_;
    lk.unlock();
    try {
      r.batch = make_batch(epoch, step);
    } catch (const std::exception& e) {
      r.error = str("loader: epoch ", epoch, " batch ", step, ": ", e.what());
    }
    lk.lock();
  } else {
    auto t0 = std::chrono::steady_clock::now();
    ready_cv_.wait(lk, [&] { return stop_ || ready_.count(pos) > 0; });
    wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    BISSL_CHECK(!stop_, "loader: stopped while waiting for a batch");
    auto it = ready_.find(pos);
    r = std::move(it->second);
    ready_.erase(it);
  }
  if (!r.error.empty()) {
    // Sticky: the failing batch stays the next one, so later calls fail too.
    ready_[pos].error = r.error;
    throw Error(r.error);
  }
  ++consume_pos_;
  if (opts_.cycle && consume_pos_ >= end_pos_) {
    ++cur_epoch_;
    end_pos_ += batches_per_epoch_;
  }
  out = std::move(r.batch);
  lk.unlock();
  work_cv_.notify_all();
  to_device(out);
  return true;
}

void Loader::to_device(Batch& out) const {
  // Hand the batch over on the model's device, on the consumer's thread:
  // from pinned staging the copies are queued without a wait (the staging
  // is held until they pass, then reused by the workers).
  if (opts_.device != Device::CPU) {
    for (auto& v : out.views) v = v.to(opts_.device);
    out.labels = out.labels.to(opts_.device);
    if (out.targets.defined()) out.targets = out.targets.to(opts_.device);
  }
}

int64_t Loader::epoch() const {
  std::lock_guard<std::mutex> lk(mu_);
  return cur_epoch_;
}

int64_t Loader::remaining() const {
  std::lock_guard<std::mutex> lk(mu_);
  return end_pos_ - consume_pos_;
}

int64_t Loader::ready() const {
  std::lock_guard<std::mutex> lk(mu_);
  return int64_t(ready_.size());
}

double Loader::wait_seconds() const {
  std::lock_guard<std::mutex> lk(mu_);
  return wait_s_;
}

}  // namespace bissl::data
