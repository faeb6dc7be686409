#include "tools/stages/task.h"

#include "data/augment.h"
#include "data/datasets.h"
#include "data/splits.h"

namespace bissl::stages {

namespace {

data::ImageSet load_set(const TaskConfig& t, bool train) {
  if (t.dataset == "fashion-mnist") return data::load_fashion_mnist(t.root, train);
  if (t.dataset == "mnist") return data::load_mnist(t.root, train);
  if (t.dataset == "cifar10") return data::load_cifar10(t.root, train);
  if (t.dataset == "cifar100") return data::load_cifar100(t.root, train);
  throw Error(str("task: dataset must be fashion-mnist, mnist, cifar10 or cifar100, found '", t.dataset, "'"));
}

std::vector<int64_t> pick(const std::vector<int64_t>& from, const std::vector<int64_t>& idx) {
  std::vector<int64_t> r;
  r.reserve(idx.size());
  for (int64_t i : idx) r.push_back(from[size_t(i)]);
  return r;
}

}  // namespace

std::string Task::describe() const {
  std::string names;
  for (auto& n : class_names) names += (names.empty() ? "" : ", ") + n;
  return str(num_classes, " classes (", names, "): ", train->n, " train, ", val->n, " validation, ", test->n, " test");
}

Task load_task(const TaskConfig& t) {
  data::ImageSet tr = load_set(t, true), te = load_set(t, false);
  std::vector<int64_t> tr_orig(size_t(tr.n)), te_orig(size_t(te.n));
  for (int64_t i = 0; i < tr.n; ++i) tr_orig[size_t(i)] = i;
  for (int64_t i = 0; i < te.n; ++i) te_orig[size_t(i)] = i;
  if (!t.classes.empty()) {
    tr_orig = data::indices_of_classes(tr.labels, t.classes);
    te_orig = data::indices_of_classes(te.labels, t.classes);
    tr = data::select_classes(tr, t.classes);
    te = data::select_classes(te, t.classes);
  }
  const int64_t nc = tr.num_classes;
  data::Split sp = t.val_per_class > 0 ? data::stratified_split_count(tr.labels, nc, t.val_per_class, t.split_seed)
                                       : data::stratified_split(tr.labels, nc, t.val_fraction, t.split_seed);
  std::vector<int64_t> train_idx =
      t.train_per_class > 0 ? data::k_per_class(tr.labels, nc, t.train_per_class, t.split_seed + 1, sp.train) : sp.train;
  Task task;
  task.num_classes = nc;
  task.class_names = tr.class_names;
  task.train = std::make_shared<const data::ImageSet>(data::subset(tr, train_idx));
  task.val = std::make_shared<const data::ImageSet>(data::subset(tr, sp.val));
  task.test = std::make_shared<const data::ImageSet>(std::move(te));
  task.train_index = pick(tr_orig, train_idx);
  task.val_index = pick(tr_orig, sp.val);
  task.test_index = te_orig;
  return task;
}

void save_task_splits(const Task& task, const TaskConfig& t, const std::string& dir) {
  std::string what = str(t.dataset, " classes [");
  for (size_t i = 0; i < t.classes.size(); ++i) what += (i ? "," : "") + std::to_string(t.classes[i]);
  what += str("], split_seed ", t.split_seed);
  data::save_indices(dir + "/train.txt", task.train_index, "training-file indices of the labelled train split; " + what);
  data::save_indices(dir + "/val.txt", task.val_index, "training-file indices of the validation split; " + what);
  data::save_indices(dir + "/test.txt", task.test_index, "test-file indices of the test split; " + what);
}

data::ImageSet concat_unlabelled(const data::ImageSet& a, const data::ImageSet& b) {
  BISSL_CHECK(a.h == b.h && a.w == b.w && a.c == b.c, "mix: expected images of one size, found ", a.h, "x", a.w, "x",
              a.c, " and ", b.h, "x", b.w, "x", b.c);
  data::ImageSet r;
  r.h = a.h, r.w = a.w, r.c = a.c, r.n = a.n + b.n;
  r.pixels = a.pixels;
  r.pixels.insert(r.pixels.end(), b.pixels.begin(), b.pixels.end());
  r.labels.assign(size_t(r.n), data::kNoLabel);
  r.source = a.source + " + " + b.source;
  return r;
}

data::ViewConfig downstream_train_view(const TaskConfig& t, int64_t channels) {
  data::ViewConfig v = data::finetune_train_view(t.image_size, channels);
  v.scale = {t.crop_scale.at(0), t.crop_scale.at(1)};
  v.ratio = {t.crop_ratio.at(0), t.crop_ratio.at(1)};
  v.flip_p = t.flip;
  v.validate(channels);
  return v;
}

data::LoaderOptions train_loader_options(int64_t batch, uint64_t seed, int workers, Device dev) {
  data::LoaderOptions lo;
  lo.batch_size = batch;
  lo.shuffle = true;
  lo.drop_last = true;
  lo.seed = seed;
  lo.workers = workers;
  lo.cycle = true;
  lo.device = dev;
  return lo;
}

namespace {

data::LoaderOptions with_views(data::LoaderOptions lo, std::vector<data::ViewConfig> views) {
  lo.views = std::move(views);
  return lo;
}

std::vector<data::ViewConfig> pretext_views(const pretrain::Config& pc, int64_t channels) {
  if (pc.method == "mae") return {data::mae_view(pc.image_size, channels)};
  return {data::ssl_view(1, pc.image_size, channels), data::ssl_view(2, pc.image_size, channels)};
}

}  // namespace

LoaderPretextStream::LoaderPretextStream(std::shared_ptr<const data::ImageSet> set, const pretrain::Config& pc,
                                         int64_t batch, uint64_t seed, int workers, Device dev)
    : LoaderStream(set, with_views(train_loader_options(batch, seed, workers, dev), pretext_views(pc, set->c)),
                   "pretext stream"),
      seed_(seed) {}

ssl::SslBatch LoaderPretextStream::next_in_epoch() {
  data::Batch b = next_batch();
  ssl::SslBatch s;
  s.view1 = b.views[0];
  if (b.views.size() > 1) s.view2 = b.views[1];
  s.seed = seed_ * 1000003ull + uint64_t(b.epoch) * 100003ull + uint64_t(b.step);  // MAE's masks
  return s;
}

LoaderDownstreamStream::LoaderDownstreamStream(std::shared_ptr<const data::ImageSet> set, const TaskConfig& t,
                                               int64_t batch, uint64_t seed, int workers, Device dev)
    : LoaderStream(set, with_views(train_loader_options(batch, seed, workers, dev), {downstream_train_view(t, set->c)}),
                   "downstream stream") {}

bilevel::DownstreamBatch LoaderDownstreamStream::next_in_epoch() {
  data::Batch b = next_batch();
  return {b.views[0], b.labels};
}

}  // namespace bissl::stages
