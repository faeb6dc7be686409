#include <cmath>
#include <cstring>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/strided.h"
#include "kernels/elementwise_math.h"

namespace bissl::cpu {

namespace {
template <class T>
inline T unary_one(Unary op, T x, T s) {
  return kern_math::unary_element(op, x, s);
}

template <class T, class F>
void binary_loop(const T* a, const Dims& sa, const T* b, const Dims& sb, T* out, const Dims& shape, F f) {
  Dims so(shape.size());
  int64_t acc = 1;
  for (int i = int(shape.size()) - 1; i >= 0; --i) so[i] = acc, acc *= shape[i];
  strided_for<3>(shape, {&so, &sa, &sb}, [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
    T* o = out + off[0];
    const T* pa = a + off[1];
    const T* pb = b + off[2];
    if (st[1] == 1 && st[2] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(pa[i], pb[i]);
    } else if (st[1] == 1 && st[2] == 0) {
      T bv = *pb;
      for (int64_t i = 0; i < n; ++i) o[i] = f(pa[i], bv);
    } else if (st[1] == 0 && st[2] == 1) {
      T av = *pa;
      for (int64_t i = 0; i < n; ++i) o[i] = f(av, pb[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i] = f(pa[i * st[1]], pb[i * st[2]]);
    }
  });
}
}  // namespace

template <class T>
void unary(Unary op, const T* x, T* y, int64_t n, double scalar) {
  T s = T(scalar);
  switch (op) {  // the hot simple cases get their own loops so they vectorise
    case Unary::Relu:
#pragma omp parallel for if (n > 65536)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
      return;
    case Unary::MulScalar:
#pragma omp parallel for if (n > 65536)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
      return;
    case Unary::AddScalar:
#pragma omp parallel for if (n > 65536)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] + s;
      return;
    default:
#pragma omp parallel for if (n > 16384)
      for (int64_t i = 0; i < n; ++i) y[i] = unary_one(op, x[i], s);
  }
}

template <class T>
void binary(Binary op, const T* a, const Dims& sa, const T* b, const Dims& sb, T* out, const Dims& shape) {
  switch (op) {
    case Binary::Add: return binary_loop(a, sa, b, sb, out, shape, [](T x, T y) { return x + y; });
    case Binary::Sub: return binary_loop(a, sa, b, sb, out, shape, [](T x, T y) { return x - y; });
    case Binary::Mul: return binary_loop(a, sa, b, sb, out, shape, [](T x, T y) { return x * y; });
    case Binary::Div: return binary_loop(a, sa, b, sb, out, shape, [](T x, T y) { return x / y; });
    case Binary::MaskPositive:
      return binary_loop(a, sa, b, sb, out, shape, [](T x, T y) { return y > T(0) ? x : T(0); });
  }
}

template <class T>
void where(const T* c, const Dims& sc, const T* a, const Dims& sa, const T* b, const Dims& sb, T* out,
           const Dims& shape) {
  Dims so(shape.size());
  int64_t acc = 1;
  for (int i = int(shape.size()) - 1; i >= 0; --i) so[i] = acc, acc *= shape[i];
  strided_for<4>(shape, {&so, &sc, &sa, &sb},
                 [&](const std::array<int64_t, 4>& off, int64_t n, const std::array<int64_t, 4>& st) {
                   for (int64_t i = 0; i < n; ++i)
                     out[off[0] + i * st[0]] =
                         c[off[1] + i * st[1]] != T(0) ? a[off[2] + i * st[2]] : b[off[3] + i * st[3]];
                 });
}

void strided_copy(void* dst, const Dims& sdst, const void* src, const Dims& ssrc, const Dims& shape,
                  int64_t elem_size) {
  auto* d = static_cast<char*>(dst);
  auto* s = static_cast<const char*>(src);
  strided_for<2>(shape, {&sdst, &ssrc}, [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
    char* pd = d + off[0] * elem_size;
    const char* ps = s + off[1] * elem_size;
    if (st[0] == 1 && st[1] == 1) {
      std::memcpy(pd, ps, size_t(n * elem_size));
    } else if (elem_size == 8) {
      for (int64_t i = 0; i < n; ++i) reinterpret_cast<int64_t*>(pd)[i * st[0]] = reinterpret_cast<const int64_t*>(ps)[i * st[1]];
    } else if (elem_size == 4) {
      for (int64_t i = 0; i < n; ++i) reinterpret_cast<int32_t*>(pd)[i * st[0]] = reinterpret_cast<const int32_t*>(ps)[i * st[1]];
    } else {
      for (int64_t i = 0; i < n; ++i) std::memcpy(pd + i * st[0] * elem_size, ps + i * st[1] * elem_size, size_t(elem_size));
    }
  });
}

namespace {
inline float bf16_to_float(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return uint16_t((u >> 16) | 0x40);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
template <class D, class F>
void convert_loop(const void* src, int kind, int64_t n, F store) {
  switch (kind) {
    case 0: for (int64_t i = 0; i < n; ++i) store(i, static_cast<const float*>(src)[i]); break;
    case 1: for (int64_t i = 0; i < n; ++i) store(i, static_cast<const double*>(src)[i]); break;
    case 2: for (int64_t i = 0; i < n; ++i) store(i, static_cast<const int64_t*>(src)[i]); break;
    case 3: for (int64_t i = 0; i < n; ++i) store(i, bf16_to_float(static_cast<const uint16_t*>(src)[i])); break;
  }
}
}  // namespace

template <class T>
void convert(const void* src, int kind, T* dst, int64_t n) {
  convert_loop<T>(src, kind, n, [&](int64_t i, auto v) { dst[i] = T(v); });
}
void convert_to_bf16(const void* src, int kind, uint16_t* dst, int64_t n) {
  convert_loop<float>(src, kind, n, [&](int64_t i, auto v) { dst[i] = float_to_bf16(float(v)); });
}
void convert_to_i64(const void* src, int kind, int64_t* dst, int64_t n) {
  convert_loop<int64_t>(src, kind, n, [&](int64_t i, auto v) { dst[i] = int64_t(v); });
}

#define INST(T)                                                                                        \
  template void unary<T>(Unary, const T*, T*, int64_t, double);                                       \
  template void binary<T>(Binary, const T*, const Dims&, const T*, const Dims&, T*, const Dims&);      \
  template void where<T>(const T*, const Dims&, const T*, const Dims&, const T*, const Dims&, T*,      \
                         const Dims&);                                                                 \
  template void convert<T>(const void*, int, T*, int64_t);
INST(float)
INST(double)

}  // namespace bissl::cpu
