#pragma once
// f32 convolutions through oneDNN on the CPU (conv_onednn.cpp), the way
// cuDNN takes them on the GPU; im2col + GEMM (conv.cpp) stays for f64, for
// portable numerics and as the fallback.
//
// Which path a convolution takes (chosen without timing, so the same bits
// run after run, as every CPU step is): BISSL_CPU_CONV in the environment,
// or set_conv_path.
//   auto    (default) oneDNN for f32 under default numerics wherever it has
//           a primitive for the shape; im2col otherwise
//   onednn  the same (named, for benchmarks and tests)
//   im2col  im2col + GEMM always (the arithmetic of earlier versions)
// Portable numerics (engine/numerics.h) always takes im2col: oneDNN picks
// its kernels by the CPU's ISA and splits filter-gradient sums by thread.
#include <string>

#include "kernels/common.h"

namespace bissl::cpu {

using kern::ConvShape;

enum class ConvPath { Auto = 0, Im2col = 1, OneDNN = 2 };
ConvPath conv_path();
void set_conv_path(ConvPath p);
const char* conv_path_name(ConvPath p);

// Whether this build has oneDNN (BISSL_WITH_ONEDNN).
bool onednn_available();

// Each returns false when the path is im2col, numerics are portable, or
// oneDNN has no primitive for the shape: the caller then runs im2col.
bool onednn_conv2d_forward(const ConvShape& s, const float* x, const float* w, float* y);
bool onednn_conv2d_input_grad(const ConvShape& s, const float* gy, const float* w, float* gx);
bool onednn_conv2d_weight_grad(const ConvShape& s, const float* x, const float* gy, float* gw);

// One line per shape seen: oneDNN's implementation for forward | data
// gradient | filter gradient, or im2col.
std::string onednn_conv_choices();
// Drops every kept primitive (tests: the choices of one case's shapes only).
void onednn_conv_forget();

}  // namespace bissl::cpu
