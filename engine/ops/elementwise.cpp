// Elementwise ops on Tensors over kernels/elementwise.h: unary ops and their scalar forms, broadcasting
// binary ops and comparisons, where, clamp, the in-place forms and the operators.
//
// Inputs may have any strides (broadcast dims are passed to the kernels as 0 strides, nothing is
// copied); outputs are contiguous, or channels-last for channels-last inputs (is_channels_last_only).
// Gradients: the fused unary_backward / binary_backward kernels compute the full-size gradient, which
// sum_to reduces to each input's shape; linear ops (neg, the scalar add/mul/rsub forms, add, sub) need
// no kernel beyond neg/mul on the gradient.
#include <cmath>
#include <optional>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/elementwise.h"

namespace se {
namespace {

using kernels::BinaryOp;
using kernels::UnaryOp;
using kernels::UnaryParams;

// `t` seen with the (broadcast) `shape`: right-aligned, 0 strides on broadcast dims.
kernels::StridedLayout layout_as(const Tensor& t, const Shape& shape, const char* op) {
  SE_CHECK(shape.size() <= static_cast<size_t>(kernels::kMaxDims), op, ": tensors with ", shape.size(),
           " dims are not supported (at most ", kernels::kMaxDims, ")");
  kernels::StridedLayout layout;
  layout.ndim = static_cast<int>(shape.size());
  const int64_t lead = static_cast<int64_t>(shape.size()) - t.dim();
  for (int64_t d = 0; d < layout.ndim; ++d) {
    layout.sizes[d] = shape[d];
    const bool broadcast = d < lead || (t.size(d - lead) == 1 && shape[d] != 1);
    layout.strides[d] = broadcast ? 0 : t.stride(d - lead);
  }
  return layout;
}

// A channels-last (N, C, H, W) tensor that is not also contiguous. Elementwise ops keep that memory
// format, as PyTorch's do: they run over the storage in order (a flat layout) and return a
// channels-last result, so a channels-last conv's output (CUDA's, the CPU's depthwise) goes through
// its activation and the activation's backward without a transposing pass.
bool is_channels_last_only(const Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(MemoryFormat::channels_last);
}

void check_defined(const char* op, const Tensor& t) {
  SE_CHECK(t.defined(), op, ": input tensor is undefined");
}

void check_operands(const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, a);
  check_defined(op, b);
  SE_CHECK(a.device() == b.device(), op, ": operands are on ", a.device(), " and ", b.device(),
           " (move one with .to(device) first)");
  SE_CHECK(a.dtype() == b.dtype(), op, ": operands have dtypes ", a.dtype(), " and ", b.dtype(),
           " (convert one with .to(dtype) first)");
}

void check_supported(const char* op, bool supported, const Tensor& t) {
  SE_CHECK(supported, op, ": dtype ", t.dtype(), " is not supported on ", t.device());
}

// ---- kernels without autograd ----

Tensor unary_forward(const char* name, UnaryOp op, const Tensor& x, const UnaryParams& params) {
  check_defined(name, x);
  check_supported(name, kernels::supports(op, x.dtype()), x);
  if (is_channels_last_only(x)) {
    Tensor y = empty_like(x, MemoryFormat::channels_last);
    const kernels::UnaryDesc desc{op, x.dtype(), kernels::flat_layout(x.numel()), params};
    SE_DISPATCH(x.device(), unary, y.data_ptr(), x.data_ptr(), desc);
    return y;
  }
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  const kernels::UnaryDesc desc{op, x.dtype(), layout_as(x, x.shape(), name), params};
  SE_DISPATCH(x.device(), unary, y.data_ptr(), x.data_ptr(), desc);
  return y;
}

// Writes op(self, params) into self, which must be contiguous.
void unary_into(const char* name, UnaryOp op, Tensor& self, const UnaryParams& params) {
  const kernels::UnaryDesc desc{op, self.dtype(), layout_as(self, self.shape(), name), params};
  SE_DISPATCH(self.device(), unary, self.data_ptr(), self.data_ptr(), desc);
}

// op(a, b) into `out` (contiguous, of the broadcast shape; may be `a` itself when a is contiguous).
void binary_into(const char* name, BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  const kernels::BinaryDesc desc{op, a.dtype(), layout_as(a, out.shape(), name), layout_as(b, out.shape(), name)};
  SE_DISPATCH(out.device(), binary, out.data_ptr(), a.data_ptr(), b.data_ptr(), desc);
}

Tensor binary_forward(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  check_operands(name, a, b);
  check_supported(name, kernels::supports(op, a.dtype()), a);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  const DType out_dtype = kernels::is_comparison(op) ? DType::boolean : a.dtype();
  if (a.shape() == b.shape() && is_channels_last_only(a) && is_channels_last_only(b)) {
    Tensor out = empty_strided(shape, channels_last_strides(shape), {out_dtype, a.device()});
    const kernels::StridedLayout flat = kernels::flat_layout(a.numel());  // a and b have the same shape
    const kernels::BinaryDesc desc{op, a.dtype(), flat, flat};
    SE_DISPATCH(out.device(), binary, out.data_ptr(), a.data_ptr(), b.data_ptr(), desc);
    return out;
  }
  Tensor out = empty(shape, {out_dtype, a.device()});
  binary_into(name, op, out, a, b);
  return out;
}

// Whether t is a permutation of a dense layout (a transposed or permuted view), not contiguous.
bool is_permuted_dense(const Tensor& t) {
  if (t.is_contiguous()) return false;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.stride(d) == 0 && t.size(d) > 1) return false;  // broadcast: materializing it would cost more
  }
  return true;
}

// d op / dx * g for the ops with a fused backward kernel; `saved` is x or y (backward_uses_output).
Tensor unary_backward_of(UnaryOp op, const Tensor& g_arg, const Tensor& saved, const UnaryParams& params) {
  if (is_channels_last_only(saved) && is_channels_last_only(g_arg) && g_arg.shape() == saved.shape()) {
    Tensor grad = empty_like(saved, MemoryFormat::channels_last);
    const kernels::StridedLayout flat = kernels::flat_layout(saved.numel());
    const kernels::UnaryBackwardDesc desc{op, saved.dtype(), flat, flat, params};
    SE_DISPATCH(saved.device(), unary_backward, grad.data_ptr(), g_arg.data_ptr(), saved.data_ptr(), desc);
    return grad;
  }
  // A gradient that arrives transposed against a contiguous `saved` (SegFormer's tokens <-> image views)
  // would be read across its rows element by element: a tiled copy first, then the vector loop.
  const Tensor g = saved.is_contiguous() && is_permuted_dense(g_arg) ? g_arg.contiguous() : g_arg;
  Tensor grad = empty(saved.shape(), {saved.dtype(), saved.device()});
  const kernels::UnaryBackwardDesc desc{op, saved.dtype(), layout_as(g, saved.shape(), "unary_backward"),
                                        layout_as(saved, saved.shape(), "unary_backward"), params};
  SE_DISPATCH(saved.device(), unary_backward, grad.data_ptr(), g.data_ptr(), saved.data_ptr(), desc);
  return grad;
}

// The gradient of op(a, b) with respect to input 0 (a) or 1 (b), reduced to that input's shape.
Tensor binary_backward_of(BinaryOp op, int input, const Tensor& g, const Tensor& a, const Tensor& b) {
  const Shape& shape = g.shape();
  Tensor grad = empty(shape, {g.dtype(), g.device()});
  const kernels::BinaryBackwardDesc desc{op,
                                         g.dtype(),
                                         input,
                                         layout_as(g, shape, "binary_backward"),
                                         layout_as(a, shape, "binary_backward"),
                                         layout_as(b, shape, "binary_backward")};
  SE_DISPATCH(g.device(), binary_backward, grad.data_ptr(), g.data_ptr(), a.data_ptr(), b.data_ptr(), desc);
  return sum_to(grad, input == 0 ? a.shape() : b.shape());
}

// ---- differentiable forms ----

Tensor unary_op(const char* name, UnaryOp op, const Tensor& x, const UnaryParams& params = {}) {
  Tensor y = unary_forward(name, op, x, params);
  if (!autograd::needs_grad({x})) return y;
  const bool fused = kernels::supports_backward(op, x.dtype());
  const SavedTensor saved = fused ? SavedTensor(kernels::backward_uses_output(op) ? y : x) : SavedTensor();
  autograd::record(name, {x}, {y}, [op, params, saved](const GradOutputs& g, const NeedsGrad&) {
    switch (op) {
      case UnaryOp::neg:
      case UnaryOp::rsub_scalar: return GradInputs{neg(g[0])};
      case UnaryOp::add_scalar: return GradInputs{g[0]};
      case UnaryOp::mul_scalar: return GradInputs{mul(g[0], params.alpha)};
      default: return GradInputs{unary_backward_of(op, g[0], saved.unpack(), params)};
    }
  });
  return y;
}

Tensor unary_scalar_op(const char* name, UnaryOp op, const Tensor& x, double alpha) {
  UnaryParams params;
  params.alpha = alpha;
  return unary_op(name, op, x, params);
}

Tensor binary_op(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  if (autocast::mixes_floating_dtypes(a, b)) {  // under autocast: compute in the widest dtype
    std::vector<Tensor> operands{a, b};
    autocast::promote(operands);
    return binary_op(name, op, operands[0], operands[1]);  // one dtype now
  }
  Tensor out = binary_forward(name, op, a, b);
  if (kernels::is_comparison(op) || !autograd::needs_grad({a, b})) return out;
  const bool linear = op == BinaryOp::add || op == BinaryOp::sub;
  const SavedTensor saved_a = linear ? SavedTensor() : SavedTensor(a);
  const SavedTensor saved_b = linear ? SavedTensor() : SavedTensor(b);
  autograd::record(
      name, {a, b}, {out},
      [op, saved_a, saved_b, a_shape = a.shape(), b_shape = b.shape()](const GradOutputs& g, const NeedsGrad& needs) {
        GradInputs grads(2);
        if (op == BinaryOp::add || op == BinaryOp::sub) {
          if (needs[0]) grads[0] = sum_to(g[0], a_shape);
          if (needs[1]) grads[1] = op == BinaryOp::add ? sum_to(g[0], b_shape) : neg(sum_to(g[0], b_shape));
          return grads;
        }
        const Tensor a = saved_a.unpack(), b = saved_b.unpack();
        for (int input = 0; input < 2; ++input) {
          if (needs[input]) grads[input] = binary_backward_of(op, input, g[0], a, b);
        }
        return grads;
      });
  return out;
}

// A Python-style scalar operand of a comparison, as a 0-d tensor of `a`'s dtype and device.
Tensor scalar_operand(const char* op, const Tensor& a, double value) {
  check_defined(op, a);
  SE_CHECK(is_floating(a.dtype()) || value == std::trunc(value), op, ": scalar ", value,
           " is not representable in dtype ", a.dtype());
  return scalar_tensor(value, {a.dtype(), a.device()});
}

UnaryParams clamp_params(const char* op, std::optional<double> min, std::optional<double> max) {
  SE_CHECK(min.has_value() || max.has_value(), op, ": at least one of min and max must be given");
  UnaryParams params;
  params.has_min = min.has_value();
  params.has_max = max.has_value();
  params.min = min.value_or(0.0);
  params.max = max.value_or(0.0);
  return params;
}

// ---- in place ----

// In-place ops are not recorded by autograd: an `other` that requires grad would need a graph.
void check_inplace_other(const char* op, const Tensor& self, const Tensor& other) {
  check_operands(op, self, other);
  SE_CHECK(!(grad_mode_enabled() && other.requires_grad()), op,
           ": the other operand requires grad; in-place ops are not differentiable, use the out-of-place op");
  SE_CHECK(broadcast_shapes(self.shape(), other.shape(), op) == self.shape(), op, ": operand of shape ",
           shape_str(other.shape()), " does not broadcast to the destination shape ", shape_str(self.shape()));
}

// A destination with several elements at one location cannot be written element by element.
void check_writable(const char* op, const Tensor& self) {
  SE_CHECK(!self.has_internal_overlap(), op, ": the written-to tensor of shape ", shape_str(self.shape()),
           " and strides ", shape_str(self.strides()),
           " has several elements at one memory location (an expanded view); clone() it first");
}

// The kernels write contiguous outputs: a strided `self` gets the result through a copy. An `other`
// overlapping `self` otherwise than element for element (x[1:].add_(x[:-1])) is read whole first.
Tensor& binary_inplace(const char* name, BinaryOp op, Tensor& self, const Tensor& other) {
  check_inplace_other(name, self, other);
  check_supported(name, kernels::supports(op, self.dtype()), self);
  check_writable(name, self);
  autograd::prepare_inplace(self, name);
  if (self.is_contiguous()) {
    if (partially_overlaps(self, other)) {
      NoGradGuard no_grad;
      binary_into(name, op, self, self, other.clone());
    } else {
      binary_into(name, op, self, self, other);
    }
  } else {
    NoGradGuard no_grad;
    self.copy_(binary_forward(name, op, self, other));
  }
  return self;
}

Tensor& unary_inplace(const char* name, UnaryOp op, Tensor& self, const UnaryParams& params) {
  check_defined(name, self);
  check_supported(name, kernels::supports(op, self.dtype()), self);
  check_writable(name, self);
  autograd::prepare_inplace(self, name);
  if (self.is_contiguous()) {
    unary_into(name, op, self, params);
  } else {
    NoGradGuard no_grad;
    self.copy_(unary_forward(name, op, self, params));
  }
  return self;
}

}  // namespace

Tensor neg(const Tensor& x) {
  return unary_op("neg", UnaryOp::neg, x);
}
Tensor exp(const Tensor& x) {
  return unary_op("exp", UnaryOp::exp, x);
}
Tensor log(const Tensor& x) {
  return unary_op("log", UnaryOp::log, x);
}
Tensor sqrt(const Tensor& x) {
  return unary_op("sqrt", UnaryOp::sqrt, x);
}
Tensor rsqrt(const Tensor& x) {
  return unary_op("rsqrt", UnaryOp::rsqrt, x);
}
Tensor abs(const Tensor& x) {
  return unary_op("abs", UnaryOp::abs, x);
}
Tensor relu(const Tensor& x) {
  return unary_op("relu", UnaryOp::relu, x);
}

Tensor relu_backward(const Tensor& grad, const Tensor& saved) {
  SE_CHECK(grad.shape() == saved.shape(), "relu_backward: grad ", shape_str(grad.shape()), " and saved ",
           shape_str(saved.shape()), " differ in shape");
  return unary_backward_of(UnaryOp::relu, grad, saved, {});
}
Tensor sigmoid(const Tensor& x) {
  return unary_op("sigmoid", UnaryOp::sigmoid, x);
}
Tensor tanh(const Tensor& x) {
  return unary_op("tanh", UnaryOp::tanh, x);
}

Tensor gelu(const Tensor& x, bool tanh_approximation) {
  return tanh_approximation ? unary_op("gelu", UnaryOp::gelu_tanh, x) : unary_op("gelu", UnaryOp::gelu, x);
}

Tensor pow(const Tensor& x, double exponent) {
  return unary_scalar_op("pow", UnaryOp::pow_scalar, x, exponent);
}
Tensor pow(const Tensor& x, const Tensor& exponent) {
  return binary_op("pow", BinaryOp::pow, x, exponent);
}

Tensor add(const Tensor& a, const Tensor& b, double alpha) {
  return binary_op("add", BinaryOp::add, a, alpha == 1.0 ? b : mul(b, alpha));
}
Tensor sub(const Tensor& a, const Tensor& b, double alpha) {
  return binary_op("sub", BinaryOp::sub, a, alpha == 1.0 ? b : mul(b, alpha));
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary_op("mul", BinaryOp::mul, a, b);
}
Tensor div(const Tensor& a, const Tensor& b) {
  return binary_op("div", BinaryOp::div, a, b);
}
Tensor maximum(const Tensor& a, const Tensor& b) {
  return binary_op("maximum", BinaryOp::maximum, a, b);
}
Tensor minimum(const Tensor& a, const Tensor& b) {
  return binary_op("minimum", BinaryOp::minimum, a, b);
}

Tensor add(const Tensor& a, double b) {
  return unary_scalar_op("add", UnaryOp::add_scalar, a, b);
}
Tensor sub(const Tensor& a, double b) {
  return unary_scalar_op("sub", UnaryOp::add_scalar, a, -b);
}
Tensor mul(const Tensor& a, double b) {
  return unary_scalar_op("mul", UnaryOp::mul_scalar, a, b);
}
// Multiplies by the reciprocal (within an ulp of true division), as PyTorch's CUDA backend does.
Tensor div(const Tensor& a, double b) {
  check_defined("div", a);
  check_supported("div", is_floating(a.dtype()), a);
  return unary_scalar_op("div", UnaryOp::mul_scalar, a, 1.0 / b);
}
Tensor rsub(const Tensor& a, double b) {
  return unary_scalar_op("rsub", UnaryOp::rsub_scalar, a, b);
}
Tensor rdiv(const Tensor& a, double b) {
  return unary_scalar_op("rdiv", UnaryOp::rdiv_scalar, a, b);
}

Tensor eq(const Tensor& a, const Tensor& b) {
  return binary_op("eq", BinaryOp::eq, a, b);
}
Tensor ne(const Tensor& a, const Tensor& b) {
  return binary_op("ne", BinaryOp::ne, a, b);
}
Tensor lt(const Tensor& a, const Tensor& b) {
  return binary_op("lt", BinaryOp::lt, a, b);
}
Tensor le(const Tensor& a, const Tensor& b) {
  return binary_op("le", BinaryOp::le, a, b);
}
Tensor gt(const Tensor& a, const Tensor& b) {
  return binary_op("gt", BinaryOp::gt, a, b);
}
Tensor ge(const Tensor& a, const Tensor& b) {
  return binary_op("ge", BinaryOp::ge, a, b);
}
Tensor eq(const Tensor& a, double b) {
  return eq(a, scalar_operand("eq", a, b));
}
Tensor ne(const Tensor& a, double b) {
  return ne(a, scalar_operand("ne", a, b));
}
Tensor lt(const Tensor& a, double b) {
  return lt(a, scalar_operand("lt", a, b));
}
Tensor le(const Tensor& a, double b) {
  return le(a, scalar_operand("le", a, b));
}
Tensor gt(const Tensor& a, double b) {
  return gt(a, scalar_operand("gt", a, b));
}
Tensor ge(const Tensor& a, double b) {
  return ge(a, scalar_operand("ge", a, b));
}

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  check_defined("where", condition);
  if (autocast::mixes_floating_dtypes(a, b)) {  // under autocast: compute in the widest dtype
    std::vector<Tensor> operands{a, b};
    autocast::promote(operands);
    return where(condition, operands[0], operands[1]);  // one dtype now
  }
  check_operands("where", a, b);
  SE_CHECK(condition.dtype() == DType::boolean, "where: condition has dtype ", condition.dtype(), ", expected bool");
  SE_CHECK(condition.device() == a.device(), "where: condition is on ", condition.device(), ", operands on ",
           a.device());
  const Shape shape = broadcast_shapes(broadcast_shapes(condition.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = empty(shape, {a.dtype(), a.device()});
  const kernels::WhereDesc desc{a.dtype(), layout_as(condition, shape, "where"), layout_as(a, shape, "where"),
                                layout_as(b, shape, "where")};
  SE_DISPATCH(a.device(), where, out.data_ptr(), static_cast<const bool*>(condition.data_ptr()), a.data_ptr(),
              b.data_ptr(), desc);
  if (autograd::needs_grad({a, b})) {
    autograd::record("where", {a, b}, {out},
                     [saved = SavedTensor(condition), a_shape = a.shape(), b_shape = b.shape()](
                         const GradOutputs& g, const NeedsGrad& needs) {
                       const Tensor c = saved.unpack();
                       const Tensor zero = zeros({}, {g[0].dtype(), g[0].device()});
                       GradInputs grads(2);
                       if (needs[0]) grads[0] = sum_to(where(c, g[0], zero), a_shape);
                       if (needs[1]) grads[1] = sum_to(where(c, zero, g[0]), b_shape);
                       return grads;
                     });
  }
  return out;
}

Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  return unary_op("clamp", UnaryOp::clamp, x, clamp_params("clamp", min, max));
}

Tensor& add_(Tensor& self, const Tensor& other, double alpha) {
  return binary_inplace("add_", BinaryOp::add, self, alpha == 1.0 ? other : mul(other, alpha));
}
Tensor& sub_(Tensor& self, const Tensor& other, double alpha) {
  return binary_inplace("sub_", BinaryOp::sub, self, alpha == 1.0 ? other : mul(other, alpha));
}
Tensor& mul_(Tensor& self, const Tensor& other) {
  return binary_inplace("mul_", BinaryOp::mul, self, other);
}
Tensor& div_(Tensor& self, const Tensor& other) {
  return binary_inplace("div_", BinaryOp::div, self, other);
}

Tensor& add_(Tensor& self, double other) {
  UnaryParams params;
  params.alpha = other;
  return unary_inplace("add_", UnaryOp::add_scalar, self, params);
}

Tensor& mul_(Tensor& self, double other) {
  UnaryParams params;
  params.alpha = other;
  return unary_inplace("mul_", UnaryOp::mul_scalar, self, params);
}

Tensor& clamp_(Tensor& self, std::optional<double> min, std::optional<double> max) {
  return unary_inplace("clamp_", UnaryOp::clamp, self, clamp_params("clamp_", min, max));
}

Tensor operator-(const Tensor& x) {
  return neg(x);
}
Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
Tensor operator+(const Tensor& a, double b) {
  return add(a, b);
}
Tensor operator-(const Tensor& a, double b) {
  return sub(a, b);
}
Tensor operator*(const Tensor& a, double b) {
  return mul(a, b);
}
Tensor operator/(const Tensor& a, double b) {
  return div(a, b);
}
Tensor operator+(double a, const Tensor& b) {
  return add(b, a);
}
Tensor operator-(double a, const Tensor& b) {
  return rsub(b, a);
}
Tensor operator*(double a, const Tensor& b) {
  return mul(b, a);
}
Tensor operator/(double a, const Tensor& b) {
  return rdiv(b, a);
}

}  // namespace se
