// The elementwise op family: unary ops (with their scalar forms), broadcasting binary ops and
// comparisons, where, and the fused backward helpers autograd uses. The same functions exist in
// se::kernels::cpu and se::kernels::cuda.
//
// Conventions shared by every entry point:
// - The output is contiguous (row-major in the output's sizes); inputs are StridedLayouts with the
//   output's ndim and sizes, 0 strides on broadcast dimensions. Layouts are in elements.
// - Dims are collapsed inside (collapse_dims), so callers need not do it.
// - The output may alias an input that is contiguous with the output's sizes (in-place ops).
// - f16/bf16 compute in f32; integer arithmetic wraps (two's complement), as in PyTorch.
// - An unsupported (op, dtype) throws se::Error naming the op, dtype and device; supports()
//   answers the same question without throwing, identically for both backends.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/dtype.h"
#include "kernels/stream.h"
#include "kernels/strided.h"

namespace se::kernels {

enum class UnaryOp : uint8_t {
  neg,
  exp,
  log,
  sqrt,
  rsqrt,
  abs,
  relu,
  gelu,       // x * Phi(x), erf form
  gelu_tanh,  // the tanh approximation of gelu
  sigmoid,
  tanh,
  pow_scalar,   // x ^ alpha
  add_scalar,   // x + alpha
  mul_scalar,   // x * alpha
  rsub_scalar,  // alpha - x
  rdiv_scalar,  // alpha / x
  clamp,        // min(max(x, min), max); either bound optional; NaN stays NaN
};

enum class BinaryOp : uint8_t {
  add,
  sub,
  mul,
  div,
  maximum,  // NaN-propagating, like torch.maximum
  minimum,
  pow,
  eq,  // comparisons write bool
  ne,
  lt,
  le,
  gt,
  ge,
};

constexpr std::string_view op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::neg: return "neg";
    case UnaryOp::exp: return "exp";
    case UnaryOp::log: return "log";
    case UnaryOp::sqrt: return "sqrt";
    case UnaryOp::rsqrt: return "rsqrt";
    case UnaryOp::abs: return "abs";
    case UnaryOp::relu: return "relu";
    case UnaryOp::gelu: return "gelu";
    case UnaryOp::gelu_tanh: return "gelu_tanh";
    case UnaryOp::sigmoid: return "sigmoid";
    case UnaryOp::tanh: return "tanh";
    case UnaryOp::pow_scalar: return "pow_scalar";
    case UnaryOp::add_scalar: return "add_scalar";
    case UnaryOp::mul_scalar: return "mul_scalar";
    case UnaryOp::rsub_scalar: return "rsub_scalar";
    case UnaryOp::rdiv_scalar: return "rdiv_scalar";
    case UnaryOp::clamp: return "clamp";
  }
  return "?";
}

constexpr std::string_view op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
    case BinaryOp::pow: return "pow";
    case BinaryOp::eq: return "eq";
    case BinaryOp::ne: return "ne";
    case BinaryOp::lt: return "lt";
    case BinaryOp::le: return "le";
    case BinaryOp::gt: return "gt";
    case BinaryOp::ge: return "ge";
  }
  return "?";
}

inline constexpr bool is_comparison(BinaryOp op) {
  return op >= BinaryOp::eq;
}

// Scalar operands of the unary ops that take them. For integer dtypes every scalar used by the op must
// be an integer value representable in i64 (it is converted to the element type, wrapping), else
// the kernel throws: mul_scalar(i32, 0.5) is an error, not a silent truncation.
struct UnaryParams {
  double alpha = 0.0;  // pow_scalar, add_scalar, mul_scalar, rsub_scalar, rdiv_scalar
  double min = 0.0;    // clamp bounds, used when has_min / has_max
  double max = 0.0;
  bool has_min = false;
  bool has_max = false;
};

struct UnaryDesc {
  UnaryOp op = UnaryOp::neg;
  DType dtype = DType::f32;  // of input and output
  StridedLayout in;          // its sizes are the output's
  UnaryParams params;
};

struct BinaryDesc {
  BinaryOp op = BinaryOp::add;
  DType dtype = DType::f32;  // of a and b; of the output too, except comparisons which write bool
  StridedLayout a;           // a and b: the output's ndim and sizes, 0 strides where broadcast
  StridedLayout b;
};

struct WhereDesc {
  DType dtype = DType::f32;  // of a, b and the output; cond is bool
  StridedLayout cond;        // all three: the output's ndim and sizes
  StridedLayout a;
  StridedLayout b;
};

// Backward of a unary op: grad_in = d op(x) / dx * grad_out. `saved` is the forward's output y when
// backward_uses_output(op), else its input x. Linear ops (neg, add/mul/rsub_scalar) have no helper:
// their gradient is itself a unary op on grad_out.
struct UnaryBackwardDesc {
  UnaryOp op = UnaryOp::relu;  // the forward op
  DType dtype = DType::f32;
  StridedLayout grad_out;  // both: the forward output's sizes
  StridedLayout saved;
  UnaryParams params;  // the forward's scalars
};

// Backward of a binary op with respect to one input, before the reduction over its broadcast dims:
// the result has the output's sizes. add and sub have no helper (their gradients are grad_out and its
// negation); maximum and minimum split the gradient equally on ties, like PyTorch.
struct BinaryBackwardDesc {
  BinaryOp op = BinaryOp::mul;  // the forward op: mul, div, maximum, minimum or pow
  DType dtype = DType::f32;
  int input = 0;           // 0: gradient with respect to a, 1: with respect to b
  StridedLayout grad_out;  // all three: the output's ndim and sizes
  StridedLayout a;
  StridedLayout b;
};

constexpr bool supports(UnaryOp op, DType dtype) {
  const bool signed_int = dtype == DType::i32 || dtype == DType::i64;
  switch (op) {
    case UnaryOp::neg:
    case UnaryOp::abs:
    case UnaryOp::relu:
    case UnaryOp::rsub_scalar: return is_floating(dtype) || signed_int;
    case UnaryOp::add_scalar:
    case UnaryOp::mul_scalar:
    case UnaryOp::clamp: return is_floating(dtype) || is_integral(dtype);
    default: return is_floating(dtype);
  }
}

constexpr bool supports(BinaryOp op, DType dtype) {
  switch (op) {
    case BinaryOp::add:
    case BinaryOp::sub:
    case BinaryOp::mul: return is_floating(dtype) || is_integral(dtype);
    case BinaryOp::div:
    case BinaryOp::pow: return is_floating(dtype);
    default:  // maximum, minimum, comparisons
      return true;
  }
}

// where supports every dtype. The backward helpers exist for floating dtypes only:
constexpr bool supports_backward(UnaryOp op, DType dtype) {
  switch (op) {
    case UnaryOp::neg:
    case UnaryOp::add_scalar:
    case UnaryOp::mul_scalar:
    case UnaryOp::rsub_scalar: return false;
    default: return is_floating(dtype);
  }
}

constexpr bool supports_backward(BinaryOp op, DType dtype) {
  const bool has_helper = op == BinaryOp::mul || op == BinaryOp::div || op == BinaryOp::maximum ||
                          op == BinaryOp::minimum || op == BinaryOp::pow;
  return has_helper && is_floating(dtype);
}

constexpr bool backward_uses_output(UnaryOp op) {
  return op == UnaryOp::exp || op == UnaryOp::sqrt || op == UnaryOp::rsqrt || op == UnaryOp::sigmoid ||
         op == UnaryOp::tanh;
}

namespace cpu {
// out: (numel of desc.in) contiguous
void unary(void* out, const void* in, const UnaryDesc& desc, Stream stream);
// out: (output sizes) contiguous, bool for comparisons
void binary(void* out, const void* a, const void* b, const BinaryDesc& desc, Stream stream);
// out: (output sizes) contiguous; cond: bool, layout desc.cond
void where(void* out, const bool* cond, const void* a, const void* b, const WhereDesc& desc, Stream stream);
// grad_in: (forward output sizes) contiguous
void unary_backward(void* grad_in, const void* grad_out, const void* saved, const UnaryBackwardDesc& desc,
                    Stream stream);
// grad_input: (forward output sizes) contiguous
void binary_backward(void* grad_input, const void* grad_out, const void* a, const void* b,
                     const BinaryBackwardDesc& desc, Stream stream);
}  // namespace cpu

// Same contract; pointers are device pointers, work is queued on `stream`.
namespace cuda {
// out: (numel of desc.in) contiguous
void unary(void* out, const void* in, const UnaryDesc& desc, Stream stream);
// out: (output sizes) contiguous, bool for comparisons
void binary(void* out, const void* a, const void* b, const BinaryDesc& desc, Stream stream);
// out: (output sizes) contiguous; cond: bool, layout desc.cond
void where(void* out, const bool* cond, const void* a, const void* b, const WhereDesc& desc, Stream stream);
// grad_in: (forward output sizes) contiguous
void unary_backward(void* grad_in, const void* grad_out, const void* saved, const UnaryBackwardDesc& desc,
                    Stream stream);
// grad_input: (forward output sizes) contiguous
void binary_backward(void* grad_input, const void* grad_out, const void* a, const void* b,
                     const BinaryBackwardDesc& desc, Stream stream);
}  // namespace cuda

}  // namespace se::kernels
