#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "kernels/cpu/conv_onednn.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/parallel.h"

namespace bissl::cpu {

// Convolution as im2col + GEMM, one image at a time, one GEMM per group.
// col is [Ho*Wo, kh*kw*Cg] so that NHWC rows and OHWI weight rows line up.

namespace {
template <class T>
void im2col(const ConvShape& s, const T* x, int64_t g, T* col) {
  int64_t cg = s.c / s.groups, kk = s.kh * s.kw * cg;
  // Without dilation a kernel row's taps are consecutive input pixels: with
  // one group their channels form one contiguous run (kw·C values), copied
  // at once instead of tap by tap (a 7×7 RGB stem: 21 values, not 7 × 3).
  const bool runs = s.dw == 1 && s.groups == 1;
#pragma omp parallel for if (s.ho * s.wo * kk > 32768)
  for (int64_t oh = 0; oh < s.ho; ++oh)
    for (int64_t ow = 0; ow < s.wo; ++ow) {
      T* row = col + (oh * s.wo + ow) * kk;
      const int64_t iw0 = ow * s.sw - s.pw;
      for (int64_t ki = 0; ki < s.kh; ++ki) {
        int64_t ih = oh * s.sh - s.ph + ki * s.dh;
        T* dst_row = row + ki * s.kw * cg;
        if (ih < 0 || ih >= s.h) {
          std::memset(dst_row, 0, size_t(s.kw * cg) * sizeof(T));
          continue;
        }
        if (runs) {
          // Taps kj in [lo, hi) are inside the image; zeros around them.
          const int64_t lo = std::max<int64_t>(0, -iw0), hi = std::min<int64_t>(s.kw, s.w - iw0);
          if (hi <= lo) {
            std::memset(dst_row, 0, size_t(s.kw * cg) * sizeof(T));
            continue;
          }
          if (lo > 0) std::memset(dst_row, 0, size_t(lo * cg) * sizeof(T));
          std::memcpy(dst_row + lo * cg, x + (ih * s.w + iw0 + lo) * s.c, size_t((hi - lo) * cg) * sizeof(T));
          if (hi < s.kw) std::memset(dst_row + hi * cg, 0, size_t((s.kw - hi) * cg) * sizeof(T));
          continue;
        }
        for (int64_t kj = 0; kj < s.kw; ++kj) {
          int64_t iw = iw0 + kj * s.dw;
          T* dst = dst_row + kj * cg;
          if (iw < 0 || iw >= s.w) {
            std::memset(dst, 0, size_t(cg) * sizeof(T));
          } else {
            std::memcpy(dst, x + (ih * s.w + iw) * s.c + g * cg, size_t(cg) * sizeof(T));
          }
        }
      }
    }
}

template <class T>
void col2im(const ConvShape& s, const T* col, int64_t g, T* gx) {
  int64_t cg = s.c / s.groups, kk = s.kh * s.kw * cg;
  // Output rows overlap in the input; split across threads by input row to stay race-free.
#pragma omp parallel for if (s.ho * s.wo * kk > 32768)
  for (int64_t ih = 0; ih < s.h; ++ih)
    for (int64_t oh = 0; oh < s.ho; ++oh)
      for (int64_t ki = 0; ki < s.kh; ++ki) {
        if (oh * s.sh - s.ph + ki * s.dh != ih) continue;
        for (int64_t ow = 0; ow < s.wo; ++ow) {
          const T* row = col + (oh * s.wo + ow) * kk;
          for (int64_t kj = 0; kj < s.kw; ++kj) {
            int64_t iw = ow * s.sw - s.pw + kj * s.dw;
            if (iw < 0 || iw >= s.w) continue;
            T* dst = gx + (ih * s.w + iw) * s.c + g * cg;
            const T* src = row + (ki * s.kw + kj) * cg;
            for (int64_t ci = 0; ci < cg; ++ci) dst[ci] += src[ci];
          }
        }
      }
}

// The im2col buffer: one per calling thread and dtype, grown on demand and
// kept (chunks are sized to kColElems elements, more only when a single
// image needs more). A fresh std::vector per call
// zero-filled it and, at this size, page-faulted it in from the OS every
// time, only for im2col / the GEMM to overwrite it.
struct ColTag {};
template <class T>
T* col_buffer(size_t elems) {
  return thread_scratch<ColTag, T>(elems);
}

bool pointwise(const ConvShape& s) {
  return s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0 && s.groups == 1;
}
}  // namespace

// f32 goes to oneDNN where conv_onednn.h says so; false: im2col runs.
template <class T>
bool onednn_forward(const ConvShape& s, const T* x, const T* w, T* y) {
  if constexpr (std::is_same_v<T, float>) return onednn_conv2d_forward(s, x, w, y);
  return false;
}
template <class T>
bool onednn_input_grad(const ConvShape& s, const T* gy, const T* w, T* gx) {
  if constexpr (std::is_same_v<T, float>) return onednn_conv2d_input_grad(s, gy, w, gx);
  return false;
}
template <class T>
bool onednn_weight_grad(const ConvShape& s, const T* x, const T* gy, T* gw) {
  if constexpr (std::is_same_v<T, float>) return onednn_conv2d_weight_grad(s, x, gy, gw);
  return false;
}

// Images are processed in chunks: im2col of a whole chunk (threads over
// images), then one GEMM per group with M = images × output pixels, so small
// convolutions still make large GEMMs.
constexpr int64_t kColElems = int64_t(16) << 20;  // im2col buffer per chunk (elements)

int64_t chunk_images(const ConvShape& s) {
  int64_t per = s.ho * s.wo * s.kh * s.kw * (s.c / s.groups);
  return std::max<int64_t>(1, std::min<int64_t>(s.n, kColElems / std::max<int64_t>(per, 1)));
}

template <class T>
void conv2d_forward(const ConvShape& s, const T* x, const T* w, T* y) {
  if (onednn_forward(s, x, w, y)) return;
  int64_t cg = s.c / s.groups, og = s.o / s.groups, kk = s.kh * s.kw * cg, p = s.ho * s.wo;
  if (pointwise(s)) {  // a 1x1 conv is one GEMM over all pixels
    gemm<T>(false, true, s.n * p, s.o, s.c, T(1), x, s.c, w, s.c, T(0), y, s.o);
    return;
  }
  int64_t chunk = chunk_images(s);
  T* col = col_buffer<T>(static_cast<size_t>(chunk * p * kk));
  for (int64_t n0 = 0; n0 < s.n; n0 += chunk) {
    int64_t nb = std::min(chunk, s.n - n0);
    for (int64_t g = 0; g < s.groups; ++g) {
#pragma omp parallel for if (nb > 1)
      for (int64_t i = 0; i < nb; ++i) im2col(s, x + (n0 + i) * s.h * s.w * s.c, g, col + i * p * kk);
      gemm<T>(false, true, nb * p, og, kk, T(1), col, kk, w + g * og * kk, kk, T(0), y + n0 * p * s.o + g * og,
              s.o);
    }
  }
}

template <class T>
void conv2d_input_grad(const ConvShape& s, const T* gy, const T* w, T* gx) {
  if (onednn_input_grad(s, gy, w, gx)) return;
  int64_t cg = s.c / s.groups, og = s.o / s.groups, kk = s.kh * s.kw * cg, p = s.ho * s.wo;
  if (pointwise(s)) {
    gemm<T>(false, false, s.n * p, s.c, s.o, T(1), gy, s.o, w, s.c, T(0), gx, s.c);
    return;
  }
  std::memset(gx, 0, size_t(s.n * s.h * s.w * s.c) * sizeof(T));
  int64_t chunk = chunk_images(s);
  T* col = col_buffer<T>(static_cast<size_t>(chunk * p * kk));
  for (int64_t n0 = 0; n0 < s.n; n0 += chunk) {
    int64_t nb = std::min(chunk, s.n - n0);
    for (int64_t g = 0; g < s.groups; ++g) {
      gemm<T>(false, false, nb * p, kk, og, T(1), gy + n0 * p * s.o + g * og, s.o, w + g * og * kk, kk, T(0),
              col, kk);
#pragma omp parallel for if (nb > 1)
      for (int64_t i = 0; i < nb; ++i) col2im(s, col + i * p * kk, g, gx + (n0 + i) * s.h * s.w * s.c);
    }
  }
}

template <class T>
void conv2d_weight_grad(const ConvShape& s, const T* x, const T* gy, T* gw) {
  if (onednn_weight_grad(s, x, gy, gw)) return;
  int64_t cg = s.c / s.groups, og = s.o / s.groups, kk = s.kh * s.kw * cg, p = s.ho * s.wo;
  if (pointwise(s)) {
    gemm<T>(true, false, s.o, s.c, s.n * p, T(1), gy, s.o, x, s.c, T(0), gw, s.c);
    return;
  }
  std::memset(gw, 0, size_t(s.o * kk) * sizeof(T));
  int64_t chunk = chunk_images(s);
  T* col = col_buffer<T>(static_cast<size_t>(chunk * p * kk));
  for (int64_t n0 = 0; n0 < s.n; n0 += chunk) {
    int64_t nb = std::min(chunk, s.n - n0);
    for (int64_t g = 0; g < s.groups; ++g) {
#pragma omp parallel for if (nb > 1)
      for (int64_t i = 0; i < nb; ++i) im2col(s, x + (n0 + i) * s.h * s.w * s.c, g, col + i * p * kk);
      gemm<T>(true, false, og, kk, nb * p, T(1), gy + n0 * p * s.o + g * og, s.o, col, kk, T(1),
              gw + g * og * kk, kk);
    }
  }
}

#define INST(T)                                                                \
  template void conv2d_forward<T>(const ConvShape&, const T*, const T*, T*);   \
  template void conv2d_input_grad<T>(const ConvShape&, const T*, const T*, T*); \
  template void conv2d_weight_grad<T>(const ConvShape&, const T*, const T*, T*);
INST(float)
INST(double)

}  // namespace bissl::cpu
