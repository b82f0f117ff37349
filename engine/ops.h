// Differentiable ops on Tensors, on every device. Each family lives in engine/ops/<family>.cpp and
// calls the kernels of kernels/<family>.h through engine/dispatch.h. Dims may be negative (counted
// from the end). Binary ops broadcast with numpy rules and need equal dtypes (no implicit promotion:
// convert with .to(dtype) first), except that a Python-style scalar adopts the tensor's dtype.
#pragma once

#include <optional>
#include <vector>

#include "engine/tensor.h"

namespace se {

// ---- elementwise (engine/ops/elementwise.cpp)
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);
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

}  // namespace se
