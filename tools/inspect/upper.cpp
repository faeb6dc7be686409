#include "tools/inspect/upper.h"

#include "engine/autograd.h"
#include "engine/ops.h"
#include "models/heads.h"

namespace bissl::inspect {

namespace {

std::string quote(const std::string& s) { return "'" + s + "'"; }

Tensor on(const Tensor& t, DType dtype, Device device) {
  NoGradGuard ng;
  Tensor r = is_floating(t.dtype()) || t.dtype() == DType::BF16 ? (t.dtype() == dtype ? t : cast(t, dtype)) : t;
  return r.device() == device ? r : r.to(device);
}

Tensor f64_vector(const std::vector<double>& v) { return from_vector(v, {int64_t(v.size())}, DType::F64); }
Tensor f64_scalar(double v) { return from_vector({v}, {}, DType::F64); }

void add_named(io::NamedTensors& out, const std::string& prefix, const nn::StateDict& names,
               const std::vector<Tensor>& ts) {
  BISSL_CHECK(ts.size() == names.size(), "upper: ", ts.size(), " tensors for ", names.size(), " names (", prefix, ")");
  for (size_t i = 0; i < ts.size(); ++i) out.emplace_back(prefix + names[i].first, to_torch_layout(ts[i]));
}

std::vector<Tensor> grads_of(const std::vector<Tensor>& params) {
  std::vector<Tensor> r;
  for (auto& p : params) r.push_back(p.grad());
  return r;
}

}  // namespace

bilevel::DownstreamBatch load_downstream_batch(const std::string& path, DType dtype, Device device) {
  io::SafetensorsFile f = io::load_safetensors(path);
  Batch b = load_batch(path);  // images (NCHW or NHWC) and i64 labels, checked
  bilevel::DownstreamBatch db;
  const int64_t n = b.images.shape()[0];
  db.x = on(b.images, dtype, device);
  BISSL_CHECK(b.labels.defined() != f.has("targets"), quote(path),
              ": expected exactly one of \"labels\" (i64 [N], class indices) and \"targets\" (float [N, classes]), "
              "found ", b.labels.defined() ? "both" : "neither");
  if (b.labels.defined()) {
    BISSL_CHECK(b.labels.shape()[0] == n, quote(path), ": ", n, " images but ", b.labels.shape()[0], " labels");
    db.y = on(b.labels, dtype, device);
  } else {
    Tensor t = f.get("targets");
    BISSL_CHECK(t.dim() == 2 && t.shape()[0] == n && (is_floating(t.dtype()) || t.dtype() == DType::BF16), quote(path),
                ": expected \"targets\" float [", n, ", classes], found ", dtype_name(t.dtype()), " ",
                shape_str(t.shape()));
    db.y = on(t, dtype, device);
  }
  return db;
}

UpperOutput run_upper(Session& s, const UpperFiles& files, const bilevel::BilevelOptions& o, bool trace) {
  BISSL_CHECK(s.objective(), "upper: the lower level needs a pretext loss (--loss ntxent, byol or mae), found ",
              s.lopt.loss);
  BISSL_CHECK(o.variant == bilevel::Variant::BiSSL || o.variant == bilevel::Variant::IjDiscarded,
              "upper: --variant must be bissl or ij_discarded (the variants with an upper level), found ",
              bilevel::variant_name(o.variant));
  BISSL_CHECK(s.ropt.mode == "train", "upper: BiSSL runs every forward in train mode (--mode train), found ",
              s.ropt.mode);
  UpperOutput out;
  const DType dtype = s.ropt.dtype;
  const Device device = s.ropt.device;

  // θD, φD and the downstream batch.
  std::shared_ptr<nn::Layer> theta_d = s.twin_backbone(files.weights_d);
  BISSL_CHECK(!files.head_d.empty(), "upper: --head-d (φD: \"weight\" [classes, features], \"bias\" [classes]) is required");
  io::SafetensorsFile hf = io::load_safetensors(files.head_d);
  BISSL_CHECK(hf.has("weight") && hf.get("weight").dim() == 2, quote(files.head_d),
              ": expected \"weight\" [classes, ", s.feature_dim(), "] (a torch.nn.Linear's state dict)");
  const int64_t classes = hf.get("weight").shape()[0];
  Generator g(s.ropt.seed);
  models::LinearHead head(s.feature_dim(), classes, g);
  head.to(dtype);
  {
    io::NamedTensors sd;
    for (auto& [k, t] : hf.tensors) sd.emplace_back(k, t);
    try {
      models::load_torch_state_dict(head, sd, /*strict=*/true);
    } catch (const Error& e) {
      throw Error(str(quote(files.head_d), ": ", e.what(), " (φD maps ", s.feature_dim(), " features to classes)"));
    }
  }
  if (device != Device::CPU) head.to(device);
  head.train(true);
  bilevel::DownstreamBatch db = load_downstream_batch(files.downstream, dtype, device);
  if (db.y.dtype() == DType::I64) {
    Tensor y = db.y.to(Device::CPU);
    for (int64_t i = 0; i < y.numel(); ++i) {
      const int64_t c = int64_t(y.flat(i));
      BISSL_CHECK(c >= 0 && c < classes, quote(files.downstream), ": label ", c, " at ", i, " is outside [0, ",
                  classes, ") (φD has ", classes, " classes)");
    }
  } else {
    BISSL_CHECK(db.y.shape()[1] == classes, quote(files.downstream), ": targets have ", db.y.shape()[1],
                " classes, φD ", classes);
  }

  // The pretext batch as the trainer's SslBatch.
  ssl::SslBatch fixed;
  {
    NoGradGuard ng;
    NoForwardADGuard nf;
    const Tensor& x = s.batch().images;
    if (s.lopt.loss == "mae") {
      fixed.view1 = x;
      out.notes.push_back(str("mae: the pretext loss draws its mask from --seed ", s.ropt.seed,
                              " as the trainer draws it from the batch seed (a \"mask\" in --input is not used)"));
    } else {
      const int64_t h = x.shape()[0] / 2;
      fixed.view1 = slice(x, 0, 0, h);
      fixed.view2 = slice(x, 0, h, 2 * h);
    }
  }
  fixed.seed = s.ropt.seed;

  bilevel::BilevelModels m;
  m.backbone_p = &s.backbone();
  m.backbone_d = theta_d.get();
  m.pretext = s.objective();
  m.head_d = &head;
  BISSL_CHECK(o.reference_devices == 1 || o.variant != bilevel::Variant::BiSSL || m.pretext->can_split(),
              "upper: --reference-devices ", o.reference_devices, " needs a pretext loss with a gathered tensor "
              "(ntxent, byol), found ", s.lopt.loss);
  bilevel::UpperPhase phase(m, o, bilevel::cross_entropy_loss, fixed, /*alternation=*/1);
  phase.keep_unclipped = true;
  phase.trace = true;  // products[0] is H·rhs; the rest are written with `trace`
  for (nn::Module* mod : bilevel::present_modules(m)) mod->zero_grad();
  out.step = phase.step(db, 1);
  const bilevel::UpperStepResult& r = out.step;

  // Names: θ's from the backbone, φD's "weight"/"bias".
  const nn::StateDict& tn = s.backbone_params();
  const nn::StateDict hn = head.named_parameters();
  io::NamedTensors& t = out.tensors;
  t.emplace_back("loss_d", f64_scalar(r.loss_d));
  t.emplace_back("grad_norm", f64_scalar(r.grad_norm));
  if (o.variant == bilevel::Variant::BiSSL) {
    t.emplace_back("loss_p", f64_scalar(r.loss_p));
    add_named(t, "rhs.", tn, r.rhs);
    add_named(t, "head_p.", hn, r.head_p);
    add_named(t, "u.", tn, r.cg.u);
    add_named(t, "hvp_rhs.", tn, r.products.at(0));
    t.emplace_back("cg.residuals", f64_vector(r.cg.residuals));
    t.emplace_back("cg.curvature", f64_vector(r.cg.curvature));
    if (trace)
      for (size_t k = 0; k < r.directions.size(); ++k) {
        add_named(t, str("cg.", k, ".d."), tn, r.directions[k]);
        add_named(t, str("cg.", k, ".hvp."), tn, r.products[k]);
      }
  }
  add_named(t, "grad_d.", tn, r.grad_d);
  add_named(t, "grad_head.", hn, r.grad_head);
  add_named(t, "grad_d_clipped.", tn, grads_of(theta_d->parameters()));
  add_named(t, "grad_head_clipped.", hn, grads_of(head.parameters()));
  return out;
}

}  // namespace bissl::inspect
