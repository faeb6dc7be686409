#pragma once
// f32 batch norm (training forward, backward) through oneDNN on the CPU
// (norm_onednn.cpp); our own kernels (norm.cpp) stay for f64, for portable
// numerics, for the tangent rules (JVPs), and as the fallback.
//
// Which path batch norm takes (chosen without timing): BISSL_CPU_BN in the
// environment, or set_bn_path.
//   auto  (default) oneDNN for f32 under default numerics
//   own   our kernels always (the arithmetic of earlier versions)
// oneDNN's kernel (bnorm_jit:avx512_core here) is 1.5-3x faster than ours at
// the main job's shapes (docs/performance.md, session 17). Its sums are f32
// in its own order, split by thread; ours are double in fixed chunks. The
// two agree within f32 rounding, not bit for bit.
#include <cstdint>

namespace bissl::cpu {

enum class BnPath { Auto = 0, Own = 1 };
BnPath bn_path();
void set_bn_path(BnPath p);
const char* bn_path_name(BnPath p);

// x is n × spatial × c (NHWC, or [n, c] with spatial 1). Each returns false
// when the path is own, numerics are portable, the build has no oneDNN, or
// oneDNN has no kernel of its own for the shape: the caller runs ours.
//
// Forward: y = (x − mean)·invstd·γ + β with the batch's mean and biased
// variance, written to mean and var. gamma / beta may be null (1 and 0).
// The statistics do not depend on gamma and beta: the same call with other
// ones (or none) gives the same mean and var bits.
bool onednn_batch_norm_forward(int64_t n, int64_t spatial, int64_t c, const float* x, const float* gamma,
                               const float* beta, double eps, float* y, float* mean, float* var);
// Backward from the forward's mean and invstd (= 1/sqrt(var + eps)):
// gx, ggamma (Σ gy·x̂), gbeta (Σ gy). gamma may be null (1).
bool onednn_batch_norm_backward(int64_t n, int64_t spatial, int64_t c, const float* gy, const float* x,
                                const float* mean, const float* invstd, const float* gamma, float* gx, float* ggamma,
                                float* gbeta);

}  // namespace bissl::cpu
