#pragma once
// What this build and machine can run on.
#include <string>

#include "engine/tensor.h"

namespace bissl {

bool cuda_built();            // compiled with the CUDA backend
int cuda_device_count();      // 0 when not built or no device
std::string backend_summary();  // one line for logs: "cpu (2 threads); cuda: ..."

// The allocator for a device (null when the device is unavailable).
AllocFn device_allocator(Device d);
// Page-locked CPU storage (Storage::pinned), cached by size; null when no
// GPU is present.
AllocFn pinned_allocator();
// Byte copies between any two devices (waiting for the device when the host
// is involved), and zero fills.
void copy_bytes(void* dst, Device dd, const void* src, Device sd, size_t bytes);
// From pinned CPU storage to a device, without waiting: `src_owner` is held
// until the copy has passed.
void copy_to_device_async(void* dst, Device dd, const void* src, std::shared_ptr<Storage> src_owner,
                          size_t bytes);
void zero_bytes(void* dst, Device d, size_t bytes);
// n elements of elem_size bytes on a device set to the low bytes of
// `pattern` (no host wait on CUDA).
void fill_elements(void* dst, Device d, size_t elem_size, int64_t n, uint64_t pattern);
// CUDA pool statistics (0 without CUDA).
size_t cuda_peak_bytes();
void cuda_reset_peak_bytes();
void cuda_synchronize();
// How many times the host has waited for the CUDA stream since the start
// (device<->host copies, synchronize); 0 without CUDA. bissl-bench reports it
// per training step.
int64_t cuda_host_syncs();
// Page-locked host bytes made so far (the loader's staging; 0 without CUDA).
size_t cuda_pinned_bytes();
// Index checks of CUDA ops (gathers, cross-entropy targets, one-hot): by
// default queued on the device and reported at the host's next wait for it
// (no wait inside a training step); on = checked at the op, waiting.
void cuda_set_eager_index_checks(bool on);
// Fill new CUDA allocations with NaN bytes (parity tests: catches unwritten outputs).
void cuda_set_poison(bool on);
// TF32 tensor cores for f32 GEMMs on CUDA (off by default).
void cuda_set_tf32(bool on);
// cuDNN for f32 convolutions on CUDA (on by default); off = im2col + cuBLAS.
void cuda_set_cudnn(bool on);
// Deterministic CUDA training steps (off by default): cuDNN limited to the
// algorithms it marks deterministic, chosen by its heuristics instead of by
// timing, and no timed cuDNN-vs-im2col choice (autotuning off; setting this
// to false turns autotuning back on). The rest of a ResNet step has no atomic
// reductions; index_add / scatter_add / put_add / scatter_rows_add still add
// atomically, which is exact (order-free) where each element gets one add:
// MAE's token gathers, the max/min VJPs; not with repeated indices.
void cuda_set_deterministic(bool on);
// f32 convolutions on CUDA: time cuDNN against im2col + cuBLAS on the first
// call with each shape and keep the faster (on by default; the first call
// waits for the device). Off: cuDNN whenever it takes the shape.
void cuda_set_conv_autotune(bool on);
// What the autotuning chose so far, e.g. "forward: 40 cuDNN, 13 GEMM; ...".
std::string cuda_conv_choices();

// f32 convolutions on the CPU: "auto" (oneDNN where it has a primitive for
// the shape, under default numerics), "onednn" (the same, named), or
// "im2col" (im2col + GEMM always); the default comes from BISSL_CPU_CONV, else
// auto (kernels/cpu/conv_onednn.h). An Error naming the value otherwise.
void cpu_set_conv_path(const std::string& path);
std::string cpu_conv_path();
// BISSL_CPU_BN's path for f32 batch norm: "own" (default) or "onednn" (kernels/cpu/norm_onednn.h).
std::string cpu_bn_path();
// oneDNN's implementation per shape seen so far, one line each.
std::string cpu_conv_choices();

}  // namespace bissl
