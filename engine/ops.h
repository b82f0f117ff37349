// Differentiable ops on Tensors, on every device. Each family lives in engine/ops/<family>.cpp and
// calls the kernels of kernels/<family>.h through engine/dispatch.h. Dims may be negative (counted
// from the end). Binary ops broadcast with numpy rules and need equal dtypes (no implicit promotion:
// convert with .to(dtype) first), except that a Python-style scalar adopts the tensor's dtype. Under
// an AutocastGuard (engine/autocast.h) some ops change the dtype of their inputs: see that header.
#pragma once

#include <array>
#include <optional>
#include <vector>

#include "engine/tensor.h"
#include "kernels/conv.h"
#include "kernels/optim.h"

namespace se {

// ---- elementwise (engine/ops/elementwise.cpp)
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);
// ReLU's input gradient from its output (or input), in one fused pass: grad where saved > 0, else 0. Not
// differentiable; for ops that fuse a ReLU into their forward (conv2d's epilogue).
Tensor relu_backward(const Tensor& grad, const Tensor& saved);
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor pow(const Tensor& x, double exponent);
Tensor pow(const Tensor& x, const Tensor& exponent);
Tensor add(const Tensor& a, const Tensor& b, double alpha = 1.0);  // a + alpha * b
Tensor sub(const Tensor& a, const Tensor& b, double alpha = 1.0);  // a - alpha * b
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor rsub(const Tensor& a, double b);  // b - a
Tensor rdiv(const Tensor& a, double b);  // b / a
// Comparisons give bool tensors and are not differentiable.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);  // condition: bool
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);
// In place: the result is written into `self` (which must already have the broadcast shape).
Tensor& add_(Tensor& self, const Tensor& other, double alpha = 1.0);
Tensor& sub_(Tensor& self, const Tensor& other, double alpha = 1.0);
Tensor& mul_(Tensor& self, const Tensor& other);
Tensor& div_(Tensor& self, const Tensor& other);
Tensor& add_(Tensor& self, double other);
Tensor& mul_(Tensor& self, double other);
Tensor& clamp_(Tensor& self, std::optional<double> min, std::optional<double> max);

Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

// ---- reductions (engine/ops/reduce.cpp); `dims` empty = all dims
Tensor sum(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor min(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor var(const Tensor& x, const Shape& dims = {}, int64_t correction = 1, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);  // i64
// Sums `x` down to `shape` (the reverse of broadcasting `shape` up to x's shape): the gradient of
// a broadcast input.
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- softmax (engine/ops/softmax.cpp)
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// ---- normalization (engine/ops/norm.cpp); differentiable w.r.t. x, weight and bias. weight, bias
// and running stats are optional (undefined Tensors), f32 for f32/f16/bf16 inputs and f64 for f64.
// batch_norm: x (N, C, *). training: normalises with the batch mean and biased variance and, when
// given, updates running_mean/running_var in place (no autograd) with `momentum` and the unbiased
// variance, as PyTorch; needs more than one value per channel. eval: uses the running stats.
// relu: returns relu(batch_norm(...)) from the same kernels (kernels/norm.h's fused ReLU: the same bits
// as the two ops, without the ReLU's pass and tensor in the forward or the backward); on the CPU f16
// and bf16 run the two ops.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5, bool relu = false);
// layer_norm: over the trailing dims given by normalized_shape; weight/bias have that shape.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {}, const Tensor& bias = {},
                  double eps = 1e-5);
// group_norm: x (N, C, *), C divisible by num_groups; weight/bias (C).
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight = {}, const Tensor& bias = {},
                  double eps = 1e-5);

// ---- joining, splitting, padding, indexing (engine/ops/index.cpp)
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// Constant padding in torch.nn.functional.pad order: (last_before, last_after, prev_before, ...);
// negative amounts crop.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0.0);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);        // index: i64, like torch.gather
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index: 1-d i64

// ---- linear algebra (engine/ops/matmul.cpp)
Tensor matmul(const Tensor& a, const Tensor& b);  // torch.matmul semantics incl. batch broadcast
Tensor mm(const Tensor& a, const Tensor& b);      // (m, k) @ (k, n)
Tensor bmm(const Tensor& a, const Tensor& b);     // (b, m, k) @ (b, k, n)
// torch.nn.functional.linear: x @ weight^T + bias.
Tensor linear(const Tensor& x,       // (*, in)
              const Tensor& weight,  // (out, in)
              const Tensor& bias = {});  // (out) or undefined

// ---- convolution (engine/ops/conv.cpp)
struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;  // zeros on each side
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;  // divides C_in and C_out; groups == C_in is depthwise
  // relu or gelu (exact): conv2d followed by the activation, fused into the kernels' epilogue (no extra
  // pass over the output). ReLU stays fused under autograd (its backward needs only the output); GELU's
  // needs the pre-activation, so with gradients it runs as conv2d then gelu.
  kernels::ConvActivation activation = kernels::ConvActivation::none;
};
// torch.nn.functional.conv2d (cross-correlation) on f32, f64, f16 or bf16, all inputs of one dtype and
// device: x (N, C_in, H, W), weight (C_out, C_in / groups, KH, KW), bias (C_out) or undefined
// -> (N, C_out, OH, OW). On CUDA the memory format is PyTorch's: when x or weight is channels-last (and not
// also contiguous), the convolution runs channels-last (the kernels' nhwc layout) and y and grad_x are
// channels-last; otherwise, and always on the CPU, inputs are made NCHW contiguous. The gradients are computed by the backward
// kernels and are not themselves differentiable (no double backward yet).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = {}, const Conv2dParams& params = {});

// ---- regularizers (engine/ops/dropout.cpp); identity when !training or p == 0
// Element i is dropped when the counter-based uniform U(seed, offset + i) < p, so a given generator
// state (manual_seed) gives the same mask on every device; kept elements are scaled by 1 / (1 - p).
Tensor dropout(const Tensor& x, double p, bool training = true);
// Stochastic depth: drops whole samples (dim 0) with probability p, scaling the kept ones by 1 / (1 - p).
Tensor drop_path(const Tensor& x, double p, bool training = true);

// ---- optimizer steps (engine/ops/optim.cpp): in place, no autograd, one launch per call
// All tensors are contiguous f32 on one device; params[i], grads[i] and each state tensor have the
// same shape. The state tensors are created by the caller (zeros) and kept between steps.
void sgd_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
               const std::vector<Tensor>& momentum_buffers /* empty when momentum == 0 */, const kernels::SgdDesc& desc);
void adam_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& exp_avgs,
                const std::vector<Tensor>& exp_avg_sqs, const kernels::AdamDesc& desc);
// sqrt(sum of squares of all elements of all tensors): the global gradient norm, a 0-d f32 tensor on
// the tensors' device (reading it with item() synchronises).
Tensor global_norm(const std::vector<Tensor>& tensors);
// Multiplies every gradient by inv_scale in place and returns a 0-d f32 tensor on their device that
// is 1 when any element was inf or NaN before unscaling, else 0 (dynamic loss scaling).
Tensor unscale_and_check_(const std::vector<Tensor>& grads, double inv_scale);

// ---- pooling (engine/ops/pool.cpp), PyTorch semantics; x: (N, C, H, W), any strides, floating dtypes
struct Pool2dParams {
  std::array<int64_t, 2> kernel_size{1, 1};  // (h, w)
  std::array<int64_t, 2> stride{0, 0};       // 0: kernel_size, like PyTorch's stride=None
  std::array<int64_t, 2> padding{0, 0};      // at most half the (dilated) kernel, as in PyTorch
  std::array<int64_t, 2> dilation{1, 1};     // max_pool2d only
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg_pool2d only
};
Tensor max_pool2d(const Tensor& x, const Pool2dParams& params);  // the gradient goes to the first maximum
Tensor avg_pool2d(const Tensor& x, const Pool2dParams& params);
// Output cell i averages input [floor(i * in / out), ceil((i + 1) * in / out)); {1, 1} is global pooling.
Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);

// ---- resize (engine/ops/resize.cpp), torch.nn.functional.interpolate's coordinates; x: (N, C, H, W)
enum class InterpolateMode { nearest, bilinear };  // nearest: PyTorch's legacy 'nearest'
struct InterpolateParams {
  std::optional<std::array<int64_t, 2>> size;         // exactly one of size and scale_factor
  std::optional<std::array<double, 2>> scale_factor;  // out = floor(in * scale_factor); maps with 1 / scale_factor
  InterpolateMode mode = InterpolateMode::nearest;
  bool align_corners = false;  // bilinear only
};
Tensor interpolate(const Tensor& x, const InterpolateParams& params);

// ---- losses (engine/ops/loss.cpp): differentiable w.r.t. the predictions only (not targets or weights)
enum class Reduction { none, mean, sum };

struct CrossEntropyParams {
  int64_t ignore_index = -100;  // PyTorch's default; the segmentation configs use 255
  Tensor weight;                // (C) class weights, optional; the logits' dtype and device
  double label_smoothing = 0.0;  // in [0, 1]
  Reduction reduction = Reduction::mean;
};
// F.cross_entropy: logits (N, C) or (N, C, d1, ...), target i64 (N) or (N, d1, ...); see
// kernels/loss.h for the formulas. mean divides by the sum of the target classes' weights over the
// non-ignored pixels (NaN when every pixel is ignored, as in PyTorch); none gives the target's shape.
// A target outside [0, C) that is not ignore_index is an error naming the value.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyParams& params = {});

struct BinaryCrossEntropyParams {
  // Optional; broadcasts to the logits and is longer than 1 along at most one dim: (C) for (N, C)
  // logits, (C, 1, 1) for (N, C, H, W). The logits' dtype and device.
  Tensor pos_weight;
  Reduction reduction = Reduction::mean;
};
// F.binary_cross_entropy_with_logits: target (probabilities) has the logits' shape, dtype and device.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        const BinaryCrossEntropyParams& params = {});
// Siamese consistency losses between two feature maps of one shape, both differentiable.
Tensor mse_loss(const Tensor& a, const Tensor& b, Reduction reduction = Reduction::mean);  // (a - b)^2
// 1 - cosine_similarity(a, b, dim 1, eps) for (N, C, ...) maps: reduction none gives (N, ...). As
// PyTorch, each norm is clamped to at least eps before dividing.
Tensor cosine_distance(const Tensor& a, const Tensor& b, Reduction reduction = Reduction::mean, double eps = 1e-8);

// ---- attention (engine/ops/attention.cpp); scale defaults to 1 / sqrt(D)
// softmax(q k^T * scale) v, fused (flash-attention style: memory linear in Lq + Lk), differentiable
// w.r.t. q, k and v (the backward itself is not differentiable). f32, f64, f16, bf16.
Tensor scaled_dot_product_attention(const Tensor& q,  // (B, H, Lq, D), D <= 128
                                    const Tensor& k,  // (B, H, Lk, D)
                                    const Tensor& v,  // (B, H, Lk, D)
                                    std::optional<double> scale = std::nullopt);
// The same from matmul and softmax (an Lq x Lk matrix per head): the reference in tests;
// bench/bench_attention times this path on the kernels directly.
Tensor attention_reference(const Tensor& q,  // (B, H, Lq, D)
                           const Tensor& k,  // (B, H, Lk, D)
                           const Tensor& v,  // (B, H, Lk, D)
                           std::optional<double> scale = std::nullopt);

// ---- conv_transpose2d (engine/ops/conv_transpose.cpp)
struct ConvTranspose2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;                        // removed from each side of the output
  int64_t output_padding_h = 0, output_padding_w = 0;  // added at the bottom / right; < stride or < dilation
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;  // divides C_in and C_out
};
// torch.nn.functional.conv_transpose2d on f32, f64, f16 or bf16, all inputs of one dtype and device:
// x (N, C_in, H, W), weight (C_in, C_out / groups, KH, KW), bias (C_out) or undefined -> (N, C_out, OH, OW),
// OH = (H - 1) * stride_h - 2 * pad_h + dilation_h * (KH - 1) + output_padding_h + 1 (OW likewise).
// Differentiable w.r.t. x, weight and bias (gradients not themselves differentiable).
Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias = {},
                        const ConvTranspose2dParams& params = {});

// ---- sort, topk, kthvalue, cumsum (engine/ops/sort.cpp); f32, f64, i32, i64
struct SortResult {
  Tensor values;   // x's dtype and device
  Tensor indices;  // i64 positions along dim
};
// Stable sort along dim (torch.sort(stable=True)): equal values keep their order in both directions; NaN is
// the largest value and -0.0 equals +0.0. values is differentiable (its gradient is gather's).
SortResult sort(const Tensor& x, int64_t dim = -1, bool descending = false);
// The k largest (or smallest) along dim, sorted, ties in input order; differentiable values.
SortResult topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);
// The k-th smallest (k from 1) along dim; among equal values the first in input order.
SortResult kthvalue(const Tensor& x, int64_t k, int64_t dim = -1, bool keepdim = false);
// torch.cumsum; differentiable (the gradient is the reversed cumsum of the output gradient).
Tensor cumsum(const Tensor& x, int64_t dim);

// ---- segmentation losses (engine/ops/segmentation_loss.cpp): logits (N, C, d1, ...) of f32 or f64 (focal also
// f16, bf16), target i64 (N, d1, ...) in [0, C) or ignore_index (anything else is an error naming the value);
// 0-d results differentiable w.r.t. the logits only.
struct FocalLossParams {
  double gamma = 2.0;  // >= 0; 0 is cross-entropy weighted by alpha
  Tensor alpha;        // (C) per-class weights, optional; the logits' dtype and device
  int64_t ignore_index = -100;
  Reduction reduction = Reduction::mean;  // mean: over the non-ignored pixels (0 when there are none)
};
// Softmax focal loss, AdeelH/pytorch-multi-class-focal-loss FocalLoss: -alpha_y (1 - p_y)^gamma log p_y per
// pixel (kernels/loss.h), fused forward and backward kernels. reduction none gives the target's shape.
Tensor focal_loss(const Tensor& logits, const Tensor& target, const FocalLossParams& params = {});

struct OhemCrossEntropyParams {
  double thresh = 0.7;        // keep pixels whose target-class probability is below max(thresh, k-th smallest)
  int64_t min_kept = 100000;  // per image: the threshold is at least the (min_kept * N)-th smallest probability
  int64_t ignore_index = 255;
  Tensor weight;  // (C) class weights, optional; the logits' dtype and device
};
// mmsegmentation's OHEMPixelSampler(thresh, min_kept) feeding CrossEntropyLoss (avg_non_ignore=False): among
// non-ignored pixels sorted by p_y = softmax(logits)_target ascending, threshold = max(thresh,
// p_sorted[min(min_kept * N, valid - 1)]); loss = sum over kept pixels (p_y < threshold) of w_y * CE / (N * H * W).
Tensor ohem_cross_entropy(const Tensor& logits, const Tensor& target, const OhemCrossEntropyParams& params = {});

struct DiceLossParams {
  double smooth = 0.0;
  double eps = 1e-7;
  bool log_loss = false;  // -log(max(dice, eps)) instead of 1 - dice
  std::optional<int64_t> ignore_index;
};
// segmentation_models.pytorch DiceLoss(mode="multiclass", from_logits=True): p = softmax(logits), per class c
// over all images and pixels (ignored ones masked out of p and the one-hot target t):
// dice_c = (2 sum p t + smooth) / max(sum (p + t) + smooth, eps); loss = mean over all C classes of
// (1 - dice_c) * [class c occurs in the target] (absent classes count 0 but stay in the mean).
Tensor dice_loss(const Tensor& logits, const Tensor& target, const DiceLossParams& params = {});

// Berman et al.'s reference lovasz_softmax(softmax(logits), target, classes="present", per_image=False,
// ignore=ignore_index): over the non-ignored pixels of the whole batch, for each class present in the target,
// the errors |[y == c] - p_c| sorted descending dotted with the Lovasz extension gradient of the Jaccard loss;
// the mean over present classes (0 when none). Built on sort, gather and cumsum.
Tensor lovasz_softmax(const Tensor& logits, const Tensor& target, std::optional<int64_t> ignore_index = std::nullopt);

}  // namespace se
