// f32 convolutions through cuDNN (NHWC activations, filters in cuDNN's NHWC =
// our OHWI). Algorithms are chosen once per shape by cudnnFind* (timed, like
// PyTorch's benchmark mode) and cached; workspace comes from the pool. TF32
// follows cuda::tf32(). conv.cu calls these first and falls back to
// im2col + cuBLAS for f64 and for anything cuDNN rejects.
#include <cudnn.h>

#include <map>
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
  }
  ~Problem() {
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyConvolutionDescriptor(conv);
  }
};

using Key = std::tuple<int, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t>;
Key key_of(int which, const ConvShape& s) {
  return Key{which, tf32(), s.n, s.h, s.w, s.c, s.o, s.kh, s.kw, s.sh * 1000 + s.sw, s.ph * 1000 + s.pw,
             s.dh * 1000 + s.dw, s.groups, 0};
}

struct Choice {
  int algo = -1;
  size_t workspace = 0;
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
      return {int(perf[i].algo), perf[i].memory};
  return {};
}

struct Workspace {
  void* p = nullptr;
  explicit Workspace(size_t bytes) : p(bytes ? alloc(bytes) : nullptr) {}
  ~Workspace() { release(p); }
};

}  // namespace

void set_cudnn(bool on) { g_enabled = on; }
void set_cudnn_deterministic(bool on) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_deterministic = on;
  g_cache.clear();  // choices made under the other rule
}
bool cudnn_enabled() { return g_enabled; }

bool cudnn_conv2d_forward(const ConvShape& s, const float* x, const float* w, float* y) {
  if (!g_enabled) return false;
  Problem p(s);
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
  BISSL_CUDNN_OK(cudnnConvolutionForward(handle(), &one, p.x, x, p.w, w, p.conv, cudnnConvolutionFwdAlgo_t(c.algo),
                                         ws.p, c.workspace, &zero, p.y, y),
                 "cudnnConvolutionForward");
  return true;
}

bool cudnn_conv2d_input_grad(const ConvShape& s, const float* gy, const float* w, float* gx) {
  if (!g_enabled) return false;
  Problem p(s);
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
  BISSL_CUDNN_OK(cudnnConvolutionBackwardData(handle(), &one, p.w, w, p.y, gy, p.conv,
                                              cudnnConvolutionBwdDataAlgo_t(c.algo), ws.p, c.workspace, &zero, p.x,
                                              gx),
                 "cudnnConvolutionBackwardData");
  return true;
}

bool cudnn_conv2d_weight_grad(const ConvShape& s, const float* x, const float* gy, float* gw) {
  if (!g_enabled) return false;
  Problem p(s);
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
  BISSL_CUDNN_OK(cudnnConvolutionBackwardFilter(handle(), &one, p.x, x, p.y, gy, p.conv,
                                                cudnnConvolutionBwdFilterAlgo_t(c.algo), ws.p, c.workspace, &zero,
                                                p.w, gw),
                 "cudnnConvolutionBackwardFilter");
  return true;
}

}  // namespace bissl::cuda
