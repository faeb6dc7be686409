// Convolution: f32 goes to cuDNN (conv_cudnn.cu) or to im2col + cuBLAS GEMM
// over chunks of images, whichever ran faster on the first call with that
// shape (autotuning, cached per shape, direction and TF32 setting); f64, and
// anything cuDNN declines or when it is switched off, runs the GEMM path. The
// data gradient gathers (no atomics) here.
#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_cudnn.h"

namespace bissl::cuda {

#ifdef BISSL_WITHOUT_CUDNN  // built without cuDNN: every f32 conv falls back
void set_cudnn(bool) {}
bool cudnn_enabled() { return false; }
void set_cudnn_deterministic(bool) {}
bool cudnn_conv2d_forward(const ConvShape&, const float*, const float*, float*) { return false; }
bool cudnn_conv2d_input_grad(const ConvShape&, const float*, const float*, float*) { return false; }
bool cudnn_conv2d_weight_grad(const ConvShape&, const float*, const float*, float*) { return false; }
#endif

namespace {

constexpr size_t kColBytes = size_t(256) << 20;  // im2col buffer per chunk

template <class T>
__global__ void k_im2col(ConvShape s, const T* x, int64_t n0, int64_t nimg, int64_t g, T* col) {
  int64_t cg = s.c / s.groups, kk = s.kh * s.kw * cg, p = s.ho * s.wo;
  BISSL_GRID_LOOP(q, nimg * p * kk) {
    int64_t e = q % kk, row = q / kk;
    int64_t ci = e % cg, kj = (e / cg) % s.kw, ki = e / (cg * s.kw);
    int64_t ow = row % s.wo, oh = (row / s.wo) % s.ho, n = n0 + row / p;
    int64_t ih = oh * s.sh - s.ph + ki * s.dh, iw = ow * s.sw - s.pw + kj * s.dw;
    col[q] = (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) ? T(0)
                                                          : x[((n * s.h + ih) * s.w + iw) * s.c + g * cg + ci];
  }
}

// gx[n, ih, iw, g*cg + ci] = Σ over kernel taps that read it of dcol.
template <class T>
__global__ void k_col2im(ConvShape s, const T* col, int64_t n0, int64_t nimg, int64_t g, T* gx) {
  int64_t cg = s.c / s.groups, kk = s.kh * s.kw * cg, p = s.ho * s.wo;
  BISSL_GRID_LOOP(q, nimg * s.h * s.w * cg) {
    int64_t ci = q % cg, iw = (q / cg) % s.w, ih = (q / (cg * s.w)) % s.h, nl = q / (cg * s.w * s.h);
    T acc = 0;
    for (int64_t ki = 0; ki < s.kh; ++ki) {
      int64_t th = ih + s.ph - ki * s.dh;
      if (th < 0 || th % s.sh) continue;
      int64_t oh = th / s.sh;
      if (oh >= s.ho) continue;
      for (int64_t kj = 0; kj < s.kw; ++kj) {
        int64_t tw = iw + s.pw - kj * s.dw;
        if (tw < 0 || tw % s.sw) continue;
        int64_t ow = tw / s.sw;
        if (ow >= s.wo) continue;
        acc += col[(nl * p + oh * s.wo + ow) * kk + (ki * s.kw + kj) * cg + ci];
      }
    }
    gx[(((n0 + nl) * s.h + ih) * s.w + iw) * s.c + g * cg + ci] = acc;
  }
}

bool pointwise(const ConvShape& s) {
  return s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0 && s.groups == 1;
}

template <class T>
int64_t images_per_chunk(const ConvShape& s) {
  int64_t per = s.ho * s.wo * s.kh * s.kw * (s.c / s.groups) * int64_t(sizeof(T));
  return std::max<int64_t>(1, std::min<int64_t>(s.n, int64_t(kColBytes) / std::max<int64_t>(per, 1)));
}

struct Buffer {
  void* p;
  explicit Buffer(size_t bytes) : p(alloc(bytes)) {}
  ~Buffer() { release(p); }
};

}  // namespace

template <class T>
void gemm_conv2d_forward(const ConvShape& s, const T* x, const T* w, T* y) {
  int64_t cg = s.c / s.groups, og = s.o / s.groups, kk = s.kh * s.kw * cg, p = s.ho * s.wo;
  if (pointwise(s)) return gemm<T>(false, true, s.n * p, s.o, s.c, T(1), x, s.c, w, s.c, T(0), y, s.o);
  int64_t chunk = images_per_chunk<T>(s);
  Buffer col(size_t(chunk * p * kk) * sizeof(T));
  for (int64_t n0 = 0; n0 < s.n; n0 += chunk) {
    int64_t nb = std::min(chunk, s.n - n0);
    for (int64_t g = 0; g < s.groups; ++g) {
      k_im2col<T><<<blocks_for(nb * p * kk), kThreads, 0, stream()>>>(s, x, n0, nb, g, static_cast<T*>(col.p));
      BISSL_LAUNCH_OK("conv2d im2col");
      gemm<T>(false, true, nb * p, og, kk, T(1), static_cast<T*>(col.p), kk, w + g * og * kk, kk, T(0),
              y + n0 * p * s.o + g * og, s.o);
    }
  }
}

template <class T>
void gemm_conv2d_input_grad(const ConvShape& s, const T* gy, const T* w, T* gx) {
  int64_t cg = s.c / s.groups, og = s.o / s.groups, kk = s.kh * s.kw * cg, p = s.ho * s.wo;
  if (pointwise(s)) return gemm<T>(false, false, s.n * p, s.c, s.o, T(1), gy, s.o, w, s.c, T(0), gx, s.c);
  int64_t chunk = images_per_chunk<T>(s);
  Buffer col(size_t(chunk * p * kk) * sizeof(T));
  for (int64_t n0 = 0; n0 < s.n; n0 += chunk) {
    int64_t nb = std::min(chunk, s.n - n0);
    for (int64_t g = 0; g < s.groups; ++g) {
      gemm<T>(false, false, nb * p, kk, og, T(1), gy + n0 * p * s.o + g * og, s.o, w + g * og * kk, kk, T(0),
              static_cast<T*>(col.p), kk);
      k_col2im<T><<<blocks_for(nb * s.h * s.w * cg), kThreads, 0, stream()>>>(s, static_cast<T*>(col.p), n0, nb, g,
                                                                               gx);
      BISSL_LAUNCH_OK("conv2d col2im");
    }
  }
}

template <class T>
void gemm_conv2d_weight_grad(const ConvShape& s, const T* x, const T* gy, T* gw) {
  int64_t cg = s.c / s.groups, og = s.o / s.groups, kk = s.kh * s.kw * cg, p = s.ho * s.wo;
  if (pointwise(s)) return gemm<T>(true, false, s.o, s.c, s.n * p, T(1), gy, s.o, x, s.c, T(0), gw, s.c);
  int64_t chunk = images_per_chunk<T>(s);
  Buffer col(size_t(chunk * p * kk) * sizeof(T));
  for (int64_t n0 = 0; n0 < s.n; n0 += chunk) {
    int64_t nb = std::min(chunk, s.n - n0);
    for (int64_t g = 0; g < s.groups; ++g) {
      k_im2col<T><<<blocks_for(nb * p * kk), kThreads, 0, stream()>>>(s, x, n0, nb, g, static_cast<T*>(col.p));
      BISSL_LAUNCH_OK("conv2d im2col");
      gemm<T>(true, false, og, kk, nb * p, T(1), gy + n0 * p * s.o + g * og, s.o, static_cast<T*>(col.p), kk,
              n0 == 0 ? T(0) : T(1), gw + g * og * kk, kk);
    }
  }
}

// ---- the choice between cuDNN and the GEMM path (f32) ----
namespace {
enum class Path { Cudnn, Gemm };
const char* const kDirection[3] = {"forward", "data grad", "filter grad"};
struct Choices {
  std::mutex mu;
  std::map<std::vector<int64_t>, Path> path;
  int64_t counts[3][2] = {};  // [direction][Cudnn, Gemm]
  bool autotune = true;
};
Choices& choices() {
  static auto* c = new Choices();
  return *c;
}
std::vector<int64_t> key_of(int which, const ConvShape& s) {
  return {which, tf32() ? 1 : 0, s.n, s.h, s.w, s.c, s.o, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.dh, s.dw, s.groups};
}

// Device time of run(), by events around it (autotuning only: waits for
// the second event, counted as a host wait; deferred index errors are left
// for the next ordinary wait to report, naming their op).
template <class Run>
float elapsed_ms(Run run) {
  struct Events {
    cudaEvent_t a = nullptr, b = nullptr;
    ~Events() {
      if (a) cudaEventDestroy(a);
      if (b) cudaEventDestroy(b);
    }
  } ev;
  BISSL_CUDA_OK(cudaEventCreate(&ev.a), "conv autotune: cudaEventCreate");
  BISSL_CUDA_OK(cudaEventCreate(&ev.b), "conv autotune: cudaEventCreate");
  BISSL_CUDA_OK(cudaEventRecord(ev.a, stream()), "conv autotune: cudaEventRecord");
  run();
  BISSL_CUDA_OK(cudaEventRecord(ev.b, stream()), "conv autotune: cudaEventRecord");
  note_host_wait();
  BISSL_CUDA_OK(cudaEventSynchronize(ev.b), "conv autotune: cudaEventSynchronize");
  float ms = 0;
  BISSL_CUDA_OK(cudaEventElapsedTime(&ms, ev.a, ev.b), "conv autotune: cudaEventElapsedTime");
  return ms;
}

// Runs one f32 convolution by the path chosen for its shape; on the first
// call with a shape (autotuning on), runs both paths twice, times the second
// runs, and keeps the faster (the output is written either way).
template <class Cudnn, class Gemm>
void run_f32(int which, const ConvShape& s, Cudnn cudnn, Gemm gemm_path) {
  auto& c = choices();
  if (!cudnn_enabled()) return gemm_path();
  const auto key = key_of(which, s);
  bool known = false, autotune = true;
  Path path = Path::Cudnn;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.path.find(key);
    if (it != c.path.end()) known = true, path = it->second;
    autotune = c.autotune;
  }
  if (known) {
    if (path == Path::Gemm || !cudnn()) gemm_path();
    return;
  }
  Path pick = Path::Cudnn;
  if (!cudnn()) {  // cuDNN declines this shape (its first call also ran cudnnFind)
    pick = Path::Gemm;
    gemm_path();
  } else if (autotune) {
    const float t_cudnn = elapsed_ms([&] { cudnn(); });
    gemm_path();
    const float t_gemm = elapsed_ms(gemm_path);
    if (t_gemm < t_cudnn) pick = Path::Gemm;
  }
  std::lock_guard<std::mutex> lock(c.mu);
  c.path[key] = pick;
  ++c.counts[which][pick == Path::Cudnn ? 0 : 1];
}
}  // namespace

void set_conv_autotune(bool on) {
  std::lock_guard<std::mutex> lock(choices().mu);
  if (choices().autotune == on) return;  // keep the choices made (each stage sets it again)
  choices().autotune = on;
  choices().path.clear();
  for (auto& d : choices().counts) d[0] = d[1] = 0;
}

bool conv_autotune() {
  std::lock_guard<std::mutex> lock(choices().mu);
  return choices().autotune;
}

std::string conv_choices() {
  auto& c = choices();
  std::lock_guard<std::mutex> lock(c.mu);
  std::string out;
  for (int d = 0; d < 3; ++d) {
    if (!out.empty()) out += "; ";
    out += std::string(kDirection[d]) + ": " + std::to_string(c.counts[d][0]) + " cuDNN, " +
           std::to_string(c.counts[d][1]) + " GEMM";
  }
  return out + (c.autotune ? " (autotuned)" : " (cuDNN first)");
}

template <class T>
void conv2d_forward(const ConvShape& s, const T* x, const T* w, T* y) {
  if constexpr (std::is_same_v<T, float>)
    run_f32(0, s, [&] { return cudnn_conv2d_forward(s, x, w, y); }, [&] { gemm_conv2d_forward(s, x, w, y); });
  else
    gemm_conv2d_forward(s, x, w, y);
}

template <class T>
void conv2d_input_grad(const ConvShape& s, const T* gy, const T* w, T* gx) {
  if constexpr (std::is_same_v<T, float>)
    run_f32(1, s, [&] { return cudnn_conv2d_input_grad(s, gy, w, gx); },
            [&] { gemm_conv2d_input_grad(s, gy, w, gx); });
  else
    gemm_conv2d_input_grad(s, gy, w, gx);
}

template <class T>
void conv2d_weight_grad(const ConvShape& s, const T* x, const T* gy, T* gw) {
  if constexpr (std::is_same_v<T, float>)
    run_f32(2, s, [&] { return cudnn_conv2d_weight_grad(s, x, gy, gw); },
            [&] { gemm_conv2d_weight_grad(s, x, gy, gw); });
  else
    gemm_conv2d_weight_grad(s, x, gy, gw);
}

#define INST(T)                                                                \
  template void conv2d_forward<T>(const ConvShape&, const T*, const T*, T*);   \
  template void conv2d_input_grad<T>(const ConvShape&, const T*, const T*, T*); \
  template void conv2d_weight_grad<T>(const ConvShape&, const T*, const T*, T*);
INST(float)
INST(double)

}  // namespace bissl::cuda
