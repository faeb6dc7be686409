// f32 batch norm through oneDNN (norm_onednn.h says when it is taken: only
// when asked for). One primitive per direction, shape, epsilon, thread
// count and calling thread, made on first use and kept, as the
// convolutions' (conv_onednn.cpp).
//
// The backward gets the forward's inverse deviation, not its variance: it
// passes oneDNN var' = 1/invstd² with epsilon 0, so oneDNN's 1/sqrt(var')
// is invstd again up to f32 rounding, and no epsilon has to travel.
#include "kernels/cpu/norm_onednn.h"

#include <omp.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "kernels/cpu/parallel.h"

#ifdef BISSL_WITH_ONEDNN
#include <dnnl.hpp>
#endif

namespace bissl::cpu {

namespace {
std::atomic<int> g_path{-1};  // BnPath, -1 until read from BISSL_CPU_BN
std::atomic<int64_t> g_calls{0};

BnPath path_from_env() {
  const char* e = std::getenv("BISSL_CPU_BN");
  if (!e || !*e || std::strcmp(e, "own") == 0) return BnPath::Own;
  if (std::strcmp(e, "onednn") == 0) return BnPath::OneDNN;
  static std::once_flag said;
  std::call_once(said, [e] {
    std::fprintf(stderr, "bissl: BISSL_CPU_BN: expected own or onednn, found '%s'; using own\n", e);
  });
  return BnPath::Own;
}
}  // namespace

BnPath bn_path() {
  int p = g_path.load(std::memory_order_relaxed);
  if (p < 0) {
    p = int(path_from_env());
    g_path.store(p, std::memory_order_relaxed);
  }
  return BnPath(p);
}

void set_bn_path(BnPath p) { g_path.store(int(p), std::memory_order_relaxed); }

const char* bn_path_name(BnPath p) { return p == BnPath::OneDNN ? "onednn" : "own"; }

int64_t onednn_batch_norm_calls() { return g_calls.load(); }

#ifndef BISSL_WITH_ONEDNN

bool onednn_batch_norm_wanted() { return false; }
bool onednn_batch_norm_forward(int64_t, int64_t, int64_t, const float*, const float*, const float*, double, float*,
                               float*, float*) {
  return false;
}
bool onednn_batch_norm_backward(int64_t, int64_t, int64_t, const float*, const float*, const float*, const float*,
                                const float*, float*, float*, float*) {
  return false;
}

#else

dnnl::engine& onednn_engine();  // conv_onednn.cpp

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

// Forward (eps > 0 as given) and backward (eps 0) are separate entries.
using Key = std::tuple<int64_t, int64_t, int64_t, double, bool, int, std::thread::id>;

struct Prims {
  bool ok = false;  // oneDNN made the primitive, and not its reference code
  memory::desc x_md, c_md;
  std::unique_ptr<dnnl::batch_normalization_forward> fwd;
  std::unique_ptr<dnnl::batch_normalization_backward> bwd;
};
std::mutex g_mu;
std::map<Key, std::shared_ptr<Prims>> g_prims;

const auto kFlags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

std::shared_ptr<Prims> make(int64_t n, int64_t s, int64_t c, double eps, bool backward) {
  auto p = std::make_shared<Prims>();
  // NHWC as n × c × 1 × spatial: the layout's bytes, and the split oneDNN's
  // kernel wants (flattening the rows into n halves its forward's speed).
  p->x_md = memory::desc({n, c, 1, s}, dt::f32, tag::nhwc);
  p->c_md = memory::desc({c}, dt::f32, tag::a);
  try {
    dnnl::batch_normalization_forward::primitive_desc fpd(
        dnnl::batch_normalization_forward::desc(dnnl::prop_kind::forward_training, p->x_md, float(eps), kFlags),
        onednn_engine());
    if (!backward) {
      if (std::string(fpd.impl_info_str()).rfind("ref", 0) == 0) return p;
      p->fwd = std::make_unique<dnnl::batch_normalization_forward>(fpd);
    } else {
      dnnl::batch_normalization_backward::primitive_desc bpd(
          dnnl::batch_normalization_backward::desc(dnnl::prop_kind::backward, p->x_md, p->x_md, float(eps), kFlags),
          onednn_engine(), fpd);
      if (std::string(bpd.impl_info_str()).rfind("ref", 0) == 0) return p;
      p->bwd = std::make_unique<dnnl::batch_normalization_backward>(bpd);
    }
    p->ok = true;
  } catch (const dnnl::error&) {
    p->ok = false;
  }
  return p;
}

std::shared_ptr<Prims> usable(int64_t n, int64_t s, int64_t c, double eps, bool backward) {
  if (!onednn_batch_norm_wanted() || n <= 0 || s <= 0 || c <= 0) return nullptr;
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_prims.size() >= 1024) g_prims.clear();
  auto& slot = g_prims[Key{n, s, c, eps, backward, omp_get_max_threads(), std::this_thread::get_id()}];
  if (!slot) slot = make(n, s, c, eps, backward);
  return slot->ok ? slot : nullptr;
}

memory view(const memory::desc& md, const float* data) {
  return memory(md, onednn_engine(), const_cast<float*>(data));
}

// γ = 1, β = 0 where the caller has none; per-thread buffers of c floats.
struct OnesTag {};
struct ZerosTag {};
struct VarTag {};
const float* ones(int64_t c) {
  float* p = thread_scratch<OnesTag, float>(size_t(c));
  for (int64_t j = 0; j < c; ++j) p[j] = 1.0f;
  return p;
}
const float* zeros(int64_t c) {
  float* p = thread_scratch<ZerosTag, float>(size_t(c));
  for (int64_t j = 0; j < c; ++j) p[j] = 0.0f;
  return p;
}

}  // namespace

bool onednn_batch_norm_wanted() {
  return bn_path() == BnPath::OneDNN && !portable_numerics.load(std::memory_order_relaxed);
}

bool onednn_batch_norm_forward(int64_t n, int64_t spatial, int64_t c, const float* x, const float* gamma,
                               const float* beta, double eps, float* y, float* mean, float* var) {
  auto p = usable(n, spatial, c, eps, false);
  if (!p) return false;
  dnnl::stream st(onednn_engine());
  p->fwd->execute(st, {{DNNL_ARG_SRC, view(p->x_md, x)},
                       {DNNL_ARG_DST, view(p->x_md, y)},
                       {DNNL_ARG_SCALE, view(p->c_md, gamma ? gamma : ones(c))},
                       {DNNL_ARG_SHIFT, view(p->c_md, beta ? beta : zeros(c))},
                       {DNNL_ARG_MEAN, view(p->c_md, mean)},
                       {DNNL_ARG_VARIANCE, view(p->c_md, var)}});
  st.wait();
  g_calls.fetch_add(1);
  return true;
}

bool onednn_batch_norm_backward(int64_t n, int64_t spatial, int64_t c, const float* gy, const float* x,
                                const float* mean, const float* invstd, const float* gamma, float* gx, float* ggamma,
                                float* gbeta) {
  auto p = usable(n, spatial, c, 0.0, true);
  if (!p) return false;
  float* var = thread_scratch<VarTag, float>(size_t(c));
  for (int64_t j = 0; j < c; ++j) var[j] = float(1.0 / (double(invstd[j]) * double(invstd[j])));
  dnnl::stream st(onednn_engine());
  p->bwd->execute(st, {{DNNL_ARG_SRC, view(p->x_md, x)},
                       {DNNL_ARG_DIFF_DST, view(p->x_md, gy)},
                       {DNNL_ARG_SCALE, view(p->c_md, gamma ? gamma : ones(c))},
                       {DNNL_ARG_SHIFT, view(p->c_md, zeros(c))},
                       {DNNL_ARG_MEAN, view(p->c_md, mean)},
                       {DNNL_ARG_VARIANCE, view(p->c_md, var)},
                       {DNNL_ARG_DIFF_SRC, view(p->x_md, gx)},
                       {DNNL_ARG_DIFF_SCALE, view(p->c_md, ggamma)},
                       {DNNL_ARG_DIFF_SHIFT, view(p->c_md, gbeta)}});
  st.wait();
  g_calls.fetch_add(1);
  return true;
}

#endif

}  // namespace bissl::cpu
