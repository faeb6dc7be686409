// f32 convolutions through cuDNN (NHWC activations, filters in cuDNN's NHWC =
// our OHWI). Algorithms are chosen once per shape by cudnnFind* (timed, like
// PyTorch's benchmark mode; cudnnGet*_v7 heuristics in deterministic mode)
// and cached with the math type they were found with; workspace comes from
// the pool. TF32 follows cuda::tf32(). conv.cu calls these first and falls
// back to im2col + cuBLAS for f64 and for anything cuDNN rejects — refused
// descriptors or a chosen algorithm failing when run (said once on stderr,
// then that shape stays on im2col).
#include <cudnn.h>

#include <cstdio>
#include <limits>
#include <stdexcept>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_cudnn.h"

namespace bissl::cuda {

namespace {

#define BISSL_CUDNN_OK(expr, what)                                                          \
  do {                                                                                      \
    cudnnStatus_t s_ = (expr);                                                              \
    if (s_ != CUDNN_STATUS_SUCCESS) ::bissl::cuda::fail(what, cudnnGetErrorString(s_));     \
  } while (0)

bool g_enabled = true;

cudnnHandle_t handle() {
  static cudnnHandle_t h = [] {
    cudnnHandle_t x;
    BISSL_CUDNN_OK(cudnnCreate(&x), "cudnnCreate");
    BISSL_CUDNN_OK(cudnnSetStream(x, stream()), "cudnnSetStream");
    return x;
  }();
  return h;
}

// Descriptors for one problem, destroyed with it.
struct Problem {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  explicit Problem(const ConvShape& s) {
    try {
      // 4-d descriptors hold int sizes and strides: larger tensors go to im2col.
      const int64_t lim = std::numeric_limits<int>::max();
      if (s.n * s.h * s.w * s.c > lim || s.n * s.ho * s.wo * s.o > lim || s.o * s.kh * s.kw * s.c > lim)
        throw std::runtime_error("a tensor has more elements than cuDNN's int descriptors hold");
      BISSL_CUDNN_OK(cudnnCreateTensorDescriptor(&x), "cudnnCreateTensorDescriptor");
      BISSL_CUDNN_OK(cudnnCreateTensorDescriptor(&y), "cudnnCreateTensorDescriptor");
      BISSL_CUDNN_OK(cudnnCreateFilterDescriptor(&w), "cudnnCreateFilterDescriptor");
      BISSL_CUDNN_OK(cudnnCreateConvolutionDescriptor(&conv), "cudnnCreateConvolutionDescriptor");
      BISSL_CUDNN_OK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, int(s.n), int(s.c), int(s.h),
                                                int(s.w)),
                     "conv2d (cuDNN) input descriptor");
      BISSL_CUDNN_OK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, int(s.n), int(s.o), int(s.ho),
                                                int(s.wo)),
                     "conv2d (cuDNN) output descriptor");
      BISSL_CUDNN_OK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, int(s.o), int(s.c / s.groups),
                                                int(s.kh), int(s.kw)),
                     "conv2d (cuDNN) filter descriptor");
      BISSL_CUDNN_OK(cudnnSetConvolution2dDescriptor(conv, int(s.ph), int(s.pw), int(s.sh), int(s.sw), int(s.dh),
                                                     int(s.dw), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                     "conv2d (cuDNN) convolution descriptor");
      BISSL_CUDNN_OK(cudnnSetConvolutionGroupCount(conv, int(s.groups)), "cudnnSetConvolutionGroupCount");
      BISSL_CUDNN_OK(cudnnSetConvolutionMathType(conv, tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH),
                     "cudnnSetConvolutionMathType");
    } catch (...) {  // a destructor does not run for a constructor that throws
      destroy();
      throw;
    }
  }
  ~Problem() { destroy(); }
  void destroy() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    x = y = nullptr, w = nullptr, conv = nullptr;
  }
};

using Key = std::tuple<int, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t>;
Key key_of(int which, const ConvShape& s) {
  return Key{which, tf32(), s.n, s.h, s.w, s.c, s.o, s.kh, s.kw, s.sh * 1000 + s.sw, s.ph * 1000 + s.pw,
             s.dh * 1000 + s.dw, s.groups, 0};
}

struct Choice {
  int algo = -1;  // -1: none found; -2: cuDNN failed on this shape at run time (im2col from then on)
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;  // the math type the algorithm was chosen with
};
std::mutex g_mu;
std::map<Key, Choice> g_cache;

// The cached algorithm for (which, shape, tf32), or `find()`'s pick, stored.
template <class Find>
Choice choose(int which, const ConvShape& s, Find find) {
  Key k = key_of(which, s);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_cache.find(k);
    if (it != g_cache.end()) return it->second;
  }
  Choice c = find();
  if (c.algo >= 0) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_cache[k] = c;
  }
  return c;
}

bool g_deterministic = false;

// The fastest successful entry of a cudnnFind* result (deterministic
// algorithms only when set_cudnn_deterministic(true)).
template <class Perf>
Choice first_ok(const Perf* perf, int found) {
  for (int i = 0; i < found; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS &&
        (!g_deterministic || perf[i].determinism == CUDNN_DETERMINISTIC))
      return {int(perf[i].algo), perf[i].memory, perf[i].mathType};
  return {};
}

struct Workspace {
  void* p = nullptr;
  explicit Workspace(size_t bytes) : p(bytes ? alloc(bytes) : nullptr) {}
  ~Workspace() { release(p); }
};

// The chosen algorithm failed when run (or the problem's descriptors were
// refused): say so once, and let this shape take the im2col + cuBLAS path
// from now on (the caller falls back when we return false).
bool give_up(int which, const ConvShape& s, const char* what, const char* why) {
  static const char* dir[] = {"forward", "data gradient", "filter gradient"};
  std::fprintf(stderr,
               "bissl: cuDNN %s (%s) failed for a %lldx%lld conv on [%lld, %lld, %lld, %lld] -> %lld channels: %s; "
               "im2col + cuBLAS for this shape from now on\n",
               dir[which], what, (long long)s.kh, (long long)s.kw, (long long)s.n, (long long)s.h, (long long)s.w,
               (long long)s.c, (long long)s.o, why);
  std::lock_guard<std::mutex> lock(g_mu);
  g_cache[key_of(which, s)] = Choice{-2, 0, CUDNN_DEFAULT_MATH};
  return false;
}

// Descriptors for s, or nullptr where cuDNN refuses them (after give_up)
// or already failed on this shape.
std::unique_ptr<Problem> problem_for(int which, const ConvShape& s) {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_cache.find(key_of(which, s));
    if (it != g_cache.end() && it->second.algo == -2) return nullptr;
  }
  try {
    return std::make_unique<Problem>(s);
  } catch (const std::exception& e) {
    give_up(which, s, "descriptors", e.what());
    return nullptr;
  }
}

}  // namespace

void set_cudnn(bool on) { g_enabled = on; }
void set_cudnn_deterministic(bool on) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_deterministic == on) return;  // keep the cached choices
  g_deterministic = on;
  g_cache.clear();  // choices made under the other rule
}
bool cudnn_enabled() { return g_enabled; }

bool cudnn_conv2d_forward(const ConvShape& s, const float* x, const float* w, float* y) {
  if (!g_enabled) return false;
  std::unique_ptr<Problem> pp = problem_for(0, s);
  if (!pp) return false;
  Problem& p = *pp;
  Choice c = choose(0, s, [&] {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int found = 0;
    if (g_deterministic)  // heuristics: the same choice run after run (timing could differ)
      BISSL_CUDNN_OK(cudnnGetConvolutionForwardAlgorithm_v7(handle(), p.x, p.w, p.conv, p.y,
                     CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf), "cudnnGetConvolutionForwardAlgorithm_v7");
    else
      BISSL_CUDNN_OK(cudnnFindConvolutionForwardAlgorithm(handle(), p.x, p.w, p.conv, p.y,
                     CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf), "cudnnFindConvolutionForwardAlgorithm");
    return first_ok(perf, found);
  });
  if (c.algo < 0) return false;
  Workspace ws(c.workspace);
  float one = 1, zero = 0;
  // The math type the algorithm was found with (PyTorch does the same).
  if (cudnnSetConvolutionMathType(p.conv, c.math) != CUDNN_STATUS_SUCCESS) return give_up(0, s, "math type", "refused");
  const cudnnStatus_t st = cudnnConvolutionForward(handle(), &one, p.x, x, p.w, w, p.conv,
                                                   cudnnConvolutionFwdAlgo_t(c.algo), ws.p, c.workspace, &zero, p.y, y);
  if (st != CUDNN_STATUS_SUCCESS) return give_up(0, s, "cudnnConvolutionForward", cudnnGetErrorString(st));
  return true;
}

bool cudnn_conv2d_input_grad(const ConvShape& s, const float* gy, const float* w, float* gx) {
  if (!g_enabled) return false;
  std::unique_ptr<Problem> pp = problem_for(1, s);
  if (!pp) return false;
  Problem& p = *pp;
  Choice c = choose(1, s, [&] {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int found = 0;
    if (g_deterministic)  // heuristics: the same choice run after run (timing could differ)
      BISSL_CUDNN_OK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle(), p.w, p.y, p.conv, p.x,
                     CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found, perf),
                     "cudnnGetConvolutionBackwardDataAlgorithm_v7");
    else
      BISSL_CUDNN_OK(cudnnFindConvolutionBackwardDataAlgorithm(handle(), p.w, p.y, p.conv, p.x,
                     CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found, perf), "cudnnFindConvolutionBackwardDataAlgorithm");
    return first_ok(perf, found);
  });
  if (c.algo < 0) return false;
  Workspace ws(c.workspace);
  float one = 1, zero = 0;
  // The math type the algorithm was found with (PyTorch does the same).
  if (cudnnSetConvolutionMathType(p.conv, c.math) != CUDNN_STATUS_SUCCESS) return give_up(1, s, "math type", "refused");
  const cudnnStatus_t st = cudnnConvolutionBackwardData(handle(), &one, p.w, w, p.y, gy, p.conv,
                                                        cudnnConvolutionBwdDataAlgo_t(c.algo), ws.p, c.workspace,
                                                        &zero, p.x, gx);
  if (st != CUDNN_STATUS_SUCCESS) return give_up(1, s, "cudnnConvolutionBackwardData", cudnnGetErrorString(st));
  return true;
}

bool cudnn_conv2d_weight_grad(const ConvShape& s, const float* x, const float* gy, float* gw) {
  if (!g_enabled) return false;
  std::unique_ptr<Problem> pp = problem_for(2, s);
  if (!pp) return false;
  Problem& p = *pp;
  Choice c = choose(2, s, [&] {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int found = 0;
    if (g_deterministic)  // heuristics: the same choice run after run (timing could differ)
      BISSL_CUDNN_OK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle(), p.x, p.y, p.conv, p.w,
                     CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found, perf),
                     "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
    else
      BISSL_CUDNN_OK(cudnnFindConvolutionBackwardFilterAlgorithm(handle(), p.x, p.y, p.conv, p.w,
                     CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found, perf),
                     "cudnnFindConvolutionBackwardFilterAlgorithm");
    return first_ok(perf, found);
  });
  if (c.algo < 0) return false;
  Workspace ws(c.workspace);
  float one = 1, zero = 0;
  // The math type the algorithm was found with (PyTorch does the same).
  if (cudnnSetConvolutionMathType(p.conv, c.math) != CUDNN_STATUS_SUCCESS) return give_up(2, s, "math type", "refused");
  const cudnnStatus_t st = cudnnConvolutionBackwardFilter(handle(), &one, p.x, x, p.y, gy, p.conv,
                                                          cudnnConvolutionBwdFilterAlgo_t(c.algo), ws.p, c.workspace,
                                                          &zero, p.w, gw);
  if (st != CUDNN_STATUS_SUCCESS) return give_up(2, s, "cudnnConvolutionBackwardFilter", cudnnGetErrorString(st));
  return true;
}

}  // namespace bissl::cuda
