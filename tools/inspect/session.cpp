#include "tools/inspect/session.h"

#include <algorithm>
#include <sstream>
#include <unordered_map>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "models/torch_state.h"

namespace bissl::inspect {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

std::string some_names(const std::vector<std::string>& names, size_t shown = 5) {
  std::string r;
  for (size_t i = 0; i < names.size() && i < shown; ++i) r += (i ? ", " : "") + quote(names[i]);
  if (names.size() > shown) r += str(", ... (", names.size() - shown, " more)");
  return r.empty() ? "(none)" : r;
}

Tensor on(const Tensor& t, Device d) { return t.device() == d ? t : t.to(d); }

Tensor as_dtype(const Tensor& t, DType d) {
  NoGradGuard ng;
  return t.dtype() == d ? t : cast(t, d);
}

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v), r;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) r += ',';
    r += s[i];
  }
  return r;
}

int64_t count(const nn::StateDict& sd) {
  int64_t n = 0;
  for (auto& [k, t] : sd) n += t.numel();
  return n;
}

// The union of the weight files, by name.
struct WeightFiles {
  struct Item {
    Tensor t;
    std::string path;
  };
  std::unordered_map<std::string, Item> items;
  std::vector<std::string> order;  // file order, for messages
  std::vector<std::string> paths;

  void add(const std::string& path) {
    if (path.empty()) return;
    io::SafetensorsFile f = io::load_safetensors(path);
    for (auto& [k, t] : f.tensors) {
      auto it = items.find(k);
      BISSL_CHECK(it == items.end(), "tensor ", quote(k), " is in both ", quote(it->second.path), " and ",
                  quote(path), "; each name may come from one file only");
      items.emplace(k, Item{t, path});
      order.push_back(k);
    }
    paths.push_back(path);
  }
  std::string where() const {
    std::string r;
    for (auto& p : paths) r += (r.empty() ? "" : " + ") + quote(p);
    return r;
  }
};

// Loads m's state from `files`: every tensor m expects must be there unless
// optional(name) says it may be left at its value; the names taken go into
// `used`.
void take(nn::Module& m, const WeightFiles& files, const std::string& what,
          const std::function<bool(const std::string&)>& optional, std::set<std::string>& used) {
  io::NamedTensors subset;
  auto sd = m.state_dict();
  for (auto& [k, t] : sd) {
    auto it = files.items.find(k);
    if (it == files.items.end()) {
      if (optional(k)) continue;
      throw Error(str(files.where(), ": no tensor ", quote(k), " (", what, " expects ", sd.size(),
                      " tensors; the file holds ", files.order.size(), ": ", some_names(files.order), ")"));
    }
    subset.emplace_back(k, it->second.t);
    used.insert(k);
  }
  try {
    models::load_torch_state_dict(m, subset, /*strict=*/false);
  } catch (const Error& e) {
    throw Error(str(files.where(), ": ", e.what()));
  }
}

// The tensors of `files` nothing took: a note, or an error with strict.
void report_unused(const WeightFiles& files, const std::set<std::string>& used, const std::string& by, bool strict,
                   std::vector<std::string>& notes) {
  std::vector<std::string> unused;
  for (auto& k : files.order)
    if (!used.count(k)) unused.push_back(k);
  if (unused.empty()) return;
  std::string msg = str(files.where(), ": ", unused.size(), " tensor(s) not used by ", by, ": ", some_names(unused));
  BISSL_CHECK(!strict, msg, " (--strict)");
  notes.push_back(msg);
}

}  // namespace

// ---------------------------------------------------------------- batches ----

std::vector<int64_t> parse_mlp_spec(const std::string& spec, const char* flag) {
  std::vector<int64_t> w;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, '-')) {
    char* end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    BISSL_CHECK(!item.empty() && end && *end == 0 && v > 0, flag, ": expected widths like 256-256-256, found ",
                quote(spec));
    w.push_back(v);
  }
  BISSL_CHECK(!w.empty(), flag, ": expected widths like 256-256-256, found ", quote(spec));
  for (size_t i = 1; i + 1 < w.size(); ++i)
    BISSL_CHECK(w[i] == w[0], flag, ": hidden widths must be equal (one hidden size per MLP), found ", quote(spec));
  return w;
}

Batch load_batch(const std::string& path) {
  io::SafetensorsFile f = io::load_safetensors(path);
  Batch b;
  bool nchw = f.has("images"), nhwc = f.has("images_nhwc");
  BISSL_CHECK(nchw || nhwc, quote(path), ": expected a tensor \"images\" (NCHW) or \"images_nhwc\", found neither");
  BISSL_CHECK(!(nchw && nhwc), quote(path), ": holds both \"images\" and \"images_nhwc\"; keep one");
  Tensor im = f.get(nchw ? "images" : "images_nhwc");
  BISSL_CHECK(im.dim() == 4 && (is_floating(im.dtype()) || im.dtype() == DType::BF16), quote(path),
              ": expected floating images of rank 4, found ", dtype_name(im.dtype()), " ", shape_str(im.shape()));
  {
    NoGradGuard ng;
    if (im.dtype() == DType::BF16) im = cast(im, DType::F32);  // bf16 is storage only on the CPU
    b.images = nchw ? permute(im, {0, 2, 3, 1}) : im;
  }
  if (f.has("labels")) {
    b.labels = f.get("labels");
    BISSL_CHECK(b.labels.dtype() == DType::I64 && b.labels.dim() == 1, quote(path),
                ": expected \"labels\" i64 [N], found ", dtype_name(b.labels.dtype()), " ",
                shape_str(b.labels.shape()));
  }
  if (f.has("mask")) b.mask = f.get("mask");
  return b;
}

Batch random_batch(int64_t n, int64_t size, int64_t c, int64_t classes, int64_t num_patches, double mask_ratio,
                   uint64_t seed) {
  Generator g(seed);
  Batch b;
  b.images = randn({n, size, size, c}, g);
  if (classes > 0) b.labels = randint({n}, 0, classes, g);
  if (num_patches > 0) b.mask = ssl::mae_random_masking(n, num_patches, mask_ratio, g).mask;
  return b;
}

// ---------------------------------------------------------------- session ----

Session::Session(const ModelOptions& m, const LossOptions& l, const RunOptions& r) : mopt(m), lopt(l), ropt(r) {
  const std::string& ls = lopt.loss;
  BISSL_CHECK(ls == "ce" || ls == "ntxent" || ls == "byol" || ls == "mae",
              "--loss: expected ce, ntxent, byol or mae, found ", quote(ls));
  BISSL_CHECK(ls != "mae" || mopt.is_vit(), "--loss mae needs a ViT encoder (--model vit_*), found ", mopt.model());
  BISSL_CHECK(ropt.mode == "train" || ropt.mode == "eval", "--mode: expected train or eval, found ",
              quote(ropt.mode));
  if (ropt.device == Device::CUDA)
    BISSL_CHECK(cuda_device_count() > 0, "--device cuda: no CUDA device here (", backend_summary(), ")");

  // Classes: ce reads them from the weights when not given.
  if (ls == "ce") {
    num_classes_ = mopt.num_classes;
    if (num_classes_ < 0) {
      num_classes_ = 10;
      if (!ropt.weights.empty()) {
        io::SafetensorsFile f = io::load_safetensors(ropt.weights);
        const char* key = mopt.is_vit() ? "head.weight" : "fc.weight";
        if (f.has(key) && f.get(key).dim() == 2) num_classes_ = f.get(key).shape()[0];
      }
    }
    BISSL_CHECK(num_classes_ > 0, "--loss ce needs a classifier: --num-classes > 0, found ", num_classes_);
  } else {
    BISSL_CHECK(mopt.num_classes <= 0, "--loss ", ls, " takes the backbone's pooled features: --num-classes must be 0, found ",
                mopt.num_classes);
    num_classes_ = 0;
  }

  Generator g(ropt.seed);
  build(g);
  // The dtype before loading, so an f64 file loads into an f64 model without
  // a detour through f32; the device after.
  backbone_->to(ropt.dtype);
  if (head_) head_->to(ropt.dtype);
  load_weights();
  if (ropt.device != Device::CPU) {
    backbone_->to(ropt.device);
    if (head_) head_->to(ropt.device);
  }
  bool train = ropt.mode == "train";
  backbone_->train(train);
  if (head_) head_->train(train);

  backbone_params_ = backbone_->named_parameters();
  if (head_)
    for (auto& [k, t] : head_->named_parameters())
      if (t.requires_grad()) head_params_.emplace_back(k, t);
}

void Session::build(Generator& g) {
  const std::string& ls = lopt.loss;
  // The specs as the factory takes them: the resolved position embeddings,
  // no stochastic depth (the same loss on every call), the head widths.
  bspec_ = mopt.backbone;
  BISSL_CHECK(mopt.pos_embed == "auto" || mopt.pos_embed == "learned" || mopt.pos_embed == "sincos",
              "--pos-embed: expected auto, learned or sincos, found ", quote(mopt.pos_embed));
  bspec_.pos_embed = mopt.pos_embed != "auto" ? mopt.pos_embed : ls == "mae" ? "sincos" : "learned";
  bspec_.drop_path = 0.0;
  schema::validate(bspec_, "backbone");  // the flags were checked when parsed; this is for callers in code
  hspec_ = lopt.heads;
  hspec_.name = ls == "ntxent" ? "simclr" : ls;
  hspec_.decoder_pos_embed = bspec_.pos_embed;  // the decoder's follow the encoder's
  if (ls == "ntxent" || ls == "byol") {
    auto p = parse_mlp_spec(lopt.projector, "--projector");
    hspec_.proj_hidden = p.size() > 1 ? p[0] : p.back();
    hspec_.proj_out = p.back();
    hspec_.proj_layers = int64_t(p.size());
  }
  if (ls == "byol") {
    auto q = parse_mlp_spec(lopt.predictor, "--predictor");
    BISSL_CHECK(q.back() == hspec_.proj_out,
                "--predictor: BYOL's predictor maps the projection back to its size, so its last width must be ",
                hspec_.proj_out, " (the projector's), found ", q.back());
    hspec_.pred_hidden = q.size() > 1 ? q[0] : q.back();
    hspec_.pred_layers = int64_t(q.size());
  }

  image_size_ = mopt.image_size > 0 ? mopt.image_size : bspec_.is_vit() ? 224 : 32;
  int64_t& feat = feat_;
  backbone_ = models::make_backbone(bspec_, mopt.in_channels, image_size_, g, feat, num_classes_);
  if ((vit_ = dynamic_cast<models::ViT*>(backbone_.get()))) vcfg_ = vit_->config();
  if (ls == "ce") return;
  objective_ = ssl::make_objective(hspec_, bspec_, *backbone_, mopt.in_channels, image_size_, feat, g,
                                   /*target_seed=*/0);
  simclr_ = dynamic_cast<ssl::SimCLR*>(objective_.get());
  byol_ = dynamic_cast<ssl::BYOL*>(objective_.get());
  if (auto* mae = dynamic_cast<ssl::MaeObjective*>(objective_.get())) decoder_ = &mae->decoder();
  head_ = decoder_ ? static_cast<nn::Module*>(decoder_) : objective_.get();
}

// Fixed sin-cos position embeddings are buffers computed from the sizes:
// loaded (and checked) when a file has them, recomputed when it does not.
bool Session::computed_if_absent(const std::string& k) const {
  return ends_with(k, "num_batches_tracked") || (k == "pos_embed" && vcfg_.sincos_pos_embed && vit_) ||
         (k == "decoder_pos_embed" && decoder_ && vcfg_.sincos_pos_embed);
}

void Session::load_weights() {
  if (ropt.weights.empty()) {
    BISSL_CHECK(ropt.head_weights.empty(), "--head-weights needs --weights (the backbone's) too");
    notes_.push_back(str("no --weights: random init from --seed ", ropt.seed));
    return;
  }
  WeightFiles files;
  files.add(ropt.weights);
  files.add(ropt.head_weights);
  std::set<std::string> used;

  auto take_into = [&](nn::Module& m, const std::string& what,
                       const std::function<bool(const std::string&)>& optional) {
    take(m, files, what, [&](const std::string& k) { return computed_if_absent(k) || (optional && optional(k)); },
         used);
  };

  take_into(*backbone_, mopt.model(), nullptr);
  if (simclr_) take_into(*simclr_, "the ntxent head", nullptr);
  if (decoder_) take_into(*decoder_, "the mae decoder", nullptr);
  if (byol_) {
    bool has_target = false;
    for (auto& k : files.order)
      if (starts_with(k, "backbone_target.") || starts_with(k, "projector_target.")) has_target = true;
    take_into(*byol_, "the byol heads", [&](const std::string& k) {
      return !has_target && (starts_with(k, "backbone_target.") || starts_with(k, "projector_target."));
    });
    if (!has_target) {
      byol_->reset_target(*backbone_);
      notes_.push_back("byol: no backbone_target.* / projector_target.* in the files: the target is a copy of the online network");
    }
  }

  report_unused(files, used, mopt.model() + " + " + lopt.loss, ropt.strict, notes_);
}

int64_t Session::num_patches() const { return vit_ ? vit_->num_patches() : 0; }

void Session::set_batch(const Batch& b) {
  BISSL_CHECK(b.images.defined() && b.images.dim() == 4, "batch: expected images [N, H, W, C], found ",
              b.images.defined() ? shape_str(b.images.shape()) : std::string("none"));
  const Shape& s = b.images.shape();
  int64_t n = s[0];
  BISSL_CHECK(s[3] == mopt.in_channels, "batch: the images have ", s[3], " channels (NHWC ", shape_str(s),
              "; NCHW ", shape_str({s[0], s[3], s[1], s[2]}), "), the model expects ", mopt.in_channels,
              " (--in-channels)");
  if (vit_)
    BISSL_CHECK(s[1] == vcfg_.image_size && s[2] == vcfg_.image_size, "batch: the images are ", s[1], "x", s[2],
                ", the ViT expects ", vcfg_.image_size, "x", vcfg_.image_size, " (--image-size)");
  image_size_ = s[1];
  batch_ = Batch{};
  batch_.images = on(as_dtype(b.images, ropt.dtype), ropt.device);
  const std::string& ls = lopt.loss;
  if (ls == "ce") {
    BISSL_CHECK(b.labels.defined(), "batch: --loss ce needs \"labels\" (i64 [N]) in the input file");
    BISSL_CHECK(b.labels.dtype() == DType::I64 && b.labels.shape() == Shape{n}, "batch: expected labels i64 [", n,
                "], found ", dtype_name(b.labels.dtype()), " ", shape_str(b.labels.shape()));
    for (int64_t i = 0; i < n; ++i) {
      int64_t y = int64_t(b.labels.flat(i));
      BISSL_CHECK(y >= 0 && y < num_classes_, "batch: label ", y, " at ", i, " is outside [0, ", num_classes_, ")");
    }
    batch_.labels = on(b.labels, ropt.device);
  }
  if (ls == "ntxent" || ls == "byol")
    BISSL_CHECK(n >= 2 && n % 2 == 0, "batch: --loss ", ls,
                " pairs the two halves of the batch (image i with image i + N/2): expected an even N >= 2, found ", n);
  if (ls == "mae") {
    Tensor mask = b.mask;
    if (!mask.defined()) {
      Generator g(ropt.seed);
      mask = ssl::mae_random_masking(n, num_patches(), hspec_.mask_ratio, g).mask;
      notes_.push_back(str("mae: no \"mask\" in the batch: drew one from --seed ", ropt.seed, " (ratio ",
                           hspec_.mask_ratio, "); it is written to the output"));
    }
    BISSL_CHECK(mask.dim() == 2 && mask.shape()[0] == n && mask.shape()[1] == num_patches(),
                "batch: expected a mask [", n, ", ", num_patches(), "] (1 masked, 0 visible), found ",
                shape_str(mask.shape()));
    batch_.mask = as_dtype(mask, ropt.dtype);  // mae_loss reads it on the CPU
  }
}

Tensor Session::loss() {
  BISSL_CHECK(batch_.images.defined(), "Session::loss: no batch (call set_batch first)");
  const std::string& ls = lopt.loss;
  const Tensor& x = batch_.images;
  if (ls == "ce") return cross_entropy(backbone_->forward(x), batch_.labels, lopt.label_smoothing);
  if (ls == "mae") {
    Generator g(ropt.seed);
    return ssl::mae_loss(*vit_, *decoder_, x, batch_.mask, g).loss;
  }
  int64_t h = x.shape()[0] / 2;
  ssl::SslBatch b;
  {
    NoGradGuard ng;
    NoForwardADGuard nf;
    b.view1 = slice(x, 0, 0, h);
    b.view2 = slice(x, 0, h, 2 * h);
  }
  b.seed = ropt.seed;
  if (ls == "ntxent") return simclr_->loss(*backbone_, b);
  return byol_->loss(*backbone_, b);
}

std::map<const TensorImpl*, std::string> Session::param_names() const {
  std::map<const TensorImpl*, std::string> r;
  for (auto& [k, t] : backbone_params_) r[t.impl_ptr().get()] = k;
  for (auto& [k, t] : head_params_) r[t.impl_ptr().get()] = k;
  return r;
}

std::string Session::describe() const {
  std::string m;
  if (vit_)
    m = str(mopt.model(), " (", vcfg_.image_size, " px, patch ", vcfg_.patch_size, ", depth ", vcfg_.depth, ", ",
            vcfg_.in_channels, " channels, ", num_classes_, " classes, ", bspec_.pool, " pool, ",
            vcfg_.sincos_pos_embed ? "sincos" : "learned", " pos_embed)");
  else
    m = str(mopt.model(), " (", bspec_.stem, " stem, width ", bspec_.width, ", ", mopt.in_channels, " channels, ",
            num_classes_, " classes)");
  std::string r = str(m, " + ", lopt.loss, ", ", ropt.mode, " mode, ", dtype_name(ropt.dtype), " on ",
                      device_name(ropt.device), "; ", with_commas(count(backbone_params_)), " backbone parameters");
  if (head_) r += str(", ", with_commas(count(head_params_)), " in the head");
  return r;
}

io::NamedTensors Session::torch_weights() const {
  io::NamedTensors r = models::torch_state_dict(*backbone_);
  if (head_)
    for (auto& kv : models::torch_state_dict(*head_)) r.push_back(kv);
  return r;
}

std::shared_ptr<nn::Layer> Session::twin_backbone(const std::string& path) {
  Generator g(ropt.seed);
  int64_t feat = 0;
  std::shared_ptr<nn::Layer> twin = models::make_backbone(bspec_, mopt.in_channels, image_size_, g, feat, num_classes_);
  twin->to(ropt.dtype);
  if (path.empty()) {
    NoGradGuard ng;
    twin->load_state_dict(backbone_->state_dict());  // copies into the twin's own tensors
  } else {
    WeightFiles files;
    files.add(path);
    std::set<std::string> used;
    take(*twin, files, mopt.model(), [&](const std::string& k) { return computed_if_absent(k); }, used);
    report_unused(files, used, mopt.model(), ropt.strict, notes_);
  }
  if (ropt.device != Device::CPU) twin->to(ropt.device);
  twin->train(ropt.mode == "train");
  return twin;
}

// ---------------------------------------------------------------- files ----

std::vector<Tensor> load_param_file(const std::string& path, const nn::StateDict& params, bool strict,
                                    std::vector<std::string>& notes) {
  io::SafetensorsFile f = io::load_safetensors(path);
  std::set<std::string> used;
  std::vector<Tensor> out;
  NoGradGuard ng;
  for (auto& [k, p] : params) {
    BISSL_CHECK(f.has(k), quote(path), ": no tensor ", quote(k), " (one tensor per backbone parameter, ",
                params.size(), " in all; the file holds ", f.tensors.size(), ")");
    Tensor t = f.get(k);
    used.insert(k);
    BISSL_CHECK(is_floating(t.dtype()) || t.dtype() == DType::BF16, quote(path), ": ", quote(k),
                " must be floating, found ", dtype_name(t.dtype()));
    if (p.dim() == 4) {
      Shape oihw = {p.shape()[0], p.shape()[3], p.shape()[1], p.shape()[2]};
      BISSL_CHECK(t.shape() == oihw, quote(path), ": ", quote(k), " has shape ", shape_str(t.shape()),
                  ", expected PyTorch's OIHW ", shape_str(oihw));
      t = models::oihw_to_ohwi(t);
    } else {
      BISSL_CHECK(t.shape() == p.shape(), quote(path), ": ", quote(k), " has shape ", shape_str(t.shape()),
                  ", expected ", shape_str(p.shape()));
    }
    out.push_back(on(as_dtype(t, p.dtype()), p.device()));
  }
  std::vector<std::string> unused;
  for (auto& [k, t] : f.tensors)
    if (!used.count(k)) unused.push_back(k);
  if (!unused.empty()) {
    std::string msg = str(quote(path), ": ", unused.size(), " tensor(s) name no backbone parameter: ", some_names(unused));
    BISSL_CHECK(!strict, msg, " (--strict)");
    notes.push_back(msg);
  }
  return out;
}

Tensor to_torch_layout(const Tensor& t) {
  NoGradGuard ng;
  Tensor c = on(t.detach(), Device::CPU);
  return c.dim() == 4 ? models::ohwi_to_oihw(c) : c.clone();
}

}  // namespace bissl::inspect
