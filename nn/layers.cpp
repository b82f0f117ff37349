#include "nn/layers.h"

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "engine/autograd.h"
#include "nn/init.h"

namespace se::nn {
namespace {

// Python's float formatting as PyTorch's repr shows it (1e-05, 0.1, 2.0).
std::string py_float(double value) {
  std::ostringstream out;
  out << value;
  std::string text = out.str();
  if (text.find_first_of(".en") == std::string::npos) return detail::concat(text, ".0");
  auto e = text.find("e-");
  if (e != std::string::npos && text.size() - e == 3) {
    return detail::concat(text.substr(0, e + 2), "0", text.substr(e + 2));  // 1e-5 -> 1e-05
  }
  return text;
}

std::string py_bool(bool value) { return value ? "True" : "False"; }

std::string pair_str(int64_t value) { return detail::concat("(", value, ", ", value, ")"); }

// PyTorch's default for Linear and Conv weights and biases: kaiming_uniform(a = sqrt(5)), which is
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias.
void reset_linear_like(Tensor& weight, Tensor& bias) {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double fan_in = static_cast<double>(init::calculate_fans(weight).fan_in);
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(fan_in) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

}  // namespace

// ---- Linear

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias)
    : UnaryModule("Linear"), in_features_(in_features), out_features_(out_features) {
  SE_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got in ", in_features, ", out ",
           out_features);
  weight = register_parameter("weight", empty({out_features, in_features}));
  if (has_bias) bias = register_parameter("bias", empty({out_features}));
  reset_parameters();
}

void Linear::reset_parameters() { reset_linear_like(weight, bias); }

std::string Linear::extra_repr() const {
  return detail::concat("in_features=", in_features_, ", out_features=", out_features_, ", bias=",
                        py_bool(bias.defined()));
}

Tensor Linear::forward_impl(const Tensor& x) {
  SE_CHECK(x.dim() >= 1 && x.size(-1) == in_features_, "Linear: input of shape ", shape_str(x.shape()),
           " does not end in in_features = ", in_features_);
  return linear(x, weight, bias);
}

// ---- Conv2d

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Conv2dOptions options)
    : UnaryModule("Conv2d"),
      in_channels_(in_channels),
      out_channels_(out_channels),
      kernel_size_(kernel_size),
      options_(options) {
  SE_CHECK(in_channels > 0 && out_channels > 0 && kernel_size > 0, "Conv2d: channels and kernel_size must be "
           "positive, got in ", in_channels, ", out ", out_channels, ", kernel ", kernel_size);
  SE_CHECK(options.groups > 0 && in_channels % options.groups == 0 && out_channels % options.groups == 0,
           "Conv2d: groups ", options.groups, " must divide in_channels ", in_channels, " and out_channels ",
           out_channels);
  SE_CHECK(options.stride > 0 && options.dilation > 0 && options.padding >= 0, "Conv2d: bad stride ",
           options.stride, ", dilation ", options.dilation, " or padding ", options.padding);
  weight = register_parameter("weight", empty({out_channels, in_channels / options.groups, kernel_size, kernel_size}));
  if (options.bias) bias = register_parameter("bias", empty({out_channels}));
  reset_parameters();
}

void Conv2d::reset_parameters() { reset_linear_like(weight, bias); }

std::string Conv2d::extra_repr() const {
  std::ostringstream out;
  out << in_channels_ << ", " << out_channels_ << ", kernel_size=" << pair_str(kernel_size_)
      << ", stride=" << pair_str(options_.stride);
  if (options_.padding != 0) out << ", padding=" << pair_str(options_.padding);
  if (options_.dilation != 1) out << ", dilation=" << pair_str(options_.dilation);
  if (options_.groups != 1) out << ", groups=" << options_.groups;
  if (!bias.defined()) out << ", bias=False";
  if (options_.activation == kernels::ConvActivation::relu) out << ", activation=relu";
  if (options_.activation == kernels::ConvActivation::gelu) out << ", activation=gelu";
  return out.str();
}

Tensor Conv2d::forward_impl(const Tensor& x) {
  Conv2dParams params;
  params.stride_h = params.stride_w = options_.stride;
  params.pad_h = params.pad_w = options_.padding;
  params.dilation_h = params.dilation_w = options_.dilation;
  params.groups = options_.groups;
  params.activation = options_.activation;
  return conv2d(x, weight, bias, params);
}

// ---- ConvTranspose2d

ConvTranspose2d::ConvTranspose2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
                                 ConvTranspose2dOptions options)
    : UnaryModule("ConvTranspose2d"),
      in_channels_(in_channels),
      out_channels_(out_channels),
      kernel_size_(kernel_size),
      options_(options) {
  SE_CHECK(in_channels > 0 && out_channels > 0 && kernel_size > 0, "ConvTranspose2d: channels and kernel_size "
           "must be positive, got in ", in_channels, ", out ", out_channels, ", kernel ", kernel_size);
  SE_CHECK(options.groups > 0 && in_channels % options.groups == 0 && out_channels % options.groups == 0,
           "ConvTranspose2d: groups ", options.groups, " must divide in_channels ", in_channels,
           " and out_channels ", out_channels);
  SE_CHECK(options.output_padding < options.stride || options.output_padding < options.dilation,
           "ConvTranspose2d: output_padding ", options.output_padding, " must be smaller than stride ",
           options.stride, " or dilation ", options.dilation);
  weight = register_parameter("weight", empty({in_channels, out_channels / options.groups, kernel_size, kernel_size}));
  if (options.bias) bias = register_parameter("bias", empty({out_channels}));
  reset_parameters();
}

void ConvTranspose2d::reset_parameters() { reset_linear_like(weight, bias); }

std::string ConvTranspose2d::extra_repr() const {
  std::ostringstream out;
  out << in_channels_ << ", " << out_channels_ << ", kernel_size=" << pair_str(kernel_size_)
      << ", stride=" << pair_str(options_.stride);
  if (options_.padding != 0) out << ", padding=" << pair_str(options_.padding);
  if (options_.dilation != 1) out << ", dilation=" << pair_str(options_.dilation);
  if (options_.output_padding != 0) out << ", output_padding=" << pair_str(options_.output_padding);
  if (options_.groups != 1) out << ", groups=" << options_.groups;
  if (!bias.defined()) out << ", bias=False";
  return out.str();
}

Tensor ConvTranspose2d::forward_impl(const Tensor& x) {
  ConvTranspose2dParams params;
  params.stride_h = params.stride_w = options_.stride;
  params.pad_h = params.pad_w = options_.padding;
  params.output_padding_h = params.output_padding_w = options_.output_padding;
  params.dilation_h = params.dilation_w = options_.dilation;
  params.groups = options_.groups;
  return conv_transpose2d(x, weight, bias, params);
}

// ---- BatchNorm2d

BatchNorm2d::BatchNorm2d(int64_t num_features, BatchNormOptions options)
    : UnaryModule("BatchNorm2d"), num_features_(num_features), options_(options) {
  SE_CHECK(num_features > 0, "BatchNorm2d: num_features must be positive, got ", num_features);
  if (options.affine) {
    weight = register_parameter("weight", ones({num_features}));
    bias = register_parameter("bias", zeros({num_features}));
  }
  if (options.track_running_stats) {
    running_mean = register_buffer("running_mean", zeros({num_features}));
    running_var = register_buffer("running_var", ones({num_features}));
    num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, {DType::i64}));
  }
}

std::string BatchNorm2d::extra_repr() const {
  return detail::concat(num_features_, ", eps=", py_float(options_.eps),
                        ", momentum=", options_.momentum ? py_float(*options_.momentum) : std::string("None"),
                        ", affine=", py_bool(options_.affine),
                        ", track_running_stats=", py_bool(options_.track_running_stats));
}

Tensor BatchNorm2d::forward_impl(const Tensor& x) {
  return normalize(x, false);
}

Tensor BatchNorm2d::forward_relu(const Tensor& x, UnaryModule* relu_module) {
  if (current_forward_observer() != nullptr) {
    const Tensor y = forward(x);
    return relu_module != nullptr ? relu_module->forward(y) : relu(y);
  }
  return normalize(x, true);
}

Tensor BatchNorm2d::normalize(const Tensor& x, bool relu) {
  SE_CHECK(x.dim() == 4 && x.size(1) == num_features_, "BatchNorm2d: expected input (N, ", num_features_,
           ", H, W), got ", shape_str(x.shape()));
  // As PyTorch: batch statistics while training or without running stats; the running averages
  // (undefined when not tracked) are updated while training and used otherwise.
  double momentum = options_.momentum.value_or(0.0);
  if (is_training() && options_.track_running_stats) {
    NoGradGuard no_grad;
    add_(num_batches_tracked, 1.0);
    if (!options_.momentum) momentum = 1.0 / static_cast<double>(num_batches_tracked.item());
  }
  const bool use_batch_stats = is_training() || !options_.track_running_stats;
  return batch_norm(x, running_mean, running_var, weight, bias, use_batch_stats, momentum, options_.eps, relu);
}

// ---- GroupNorm and LayerNorm

GroupNorm::GroupNorm(int64_t num_groups, int64_t num_channels, double eps, bool affine)
    : UnaryModule("GroupNorm"), num_groups_(num_groups), num_channels_(num_channels), eps_(eps) {
  SE_CHECK(num_groups > 0 && num_channels % num_groups == 0, "GroupNorm: num_groups ", num_groups,
           " must divide num_channels ", num_channels);
  if (affine) {
    weight = register_parameter("weight", ones({num_channels}));
    bias = register_parameter("bias", zeros({num_channels}));
  }
}

std::string GroupNorm::extra_repr() const {
  return detail::concat(num_groups_, ", ", num_channels_, ", eps=", py_float(eps_), ", affine=",
                        py_bool(weight.defined()));
}

Tensor GroupNorm::forward_impl(const Tensor& x) {
  SE_CHECK(x.dim() >= 2 && x.size(1) == num_channels_, "GroupNorm: expected input (N, ", num_channels_,
           ", *), got ", shape_str(x.shape()));
  return group_norm(x, num_groups_, weight, bias, eps_);
}

LayerNorm::LayerNorm(Shape normalized_shape, double eps, bool elementwise_affine, bool has_bias)
    : UnaryModule("LayerNorm"), normalized_shape_(std::move(normalized_shape)), eps_(eps) {
  SE_CHECK(!normalized_shape_.empty() && shape_numel(normalized_shape_) > 0,
           "LayerNorm: normalized_shape must be non-empty with positive sizes, got ", shape_str(normalized_shape_));
  if (elementwise_affine) {
    weight = register_parameter("weight", ones(normalized_shape_));
    if (has_bias) bias = register_parameter("bias", zeros(normalized_shape_));
  }
}

std::string LayerNorm::extra_repr() const {
  std::ostringstream out;
  out << "(";
  for (size_t d = 0; d < normalized_shape_.size(); ++d) out << (d > 0 ? ", " : "") << normalized_shape_[d];
  if (normalized_shape_.size() == 1) out << ",";  // Python's 1-tuple: "(64,)"
  out << "), eps=" << py_float(eps_) << ", elementwise_affine=" << py_bool(weight.defined());
  return out.str();
}

Tensor LayerNorm::forward_impl(const Tensor& x) { return layer_norm(x, normalized_shape_, weight, bias, eps_); }

// ---- activations and regularizers

GELU::GELU(bool tanh_approximation) : UnaryModule("GELU"), tanh_approximation_(tanh_approximation) {}
std::string GELU::extra_repr() const {
  return detail::concat("approximate='", tanh_approximation_ ? "tanh" : "none", "'");
}

Dropout::Dropout(double p) : UnaryModule("Dropout"), p_(p) {
  SE_CHECK(p >= 0.0 && p <= 1.0, "Dropout: p must be in [0, 1], got ", p);
}
std::string Dropout::extra_repr() const { return detail::concat("p=", py_float(p_), ", inplace=False"); }

DropPath::DropPath(double p) : UnaryModule("DropPath"), p_(p) {
  SE_CHECK(p >= 0.0 && p < 1.0, "DropPath: p must be in [0, 1), got ", p);
}
std::string DropPath::extra_repr() const { return detail::concat("drop_prob=", py_float(p_)); }

// ---- pooling and resizing

MaxPool2d::MaxPool2d(int64_t kernel_size, int64_t stride, int64_t padding, int64_t dilation, bool ceil_mode)
    : UnaryModule("MaxPool2d") {
  params_.kernel_size = {kernel_size, kernel_size};
  params_.stride = {stride, stride};
  params_.padding = {padding, padding};
  params_.dilation = {dilation, dilation};
  params_.ceil_mode = ceil_mode;
}

std::string MaxPool2d::extra_repr() const {
  const int64_t stride = params_.stride[0] == 0 ? params_.kernel_size[0] : params_.stride[0];
  return detail::concat("kernel_size=", params_.kernel_size[0], ", stride=", stride, ", padding=", params_.padding[0],
                        ", dilation=", params_.dilation[0], ", ceil_mode=", py_bool(params_.ceil_mode));
}

AvgPool2d::AvgPool2d(int64_t kernel_size, int64_t stride, int64_t padding, bool ceil_mode, bool count_include_pad)
    : UnaryModule("AvgPool2d") {
  params_.kernel_size = {kernel_size, kernel_size};
  params_.stride = {stride, stride};
  params_.padding = {padding, padding};
  params_.ceil_mode = ceil_mode;
  params_.count_include_pad = count_include_pad;
}

std::string AvgPool2d::extra_repr() const {
  const int64_t stride = params_.stride[0] == 0 ? params_.kernel_size[0] : params_.stride[0];
  return detail::concat("kernel_size=", params_.kernel_size[0], ", stride=", stride, ", padding=", params_.padding[0]);
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(std::array<int64_t, 2> output_size)
    : UnaryModule("AdaptiveAvgPool2d"), output_size_(output_size) {
  SE_CHECK(output_size[0] > 0 && output_size[1] > 0, "AdaptiveAvgPool2d: output size must be positive, got (",
           output_size[0], ", ", output_size[1], ")");
}

std::string AdaptiveAvgPool2d::extra_repr() const {
  return detail::concat("output_size=(", output_size_[0], ", ", output_size_[1], ")");
}

Upsample::Upsample(InterpolateParams params) : UnaryModule("Upsample"), params_(std::move(params)) {
  SE_CHECK(params_.size.has_value() != params_.scale_factor.has_value(),
           "Upsample: give exactly one of size and scale_factor");
}

std::string Upsample::extra_repr() const {
  std::ostringstream out;
  if (params_.size) {
    out << "size=(" << (*params_.size)[0] << ", " << (*params_.size)[1] << ")";
  } else {
    const auto& s = *params_.scale_factor;
    out << "scale_factor=";
    if (s[0] == s[1]) {
      out << py_float(s[0]);
    } else {
      out << "(" << py_float(s[0]) << ", " << py_float(s[1]) << ")";
    }
  }
  out << ", mode='" << (params_.mode == InterpolateMode::bilinear ? "bilinear" : "nearest") << "'";
  if (params_.mode == InterpolateMode::bilinear && params_.align_corners) out << ", align_corners=True";
  return out.str();
}

}  // namespace se::nn
