#pragma once
// Parameter initialisers (PyTorch's torch.nn.init, same formulas). Each
// writes into `t` in place (no tape) with draws from the Philox generator,
// and returns the same handle. Draws are made in f64 for the truncated
// normal and in t's dtype otherwise, so a seed gives the same values on every
// machine.
//
// Fans follow our weight layouts: the *last* axis is the input channel axis.
//   Linear weight [out, in]              fan_in = in,          fan_out = out
//   Conv weight   OHWI [out, kh, kw, in/groups]
//                                        fan_in = kh·kw·in/groups, fan_out = out·kh·kw
// In general fan_in = numel / shape[0], fan_out = shape[0] · Π shape[1:-1].
// This equals PyTorch's fans for the corresponding [out, in] / OIHW tensor.
#include <cstdint>

#include "engine/random.h"
#include "engine/tensor.h"

namespace bissl::nn::init {

enum class FanMode { FanIn, FanOut };
enum class Nonlinearity { Linear, Conv, Sigmoid, Tanh, Relu, LeakyRelu, Selu };

int64_t fan_in(const Tensor& w);   // needs rank >= 2
int64_t fan_out(const Tensor& w);  // needs rank >= 2

// torch.nn.init.calculate_gain: Linear/Conv/Sigmoid 1, Tanh 5/3, Relu √2,
// LeakyRelu √(2/(1+param²)) (param = negative slope), Selu 3/4.
double calculate_gain(Nonlinearity nl, double param = 0.01);

Tensor uniform_(const Tensor& t, Generator& g, double lo = 0.0, double hi = 1.0);
Tensor normal_(const Tensor& t, Generator& g, double mean = 0.0, double std = 1.0);
Tensor constant_(const Tensor& t, double v);
Tensor zeros_(const Tensor& t);
Tensor ones_(const Tensor& t);

// Kaiming (He): std = gain / √fan with gain = calculate_gain(nl, a);
// uniform draws from ±√3·std, normal from N(0, std²). PyTorch's defaults:
// a = 0, fan_in, leaky_relu (so gain = √2). PyTorch's Linear/Conv default
// weight init is kaiming_uniform_(w, g, √5).
Tensor kaiming_uniform_(const Tensor& t, Generator& g, double a = 0.0, FanMode mode = FanMode::FanIn,
                        Nonlinearity nl = Nonlinearity::LeakyRelu);
Tensor kaiming_normal_(const Tensor& t, Generator& g, double a = 0.0, FanMode mode = FanMode::FanIn,
                       Nonlinearity nl = Nonlinearity::LeakyRelu);

// Glorot: std = gain·√(2/(fan_in+fan_out)); uniform over ±√3·std.
Tensor xavier_uniform_(const Tensor& t, Generator& g, double gain = 1.0);
Tensor xavier_normal_(const Tensor& t, Generator& g, double gain = 1.0);

// N(mean, std²) conditioned on [a, b] (absolute bounds, as in PyTorch and
// timm, not in units of std), by inverse CDF: u ~ U(Φ(α), Φ(β)),
// x = mean + std·Φ⁻¹(u), clamped to [a, b]. Every value lies in [a, b].
Tensor trunc_normal_(const Tensor& t, Generator& g, double mean = 0.0, double std = 1.0, double a = -2.0,
                     double b = 2.0);

// PyTorch's default init of a Linear/Conv layer: weight
// kaiming_uniform_(a = √5), i.e. U(±1/√fan_in); bias (if defined)
// U(±1/√fan_in) with the weight's fan_in.
void torch_default_init_(const Tensor& weight, const Tensor& bias, Generator& g);

}  // namespace bissl::nn::init
