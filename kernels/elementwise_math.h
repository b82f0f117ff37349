// The per-element math of the elementwise family, shared by kernels/cpu/elementwise.cpp and
// kernels/cuda/elementwise.cu so that both backends compute the same formulas. Internal to kernels/.
// Everything here is SE_HOST_DEVICE and uses only math functions that exist on host and device
// (expf, erff, ...; no fast-math intrinsics), so f32 results agree to a few ulp across backends.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/elementwise.h"

namespace se::kernels::elementwise {

// The type an element is computed in: 16-bit floats compute in f32.
template <typename T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<f16> {
  using type = float;
};
template <>
struct ComputeType<bf16> {
  using type = float;
};
template <typename T>
using compute_t = typename ComputeType<T>::type;

// UnaryParams converted to the compute type once, on the host.
template <typename C>
struct ScalarArgs {
  C alpha{};
  C min{};
  C max{};
  bool has_min = false;
  bool has_max = false;
};

// ---- math on float and double, mapped to the C functions both host and device provide ----

SE_HOST_DEVICE inline float math_abs(float x) {
  return ::fabsf(x);
}
SE_HOST_DEVICE inline double math_abs(double x) {
  return ::fabs(x);
}
SE_HOST_DEVICE inline float math_exp(float x) {
  return ::expf(x);
}
SE_HOST_DEVICE inline double math_exp(double x) {
  return ::exp(x);
}
SE_HOST_DEVICE inline float math_log(float x) {
  return ::logf(x);
}
SE_HOST_DEVICE inline double math_log(double x) {
  return ::log(x);
}
SE_HOST_DEVICE inline float math_sqrt(float x) {
  return ::sqrtf(x);
}
SE_HOST_DEVICE inline double math_sqrt(double x) {
  return ::sqrt(x);
}
SE_HOST_DEVICE inline float math_erf(float x) {
  return ::erff(x);
}
SE_HOST_DEVICE inline double math_erf(double x) {
  return ::erf(x);
}
SE_HOST_DEVICE inline float math_tanh(float x) {
  return ::tanhf(x);
}
SE_HOST_DEVICE inline double math_tanh(double x) {
  return ::tanh(x);
}
SE_HOST_DEVICE inline float math_pow(float x, float y) {
  return ::powf(x, y);
}
SE_HOST_DEVICE inline double math_pow(double x, double y) {
  return ::pow(x, y);
}

template <typename C>
SE_HOST_DEVICE inline bool is_nan(C x) {
  if constexpr (std::is_floating_point_v<C>) {
    return x != x;
  } else {
    return false;
  }
}

// Signed integer arithmetic wraps like PyTorch's instead of overflowing (undefined in C++): compute in
// the unsigned type, whose conversion back is modular since C++20.
template <typename C>
SE_HOST_DEVICE inline C wrap_add(C a, C b) {
  if constexpr (std::is_integral_v<C> && std::is_signed_v<C>) {
    using U = std::make_unsigned_t<C>;
    return static_cast<C>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
  } else {
    return static_cast<C>(a + b);
  }
}

template <typename C>
SE_HOST_DEVICE inline C wrap_sub(C a, C b) {
  if constexpr (std::is_integral_v<C> && std::is_signed_v<C>) {
    using U = std::make_unsigned_t<C>;
    return static_cast<C>(static_cast<U>(static_cast<U>(a) - static_cast<U>(b)));
  } else {
    return static_cast<C>(a - b);
  }
}

template <typename C>
SE_HOST_DEVICE inline C wrap_mul(C a, C b) {
  if constexpr (std::is_integral_v<C> && std::is_signed_v<C>) {
    using U = std::make_unsigned_t<C>;
    return static_cast<C>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
  } else {
    return static_cast<C>(a * b);
  }
}

inline constexpr double kSqrtHalf = 0.70710678118654752440;     // 1 / sqrt(2)
inline constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1 / sqrt(2 pi)
inline constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)
inline constexpr double kGeluTanhCubic = 0.044715;

// ---- forward ----

template <UnaryOp kOp, typename C>
SE_HOST_DEVICE inline C unary_fn(C x, const ScalarArgs<C>& s) {
  if constexpr (kOp == UnaryOp::neg) {
    return wrap_sub(C(0), x);
  } else if constexpr (kOp == UnaryOp::exp) {
    return math_exp(x);
  } else if constexpr (kOp == UnaryOp::log) {
    return math_log(x);
  } else if constexpr (kOp == UnaryOp::sqrt) {
    return math_sqrt(x);
  } else if constexpr (kOp == UnaryOp::rsqrt) {
    return C(1) / math_sqrt(x);
  } else if constexpr (kOp == UnaryOp::abs) {
    if constexpr (std::is_floating_point_v<C>) {
      return math_abs(x);  // abs(-0) is +0
    } else {
      return x < C(0) ? wrap_sub(C(0), x) : x;
    }
  } else if constexpr (kOp == UnaryOp::relu) {
    return x < C(0) ? C(0) : x;  // keeps NaN
  } else if constexpr (kOp == UnaryOp::gelu) {
    return C(0.5) * x * (C(1) + math_erf(x * C(kSqrtHalf)));
  } else if constexpr (kOp == UnaryOp::gelu_tanh) {
    return C(0.5) * x * (C(1) + math_tanh(C(kSqrt2OverPi) * (x + C(kGeluTanhCubic) * x * x * x)));
  } else if constexpr (kOp == UnaryOp::sigmoid) {
    return C(1) / (C(1) + math_exp(-x));
  } else if constexpr (kOp == UnaryOp::tanh) {
    return math_tanh(x);
  } else if constexpr (kOp == UnaryOp::pow_scalar) {
    return math_pow(x, s.alpha);
  } else if constexpr (kOp == UnaryOp::add_scalar) {
    return wrap_add(x, s.alpha);
  } else if constexpr (kOp == UnaryOp::mul_scalar) {
    return wrap_mul(x, s.alpha);
  } else if constexpr (kOp == UnaryOp::rsub_scalar) {
    return wrap_sub(s.alpha, x);
  } else if constexpr (kOp == UnaryOp::rdiv_scalar) {
    return s.alpha / x;
  } else {
    static_assert(kOp == UnaryOp::clamp);
    if (s.has_min && x < s.min) x = s.min;
    if (s.has_max && x > s.max) x = s.max;
    return x;
  }
}

// Returns C, or bool for comparisons.
template <BinaryOp kOp, typename C>
SE_HOST_DEVICE inline auto binary_fn(C a, C b) {
  if constexpr (kOp == BinaryOp::add) {
    return wrap_add(a, b);
  } else if constexpr (kOp == BinaryOp::sub) {
    return wrap_sub(a, b);
  } else if constexpr (kOp == BinaryOp::mul) {
    return wrap_mul(a, b);
  } else if constexpr (kOp == BinaryOp::div) {
    return a / b;
  } else if constexpr (kOp == BinaryOp::maximum) {
    return (is_nan(a) || a > b) ? a : b;
  } else if constexpr (kOp == BinaryOp::minimum) {
    return (is_nan(a) || a < b) ? a : b;
  } else if constexpr (kOp == BinaryOp::pow) {
    return math_pow(a, b);
  } else if constexpr (kOp == BinaryOp::eq) {
    return a == b;
  } else if constexpr (kOp == BinaryOp::ne) {
    return a != b;
  } else if constexpr (kOp == BinaryOp::lt) {
    return a < b;
  } else if constexpr (kOp == BinaryOp::le) {
    return a <= b;
  } else if constexpr (kOp == BinaryOp::gt) {
    return a > b;
  } else {
    static_assert(kOp == BinaryOp::ge);
    return a >= b;
  }
}

// ---- backward (floating C only) ----

// d op(x) / dx * g, where `saved` is y for backward_uses_output(kOp), else x.
template <UnaryOp kOp, typename C>
SE_HOST_DEVICE inline C unary_grad_fn(C g, C saved, const ScalarArgs<C>& s) {
  if constexpr (kOp == UnaryOp::exp) {
    return g * saved;
  } else if constexpr (kOp == UnaryOp::log) {
    return g / saved;
  } else if constexpr (kOp == UnaryOp::sqrt) {
    return g / (C(2) * saved);
  } else if constexpr (kOp == UnaryOp::rsqrt) {
    return C(-0.5) * g * saved * saved * saved;
  } else if constexpr (kOp == UnaryOp::abs) {
    return saved > C(0) ? g : (saved < C(0) ? -g : C(0));
  } else if constexpr (kOp == UnaryOp::relu) {
    return saved > C(0) ? g : C(0);
  } else if constexpr (kOp == UnaryOp::gelu) {
    const C cdf = C(0.5) * (C(1) + math_erf(saved * C(kSqrtHalf)));
    const C pdf = math_exp(C(-0.5) * saved * saved) * C(kInvSqrt2Pi);
    return g * (cdf + saved * pdf);
  } else if constexpr (kOp == UnaryOp::gelu_tanh) {
    const C x = saved;
    const C t = math_tanh(C(kSqrt2OverPi) * (x + C(kGeluTanhCubic) * x * x * x));
    const C du = C(kSqrt2OverPi) * (C(1) + C(3 * kGeluTanhCubic) * x * x);
    return g * (C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * du);
  } else if constexpr (kOp == UnaryOp::sigmoid) {
    return g * saved * (C(1) - saved);
  } else if constexpr (kOp == UnaryOp::tanh) {
    return g * (C(1) - saved * saved);
  } else if constexpr (kOp == UnaryOp::pow_scalar) {
    // d/dx x^0 is 0 everywhere, also at x = 0 where the formula gives 0 * inf.
    return s.alpha == C(0) ? C(0) : g * s.alpha * math_pow(saved, s.alpha - C(1));
  } else if constexpr (kOp == UnaryOp::rdiv_scalar) {
    return -g * s.alpha / (saved * saved);
  } else {
    static_assert(kOp == UnaryOp::clamp);
    const bool inside = (!s.has_min || saved >= s.min) && (!s.has_max || saved <= s.max);
    return inside ? g : C(0);
  }
}

// d op(a, b) / d(a or b) * g; input 0 is a, 1 is b.
template <BinaryOp kOp, typename C>
SE_HOST_DEVICE inline C binary_grad_fn(int input, C g, C a, C b) {
  if constexpr (kOp == BinaryOp::mul) {
    return input == 0 ? g * b : g * a;
  } else if constexpr (kOp == BinaryOp::div) {
    return input == 0 ? g / b : -g * a / (b * b);
  } else if constexpr (kOp == BinaryOp::maximum || kOp == BinaryOp::minimum) {
    const C mine = input == 0 ? a : b;
    const C other = input == 0 ? b : a;
    const bool wins = kOp == BinaryOp::maximum ? mine > other : mine < other;
    return wins ? g : (mine == other ? C(0.5) * g : C(0));
  } else {
    static_assert(kOp == BinaryOp::pow);
    if (input == 0) return b == C(0) ? C(0) : g * b * math_pow(a, b - C(1));
    // a^b log(a): 0 where a == 0 and b >= 0 (the limit), as PyTorch does.
    return (a == C(0) && b >= C(0)) ? C(0) : g * math_pow(a, b) * math_log(a);
  }
}

// ---- host-side dispatch and checks, shared by both backends ----

template <UnaryOp kOp>
using UnaryOpTag = std::integral_constant<UnaryOp, kOp>;
template <BinaryOp kOp>
using BinaryOpTag = std::integral_constant<BinaryOp, kOp>;

// visit_unary_op(op, [&](auto tag) { constexpr UnaryOp kOp = decltype(tag)::value; ... });
template <typename F>
void visit_unary_op(UnaryOp op, F&& f) {
  switch (op) {
    case UnaryOp::neg: return f(UnaryOpTag<UnaryOp::neg>{});
    case UnaryOp::exp: return f(UnaryOpTag<UnaryOp::exp>{});
    case UnaryOp::log: return f(UnaryOpTag<UnaryOp::log>{});
    case UnaryOp::sqrt: return f(UnaryOpTag<UnaryOp::sqrt>{});
    case UnaryOp::rsqrt: return f(UnaryOpTag<UnaryOp::rsqrt>{});
    case UnaryOp::abs: return f(UnaryOpTag<UnaryOp::abs>{});
    case UnaryOp::relu: return f(UnaryOpTag<UnaryOp::relu>{});
    case UnaryOp::gelu: return f(UnaryOpTag<UnaryOp::gelu>{});
    case UnaryOp::gelu_tanh: return f(UnaryOpTag<UnaryOp::gelu_tanh>{});
    case UnaryOp::sigmoid: return f(UnaryOpTag<UnaryOp::sigmoid>{});
    case UnaryOp::tanh: return f(UnaryOpTag<UnaryOp::tanh>{});
    case UnaryOp::pow_scalar: return f(UnaryOpTag<UnaryOp::pow_scalar>{});
    case UnaryOp::add_scalar: return f(UnaryOpTag<UnaryOp::add_scalar>{});
    case UnaryOp::mul_scalar: return f(UnaryOpTag<UnaryOp::mul_scalar>{});
    case UnaryOp::rsub_scalar: return f(UnaryOpTag<UnaryOp::rsub_scalar>{});
    case UnaryOp::rdiv_scalar: return f(UnaryOpTag<UnaryOp::rdiv_scalar>{});
    case UnaryOp::clamp: return f(UnaryOpTag<UnaryOp::clamp>{});
  }
  SE_THROW("elementwise: invalid unary op value ", static_cast<int>(op));
}

template <typename F>
void visit_binary_op(BinaryOp op, F&& f) {
  switch (op) {
    case BinaryOp::add: return f(BinaryOpTag<BinaryOp::add>{});
    case BinaryOp::sub: return f(BinaryOpTag<BinaryOp::sub>{});
    case BinaryOp::mul: return f(BinaryOpTag<BinaryOp::mul>{});
    case BinaryOp::div: return f(BinaryOpTag<BinaryOp::div>{});
    case BinaryOp::maximum: return f(BinaryOpTag<BinaryOp::maximum>{});
    case BinaryOp::minimum: return f(BinaryOpTag<BinaryOp::minimum>{});
    case BinaryOp::pow: return f(BinaryOpTag<BinaryOp::pow>{});
    case BinaryOp::eq: return f(BinaryOpTag<BinaryOp::eq>{});
    case BinaryOp::ne: return f(BinaryOpTag<BinaryOp::ne>{});
    case BinaryOp::lt: return f(BinaryOpTag<BinaryOp::lt>{});
    case BinaryOp::le: return f(BinaryOpTag<BinaryOp::le>{});
    case BinaryOp::gt: return f(BinaryOpTag<BinaryOp::gt>{});
    case BinaryOp::ge: return f(BinaryOpTag<BinaryOp::ge>{});
  }
  SE_THROW("elementwise: invalid binary op value ", static_cast<int>(op));
}

// Converts one scalar operand to the compute type. Integer dtypes accept integer values only; operands
// wrap into the element type (u8 + -1 is u8 - 1) and clamp bounds saturate (clamp(u8, -5, 9) is [0, 9]).
template <typename C>
C scalar_arg(double value, bool saturate, std::string_view what, std::string_view op, DType dtype,
             std::string_view device) {
  if constexpr (std::is_integral_v<C>) {
    SE_CHECK(std::isfinite(value) && value == std::trunc(value) && std::fabs(value) < 9.2e18, op, ": ", what, " ",
             value, " is not an integer value for dtype ", dtype_name(dtype), " on ", device);
    const auto integer = static_cast<int64_t>(value);
    if (saturate) {
      const auto lo = static_cast<int64_t>(std::numeric_limits<C>::min());
      const auto hi = static_cast<int64_t>(std::numeric_limits<C>::max());
      return static_cast<C>(std::min(std::max(integer, lo), hi));
    }
    return static_cast<C>(integer);  // modular
  } else {
    return static_cast<C>(value);
  }
}

template <typename C>
ScalarArgs<C> make_scalar_args(UnaryOp op, const UnaryParams& p, DType dtype, std::string_view device) {
  const std::string_view name = op_name(op);
  ScalarArgs<C> args;
  args.has_min = op == UnaryOp::clamp && p.has_min;
  args.has_max = op == UnaryOp::clamp && p.has_max;
  if (op == UnaryOp::pow_scalar || op == UnaryOp::add_scalar || op == UnaryOp::mul_scalar ||
      op == UnaryOp::rsub_scalar || op == UnaryOp::rdiv_scalar) {
    args.alpha = scalar_arg<C>(p.alpha, false, "scalar", name, dtype, device);
  }
  if (args.has_min) args.min = scalar_arg<C>(p.min, true, "min", name, dtype, device);
  if (args.has_max) args.max = scalar_arg<C>(p.max, true, "max", name, dtype, device);
  return args;
}

template <typename Op>
void require_supported(bool supported, Op op, DType dtype, std::string_view device) {
  SE_CHECK(supported, "elementwise ", op_name(op), ": dtype ", dtype_name(dtype), " is not supported on ", device);
}

template <typename Op>
void require_backward_supported(bool supported, Op op, DType dtype, std::string_view device) {
  SE_CHECK(supported, "elementwise ", op_name(op), "_backward: dtype ", dtype_name(dtype), " is not supported on ",
           device);
}

inline std::string shape_string(const StridedLayout& layout) {
  std::string s = "(";
  for (int d = 0; d < layout.ndim; ++d) s += (d ? ", " : "") + std::to_string(layout.sizes[d]);
  return s + ")";
}

// All layouts of one call must describe the same iteration space.
inline void require_same_sizes(std::string_view op, const StridedLayout& first, const StridedLayout& other) {
  bool same = first.ndim == other.ndim && first.ndim >= 0 && first.ndim <= kMaxDims;
  for (int d = 0; same && d < first.ndim; ++d) same = first.sizes[d] == other.sizes[d];
  SE_CHECK(same, "elementwise ", op, ": operand layouts ", shape_string(first), " and ", shape_string(other),
           " differ (broadcast them to the output's sizes with 0 strides)");
}

// The contiguous row-major layout of the output, for collapsing together with the inputs.
inline StridedLayout contiguous_like(const StridedLayout& layout) {
  StridedLayout out;
  out.ndim = layout.ndim;
  int64_t stride = 1;
  for (int d = layout.ndim - 1; d >= 0; --d) {
    out.sizes[d] = layout.sizes[d];
    out.strides[d] = stride;
    stride *= layout.sizes[d];
  }
  return out;
}

}  // namespace se::kernels::elementwise
