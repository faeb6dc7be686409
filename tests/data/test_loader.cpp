// Loader: same batches for any worker count, epochs reshuffle and cover every
// sample once, prefetch fills its window without the consumer, errors in
// workers reach the consumer, shutdown with work in flight.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "data/loader.h"
#include "engine/backend.h"
#include "engine/error.h"
#include "engine/ops.h"

using namespace bissl;
using namespace bissl::data;

namespace {

std::shared_ptr<const ImageSet> make_set(int64_t n, int64_t side = 12, int64_t c = 3) {
  auto s = std::make_shared<ImageSet>();
  s->n = n;
  s->h = s->w = side;
  s->c = c;
  s->num_classes = 5;
  s->pixels.resize(size_t(n * side * side * c));
  SampleRng rng(123, 0, 0, 7);
  for (auto& p : s->pixels) p = uint8_t(rng.randint(0, 255));
  for (int64_t i = 0; i < n; ++i) s->labels.push_back(i % 5);
  s->source = "synthetic";
  return s;
}

bool same_tensor(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

bool same_batch(const Batch& a, const Batch& b) {
  if (a.indices != b.indices || a.epoch != b.epoch || a.step != b.step || a.views.size() != b.views.size())
    return false;
  if (!same_tensor(a.labels, b.labels)) return false;
  for (size_t v = 0; v < a.views.size(); ++v)
    if (!same_tensor(a.views[v], b.views[v])) return false;
  return true;
}

std::vector<Batch> run_epochs(const std::shared_ptr<const ImageSet>& set, LoaderOptions o, int epochs) {
  Loader l(set, std::move(o));
  std::vector<Batch> out;
  for (int e = 0; e < epochs; ++e) {
    l.start_epoch(e);
    Batch b;
    while (l.next(b)) out.push_back(std::move(b));
  }
  return out;
}

LoaderOptions ssl_options(int workers) {
  LoaderOptions o;
  o.batch_size = 8;
  o.seed = 42;
  o.workers = workers;
  o.views = {ssl_view(1, 10, 3), ssl_view(2, 10, 3)};
  return o;
}

}  // namespace

TEST_CASE("loader: identical batches with 0, 1 and 3 workers") {
  auto set = make_set(50);
  auto ref = run_epochs(set, ssl_options(1), 2);
  REQUIRE(ref.size() == 14);  // 7 batches per epoch (last of 2)
  CHECK(ref[0].views.size() == 2);
  CHECK(ref[0].views[0].shape() == Shape{8, 10, 10, 3});
  CHECK(ref[6].size() == 2);
  CHECK(ref[6].views[1].shape() == Shape{2, 10, 10, 3});
  CHECK(ref[0].labels.dtype() == DType::I64);
  for (int workers : {0, 3}) {
    auto other = run_epochs(set, ssl_options(workers), 2);
    REQUIRE(other.size() == ref.size());
    for (size_t i = 0; i < ref.size(); ++i) CHECK_MESSAGE(same_batch(ref[i], other[i]), "batch " << i << " differs");
  }
  // The two views of a sample differ; the same batch from make_batch is identical.
  CHECK_FALSE(same_tensor(ref[0].views[0], ref[0].views[1]));
  Loader l(set, ssl_options(0));
  CHECK(same_batch(l.make_batch(1, 3), ref[7 + 3]));
}

TEST_CASE("loader: every epoch is a new permutation; labels and indices match") {
  auto set = make_set(50);
  LoaderOptions o;
  o.batch_size = 8;
  o.seed = 3;
  o.workers = 2;
  auto batches = run_epochs(set, o, 2);
  std::vector<int64_t> e0, e1;
  for (auto& b : batches) {
    auto& dst = b.epoch == 0 ? e0 : e1;
    dst.insert(dst.end(), b.indices.begin(), b.indices.end());
    for (int64_t k = 0; k < b.size(); ++k) CHECK(b.labels.data<int64_t>()[k] == set->labels[size_t(b.indices[size_t(k)])]);
    // The plain view is the normalised image itself.
    const float* px = b.views[0].data<float>();
    const uint8_t* src = set->image(b.indices[0]);
    CHECK(px[4] == doctest::Approx((src[4] / 255.f - 0.456f) / 0.224f));
  }
  CHECK(e0 != e1);
  auto s0 = e0, s1 = e1;
  std::sort(s0.begin(), s0.end());
  std::sort(s1.begin(), s1.end());
  std::vector<int64_t> all(50);
  for (int i = 0; i < 50; ++i) all[size_t(i)] = i;
  CHECK(s0 == all);
  CHECK(s1 == all);
  Loader l(set, o);
  CHECK(l.epoch_order(1) == e1);

  // drop_last and no shuffle.
  o.drop_last = true;
  o.shuffle = false;
  auto d = run_epochs(set, o, 1);
  CHECK(d.size() == 6);
  CHECK(d[0].indices == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7});
  // A subset of indices.
  o.indices = {4, 9, 14, 19, 24};
  o.drop_last = false;
  auto sub = run_epochs(set, o, 1);
  REQUIRE(sub.size() == 1);
  CHECK(sub[0].indices == o.indices);
}

TEST_CASE("loader: a short last batch kept as W devices would serve it (epoch_multiple, min_last)") {
  auto set = make_set(50);
  LoaderOptions o = ssl_options(2);
  o.batch_size = 16;
  o.shuffle = false;
  o.drop_last = false;
  auto sizes = [&](LoaderOptions lo) {
    std::vector<int64_t> r;
    for (auto& b : run_epochs(set, lo, 1)) r.push_back(b.size());
    return r;
  };
  // 50 = 3 x 16 + 2: the 2 kept by default.
  CHECK(sizes(o) == std::vector<int64_t>{16, 16, 16, 2});
  // Over 4 devices: the epoch cut to 48, no short batch left.
  o.epoch_multiple = 4;
  CHECK(sizes(o) == std::vector<int64_t>{16, 16, 16});
  // Over 3 devices: 48 too. Over 7: 49 = 3 x 16 + 1, whose 1 is below min_last.
  o.epoch_multiple = 7;
  o.min_last = 14;
  CHECK(sizes(o) == std::vector<int64_t>{16, 16, 16});
  // Over 2 devices with 2 images each at least: 50 = 3 x 16 + 2, kept (2 < 4: dropped).
  o.epoch_multiple = 2;
  o.min_last = 4;
  CHECK(sizes(o) == std::vector<int64_t>{16, 16, 16});
  o.min_last = 2;
  CHECK(sizes(o) == std::vector<int64_t>{16, 16, 16, 2});
  {
    Loader l(set, o);
    CHECK(l.served() == 50);
    CHECK(l.make_batch(0, 3).indices == std::vector<int64_t>{48, 49});
  }
  // 45 images over 2 devices: 44 served, the last batch 12.
  auto set45 = make_set(45);
  Loader l(set45, o);
  CHECK(l.batches_per_epoch() == 3);
  CHECK(l.served() == 44);
  CHECK(l.make_batch(0, 2).size() == 12);
  o.min_last = 0;
  CHECK_THROWS_AS(Loader(set, o), Error);
}

TEST_CASE("loader: prefetch fills its window before the consumer asks") {
  auto set = make_set(64);
  LoaderOptions o = ssl_options(2);
  o.prefetch = 3;
  Loader l(set, o);
  auto t0 = std::chrono::steady_clock::now();
  while (l.ready() < 3 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10))
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  CHECK(l.ready() == 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  CHECK(l.ready() == 3);  // bounded
  Batch b;
  REQUIRE(l.next(b));
  CHECK(b.step == 0);
  CHECK(l.wait_seconds() < 0.05);  // it was already there
  CHECK(l.remaining() == 7);
}

TEST_CASE("loader: epochs continue the stream; a jump restarts it; cycle runs on") {
  auto set = make_set(20);
  LoaderOptions o;
  o.batch_size = 8;
  o.workers = 2;
  o.seed = 5;
  Loader l(set, o);
  Batch b;
  int n = 0;
  while (l.next(b)) ++n;
  CHECK(n == 3);
  CHECK_FALSE(l.next(b));  // stays at the end until the next epoch starts
  l.start_epoch(1);
  REQUIRE(l.next(b));
  CHECK(b.epoch == 1);
  CHECK(same_batch(b, l.make_batch(1, 0)));
  l.start_epoch(7);  // mid-epoch jump
  REQUIRE(l.next(b));
  CHECK(b.epoch == 7);
  CHECK(b.step == 0);
  CHECK(same_batch(b, l.make_batch(7, 0)));

  o.cycle = true;
  Loader c(set, o);
  std::vector<std::pair<int64_t, int64_t>> seen;
  for (int i = 0; i < 7; ++i) {
    REQUIRE(c.next(b));
    seen.push_back({b.epoch, b.step});
  }
  CHECK(seen.back() == std::pair<int64_t, int64_t>{2, 0});
  CHECK(c.epoch() == 2);
  CHECK(c.remaining() == 2);
}

TEST_CASE("loader: a worker's exception reaches the consumer as bissl::Error") {
  auto set = make_set(40);
  for (int workers : {0, 2}) {
    LoaderOptions o;
    o.batch_size = 8;
    o.workers = workers;
    o.batch_hook = [](Batch& b) {
      if (b.step == 2) throw std::runtime_error("hook failed on purpose");
    };
    Loader l(set, o);
    Batch b;
    REQUIRE(l.next(b));
    REQUIRE(l.next(b));
    for (int k = 0; k < 2; ++k) {
      try {
        l.next(b);
        FAIL("expected an error");
      } catch (const Error& e) {
        const std::string msg = e.what();
        CHECK(msg.find("hook failed on purpose") != std::string::npos);
        CHECK(msg.find("batch 2") != std::string::npos);
      }
    }
  }
}

TEST_CASE("loader: batches are handed over on the requested device") {
  auto set = make_set(16);
  LoaderOptions o;
  o.batch_size = 8;
  o.workers = 1;
  o.device = Device::CUDA;
  Loader l(set, o);
  Batch b;
  if (bissl::cuda_device_count() == 0) {
    // No GPU here: asking for one is a clear error, not a crash.
    CHECK_THROWS_WITH_AS(l.next(b), doctest::Contains("cuda"), Error);
    return;
  }
  REQUIRE(l.next(b));
  CHECK(b.views[0].device() == Device::CUDA);
  CHECK(b.labels.device() == Device::CUDA);
}

TEST_CASE("loader: staging is page-locked only for a GPU hand-over, and only with a GPU present") {
  auto set = make_set(16);
  LoaderOptions o;
  o.batch_size = 8;
  o.workers = 0;
  const bool gpu = bissl::cuda_device_count() > 0;
  Batch cpu = Loader(set, o).make_batch(0, 1);
  CHECK_FALSE(cpu.views[0].is_pinned());
  CHECK_FALSE(cpu.labels.is_pinned());
  o.device = Device::CUDA;
  Batch staged = Loader(set, o).make_batch(0, 1);  // what the workers build, before next() moves it
  CHECK(staged.views[0].is_pinned() == gpu);
  CHECK(staged.labels.is_pinned() == gpu);
  CHECK(staged.views[0].to_vector() == cpu.views[0].to_vector());
  CHECK(staged.labels.to_vector() == cpu.labels.to_vector());
  o.pin_memory = false;
  CHECK_FALSE(Loader(set, o).make_batch(0, 1).views[0].is_pinned());
}

TEST_CASE("loader: destruction with work in flight returns promptly; bad options are errors") {
  auto set = make_set(200, 32);
  auto t0 = std::chrono::steady_clock::now();
  {
    LoaderOptions o = ssl_options(3);
    o.views = {ssl_view(1, 32, 3), ssl_view(2, 32, 3)};
    o.prefetch = 16;
    Loader l(set, o);
    Batch b;
    REQUIRE(l.next(b));
  }
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));

  LoaderOptions bad;
  bad.batch_size = 0;
  CHECK_THROWS_AS(Loader(set, bad), Error);
  LoaderOptions mixed;
  mixed.views = {ssl_view(1, 8, 3), ssl_view(2, 10, 3)};
  CHECK_THROWS_AS(Loader(set, mixed), Error);
  LoaderOptions oob;
  oob.indices = {0, 200};
  CHECK_THROWS_AS(Loader(set, oob), Error);
  LoaderOptions grey;
  grey.views = {ssl_view(1, 8, 1)};  // one-channel settings on a 3-channel set
  CHECK_THROWS_AS(Loader(set, grey), Error);
}

TEST_CASE("loader: unlabelled images keep kNoLabel") {
  auto s = std::make_shared<ImageSet>(*make_set(10));
  std::fill(s->labels.begin(), s->labels.end(), kNoLabel);
  LoaderOptions o;
  o.batch_size = 4;
  o.workers = 1;
  Loader l(s, o);
  Batch b;
  REQUIRE(l.next(b));
  for (int64_t k = 0; k < b.size(); ++k) CHECK(b.labels.data<int64_t>()[k] == kNoLabel);
}

TEST_CASE("loader: on W ranks each builds its block; the blocks in rank order are the one-rank batch") {
  auto set = make_set(48);
  LoaderOptions one = ssl_options(0);
  one.batch_size = 12;  // 4 batches per epoch; divisible by 1, 2, 3, 4 ranks
  auto ref = run_epochs(set, one, 2);
  REQUIRE(ref.size() == 8);
  for (int world : {1, 2, 3, 4}) {
    CAPTURE(world);
    std::vector<std::vector<Batch>> ranks;
    for (int r = 0; r < world; ++r) {
      LoaderOptions o = one;
      o.rank = r, o.world = world, o.workers = r % 2 + 1;  // the worker count changes nothing
      ranks.push_back(run_epochs(set, o, 2));
    }
    for (size_t i = 0; i < ref.size(); ++i) {
      Batch joined;
      joined.epoch = ref[i].epoch, joined.step = ref[i].step;
      std::vector<Tensor> labels, v0, v1;
      for (int r = 0; r < world; ++r) {
        const Batch& b = ranks[size_t(r)][i];
        CHECK(b.size() == 12 / world);
        CHECK(b.row_offset == r * (12 / world));
        CHECK(b.global_rows == 12);
        joined.indices.insert(joined.indices.end(), b.indices.begin(), b.indices.end());
        labels.push_back(b.labels), v0.push_back(b.views[0]), v1.push_back(b.views[1]);
      }
      joined.labels = concat(labels, 0);
      joined.views = {concat(v0, 0), concat(v1, 0)};
      CHECK_MESSAGE(same_batch(joined, ref[i]), "batch " << i << " differs from the one-rank batch");
    }
  }
}

TEST_CASE("loader: batches that do not split over the ranks are errors naming the numbers") {
  auto set = make_set(50);
  LoaderOptions o = ssl_options(0);
  o.batch_size = 12, o.world = 5;
  CHECK_THROWS_WITH_AS(Loader(set, o), doctest::Contains("a batch of 12 does not split over 5 ranks"), Error);
  o.world = 4;  // 50 = 4·12 + 2: a last batch of 2
  CHECK_THROWS_WITH_AS(Loader(set, o), doctest::Contains("last batch of 2 samples does not split over 4 ranks"), Error);
  o.drop_last = true;
  CHECK_NOTHROW(Loader(set, o));
  o.rank = 4;
  CHECK_THROWS_WITH_AS(Loader(set, o), doctest::Contains("found rank 4 of 4"), Error);
}
