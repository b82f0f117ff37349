#include "nn/init.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"

namespace se::nn::init {
namespace {

void check_target(const Tensor& tensor, const char* fn) {
  SE_CHECK(tensor.defined(), "init::", fn, ": tensor is undefined");
  SE_CHECK(is_floating(tensor.dtype()), "init::", fn, ": needs a floating tensor, got ", tensor.dtype());
}

// Writes `values` (computed on the CPU in f32) into `tensor`, converting dtype and device.
void assign(Tensor& tensor, const Tensor& values) {
  NoGradGuard no_grad;
  tensor.copy_(values);
}

double fan_of(const Tensor& tensor, FanMode mode) {
  const Fans fans = calculate_fans(tensor);
  const int64_t fan = mode == FanMode::fan_in ? fans.fan_in : fans.fan_out;
  SE_CHECK(fan > 0, "init: tensor of shape ", shape_str(tensor.shape()), " has a zero fan");
  return static_cast<double>(fan);
}

}  // namespace

Fans calculate_fans(const Tensor& tensor) {
  SE_CHECK(tensor.dim() >= 2, "init: fan in and fan out need a tensor of at least 2 dims, got shape ",
           shape_str(tensor.shape()));
  int64_t receptive_field = 1;
  for (int64_t d = 2; d < tensor.dim(); ++d) receptive_field *= tensor.size(d);
  return {tensor.size(1) * receptive_field, tensor.size(0) * receptive_field};
}

double calculate_gain(std::string_view nonlinearity, double param) {
  if (nonlinearity == "linear" || nonlinearity == "sigmoid" || nonlinearity.starts_with("conv")) return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nonlinearity == "selu") return 3.0 / 4.0;
  SE_THROW("init::calculate_gain: unknown nonlinearity '", nonlinearity,
           "' (expected linear, conv1d, conv2d, conv3d, sigmoid, tanh, relu, leaky_relu or selu)");
}

void uniform_(Tensor& tensor, double low, double high) {
  check_target(tensor, "uniform_");
  SE_CHECK(low <= high, "init::uniform_: low ", low, " is above high ", high);
  assign(tensor, add(mul(rand(tensor.shape()), high - low), low));
}

void normal_(Tensor& tensor, double mean, double std) {
  check_target(tensor, "normal_");
  SE_CHECK(std >= 0.0, "init::normal_: std must be non-negative, got ", std);
  assign(tensor, add(mul(randn(tensor.shape()), std), mean));
}

double erfinv(double y) {
  if (y <= -1.0) return y == -1.0 ? -std::numeric_limits<double>::infinity() : std::nan("");
  if (y >= 1.0) return y == 1.0 ? std::numeric_limits<double>::infinity() : std::nan("");
  // Giles' single-precision approximation as the start, then Newton steps on erf(x) - y.
  const double w = -std::log((1.0 - y) * (1.0 + y));
  double x;
  if (w < 5.0) {
    const double t = w - 2.5;
    double p = 2.81022636e-08;
    for (double c : {3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
                     -0.00417768164, 0.246640727, 1.50140941})
      p = c + p * t;
    x = p * y;
  } else {
    const double t = std::sqrt(w) - 3.0;
    double p = -0.000200214257;
    for (double c : {0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047,
                     1.00167406, 2.83297682})
      p = c + p * t;
    x = p * y;
  }
  const double two_over_sqrt_pi = 2.0 / std::sqrt(M_PI);
  for (int i = 0; i < 3; ++i) x -= (std::erf(x) - y) / (two_over_sqrt_pi * std::exp(-x * x));
  return x;
}

void trunc_normal_(Tensor& tensor, double mean, double std, double a, double b) {
  check_target(tensor, "trunc_normal_");
  SE_CHECK(std > 0.0 && a < b, "init::trunc_normal_: needs std > 0 and a < b, got std ", std, ", [", a, ", ", b, "]");
  auto normal_cdf = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };
  const double low = 2.0 * normal_cdf((a - mean) / std) - 1.0;
  const double high = 2.0 * normal_cdf((b - mean) / std) - 1.0;
  std::vector<double> values = rand(tensor.shape()).to_vector<double>();
  for (double& v : values) {
    const double x = mean + std * std::sqrt(2.0) * erfinv(low + (high - low) * v);
    v = std::min(std::max(x, a), b);
  }
  assign(tensor, from_vector<double>(values, tensor.shape()));
}

void constant_(Tensor& tensor, double value) {
  check_target(tensor, "constant_");
  NoGradGuard no_grad;
  tensor.fill_(value);
}
void zeros_(Tensor& tensor) { constant_(tensor, 0.0); }
void ones_(Tensor& tensor) { constant_(tensor, 1.0); }

void kaiming_uniform_(Tensor& tensor, double a, FanMode mode, std::string_view nonlinearity) {
  check_target(tensor, "kaiming_uniform_");
  const double bound = std::sqrt(3.0) * calculate_gain(nonlinearity, a) / std::sqrt(fan_of(tensor, mode));
  uniform_(tensor, -bound, bound);
}

void kaiming_normal_(Tensor& tensor, double a, FanMode mode, std::string_view nonlinearity) {
  check_target(tensor, "kaiming_normal_");
  normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / std::sqrt(fan_of(tensor, mode)));
}

void xavier_uniform_(Tensor& tensor, double gain) {
  check_target(tensor, "xavier_uniform_");
  const Fans fans = calculate_fans(tensor);
  const double std = gain * std::sqrt(2.0 / double(fans.fan_in + fans.fan_out));
  uniform_(tensor, -std::sqrt(3.0) * std, std::sqrt(3.0) * std);
}

void xavier_normal_(Tensor& tensor, double gain) {
  check_target(tensor, "xavier_normal_");
  const Fans fans = calculate_fans(tensor);
  normal_(tensor, 0.0, gain * std::sqrt(2.0 / double(fans.fan_in + fans.fan_out)));
}

}  // namespace se::nn::init
