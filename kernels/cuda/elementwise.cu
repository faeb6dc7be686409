// Elementwise kernels: fill, unary maps, broadcast binary ops, where,
// strided copies (permute/slice/expand/pad/concat), dtype conversion.
#include <cuda_bf16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/elementwise_math.h"

namespace bissl::cuda {

namespace {

template <class T>
__device__ inline T unary_one(Unary op, T x, T s) {
  return kern_math::unary_element(op, x, s);
}

template <class T>
__global__ void k_unary(Unary op, const T* x, T* y, int64_t n, T s) {
  BISSL_GRID_LOOP(i, n) y[i] = unary_one(op, x[i], s);
}

template <class T>
__device__ inline T binary_one(Binary op, T a, T b) {
  switch (op) {
    case Binary::Add: return a + b;
    case Binary::Sub: return a - b;
    case Binary::Mul: return a * b;
    case Binary::Div: return a / b;
    case Binary::MaskPositive: return b > T(0) ? a : T(0);
  }
  return a;
}

template <class T>
__global__ void k_binary_same(Binary op, const T* a, const T* b, T* out, int64_t n) {
  BISSL_GRID_LOOP(i, n) out[i] = binary_one(op, a[i], b[i]);
}

template <class T>
__global__ void k_binary(Binary op, const T* a, const T* b, T* out, int64_t n, StridedArgs<3> s) {
  BISSL_GRID_LOOP(i, n) {
    int64_t off[3];
    strided_offsets<3>(s, i, off);
    out[off[0]] = binary_one(op, a[off[1]], b[off[2]]);
  }
}

template <class T>
__global__ void k_where(const T* c, const T* a, const T* b, T* out, int64_t n, StridedArgs<4> s) {
  BISSL_GRID_LOOP(i, n) {
    int64_t off[4];
    strided_offsets<4>(s, i, off);
    out[off[0]] = c[off[1]] != T(0) ? a[off[2]] : b[off[3]];
  }
}

template <class E>
__global__ void k_copy(E* dst, const E* src, int64_t n, StridedArgs<2> s) {
  BISSL_GRID_LOOP(i, n) {
    int64_t off[2];
    strided_offsets<2>(s, i, off);
    dst[off[0]] = src[off[1]];
  }
}

__device__ inline float bf16_bits_to_float(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }
__device__ inline uint16_t float_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return uint16_t((u >> 16) | 0x40);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
__device__ inline double load_kind(const void* src, int kind, int64_t i) {
  switch (kind) {
    case 0: return static_cast<const float*>(src)[i];
    case 1: return static_cast<const double*>(src)[i];
    case 2: return double(static_cast<const int64_t*>(src)[i]);
    default: return bf16_bits_to_float(static_cast<const uint16_t*>(src)[i]);
  }
}
template <class T>
__global__ void k_convert(const void* src, int kind, T* dst, int64_t n) {
  BISSL_GRID_LOOP(i, n) {
    // f32 and i64 sources converted straight to T, as the CPU does (through
    // double, an i64 beyond 2^53 would be rounded twice on its way to f32).
    if (kind == 0) dst[i] = T(static_cast<const float*>(src)[i]);
    else if (kind == 2) dst[i] = T(static_cast<const int64_t*>(src)[i]);
    else dst[i] = T(load_kind(src, kind, i));
  }
}
__global__ void k_to_bf16(const void* src, int kind, uint16_t* dst, int64_t n) {
  BISSL_GRID_LOOP(i, n) {
    const float v = kind == 2 ? float(static_cast<const int64_t*>(src)[i]) : float(load_kind(src, kind, i));
    dst[i] = float_to_bf16_bits(v);
  }
}
__global__ void k_to_i64(const void* src, int kind, int64_t* dst, int64_t n) {
  BISSL_GRID_LOOP(i, n) dst[i] = kind == 2 ? static_cast<const int64_t*>(src)[i] : int64_t(load_kind(src, kind, i));
}

Dims contiguous(const Dims& shape) {
  Dims s(shape.size());
  int64_t acc = 1;
  for (int i = int(shape.size()) - 1; i >= 0; --i) s[size_t(i)] = acc, acc *= shape[size_t(i)];
  return s;
}
int64_t count(const Dims& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

}  // namespace

template <class T>
void unary(Unary op, const T* x, T* y, int64_t n, double s) {
  if (n == 0) return;
  k_unary<T><<<blocks_for(n), kThreads, 0, stream()>>>(op, x, y, n, T(s));
  BISSL_LAUNCH_OK("unary");
}

template <class T>
void binary(Binary op, const T* a, const Dims& sa, const T* b, const Dims& sb, T* out, const Dims& shape) {
  int64_t n = count(shape);
  if (n == 0) return;
  Dims so = contiguous(shape);
  if (sa == so && sb == so) {
    k_binary_same<T><<<blocks_for(n), kThreads, 0, stream()>>>(op, a, b, out, n);
  } else {
    const Dims* st[3] = {&so, &sa, &sb};
    k_binary<T><<<blocks_for(n), kThreads, 0, stream()>>>(op, a, b, out, n, make_strided<3>(shape, st, "binary"));
  }
  BISSL_LAUNCH_OK("binary");
}

template <class T>
void where(const T* c, const Dims& sc, const T* a, const Dims& sa, const T* b, const Dims& sb, T* out,
           const Dims& shape) {
  int64_t n = count(shape);
  if (n == 0) return;
  Dims so = contiguous(shape);
  const Dims* st[4] = {&so, &sc, &sa, &sb};
  k_where<T><<<blocks_for(n), kThreads, 0, stream()>>>(c, a, b, out, n, make_strided<4>(shape, st, "where"));
  BISSL_LAUNCH_OK("where");
}

void strided_copy(void* dst, const Dims& sdst, const void* src, const Dims& ssrc, const Dims& shape,
                  int64_t elem_size) {
  int64_t n = count(shape);
  if (n == 0) return;
  const Dims* st[2] = {&sdst, &ssrc};
  auto args = make_strided<2>(shape, st, "strided_copy");
  unsigned b = blocks_for(n);
  switch (elem_size) {
    case 8: k_copy<int64_t><<<b, kThreads, 0, stream()>>>((int64_t*)dst, (const int64_t*)src, n, args); break;
    case 4: k_copy<int32_t><<<b, kThreads, 0, stream()>>>((int32_t*)dst, (const int32_t*)src, n, args); break;
    case 2: k_copy<uint16_t><<<b, kThreads, 0, stream()>>>((uint16_t*)dst, (const uint16_t*)src, n, args); break;
    default: fail("strided_copy", "unsupported element size " + std::to_string(elem_size));
  }
  BISSL_LAUNCH_OK("strided_copy");
}

template <class T>
void convert(const void* src, int kind, T* dst, int64_t n) {
  if (n == 0) return;
  k_convert<T><<<blocks_for(n), kThreads, 0, stream()>>>(src, kind, dst, n);
  BISSL_LAUNCH_OK("convert");
}
void convert_to_bf16(const void* src, int kind, uint16_t* dst, int64_t n) {
  if (n == 0) return;
  k_to_bf16<<<blocks_for(n), kThreads, 0, stream()>>>(src, kind, dst, n);
  BISSL_LAUNCH_OK("convert_to_bf16");
}
void convert_to_i64(const void* src, int kind, int64_t* dst, int64_t n) {
  if (n == 0) return;
  k_to_i64<<<blocks_for(n), kThreads, 0, stream()>>>(src, kind, dst, n);
  BISSL_LAUNCH_OK("convert_to_i64");
}

#define INST(T)                                                                                   \
  template void unary<T>(Unary, const T*, T*, int64_t, double);                                   \
  template void binary<T>(Binary, const T*, const Dims&, const T*, const Dims&, T*, const Dims&); \
  template void where<T>(const T*, const Dims&, const T*, const Dims&, const T*, const Dims&, T*, \
                         const Dims&);                                                            \
  template void convert<T>(const void*, int, T*, int64_t);
INST(float)
INST(double)

}  // namespace bissl::cuda
