// f32 convolutions through oneDNN (Debian's libdnnl-dev), NHWC activations
// as they are: the CPU's counterpart of cuDNN (conv_onednn.h says when it is
// taken).
//
// Each direction of each shape gets one primitive, made on first use and
// kept (a map keyed by the shape, the thread count and the calling thread:
// oneDNN built without DNNL_ENABLE_CONCURRENT_EXEC wants a primitive run on
// the thread that made it; the map starts over past 1024 entries). Weights
// are asked for in whatever layout the fastest kernel wants ("any"): our
// OHWI weights are reordered into it per call, and the filter gradient back
// from it into the caller's buffer; they are small next to the activations.
// The primitives run on the calling thread's OpenMP team.
#include "kernels/cpu/conv_onednn.h"

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

#include "kernels/cpu/parallel.h"

#ifdef BISSL_WITH_ONEDNN
#include <dnnl.hpp>
#endif

namespace bissl::cpu {

namespace {

std::atomic<int> g_path{-1};  // ConvPath, -1 until read from BISSL_CPU_CONV

ConvPath path_from_env() {
  const char* e = std::getenv("BISSL_CPU_CONV");
  if (!e || !*e || std::strcmp(e, "auto") == 0) return ConvPath::Auto;
  if (std::strcmp(e, "im2col") == 0) return ConvPath::Im2col;
  if (std::strcmp(e, "onednn") == 0) return ConvPath::OneDNN;
  // A kernel cannot throw a bissl::Error (no engine here); say it once and keep the default.
  static std::once_flag said;
  std::call_once(said, [e] {
    std::fprintf(stderr, "bissl: BISSL_CPU_CONV: expected auto, im2col or onednn, found '%s'; using auto\n", e);
  });
  return ConvPath::Auto;
}

}  // namespace

ConvPath conv_path() {
  int p = g_path.load(std::memory_order_relaxed);
  if (p < 0) {
    p = int(path_from_env());
    g_path.store(p, std::memory_order_relaxed);
  }
  return ConvPath(p);
}

void set_conv_path(ConvPath p) { g_path.store(int(p), std::memory_order_relaxed); }

const char* conv_path_name(ConvPath p) {
  switch (p) {
    case ConvPath::Auto: return "auto";
    case ConvPath::Im2col: return "im2col";
    case ConvPath::OneDNN: return "onednn";
  }
  return "?";
}

#ifndef BISSL_WITH_ONEDNN

bool onednn_available() { return false; }
bool onednn_conv2d_forward(const ConvShape&, const float*, const float*, float*) { return false; }
bool onednn_conv2d_input_grad(const ConvShape&, const float*, const float*, float*) { return false; }
bool onednn_conv2d_weight_grad(const ConvShape&, const float*, const float*, float*) { return false; }
std::string onednn_conv_choices() { return "oneDNN: not in this build"; }
void onednn_conv_forget() {}

#else

bool onednn_available() { return true; }

// The process's oneDNN CPU engine (batch norm's too: norm_onednn.cpp).
dnnl::engine& onednn_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

dnnl::engine& eng() { return onednn_engine(); }

// The shape as a map key (ho, wo follow from the rest), with the thread
// count: oneDNN fixes a kernel's split over threads when it makes it.
using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int, std::thread::id>;
Key key_of(const ConvShape& s) {
  return Key{s.n,  s.h,  s.w,  s.c,  s.o,      s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.dh, s.dw, s.groups,
             omp_get_max_threads(), std::this_thread::get_id()};
}

struct Prims {
  bool ok = false;  // oneDNN made all three primitives for this shape, none of them its reference code
  std::string impl[3];
  std::unique_ptr<dnnl::convolution_forward> fwd;
  std::unique_ptr<dnnl::convolution_backward_data> bwd_data;
  std::unique_ptr<dnnl::convolution_backward_weights> bwd_weights;
  memory::desc x_md, y_md;
  memory::desc w_user;     // OHWI, ours
  memory::desc w_prim[3];  // the layout each direction's kernel wants (blocked, usually)
  // OHWI -> the forward's and the data gradient's layouts; the filter gradient's -> OHWI.
  std::unique_ptr<dnnl::reorder> to_prim[2], from_prim;
};
std::mutex g_mu;
std::map<Key, std::shared_ptr<Prims>> g_prims;

std::shared_ptr<Prims> make(const ConvShape& s) {
  auto p = std::make_shared<Prims>();
  // oneDNN's right padding: what the output size needs beyond the left's.
  const int64_t pr_h = (s.ho - 1) * s.sh + (s.kh - 1) * s.dh + 1 - s.h - s.ph;
  const int64_t pr_w = (s.wo - 1) * s.sw + (s.kw - 1) * s.dw + 1 - s.w - s.pw;
  const memory::dims strides{s.sh, s.sw}, dil{s.dh - 1, s.dw - 1}, pl{s.ph, s.pw}, pr{pr_h, pr_w};
  p->x_md = memory::desc({s.n, s.c, s.h, s.w}, dt::f32, tag::nhwc);
  p->y_md = memory::desc({s.n, s.o, s.ho, s.wo}, dt::f32, tag::nhwc);
  const memory::dims wd = s.groups == 1 ? memory::dims{s.o, s.c, s.kh, s.kw}
                                        : memory::dims{s.groups, s.o / s.groups, s.c / s.groups, s.kh, s.kw};
  p->w_user = memory::desc(wd, dt::f32, s.groups == 1 ? tag::ohwi : tag::gohwi);
  // Weights in whatever layout the fastest kernel wants ("any"); they are
  // small, so reordering them per call costs little, while the activations
  // stay NHWC (no copies of the big tensors).
  const memory::desc w_any(wd, dt::f32, tag::any);
  try {
    dnnl::convolution_forward::desc fd(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                       p->x_md, w_any, p->y_md, strides, dil, pl, pr);
    dnnl::convolution_forward::primitive_desc fpd(fd, eng());
    dnnl::convolution_backward_data::desc dd(dnnl::algorithm::convolution_direct, p->x_md, w_any, p->y_md, strides,
                                             dil, pl, pr);
    dnnl::convolution_backward_data::primitive_desc dpd(dd, eng(), fpd);
    dnnl::convolution_backward_weights::desc bd(dnnl::algorithm::convolution_direct, p->x_md, w_any, p->y_md,
                                                strides, dil, pl, pr);
    dnnl::convolution_backward_weights::primitive_desc wpd(bd, eng(), fpd);
    p->impl[0] = fpd.impl_info_str(), p->impl[1] = dpd.impl_info_str(), p->impl[2] = wpd.impl_info_str();
    for (const auto& impl : p->impl)
      if (impl.rfind("ref", 0) == 0) return p;  // oneDNN's reference loops: far slower than im2col
    p->w_prim[0] = fpd.weights_desc(), p->w_prim[1] = dpd.weights_desc(), p->w_prim[2] = wpd.diff_weights_desc();
    auto reorder = [](const memory::desc& from, const memory::desc& to) {
      return std::make_unique<dnnl::reorder>(dnnl::reorder::primitive_desc(eng(), from, eng(), to));
    };
    for (int k = 0; k < 2; ++k)
      if (p->w_prim[k] != p->w_user) p->to_prim[k] = reorder(p->w_user, p->w_prim[k]);
    if (p->w_prim[2] != p->w_user) p->from_prim = reorder(p->w_prim[2], p->w_user);
    p->fwd = std::make_unique<dnnl::convolution_forward>(fpd);
    p->bwd_data = std::make_unique<dnnl::convolution_backward_data>(dpd);
    p->bwd_weights = std::make_unique<dnnl::convolution_backward_weights>(wpd);
    p->ok = true;
  } catch (const dnnl::error&) {
    p->ok = false;  // no implementation for this shape: im2col takes it
  }
  return p;
}

std::shared_ptr<Prims> prims_for(const ConvShape& s) {
  std::lock_guard<std::mutex> lock(g_mu);
  // A run meets a few dozen shapes; a caller cycling through many (batch
  // sizes of every length) starts over rather than holding them all.
  if (g_prims.size() >= 1024) g_prims.clear();
  auto& slot = g_prims[key_of(s)];
  if (!slot) slot = make(s);
  return slot;
}

// oneDNN takes a convolution only on the CPU path's own terms: f32 (the
// caller), default numerics (portable numerics promises the same bits at any
// thread count and on any AVX2 CPU, which oneDNN's ISA-dispatched kernels and
// thread-split filter-gradient sums do not), and BISSL_CPU_CONV not im2col.
bool wanted() {
  if (conv_path() == ConvPath::Im2col) return false;
  return !portable_numerics.load(std::memory_order_relaxed);
}

// Per-thread scratch for weights in a kernel's layout.
struct WeightTag {};
float* weight_scratch(size_t bytes) { return thread_scratch<WeightTag, float>((bytes + 3) / 4); }

std::shared_ptr<Prims> usable(const ConvShape& s) {
  if (!wanted()) return nullptr;
  auto p = prims_for(s);
  return p->ok ? p : nullptr;
}

// The weights as direction k's kernel wants them: ours, or reordered into scratch.
// A oneDNN view of one of our buffers (oneDNN takes inputs as non-const).
memory view(const memory::desc& md, const float* data) { return memory(md, eng(), const_cast<float*>(data)); }
// Memory of layout md in this thread's weight scratch.
memory scratch(const memory::desc& md) { return memory(md, eng(), weight_scratch(md.get_size())); }

// A weight reorder on this thread alone when the weights are small (up to
// 4 MiB: every layer of the main job's model and most of ResNet-50's). A
// reorder is a copy, so the threads change no bit; what they would cost is
// one more parallel region per convolution call, each a point where one
// descheduled thread holds up the other on a busy machine. oneDNN's OpenMP
// runtime reads the thread count when a reorder runs.
void reorder(const dnnl::reorder& r, dnnl::stream& st, memory& from, memory& to) {
  if (from.get_desc().get_size() > (size_t(4) << 20)) return r.execute(st, from, to);
  const int threads = omp_get_max_threads();
  struct Restore {
    int n;
    ~Restore() { omp_set_num_threads(n); }
  } restore{threads};
  omp_set_num_threads(1);
  r.execute(st, from, to);
  st.wait();
}

// The weights as direction k's kernel wants them: ours, or reordered into scratch.
memory weights_for(const Prims& p, int k, const float* w, dnnl::stream& st) {
  memory user = view(p.w_user, w);
  if (!p.to_prim[k]) return user;
  memory m = scratch(p.w_prim[k]);
  reorder(*p.to_prim[k], st, user, m);
  return m;
}

}  // namespace

bool onednn_conv2d_forward(const ConvShape& s, const float* x, const float* w, float* y) {
  auto p = usable(s);
  if (!p) return false;
  dnnl::stream st(eng());
  p->fwd->execute(st, {{DNNL_ARG_SRC, view(p->x_md, x)},
                       {DNNL_ARG_WEIGHTS, weights_for(*p, 0, w, st)},
                       {DNNL_ARG_DST, view(p->y_md, y)}});
  st.wait();
  return true;
}

bool onednn_conv2d_input_grad(const ConvShape& s, const float* gy, const float* w, float* gx) {
  auto p = usable(s);
  if (!p) return false;
  dnnl::stream st(eng());
  p->bwd_data->execute(st, {{DNNL_ARG_DIFF_DST, view(p->y_md, gy)},
                            {DNNL_ARG_WEIGHTS, weights_for(*p, 1, w, st)},
                            {DNNL_ARG_DIFF_SRC, view(p->x_md, gx)}});
  st.wait();
  return true;
}

bool onednn_conv2d_weight_grad(const ConvShape& s, const float* x, const float* gy, float* gw) {
  auto p = usable(s);
  if (!p) return false;
  dnnl::stream st(eng());
  memory user = view(p->w_user, gw);
  memory mw = p->from_prim ? scratch(p->w_prim[2]) : user;
  p->bwd_weights->execute(st, {{DNNL_ARG_SRC, view(p->x_md, x)},
                               {DNNL_ARG_DIFF_DST, view(p->y_md, gy)},
                               {DNNL_ARG_DIFF_WEIGHTS, mw}});
  if (p->from_prim) {
    st.wait();
    reorder(*p->from_prim, st, mw, user);
  }
  st.wait();
  return true;
}

void onednn_conv_forget() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_prims.clear();
}

std::string onednn_conv_choices() {
  std::lock_guard<std::mutex> lock(g_mu);
  std::string out;
  for (const auto& [k, p] : g_prims) {
    const auto& [n, h, w, c, o, kh, kw, sh, sw, ph, pw, dh, dw, g, threads, tid] = k;
    (void)tid;
    char head[240];
    std::snprintf(head, sizeof head,
                  "n%lld %lldx%lldx%lld -> %lld, %lldx%lld stride %lldx%lld pad %lldx%lld dilation %lldx%lld groups "
                  "%lld, %d threads: ",
                  (long long)n, (long long)h, (long long)w, (long long)c, (long long)o, (long long)kh, (long long)kw,
                  (long long)sh, (long long)sw, (long long)ph, (long long)pw, (long long)dh, (long long)dw,
                  (long long)g, threads);
    out += head;
    if (p->ok)
      out += p->impl[0] + " | " + p->impl[1] + " | " + p->impl[2];
    else
      out += p->impl[0].empty() ? "im2col (oneDNN offers nothing)" : "im2col (oneDNN offers only its reference loops)";
    out += "\n";
  }
  return out;
}

#endif

}  // namespace bissl::cpu
