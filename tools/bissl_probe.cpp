// bissl-probe: how good are a backbone's frozen features? Extracts features
// (eval mode, eval view) of a labelled dataset's train and test split, then
//   - trains a linear classifier on them (standardised features, SGD with
//     momentum and cosine decay, cross-entropy) and reports test top-1;
//   - reports weighted kNN top-1 (cosine similarity, k = 20, weights
//     exp(sim / 0.07), as in InstDisc/DINO).
// Without --weights the backbone is randomly initialised: the baseline.
//   bissl-probe --config configs/pretrain_fashion_mnist.toml --weights runs/x/backbone.safetensors
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "data/augment.h"
#include "data/datasets.h"
#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/optim/optimizer.h"
#include "engine/optim/schedule.h"
#include "models/factory.h"
#include "models/resnet.h"
#include "models/torch_state.h"
#include "tools/common/files.h"
#include "tools/common/tool_main.h"
#include "tools/pretrain/build.h"
#include "tools/pretrain/config.h"

using namespace bissl;

namespace {

struct Features {
  Tensor x;  // [N, D] f32 on the CPU
  Tensor y;  // [N] i64
};

Features extract(models::ResNet& net, const data::ImageSet& set, int64_t image_size, const data::Normalization& norm,
                 Device dev, int workers) {
  data::LoaderOptions lo;
  lo.batch_size = 512;
  lo.shuffle = false;
  lo.workers = workers;
  lo.views = {data::normalized(data::eval_view(image_size, set.c), norm, set.c)};
  lo.device = dev;
  data::Loader loader(std::make_shared<const data::ImageSet>(set), lo);
  std::vector<Tensor> xs, ys;
  data::Batch b;
  NoGradGuard ng;
  while (loader.next(b)) {
    xs.push_back(net.forward_features(b.views[0]).to(Device::CPU));
    ys.push_back(b.labels.to(Device::CPU));
  }
  return {concat(xs, 0), concat(ys, 0)};
}

double top1(const Tensor& logits, const Tensor& y) {
  auto pred = max(logits, 1).second.to_vector();
  auto lab = y.to_vector();
  int64_t ok = 0;
  for (size_t i = 0; i < lab.size(); ++i) ok += pred[i] == lab[i];
  return double(ok) / double(lab.size());
}

double linear_probe(const Features& tr, const Features& te, int64_t classes, int epochs, uint64_t seed) {
  // Standardise with training statistics.
  Tensor mu = mean(tr.x, {0}, true), sd = add(sqrt(var(tr.x, {0}, 0, true)), 1e-6);
  Tensor xtr = div(sub(tr.x, mu), sd), xte = div(sub(te.x, mu), sd);
  int64_t n = xtr.shape()[0], d = xtr.shape()[1], bs = 256;
  Tensor w = zeros({classes, d}), b = zeros({classes});
  w.requires_grad_(), b.requires_grad_();
  optim::SGD opt({w, b}, 0.1, 0.9, 1e-4);
  int64_t steps_per_epoch = n / bs, total = int64_t(epochs) * steps_per_epoch;
  optim::WarmupCosine sched{0.1, 0, total, 0.0};
  Generator g(seed);
  int64_t step = 0;
  for (int e = 0; e < epochs; ++e) {
    // A Philox permutation of the rows per epoch.
    Tensor keys = rand({n}, g, DType::F64);
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
    auto kv = keys.to_vector();
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t c) { return kv[size_t(a)] < kv[size_t(c)]; });
    for (int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
      Tensor idx = from_ints(std::vector<int64_t>(order.begin() + s * bs, order.begin() + (s + 1) * bs), {bs});
      Tensor loss = cross_entropy(linear(index_select(xtr, 0, idx), w, b), index_select(tr.y, 0, idx));
      opt.zero_grad();
      backward(loss);
      opt.lr = sched.lr_at(step);
      opt.step();
    }
  }
  NoGradGuard ng;
  return top1(linear(xte, w, b), te.y);
}

double knn(const Features& tr, const Features& te, int64_t classes, int64_t k = 20, double tau = 0.07) {
  NoGradGuard ng;
  Tensor a = l2_normalize(tr.x, 1), q = l2_normalize(te.x, 1);
  auto ytr = tr.y.to_vector();
  int64_t nq = q.shape()[0], ok = 0;
  auto yte = te.y.to_vector();
  for (int64_t q0 = 0; q0 < nq; q0 += 1024) {
    int64_t q1 = std::min(nq, q0 + 1024);
    Tensor sim = matmul(slice(q, 0, q0, q1), a, false, true);  // [b, Ntrain]
    auto sv = sim.to_vector();
    int64_t ntr = a.shape()[0];
    for (int64_t i = 0; i < q1 - q0; ++i) {
      std::vector<int64_t> idx(static_cast<size_t>(ntr));
      for (int64_t j = 0; j < ntr; ++j) idx[size_t(j)] = j;
      const double* row = sv.data() + i * ntr;
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t x, int64_t y) { return row[x] > row[y]; });
      std::vector<double> votes(static_cast<size_t>(classes), 0.0);
      for (int64_t j = 0; j < k; ++j) votes[size_t(ytr[size_t(idx[size_t(j)])])] += std::exp(row[idx[size_t(j)]] / tau);
      int64_t best = std::max_element(votes.begin(), votes.end()) - votes.begin();
      ok += double(best) == yte[size_t(q0 + i)];
    }
  }
  return double(ok) / double(nq);
}

}  // namespace

int main(int argc, char** argv) {
  std::string weights, out;
  int epochs = 30;
  int64_t train_limit = 0, test_limit = 0;
  uint64_t seed = 0;
  return tool_main<pretrain::Config>(
      argc, argv, "bissl-probe", "linear-probe and kNN accuracy of a backbone's frozen features (--config: the pretraining config: dataset, architecture)",
      pretrain::load_config,
      [&](CLI::App& app, ToolFlags<pretrain::Config>&) {
        app.add_option("--weights", weights, "backbone.safetensors (PyTorch layout); none = random init");
        app.add_option("--epochs", epochs, "linear classifier epochs");
        app.add_option("--seed", seed, "seed for the random init and the classifier");
        app.add_option("--out", out, "write the result JSON here too");
        app.add_option("--train-limit", train_limit, "use the first N training images (0 = all)");
        app.add_option("--test-limit", test_limit, "use the first N test images (0 = all)");
      },
      [&](pretrain::Config& c) {
        auto t0 = std::chrono::steady_clock::now();
        BISSL_CHECK(!c.model.is_vit(), "bissl-probe: expected a ResNet backbone, found '", c.model.arch, "'");
        BISSL_CHECK(c.dataset == "fashion-mnist" || c.dataset == "mnist" || c.dataset == "cifar10" || c.dataset == "cifar100",
                    "bissl-probe: expected a labelled dataset (fashion-mnist, mnist, cifar10, cifar100), found '", c.dataset, "'");
        auto load = [&](bool train) {
          if (c.dataset == "fashion-mnist") return data::load_fashion_mnist(c.root, train);
          if (c.dataset == "mnist") return data::load_mnist(c.root, train);
          if (c.dataset == "cifar10") return data::load_cifar10(c.root, train);
          return data::load_cifar100(c.root, train);
        };
        data::ImageSet tr = load(true), te = load(false);
        auto prefix = [](data::ImageSet& s, int64_t n) {
          if (n <= 0 || n >= s.n) return;
          std::vector<int64_t> idx(static_cast<size_t>(n));
          for (int64_t i = 0; i < n; ++i) idx[size_t(i)] = i;
          s = data::subset(s, idx);
        };
        prefix(tr, train_limit);
        prefix(te, test_limit);
        Generator g(seed);
        int64_t fdim = 0;
        auto bb = models::make_backbone(c.model, tr.c, c.image_size, g, fdim);  // the model factory every stage uses
        auto& net = dynamic_cast<models::ResNet&>(*bb);
        if (!weights.empty()) models::load_torch_state(net, weights, /*strict=*/false);
        Device dev = c.device == "cuda" || (c.device == "auto" && cuda_device_count() > 0) ? Device::CUDA : Device::CPU;
        net.to(dev);
        net.eval();
        // The views the backbone was pretrained on (data.normalize; its file's statistics).
        const data::Normalization norm = pretrain::normalization_for(c, weights, tr.c);
        Features ftr = extract(net, tr, c.image_size, norm, dev, c.workers),
                 fte = extract(net, te, c.image_size, norm, dev, c.workers);
        double knn_acc = knn(ftr, fte, tr.num_classes);
        double lin_acc = linear_probe(ftr, fte, tr.num_classes, epochs, seed);
        nlohmann::json r = {{"weights", weights.empty() ? "random init" : weights},
                            {"linear_top1", lin_acc},
                            {"knn_top1", knn_acc},
                            {"train_images", tr.n},
                            {"test_images", te.n},
                            {"feature_dim", net.feature_dim()},
                            {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
                            {"backend", backend_summary()}};
        std::cout << r.dump(1) << std::endl;
        if (!out.empty()) files::write_json_atomic(out, r);
      });
}
