#include "tools/stages/task.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "data/augment.h"
#include "data/datasets.h"
#include "data/splits.h"
#include "engine/dist/comm.h"
#include "tools/pretrain/build.h"
#include "tools/stages/progress.h"

namespace bissl::stages {

namespace {

data::ImageSet load_set(const TaskConfig& t, bool train) {
  if (t.dataset == "fashion-mnist") return data::load_fashion_mnist(t.root, train);
  if (t.dataset == "mnist") return data::load_mnist(t.root, train);
  if (t.dataset == "cifar10") return data::load_cifar10(t.root, train);
  if (t.dataset == "cifar100") return data::load_cifar100(t.root, train);
  if (t.dataset == "stl10") return data::load_stl10(t.root, train ? data::Stl10Split::Train : data::Stl10Split::Test);
  throw Error(str("task: dataset must be fashion-mnist, mnist, cifar10, cifar100, stl10, fashion-mnist-mosaic, "
                  "voc2007, folder or list, found '", t.dataset, "'"));
}

// Your own images (dataset folder or list): the lists of the train, test
// and (when given) validation files.
struct FileLists {
  data::ImageList train, val, test;
  bool has_val = false;
};

FileLists list_files(const TaskConfig& t) {
  namespace fs = std::filesystem;
  FileLists f;
  std::error_code ec;
  BISSL_CHECK(fs::is_directory(t.root, ec), "task: root ", t.root, " is not a folder (dataset ", t.dataset, ")");
  if (t.dataset == "folder") {
    data::FolderListOptions o;
    o.order = t.folder_order;
    const fs::path root(t.root);
    BISSL_CHECK(fs::is_directory(root / "train", ec) && fs::is_directory(root / "test", ec), "task: dataset folder ",
                "expects ", t.root, "/train/<class>/... and ", t.root, "/test/<class>/...; found ",
                fs::is_directory(root / "train", ec) ? "no test folder" : "no train folder");
    f.train = data::list_image_folder((root / "train").string(), o);
    o.classes = f.train.class_names;  // the training folder's classes and indices
    f.test = data::list_image_folder((root / "test").string(), o);
    if (fs::is_directory(root / "val", ec)) {
      f.val = data::list_image_folder((root / "val").string(), o);
      f.has_val = true;
    }
    return f;
  }
  auto under_root = [&](const std::string& p) { return (fs::path(t.root) / p).string(); };
  const std::vector<std::string> names =
      t.class_names_file.empty() ? std::vector<std::string>{} : data::read_class_names(under_root(t.class_names_file));
  f.train = data::read_split_file(under_root(t.train_list), t.root, names);
  const std::vector<std::string>& classes = names.empty() ? f.train.class_names : names;
  f.test = data::read_split_file(under_root(t.test_list), t.root, classes);
  if (!t.val_list.empty()) {
    f.val = data::read_split_file(under_root(t.val_list), t.root, classes);
    f.has_val = true;
  }
  // One image in two splits would leak test (or validation) images into training.
  std::map<std::string, std::string> seen;
  auto check = [&](const data::ImageList& l, const std::string& split) {
    for (const std::string& n : l.names) {
      auto [it, fresh] = seen.emplace(n, split);
      BISSL_CHECK(fresh, "task: image '", n, "' is in both the ", it->second, " and the ", split, " split files");
    }
  };
  check(f.train, "train");
  if (f.has_val) check(f.val, "validation");
  check(f.test, "test");
  return f;
}

// Decodes one split; notes what was skipped.
data::ImageSet decode_split(const data::ImageList& l, const TaskConfig& t, int64_t channels, int64_t h, int64_t w) {
  data::DecodeOptions d;
  d.channels = channels;
  d.skip_bad = t.skip_bad_images;
  d.max_pixels = t.max_image_pixels;
  d.lazy = t.lazy;
  d.cache_bytes = t.cache_mb << 20;
  if (t.load_size > 0) {
    d.height = d.width = t.load_size;
    d.fit = data::Fit::ShorterCrop;
  } else {
    d.height = h, d.width = w;  // 0 x 0 for the training split: its first image's size
  }
  data::DecodeReport rep;
  data::ImageSet s = data::decode_image_list(l, d, &rep);
  if (l.skipped > 0)
    std::fprintf(stderr, "task: note: %s: %lld file(s) skipped, not images by their extension\n", l.source.c_str(),
                 (long long)l.skipped);
  if (rep.bad > 0)
    std::fprintf(stderr, "task: note: %s: %lld image(s) could not be decoded and were left out (skip_bad_images; "
                 "the first: %s)\n", l.source.c_str(), (long long)rep.bad, rep.first_bad.c_str());
  return s;
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
  std::string kind;
  if (multi_label) {
    int64_t positives = 0;
    for (int64_t c : data::class_counts(*train)) positives += c;
    kind = str(", multi-label (", fmt(double(positives) / double(std::max<int64_t>(train->n, 1)), 3),
               " classes per train image; scored by mAP)");
  }
  return str(num_classes, " classes (", names, ")", kind, ": ", train->n, " train, ", val->n, " validation, ", test->n,
             " test");
}

namespace {

// A single-label dataset's train and test files after the class selection,
// with the validation and (possibly reduced) train splits drawn.
struct SingleLabelSplit {
  data::ImageSet tr, te;
  std::vector<int64_t> tr_orig, te_orig;  // file index of each image of tr / te
  std::vector<int64_t> train_idx, val_idx;  // into tr
};

// Class selection and the train / validation split of a loaded train and
// test set; without draw_val (a validation set of its own) train keeps every
// image (or k per class) and val_idx stays empty.
SingleLabelSplit split_loaded(const TaskConfig& t, data::ImageSet tr, data::ImageSet te, bool draw_val = true);

SingleLabelSplit split_single_label(const TaskConfig& t, const std::string& dataset) {
  TaskConfig base = t;
  base.dataset = dataset;
  return split_loaded(t, load_set(base, true), load_set(base, false));
}

SingleLabelSplit split_loaded(const TaskConfig& t, data::ImageSet tr, data::ImageSet te, bool draw_val) {
  SingleLabelSplit r;
  r.tr = std::move(tr);
  r.te = std::move(te);
  r.tr_orig.resize(size_t(r.tr.n));
  r.te_orig.resize(size_t(r.te.n));
  for (int64_t i = 0; i < r.tr.n; ++i) r.tr_orig[size_t(i)] = i;
  for (int64_t i = 0; i < r.te.n; ++i) r.te_orig[size_t(i)] = i;
  if (!t.classes.empty()) {
    r.tr_orig = data::indices_of_classes(r.tr.labels, t.classes);
    r.te_orig = data::indices_of_classes(r.te.labels, t.classes);
    r.tr = data::select_classes(r.tr, t.classes);
    r.te = data::select_classes(r.te, t.classes);
  }
  const int64_t nc = r.tr.num_classes;
  if (!draw_val) {  // a validation set of its own: train keeps every image
    std::vector<int64_t> all(size_t(r.tr.n));
    for (int64_t i = 0; i < r.tr.n; ++i) all[size_t(i)] = i;
    r.train_idx = t.train_per_class > 0 ? data::k_per_class(r.tr.labels, nc, t.train_per_class, t.split_seed + 1, all)
                                        : all;
    return r;
  }
  data::Split sp = t.val_per_class > 0 ? data::stratified_split_count(r.tr.labels, nc, t.val_per_class, t.split_seed)
                                       : data::stratified_split(r.tr.labels, nc, t.val_fraction, t.split_seed);
  r.train_idx = t.train_per_class > 0 ? data::k_per_class(r.tr.labels, nc, t.train_per_class, t.split_seed + 1, sp.train)
                                      : sp.train;
  r.val_idx = sp.val;
  return r;
}

Task mosaic_task(const TaskConfig& t) {
  SingleLabelSplit s = split_single_label(t, "fashion-mnist");
  const int64_t cells = t.mosaic_grid * t.mosaic_grid;
  auto mosaics = [&](const data::ImageSet& tiles, const std::vector<int64_t>& pool, int64_t count, uint64_t seed) {
    data::MosaicOptions o;
    o.grid = t.mosaic_grid;
    o.fill = t.mosaic_fill;
    o.seed = seed;
    o.pool = pool;
    o.count = count > 0 ? count : std::max<int64_t>(1, int64_t(pool.size()) / cells);
    return std::make_shared<const data::ImageSet>(data::make_mosaics(tiles, o));
  };
  std::vector<int64_t> all_test(size_t(s.te.n));
  for (int64_t i = 0; i < s.te.n; ++i) all_test[size_t(i)] = i;
  Task task;
  task.multi_label = true;
  task.num_classes = s.tr.num_classes;
  task.class_names = s.tr.class_names;
  task.train = mosaics(s.tr, s.train_idx, t.train_images, t.split_seed + 2);
  task.val = mosaics(s.tr, s.val_idx, t.val_images, t.split_seed + 3);
  task.test = mosaics(s.te, all_test, t.test_images, t.split_seed + 4);
  task.train_index = pick(s.tr_orig, s.train_idx);
  task.val_index = pick(s.tr_orig, s.val_idx);
  task.test_index = s.te_orig;
  return task;
}

Task voc_task(const TaskConfig& t) {
  data::VocOptions o;
  o.height = o.width = t.load_size > 0 ? t.load_size : int64_t(std::lround(double(t.image_size) / 0.875));
  Task task;
  task.multi_label = true;
  data::ImageSet tr = data::load_voc2007(t.root, "train", o);
  std::vector<int64_t> idx(size_t(tr.n));
  for (int64_t i = 0; i < tr.n; ++i) idx[size_t(i)] = i;
  if (t.train_images > 0 && t.train_images < tr.n) {  // a random subset: a low-label task
    data::SampleRng rng(t.split_seed, 0, 0, 0x766f0000u);
    for (int64_t i = tr.n - 1; i > 0; --i) std::swap(idx[size_t(i)], idx[size_t(rng.randint(0, i))]);
    idx.resize(size_t(t.train_images));
    std::sort(idx.begin(), idx.end());
    tr = data::subset(tr, idx);
  }
  task.train_index = idx;
  task.train = std::make_shared<const data::ImageSet>(std::move(tr));
  task.val = std::make_shared<const data::ImageSet>(data::load_voc2007(t.root, "val", o));
  task.test = std::make_shared<const data::ImageSet>(data::load_voc2007(t.root, "test", o));
  for (int64_t i = 0; i < task.val->n; ++i) task.val_index.push_back(i);
  for (int64_t i = 0; i < task.test->n; ++i) task.test_index.push_back(i);
  task.num_classes = task.train->num_classes;
  task.class_names = task.train->class_names;
  return task;
}

}  // namespace

std::string Task::digest() const {
  if (!loaded_digest.empty()) return loaded_digest;
  Digest d;
  for (auto* set : {train.get(), val.get(), test.get()}) {
    BISSL_CHECK(set, "task: a split is missing (load the task with load_task)");
    set->add_to(d);
  }
  return d.text();
}

namespace {

// folder / list: the files' splits, decoded at one size and channel count.
Task own_images_task(const TaskConfig& t) {
  FileLists f = list_files(t);
  data::ImageSet tr = decode_split(f.train, t, t.channels, 0, 0);
  data::ImageSet te = decode_split(f.test, t, tr.c, tr.h, tr.w);
  SingleLabelSplit s = split_loaded(t, std::move(tr), std::move(te), /*draw_val=*/!f.has_val);
  Task task;
  task.num_classes = s.tr.num_classes;
  task.class_names = s.tr.class_names;
  task.train = std::make_shared<const data::ImageSet>(data::subset(s.tr, s.train_idx));
  if (f.has_val) {
    data::ImageSet va = decode_split(f.val, t, s.tr.c, s.tr.h, s.tr.w);
    if (t.classes.empty()) {
      for (int64_t i = 0; i < va.n; ++i) task.val_index.push_back(i);
      task.val = std::make_shared<const data::ImageSet>(std::move(va));
    } else {
      task.val_index = data::indices_of_classes(va.labels, t.classes);
      task.val = std::make_shared<const data::ImageSet>(data::select_classes(va, t.classes));
    }
  } else {
    task.val = std::make_shared<const data::ImageSet>(data::subset(s.tr, s.val_idx));
    task.val_index = pick(s.tr_orig, s.val_idx);
  }
  task.test = std::make_shared<const data::ImageSet>(std::move(s.te));
  task.train_index = pick(s.tr_orig, s.train_idx);
  task.test_index = s.te_orig;
  return task;
}

Task load_splits(const TaskConfig& t) {
  if (t.dataset == "fashion-mnist-mosaic") return mosaic_task(t);
  if (t.dataset == "voc2007") return voc_task(t);
  if (t.dataset == "folder" || t.dataset == "list") return own_images_task(t);
  SingleLabelSplit s = split_single_label(t, t.dataset);
  Task task;
  task.num_classes = s.tr.num_classes;
  task.class_names = s.tr.class_names;
  task.train = std::make_shared<const data::ImageSet>(data::subset(s.tr, s.train_idx));
  task.val = std::make_shared<const data::ImageSet>(data::subset(s.tr, s.val_idx));
  task.test = std::make_shared<const data::ImageSet>(std::move(s.te));
  task.train_index = pick(s.tr_orig, s.train_idx);
  task.val_index = pick(s.tr_orig, s.val_idx);
  task.test_index = s.te_orig;
  return task;
}

}  // namespace

Task load_task(const TaskConfig& t) {
  Task task = load_splits(t);
  task.loaded_digest = task.digest();
  return task;
}

void save_task_splits(const Task& task, const TaskConfig& t, const std::string& dir) {
  std::string what = str(t.dataset, " classes [");
  for (size_t i = 0; i < t.classes.size(); ++i) what += (i ? "," : "") + std::to_string(t.classes[i]);
  what += str("], split_seed ", t.split_seed);
  std::string tr = "training-file indices of the labelled train split; ", va = "training-file indices of the validation split; ",
              te = "test-file indices of the test split; ";
  if (t.dataset == "fashion-mnist-mosaic") {
    what += str(", ", t.mosaic_grid, "x", t.mosaic_grid, " mosaics, fill ", t.mosaic_fill);
    tr = "training-file indices of the tiles of the train mosaics; ";
    va = "training-file indices of the tiles of the validation mosaics; ";
    te = "test-file indices of the tiles of the test mosaics; ";
  } else if (t.dataset == "folder" || t.dataset == "list") {
    const std::string order = t.dataset == "folder" ? str("the ", t.folder_order, "-ordered images of ") : "the lines of ";
    const std::string tr_src = t.dataset == "folder" ? "train/" : t.train_list;
    const std::string te_src = t.dataset == "folder" ? "test/" : t.test_list;
    const std::string va_src = t.dataset == "folder" ? "val/" : t.val_list;
    std::error_code ec;
    const bool own_val = t.dataset == "list" ? !t.val_list.empty()
                                             : std::filesystem::is_directory(std::filesystem::path(t.root) / "val", ec);
    tr = "positions among " + order + tr_src + " of the labelled train split; ";
    va = own_val ? "positions among " + order + va_src + " of the validation split; "
                 : "positions among " + order + tr_src + " of the validation split; ";
    te = "positions among " + order + te_src + " of the test split; ";
  } else if (t.dataset == "voc2007") {
    tr = "positions in ImageSets/Main/train.txt of the train split; ";
    va = "positions in ImageSets/Main/val.txt (all of it); ";
    te = "positions in ImageSets/Main/test.txt (all of it); ";
  }
  data::save_indices(dir + "/train.txt", task.train_index, tr + what);
  data::save_indices(dir + "/val.txt", task.val_index, va + what);
  data::save_indices(dir + "/test.txt", task.test_index, te + what);
}

data::ImageSet concat_unlabelled(std::shared_ptr<const data::ImageSet> a, std::shared_ptr<const data::ImageSet> b) {
  BISSL_CHECK(a->h == b->h && a->w == b->w && a->c == b->c, "mix: expected images of one size, found ", a->h, "x",
              a->w, "x", a->c, " and ", b->h, "x", b->w, "x", b->c);
  data::ImageSet r = data::concat_images(std::move(a), std::move(b));
  r.labels.assign(size_t(r.n), data::kNoLabel);
  return r;
}

data::ViewConfig downstream_train_view(const TaskConfig& t, int64_t channels) {
  data::ViewConfig v = data::finetune_train_view(t.image_size, channels);
  v.scale = {t.crop_scale.at(0), t.crop_scale.at(1)};
  v.ratio = {t.crop_ratio.at(0), t.crop_ratio.at(1)};
  v.flip_p = t.flip;
  v.interp = t.train_interp == "bicubic" ? data::Interp::Bicubic : data::Interp::Bilinear;
  return data::normalized(v, {t.norm_mean, t.norm_std}, channels);
}

data::ViewConfig downstream_eval_view(const TaskConfig& t, int64_t channels) {
  return data::normalized(data::eval_view(t.image_size, channels), {t.norm_mean, t.norm_std}, channels);
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
  // Several ranks: each builds its block of every batch (batch stays the
  // whole job's); the trainers reduce the gradients of the ranks' shares.
  const dist::Comm& c = dist::group(dist::current_group());
  lo.rank = c.rank(), lo.world = c.size();
  return lo;
}

data::LoaderOptions keep_short_batches(data::LoaderOptions lo, int64_t devices) {
  if (devices <= 0) return lo;
  lo.drop_last = false;
  lo.epoch_multiple = devices;
  lo.min_last = 2 * devices;
  return lo;
}

namespace {

data::LoaderOptions with_views(data::LoaderOptions lo, std::vector<data::ViewConfig> views) {
  lo.views = std::move(views);
  return lo;
}

}  // namespace



LoaderPretextStream::LoaderPretextStream(std::shared_ptr<const data::ImageSet> set, const pretrain::Config& pc,
                                         int64_t batch, uint64_t seed, int workers, Device dev, int64_t devices)
    : LoaderStream(set,
                   keep_short_batches(with_views(train_loader_options(batch, seed, workers, dev), pretrain::pretext_views(pc, set->c)),
                                      devices),
                   "pretext stream"),
      seed_(seed) {
  devices_ = devices;
}

ssl::SslBatch LoaderPretextStream::from(const data::Batch& b, uint64_t draw) const {
  ssl::SslBatch s;
  s.view1 = b.views[0];
  if (b.views.size() > 1) s.view2 = b.views[1];
  s.seed = seed_ * 1000003ull + uint64_t(b.epoch) * 100003ull + uint64_t(b.step);  // MAE's masks
  if (draw > 0) s.seed += draw * 0x9E3779B97F4A7C15ull;  // a fresh draw masks anew too
  s.ghost = ghost_of(b.global_rows);
  return s;
}

ssl::SslBatch LoaderPretextStream::next_in_epoch() { return from(next_batch(), 0); }

ssl::SslBatch LoaderPretextStream::first_of_epoch(int64_t epoch, uint64_t draw) {
  data::Batch b = loader_.make_batch(epoch, 0, draw);
  loader_.to_device(b);
  return from(b, draw);
}

LoaderDownstreamStream::LoaderDownstreamStream(std::shared_ptr<const data::ImageSet> set, const TaskConfig& t,
                                               int64_t batch, uint64_t seed, int workers, Device dev,
                                               int64_t devices)
    : LoaderStream(set,
                   keep_short_batches(
                       with_views(train_loader_options(batch, seed, workers, dev), {downstream_train_view(t, set->c)}),
                       devices),
                   "downstream stream") {
  devices_ = devices;
}

bilevel::DownstreamBatch LoaderDownstreamStream::next_in_epoch() {
  data::Batch b = next_batch();
  return {b.views[0], b.targets.defined() ? b.targets : b.labels, ghost_of(b.global_rows)};
}

}  // namespace bissl::stages
