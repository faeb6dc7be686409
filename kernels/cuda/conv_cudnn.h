#pragma once
// cuDNN convolutions for f32 (see conv_cudnn.cu). Each returns false when
// cuDNN is switched off or finds no algorithm, so the caller falls back.
#include "kernels/common.h"

namespace bissl::cuda {

bool cudnn_conv2d_forward(const kern::ConvShape& s, const float* x, const float* w, float* y);
bool cudnn_conv2d_input_grad(const kern::ConvShape& s, const float* gy, const float* w, float* gx);
bool cudnn_conv2d_weight_grad(const kern::ConvShape& s, const float* x, const float* gy, float* gw);

}  // namespace bissl::cuda
