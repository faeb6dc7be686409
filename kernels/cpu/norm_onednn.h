#pragma once
// f32 batch norm (training forward, backward) through oneDNN on the CPU
// (norm_onednn.cpp); our own kernels (norm.cpp) stay for f64, for portable
// numerics, for the tangent rules (JVPs), and as the fallback.
//
// Which path batch norm takes: BISSL_CPU_BN in the environment, or
// set_bn_path.
//   own     (default) our kernels (norm.cpp): double sums in fixed chunks
//   onednn  oneDNN for f32 under default numerics (f64 and portable
//           numerics keep ours)
// oneDNN's kernel (bnorm_jit:avx512_core here) is 1.5-3x faster than ours at
// the main job's shapes on a quiet machine, but it meets its threads at a
// spinning barrier of its own inside each call: beside one busy process the
// main job's SimCLR step took 270-390 ms with it against 168-172 ms with
// ours (docs/performance.md, session 17). So it is not the default. Its sums
// are f32 in its own order, split by thread; the two agree within f32
// rounding, not bit for bit.
#include <cstdint>

namespace bissl::cpu {

enum class BnPath { Own = 0, OneDNN = 1 };
BnPath bn_path();
void set_bn_path(BnPath p);
const char* bn_path_name(BnPath p);

// Whether a call below would try oneDNN (path onednn, default numerics,
// oneDNN in the build); the caller can skip preparing for it otherwise.
bool onednn_batch_norm_wanted();
// Calls that oneDNN ran (tests: that the path is really taken).
int64_t onednn_batch_norm_calls();

// x is n × spatial × c (NHWC, or [n, c] with spatial 1). Each returns false
// when oneDNN is not wanted (above) or has no kernel of its own for the
// shape: the caller runs ours.
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
