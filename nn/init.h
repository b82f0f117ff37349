// Parameter initialisation with torch.nn.init's formulas. Every function fills `tensor` in place
// (no autograd; any device and floating dtype) from the global generator (se::manual_seed), so a
// seed reproduces a model; the numbers differ from PyTorch's generator, the distributions do not.
#pragma once

#include <string_view>

#include "engine/tensor.h"

namespace se::nn::init {

enum class FanMode { fan_in, fan_out };

struct Fans {
  int64_t fan_in = 0, fan_out = 0;
};
// torch.nn.init._calculate_fan_in_and_fan_out: size(1) and size(0) times the receptive field
// (the product of the dims after the first two); needs at least 2 dims.
Fans calculate_fans(const Tensor& tensor);
// torch.nn.init.calculate_gain: linear, conv*, sigmoid 1; tanh 5/3; relu sqrt(2);
// leaky_relu sqrt(2 / (1 + param^2)) (param = negative slope, default 0.01); selu 3/4.
double calculate_gain(std::string_view nonlinearity, double param = 0.01);

void uniform_(Tensor& tensor, double low = 0.0, double high = 1.0);
void normal_(Tensor& tensor, double mean = 0.0, double std = 1.0);
// Normal(mean, std) truncated to [a, b] by inverse-CDF sampling, as torch.nn.init.trunc_normal_
// (the absolute bounds a and b, not in units of std).
void trunc_normal_(Tensor& tensor, double mean = 0.0, double std = 1.0, double a = -2.0, double b = 2.0);
void constant_(Tensor& tensor, double value);
void zeros_(Tensor& tensor);
void ones_(Tensor& tensor);
// He initialisation: std = gain(nonlinearity, a) / sqrt(fan); uniform takes bound sqrt(3) * std.
void kaiming_uniform_(Tensor& tensor, double a = 0.0, FanMode mode = FanMode::fan_in,
                      std::string_view nonlinearity = "leaky_relu");
void kaiming_normal_(Tensor& tensor, double a = 0.0, FanMode mode = FanMode::fan_in,
                     std::string_view nonlinearity = "leaky_relu");
// Glorot initialisation: std = gain * sqrt(2 / (fan_in + fan_out)).
void xavier_uniform_(Tensor& tensor, double gain = 1.0);
void xavier_normal_(Tensor& tensor, double gain = 1.0);

// The inverse error function on (-1, 1), to double precision (trunc_normal_ uses it).
double erfinv(double y);

}  // namespace se::nn::init
