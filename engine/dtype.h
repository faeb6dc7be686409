#pragma once
// Element types and devices. bf16 is a storage type: it converts to and from
// f32 but no op computes in it on the CPU.
#include <cstdint>
#include <cstring>
#include <string>

#include "engine/error.h"

namespace bissl {

enum class DType : uint8_t { F32, F64, I64, BF16 };
enum class Device : uint8_t { CPU, CUDA };
constexpr int kNumDevices = 2;

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::I64: return 8;
    case DType::BF16: return 2;
  }
  return 0;
}
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::I64: return "i64";
    case DType::BF16: return "bf16";
  }
  return "?";
}
inline bool is_floating(DType t) { return t == DType::F32 || t == DType::F64; }
inline const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

// bf16: the top 16 bits of an f32, rounded to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return uint16_t((u >> 16) | 0x40);
  uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return uint16_t((u + rounding) >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace bissl

// Runs BODY with `scalar_t` bound to the C++ type of a floating dtype.
#define BISSL_DISPATCH_FLOAT(DT, OPNAME, ...)                                         \
  [&] {                                                                              \
    switch (DT) {                                                                    \
      case ::bissl::DType::F32: { using scalar_t = float; return __VA_ARGS__(); }    \
      case ::bissl::DType::F64: { using scalar_t = double; return __VA_ARGS__(); }   \
      default:                                                                       \
        throw ::bissl::Error(::bissl::str(OPNAME, ": expected dtype f32 or f64, found ", \
                                          ::bissl::dtype_name(DT)));                 \
    }                                                                                \
  }()
