// The standard layers, with torch.nn's parameter names, shapes, defaults and initialisation, so that a
// PyTorch state_dict loads into the same architecture. Kernels are square (one size for h and w), as in
// every model of the zoo. Each layer's forward takes and returns one tensor; see engine/ops.h for the
// exact semantics of the ops they call.
#pragma once

#include <array>
#include <optional>

#include "engine/ops.h"
#include "nn/module.h"

namespace se::nn {

// ---- linear and convolution

class Linear : public UnaryModule {
 public:
  // weight (out, in) and bias (out): kaiming_uniform(a = sqrt(5)) and U(-1/sqrt(in), 1/sqrt(in)).
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  void reset_parameters();
  std::string extra_repr() const override;
  Tensor weight;  // (out_features, in_features)
  Tensor bias;    // (out_features) or undefined

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (*, in) -> (*, out)

 private:
  int64_t in_features_, out_features_;
};

struct Conv2dOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
  bool bias = true;
  // An activation fused into the convolution's epilogue (see Conv2dParams::activation): the layer
  // computes act(conv(x)) without a pass of its own. Not a parameter: checkpoints are unaffected.
  kernels::ConvActivation activation = kernels::ConvActivation::none;
};

class Conv2d : public UnaryModule {
 public:
  // weight (out, in / groups, k, k): kaiming_uniform(a = sqrt(5)); bias U(-1/sqrt(fan_in), ...).
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Conv2dOptions options = {});
  void reset_parameters();
  std::string extra_repr() const override;
  const Conv2dOptions& options() const { return options_; }
  int64_t in_channels() const { return in_channels_; }
  int64_t out_channels() const { return out_channels_; }
  int64_t kernel_size() const { return kernel_size_; }
  Tensor weight;  // (C_out, C_in / groups, k, k)
  Tensor bias;    // (C_out) or undefined

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, C_in, H, W) -> (N, C_out, OH, OW)

 private:
  int64_t in_channels_, out_channels_, kernel_size_;
  Conv2dOptions options_;
};

struct ConvTranspose2dOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t output_padding = 0;
  int64_t groups = 1;
  bool bias = true;
  int64_t dilation = 1;
};

class ConvTranspose2d : public UnaryModule {
 public:
  // weight (in, out / groups, k, k): kaiming_uniform(a = sqrt(5)) with PyTorch's fan_in of that shape,
  // (out / groups) * k * k; bias U(-1/sqrt(fan_in), ...).
  ConvTranspose2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, ConvTranspose2dOptions options = {});
  void reset_parameters();
  std::string extra_repr() const override;
  Tensor weight;  // (C_in, C_out / groups, k, k)
  Tensor bias;    // (C_out) or undefined

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, C_in, H, W) -> (N, C_out, OH, OW)

 private:
  int64_t in_channels_, out_channels_, kernel_size_;
  ConvTranspose2dOptions options_;
};

// ---- normalization

struct BatchNormOptions {
  double eps = 1e-5;
  std::optional<double> momentum = 0.1;  // nullopt: cumulative moving average (1 / batches seen)
  bool affine = true;
  bool track_running_stats = true;
};

// Buffers running_mean (C), running_var (C) and num_batches_tracked (0-d i64), as PyTorch saves them.
class BatchNorm2d : public UnaryModule {
 public:
  explicit BatchNorm2d(int64_t num_features, BatchNormOptions options = {});
  std::string extra_repr() const override;
  // relu(forward(x)) in one kernel each way (batch_norm's fused ReLU, the same bits). Under a
  // ForwardObserver (bench model, info) the two run apart so that each reports its own call: `relu_module`
  // (a ReLU module, or null when the ReLU is a plain function call) then runs the ReLU.
  Tensor forward_relu(const Tensor& x, UnaryModule* relu_module = nullptr);  // (N, C, H, W)
  Tensor weight, bias;                                    // (C), ones and zeros; undefined unless affine
  Tensor running_mean, running_var, num_batches_tracked;  // undefined unless tracking

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, C, H, W)

 private:
  Tensor normalize(const Tensor& x, bool relu);

  int64_t num_features_;
  BatchNormOptions options_;
};

class GroupNorm : public UnaryModule {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, double eps = 1e-5, bool affine = true);
  std::string extra_repr() const override;
  Tensor weight, bias;  // (C): ones and zeros

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (N, C, *)

 private:
  int64_t num_groups_, num_channels_;
  double eps_;
};

class LayerNorm : public UnaryModule {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true, bool bias = true);
  std::string extra_repr() const override;
  Tensor weight, bias;  // normalized_shape: ones and zeros

 protected:
  Tensor forward_impl(const Tensor& x) override;  // (*, normalized_shape)

 private:
  Shape normalized_shape_;
  double eps_;
};

// ---- activations and regularizers

class Identity : public UnaryModule {
 public:
  Identity() : UnaryModule("Identity") {}

 protected:
  Tensor forward_impl(const Tensor& x) override { return x; }
};

class ReLU : public UnaryModule {
 public:
  ReLU() : UnaryModule("ReLU") {}

 protected:
  Tensor forward_impl(const Tensor& x) override { return relu(x); }
};

class GELU : public UnaryModule {
 public:
  explicit GELU(bool tanh_approximation = false);
  std::string extra_repr() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override { return gelu(x, tanh_approximation_); }

 private:
  bool tanh_approximation_;
};

class Dropout : public UnaryModule {
 public:
  explicit Dropout(double p = 0.5);
  std::string extra_repr() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override { return dropout(x, p_, is_training()); }

 private:
  double p_;
};

// Stochastic depth on the residual branch (timm's DropPath): drops whole samples.
class DropPath : public UnaryModule {
 public:
  explicit DropPath(double p = 0.0);
  std::string extra_repr() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override { return drop_path(x, p_, is_training()); }

 private:
  double p_;
};

// ---- pooling and resizing, (N, C, H, W)

class MaxPool2d : public UnaryModule {
 public:
  // stride 0 means kernel_size, as PyTorch's stride=None.
  MaxPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0, int64_t dilation = 1,
            bool ceil_mode = false);
  std::string extra_repr() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override { return max_pool2d(x, params_); }

 private:
  Pool2dParams params_;
};

class AvgPool2d : public UnaryModule {
 public:
  AvgPool2d(int64_t kernel_size, int64_t stride = 0, int64_t padding = 0, bool ceil_mode = false,
            bool count_include_pad = true);
  std::string extra_repr() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override { return avg_pool2d(x, params_); }

 private:
  Pool2dParams params_;
};

class AdaptiveAvgPool2d : public UnaryModule {
 public:
  explicit AdaptiveAvgPool2d(std::array<int64_t, 2> output_size);
  explicit AdaptiveAvgPool2d(int64_t output_size) : AdaptiveAvgPool2d({output_size, output_size}) {}
  std::string extra_repr() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override { return adaptive_avg_pool2d(x, output_size_); }

 private:
  std::array<int64_t, 2> output_size_;
};

class Upsample : public UnaryModule {
 public:
  explicit Upsample(InterpolateParams params);
  std::string extra_repr() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override { return interpolate(x, params_); }

 private:
  InterpolateParams params_;
};

}  // namespace se::nn
