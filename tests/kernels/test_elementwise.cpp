// Elementwise kernels: CPU against a scalar double reference (finite differences for the backward
// helpers), and CUDA against CPU on the same cases: odd sizes, broadcasting, transposed inputs,
// every supported dtype. Tolerances: f64 1e-12, f32 1e-5 relative (plus 1e-6 absolute for the
// cancellation in gelu/tanh near zero), f16/bf16 about one unit in the last place of the format.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/elementwise.h"
#include "tests/kernels/elementwise_test_util.h"

namespace se::kernels {
namespace {

using namespace se::kernels::elementwise_test;

constexpr DType kFloatTypes[] = {DType::f32, DType::f64, DType::f16, DType::bf16};

// ---- unary cases and the double reference ----

struct UnaryCase {
  UnaryDesc desc;
  Array in;
};

double reference_unary(UnaryOp op, double x, const UnaryParams& p) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return std::exp(x);
    case UnaryOp::log: return std::log(x);
    case UnaryOp::sqrt: return std::sqrt(x);
    case UnaryOp::rsqrt: return 1.0 / std::sqrt(x);
    case UnaryOp::abs: return std::fabs(x);
    case UnaryOp::relu: return std::max(x, 0.0);
    case UnaryOp::gelu: return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
    case UnaryOp::gelu_tanh: return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case UnaryOp::sigmoid: return 1.0 / (1.0 + std::exp(-x));
    case UnaryOp::tanh: return std::tanh(x);
    case UnaryOp::pow_scalar: return std::pow(x, p.alpha);
    case UnaryOp::add_scalar: return x + p.alpha;
    case UnaryOp::mul_scalar: return x * p.alpha;
    case UnaryOp::rsub_scalar: return p.alpha - x;
    case UnaryOp::rdiv_scalar: return p.alpha / x;
    case UnaryOp::clamp: {
      double v = x;
      if (p.has_min) v = std::max(v, p.min);
      if (p.has_max) v = std::min(v, p.max);
      return v;
    }
  }
  return 0.0;
}

// Integer results wrap to the element type's width, like the kernels.
double wrap_to(DType dtype, int64_t v) {
  if (dtype == DType::i32) return static_cast<int32_t>(v);
  if (dtype == DType::u8) return static_cast<uint8_t>(v);
  return static_cast<double>(v);
}

constexpr UnaryOp kUnaryOps[] = {UnaryOp::neg,        UnaryOp::exp,        UnaryOp::log,         UnaryOp::sqrt,
                                 UnaryOp::rsqrt,      UnaryOp::abs,        UnaryOp::relu,        UnaryOp::gelu,
                                 UnaryOp::gelu_tanh,  UnaryOp::sigmoid,    UnaryOp::tanh,        UnaryOp::pow_scalar,
                                 UnaryOp::add_scalar, UnaryOp::mul_scalar, UnaryOp::rsub_scalar, UnaryOp::rdiv_scalar,
                                 UnaryOp::clamp};

UnaryParams params_for(UnaryOp op, DType dtype, int variant) {
  UnaryParams p;
  const bool integral = !is_floating(dtype);
  if (op == UnaryOp::pow_scalar) p.alpha = variant % 2 ? 3.0 : 2.5;
  if (op == UnaryOp::add_scalar) p.alpha = integral ? 7 : 1.5;
  if (op == UnaryOp::mul_scalar) p.alpha = integral ? -3 : -2.5;
  if (op == UnaryOp::rsub_scalar) p.alpha = integral ? 5 : 2.0;
  if (op == UnaryOp::rdiv_scalar) p.alpha = 3.0;
  if (op == UnaryOp::clamp) {  // variants: both bounds, min only, max only
    p.has_min = variant % 3 != 2;
    p.has_max = variant % 3 != 1;
    p.min = integral ? -20 : -1.0;
    p.max = integral ? 30 : 2.0;
  }
  return p;
}

// Inputs inside the op's domain: positive for log/sqrt/rsqrt/pow, away from 0 for rdiv.
std::function<double()> unary_inputs(UnaryOp op, DType dtype, std::mt19937& rng) {
  if (dtype == DType::u8) return uniform(rng, 0, 255.99);
  if (dtype == DType::i32 || dtype == DType::i64) return uniform(rng, -100, 100);
  switch (op) {
    case UnaryOp::log:
    case UnaryOp::sqrt:
    case UnaryOp::rsqrt:
    case UnaryOp::pow_scalar: return uniform(rng, 0.1, 3.0);
    case UnaryOp::rdiv_scalar:
      return [&rng] {
        const double m = std::uniform_real_distribution<double>(0.5, 3.0)(rng);
        return rng() % 2 ? m : -m;
      };
    default: return uniform(rng, -4.0, 4.0);
  }
}

std::vector<UnaryCase> unary_cases(DType dtype) {
  std::mt19937 rng(1234 + static_cast<int>(dtype));
  const std::vector<std::pair<Shape, bool>> shapes = {{{1}, false},    {{3}, false},     {{17}, false}, {{1000}, false},
                                                      {{4099}, false}, {{17, 33}, true}, {{}, false}};
  std::vector<UnaryCase> cases;
  for (UnaryOp op : kUnaryOps) {
    if (!supports(op, dtype)) continue;
    for (size_t s = 0; s < shapes.size(); ++s) {
      const auto& [shape, transposed] = shapes[s];
      UnaryCase c;
      c.in = make_array(dtype, shape, unary_inputs(op, dtype, rng), transposed);
      c.desc.op = op;
      c.desc.dtype = dtype;
      c.desc.in = layout_as(c.in, shape);
      c.desc.params = params_for(op, dtype, static_cast<int>(s));
      cases.push_back(c);
    }
  }
  return cases;
}

Bytes run_unary(Device device, const UnaryCase& c) {
  return run_on(device, c.in.values.size() * dtype_size(c.desc.dtype), {&c.in.storage},
                [&](void* out, const std::vector<const void*>& in) {
                  if (device == Device::cpu)
                    cpu::unary(out, in[0], c.desc, nullptr);
                  else
                    CUDA_ONLY(cuda::unary(out, in[0], c.desc, nullptr));
                });
}

std::string describe(const UnaryCase& c) {
  return std::string(op_name(c.desc.op)) + " " + std::string(dtype_name(c.desc.dtype)) + " numel " +
         std::to_string(c.in.values.size());
}

// ---- binary cases ----

struct BinaryCase {
  BinaryDesc desc;
  Array a;
  Array b;
  Shape out;
};

constexpr BinaryOp kBinaryOps[] = {BinaryOp::add,     BinaryOp::sub, BinaryOp::mul, BinaryOp::div, BinaryOp::maximum,
                                   BinaryOp::minimum, BinaryOp::pow, BinaryOp::eq,  BinaryOp::ne,  BinaryOp::lt,
                                   BinaryOp::le,      BinaryOp::gt,  BinaryOp::ge};

double reference_binary(BinaryOp op, DType dtype, double a, double b) {
  // Integer products of the i32 inputs need 62 bits: exact in int64, not in double.
  const auto ia = static_cast<int64_t>(a), ib = static_cast<int64_t>(b);
  const bool integral = is_integral(dtype);
  switch (op) {
    case BinaryOp::add: return integral ? wrap_to(dtype, ia + ib) : a + b;
    case BinaryOp::sub: return integral ? wrap_to(dtype, ia - ib) : a - b;
    case BinaryOp::mul: return integral ? wrap_to(dtype, ia * ib) : a * b;
    case BinaryOp::div: return a / b;
    case BinaryOp::maximum: return std::isnan(a) || a > b ? a : b;
    case BinaryOp::minimum: return std::isnan(a) || a < b ? a : b;
    case BinaryOp::pow: return std::pow(a, b);
    case BinaryOp::eq: return a == b;
    case BinaryOp::ne: return a != b;
    case BinaryOp::lt: return a < b;
    case BinaryOp::le: return a <= b;
    case BinaryOp::gt: return a > b;
    case BinaryOp::ge: return a >= b;
  }
  return 0.0;
}

std::function<double()> binary_inputs(BinaryOp op, DType dtype, int operand, std::mt19937& rng) {
  if (is_comparison(op) || dtype == DType::boolean) {  // few distinct values, so ties are common
    const int hi = dtype == DType::boolean ? 1 : 2;
    const int lo = dtype == DType::boolean || dtype == DType::u8 ? 0 : -2;
    return [&rng, lo, hi] { return static_cast<double>(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  }
  if (dtype == DType::u8) return uniform(rng, 0, 255.99);
  if (dtype == DType::i32) return uniform(rng, -3e9 / 2, 3e9 / 2);  // sums and products wrap
  if (dtype == DType::i64) return uniform(rng, -1e6, 1e6);          // exact in the double reference
  if (op == BinaryOp::pow) return operand == 0 ? uniform(rng, 0.2, 3.0) : uniform(rng, -2.0, 2.0);
  if (op == BinaryOp::div && operand == 1) {
    return [&rng] {
      const double m = std::uniform_real_distribution<double>(0.5, 3.0)(rng);
      return rng() % 2 ? m : -m;
    };
  }
  return uniform(rng, -4.0, 4.0);
}

// (a shape, a transposed, b shape, b transposed)
struct ShapePair {
  Shape a;
  bool a_transposed;
  Shape b;
  bool b_transposed;
};

const std::vector<ShapePair>& binary_shapes() {
  static const std::vector<ShapePair> shapes = {
      {{1}, false, {1}, false},          {{3}, false, {3}, false},         {{17}, false, {17}, false},
      {{1000}, false, {1000}, false},    {{4099}, false, {1}, false},      {{4, 1, 5}, false, {3, 1}, false},
      {{17, 33}, true, {17, 33}, false}, {{5, 1}, false, {9, 5, 7}, true}, {{2, 3}, false, {}, false}};
  return shapes;
}

std::vector<BinaryCase> binary_cases(DType dtype) {
  std::mt19937 rng(99 + static_cast<int>(dtype));
  std::vector<BinaryCase> cases;
  for (BinaryOp op : kBinaryOps) {
    if (!supports(op, dtype)) continue;
    for (const ShapePair& s : binary_shapes()) {
      BinaryCase c;
      c.a = make_array(dtype, s.a, binary_inputs(op, dtype, 0, rng), s.a_transposed);
      c.b = make_array(dtype, s.b, binary_inputs(op, dtype, 1, rng), s.b_transposed);
      c.out = broadcast_shape(s.a, s.b);
      c.desc.op = op;
      c.desc.dtype = dtype;
      c.desc.a = layout_as(c.a, c.out);
      c.desc.b = layout_as(c.b, c.out);
      cases.push_back(c);
    }
  }
  return cases;
}

DType output_dtype(const BinaryDesc& desc) {
  return is_comparison(desc.op) ? DType::boolean : desc.dtype;
}

Bytes run_binary(Device device, const BinaryCase& c) {
  return run_on(device, numel_of(c.out) * dtype_size(output_dtype(c.desc)), {&c.a.storage, &c.b.storage},
                [&](void* out, const std::vector<const void*>& in) {
                  if (device == Device::cpu)
                    cpu::binary(out, in[0], in[1], c.desc, nullptr);
                  else
                    CUDA_ONLY(cuda::binary(out, in[0], in[1], c.desc, nullptr));
                });
}

std::string describe(const BinaryCase& c) {
  std::string s = std::string(op_name(c.desc.op)) + " " + std::string(dtype_name(c.desc.dtype)) + " out (";
  for (int64_t d : c.out) s += std::to_string(d) + ",";
  return s + ")";
}

// ---- where ----

struct WhereCase {
  WhereDesc desc;
  Array cond;
  Array a;
  Array b;
  Shape out;
};

WhereCase where_case(DType dtype, std::mt19937& rng) {
  WhereCase c;
  auto bits = [&rng] { return static_cast<double>(rng() % 2); };
  auto values = [&rng, dtype] { return static_cast<double>(rng() % (dtype == DType::boolean ? 2 : 100)); };
  c.cond = make_array(DType::boolean, {4, 1, 5}, bits);
  c.a = make_array(dtype, {3, 5}, values, true);
  c.b = make_array(dtype, {1}, [dtype] { return dtype == DType::boolean ? 1.0 : 200.0; });
  c.out = {4, 3, 5};
  c.desc = {dtype, layout_as(c.cond, c.out), layout_as(c.a, c.out), layout_as(c.b, c.out)};
  return c;
}

Bytes run_where(Device device, const WhereCase& c) {
  return run_on(device, numel_of(c.out) * dtype_size(c.desc.dtype), {&c.cond.storage, &c.a.storage, &c.b.storage},
                [&](void* out, const std::vector<const void*>& in) {
                  const bool* cond = static_cast<const bool*>(in[0]);
                  if (device == Device::cpu)
                    cpu::where(out, cond, in[1], in[2], c.desc, nullptr);
                  else
                    CUDA_ONLY(cuda::where(out, cond, in[1], in[2], c.desc, nullptr));
                });
}

// ---- backward cases ----

std::function<double()> from_values(const std::vector<double>& values) {
  auto index = std::make_shared<size_t>(0);
  return [&values, index] { return values[(*index)++]; };
}

// Finite-difference derivative of the double reference, for the ops whose derivative is smooth at x.
double derivative(const std::function<double(double)>& f, double x) {
  const double h = 1e-5 * std::max(1.0, std::fabs(x));
  return (f(x + h) - f(x - h)) / (2 * h);
}

// Points this close to a kink (relu/abs at 0, clamp bounds, maximum/minimum ties) are left out of the
// finite-difference comparison, as in Caffe's GradientChecker.
bool near_kink(UnaryOp op, double x, const UnaryParams& p) {
  const double eps = 1e-3;
  if (op == UnaryOp::relu || op == UnaryOp::abs) return std::fabs(x) < eps;
  if (op == UnaryOp::clamp)
    return (p.has_min && std::fabs(x - p.min) < eps) || (p.has_max && std::fabs(x - p.max) < eps);
  return false;
}

struct UnaryBackwardCase {
  UnaryBackwardDesc desc;
  Array x;  // the forward input, for the reference
  Array grad;
  Array saved;
};

constexpr UnaryOp kBackwardUnaryOps[] = {UnaryOp::exp,     UnaryOp::log,  UnaryOp::sqrt,       UnaryOp::rsqrt,
                                         UnaryOp::abs,     UnaryOp::relu, UnaryOp::gelu,       UnaryOp::gelu_tanh,
                                         UnaryOp::sigmoid, UnaryOp::tanh, UnaryOp::pow_scalar, UnaryOp::rdiv_scalar,
                                         UnaryOp::clamp};

std::vector<UnaryBackwardCase> unary_backward_cases(DType dtype) {
  std::mt19937 rng(555 + static_cast<int>(dtype));
  std::vector<UnaryBackwardCase> cases;
  for (UnaryOp op : kBackwardUnaryOps) {
    for (int variant = 0; variant < 3; ++variant) {
      const Shape shape = variant == 0 ? Shape{1000} : variant == 1 ? Shape{17, 33} : Shape{3};
      UnaryBackwardCase c;
      c.desc.op = op;
      c.desc.dtype = dtype;
      c.desc.params = params_for(op, dtype, variant);
      c.x = make_array(dtype, shape, unary_inputs(op, dtype, rng));
      std::vector<double> saved = c.x.values;
      if (backward_uses_output(op)) {
        for (double& v : saved) v = reference_unary(op, v, c.desc.params);
      }
      c.saved = make_array(dtype, shape, from_values(saved), variant == 1);
      c.grad = make_array(dtype, shape, uniform(rng, -2.0, 2.0));
      c.desc.grad_out = layout_as(c.grad, shape);
      c.desc.saved = layout_as(c.saved, shape);
      cases.push_back(c);
    }
  }
  return cases;
}

Bytes run_unary_backward(Device device, const UnaryBackwardCase& c) {
  return run_on(device, c.grad.values.size() * dtype_size(c.desc.dtype), {&c.grad.storage, &c.saved.storage},
                [&](void* out, const std::vector<const void*>& in) {
                  if (device == Device::cpu)
                    cpu::unary_backward(out, in[0], in[1], c.desc, nullptr);
                  else
                    CUDA_ONLY(cuda::unary_backward(out, in[0], in[1], c.desc, nullptr));
                });
}

struct BinaryBackwardCase {
  BinaryBackwardDesc desc;
  Array grad;
  Array a;
  Array b;
  Shape out;
};

constexpr BinaryOp kBackwardBinaryOps[] = {BinaryOp::mul, BinaryOp::div, BinaryOp::maximum, BinaryOp::minimum,
                                           BinaryOp::pow};

std::vector<BinaryBackwardCase> binary_backward_cases(DType dtype) {
  std::mt19937 rng(777 + static_cast<int>(dtype));
  std::vector<BinaryBackwardCase> cases;
  for (BinaryOp op : kBackwardBinaryOps) {
    for (const ShapePair& s : binary_shapes()) {
      for (int input = 0; input < 2; ++input) {
        BinaryBackwardCase c;
        c.a = make_array(dtype, s.a, binary_inputs(op, dtype, 0, rng), s.a_transposed);
        c.b = make_array(dtype, s.b, binary_inputs(op, dtype, 1, rng), s.b_transposed);
        c.out = broadcast_shape(s.a, s.b);
        c.grad = make_array(dtype, c.out, uniform(rng, -2.0, 2.0));
        c.desc = {op, dtype, input, layout_as(c.grad, c.out), layout_as(c.a, c.out), layout_as(c.b, c.out)};
        cases.push_back(c);
      }
    }
  }
  return cases;
}

Bytes run_binary_backward(Device device, const BinaryBackwardCase& c) {
  return run_on(device, numel_of(c.out) * dtype_size(c.desc.dtype), {&c.grad.storage, &c.a.storage, &c.b.storage},
                [&](void* out, const std::vector<const void*>& in) {
                  if (device == Device::cpu)
                    cpu::binary_backward(out, in[0], in[1], in[2], c.desc, nullptr);
                  else
                    CUDA_ONLY(cuda::binary_backward(out, in[0], in[1], in[2], c.desc, nullptr));
                });
}

// Half types against the f32 kernel on the same (already rounded) inputs, rounded to the format:
// both compute in f32, so they agree to within one unit in the last place.
Tolerance half_vs_f32(DType dtype) {
  return dtype == DType::f16 ? Tolerance{1e-3, 1e-7} : Tolerance{8e-3, 1e-7};
}

Array with_dtype(const Array& a, DType dtype) {
  Array out = a;
  out.dtype = dtype;
  out.storage.assign(a.storage.size() / dtype_size(a.dtype) * dtype_size(dtype), 0);
  for (size_t i = 0; i < a.storage.size() / dtype_size(a.dtype); ++i) {
    store_element(dtype, out.storage, static_cast<int64_t>(i),
                  load_element(a.dtype, a.storage, static_cast<int64_t>(i)));
  }
  return out;
}

std::vector<double> decode_rounded(DType dtype, const Bytes& bytes, DType round_dtype) {
  std::vector<double> values = decode(dtype, bytes);
  for (double& v : values) v = round_to(round_dtype, v);
  return values;
}

// ================================ CPU against the double reference ================================

TEST(ElementwiseCpu, UnaryMatchesDoubleReference) {
  for (DType dtype : kAllDTypes) {
    for (const UnaryCase& c : unary_cases(dtype)) {
      std::vector<double> expected;
      for (double x : c.in.values) {
        const double y = reference_unary(c.desc.op, x, c.desc.params);
        expected.push_back(is_integral(dtype) ? wrap_to(dtype, static_cast<int64_t>(y)) : y);
      }
      expect_close(dtype, run_unary(Device::cpu, c), expected, tolerance_of(dtype), describe(c));
    }
  }
}

TEST(ElementwiseCpu, BinaryMatchesDoubleReference) {
  for (DType dtype : kAllDTypes) {
    for (const BinaryCase& c : binary_cases(dtype)) {
      std::vector<double> expected;
      for (int64_t i = 0; i < numel_of(c.out); ++i) {
        expected.push_back(reference_binary(c.desc.op, dtype, value_at(c.a, c.out, i), value_at(c.b, c.out, i)));
      }
      const DType out_dtype = output_dtype(c.desc);
      expect_close(out_dtype, run_binary(Device::cpu, c), expected, tolerance_of(out_dtype), describe(c));
    }
  }
}

TEST(ElementwiseCpu, WhereSelectsWithBroadcasting) {
  std::mt19937 rng(5);
  for (DType dtype : kAllDTypes) {
    const WhereCase c = where_case(dtype, rng);
    std::vector<double> expected;
    for (int64_t i = 0; i < numel_of(c.out); ++i) {
      expected.push_back(value_at(c.cond, c.out, i) != 0 ? value_at(c.a, c.out, i) : value_at(c.b, c.out, i));
    }
    expect_close(dtype, run_where(Device::cpu, c), expected, {0.0, 0.0}, "where " + std::string(dtype_name(dtype)));
  }
}

TEST(ElementwiseCpu, HalfTypesMatchF32WithinRounding) {
  for (DType dtype : {DType::f16, DType::bf16}) {
    for (const UnaryCase& c : unary_cases(dtype)) {
      UnaryCase wide = c;
      wide.desc.dtype = DType::f32;
      wide.in = with_dtype(c.in, DType::f32);
      expect_close(dtype, run_unary(Device::cpu, c), decode_rounded(DType::f32, run_unary(Device::cpu, wide), dtype),
                   half_vs_f32(dtype), describe(c));
    }
    for (const UnaryBackwardCase& c : unary_backward_cases(dtype)) {
      UnaryBackwardCase wide = c;
      wide.desc.dtype = DType::f32;
      wide.grad = with_dtype(c.grad, DType::f32);
      wide.saved = with_dtype(c.saved, DType::f32);
      expect_close(dtype, run_unary_backward(Device::cpu, c),
                   decode_rounded(DType::f32, run_unary_backward(Device::cpu, wide), dtype), half_vs_f32(dtype),
                   std::string(op_name(c.desc.op)) + "_backward");
    }
  }
}

TEST(ElementwiseCpu, UnaryBackwardMatchesFiniteDifferences) {
  for (DType dtype : {DType::f64, DType::f32}) {
    // f64 checks the formulas (limited by the finite differences); f32 also checks precision.
    const Tolerance tol = dtype == DType::f64 ? Tolerance{1e-8, 1e-9} : tolerance_of(DType::f32);
    for (const UnaryBackwardCase& c : unary_backward_cases(dtype)) {
      const std::vector<double> got = decode(dtype, run_unary_backward(Device::cpu, c));
      std::vector<double> expected, got_kept;
      for (size_t i = 0; i < c.x.values.size(); ++i) {
        const double x = c.x.values[i];
        if (near_kink(c.desc.op, x, c.desc.params)) continue;
        auto f = [&](double v) { return reference_unary(c.desc.op, v, c.desc.params); };
        expected.push_back(c.grad.values[i] * derivative(f, x));
        got_kept.push_back(got[i]);
      }
      expect_close_values(got_kept, expected, tol,
                          std::string(op_name(c.desc.op)) + "_backward " + std::string(dtype_name(dtype)));
    }
  }
}

TEST(ElementwiseCpu, BinaryBackwardMatchesFiniteDifferences) {
  for (DType dtype : {DType::f64, DType::f32}) {
    const Tolerance tol = dtype == DType::f64 ? Tolerance{1e-8, 1e-9} : tolerance_of(DType::f32);
    for (const BinaryBackwardCase& c : binary_backward_cases(dtype)) {
      const std::vector<double> got = decode(dtype, run_binary_backward(Device::cpu, c));
      const bool has_kink = c.desc.op == BinaryOp::maximum || c.desc.op == BinaryOp::minimum;
      std::vector<double> expected, got_kept;
      for (int64_t i = 0; i < numel_of(c.out); ++i) {
        const double a = value_at(c.a, c.out, i), b = value_at(c.b, c.out, i);
        if (has_kink && std::fabs(a - b) < 1e-3) continue;  // ties are tested on their own
        got_kept.push_back(got[i]);
        auto f = [&](double v) {
          return c.desc.input == 0 ? reference_binary(c.desc.op, dtype, v, b)
                                   : reference_binary(c.desc.op, dtype, a, v);
        };
        expected.push_back(c.grad.values[i] * derivative(f, c.desc.input == 0 ? a : b));
      }
      expect_close_values(got_kept, expected, tol,
                          std::string(op_name(c.desc.op)) + "_backward input " + std::to_string(c.desc.input));
    }
  }
}

// ================================ CPU: edge cases and errors ================================

// Single-element helpers for the edge cases below (CPU, contiguous 1-d).
template <typename T>
std::vector<T> cpu_unary(UnaryOp op, DType dtype, std::vector<T> in, UnaryParams params = {}) {
  std::vector<T> out(in.size());
  UnaryDesc desc{op, dtype, layout_of(static_cast<int64_t>(in.size())), params};
  cpu::unary(out.data(), in.data(), desc, nullptr);
  return out;
}

TEST(ElementwiseCpu, IntegerArithmeticWraps) {
  const int32_t min32 = std::numeric_limits<int32_t>::min();
  EXPECT_EQ(cpu_unary<int32_t>(UnaryOp::neg, DType::i32, {min32, 5})[0], min32);
  EXPECT_EQ(cpu_unary<int32_t>(UnaryOp::abs, DType::i32, {min32, -5})[1], 5);
  UnaryParams add10;
  add10.alpha = 10;
  EXPECT_EQ(cpu_unary<uint8_t>(UnaryOp::add_scalar, DType::u8, {250, 1}, add10), (std::vector<uint8_t>{4, 11}));
  const int64_t big = int64_t{1} << 62;
  std::vector<int64_t> a = {big}, b = {4}, out(1);
  BinaryDesc desc{BinaryOp::mul, DType::i64, layout_of(1), layout_of(1)};
  cpu::binary(out.data(), a.data(), b.data(), desc, nullptr);
  EXPECT_EQ(out[0], 0);
}

TEST(ElementwiseCpu, NanPropagatesThroughMaxMinReluClamp) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  UnaryParams bounds;
  bounds.has_min = bounds.has_max = true;
  bounds.min = -1;
  bounds.max = 1;
  EXPECT_TRUE(std::isnan(cpu_unary<float>(UnaryOp::relu, DType::f32, {nan})[0]));
  EXPECT_TRUE(std::isnan(cpu_unary<float>(UnaryOp::clamp, DType::f32, {nan}, bounds)[0]));
  for (BinaryOp op : {BinaryOp::maximum, BinaryOp::minimum}) {
    std::vector<float> a = {nan, 1.0f}, b = {1.0f, nan}, out(2);
    cpu::binary(out.data(), a.data(), b.data(), {op, DType::f32, layout_of(2), layout_of(2)}, nullptr);
    EXPECT_TRUE(std::isnan(out[0]) && std::isnan(out[1])) << op_name(op);
  }
}

TEST(ElementwiseCpu, MaximumAndMinimumBackwardSplitTies) {
  std::vector<double> grad = {4.0, 4.0, 4.0}, a = {1.0, 2.0, 3.0}, b = {2.0, 2.0, 2.0}, out(3);
  for (BinaryOp op : {BinaryOp::maximum, BinaryOp::minimum}) {
    for (int input = 0; input < 2; ++input) {
      BinaryBackwardDesc desc{op, DType::f64, input, layout_of(3), layout_of(3), layout_of(3)};
      cpu::binary_backward(out.data(), grad.data(), a.data(), b.data(), desc, nullptr);
      const bool a_wins_first = (op == BinaryOp::minimum) == (input == 0);  // a < b at element 0
      EXPECT_EQ(out, (a_wins_first ? std::vector<double>{4, 2, 0} : std::vector<double>{0, 2, 4}))
          << op_name(op) << " input " << input;
    }
  }
}

TEST(ElementwiseCpu, ParallelSplitWithOddThreadCountMatchesSerial) {
  // 3 threads over a broadcast, transposed iteration space: thread ranges start and end mid-row.
  std::mt19937 rng(11);
  const Array a = make_array(DType::f32, {60, 7, 301}, uniform(rng, -1, 1), true);
  const Array b = make_array(DType::f32, {7, 1}, uniform(rng, -1, 1));
  const Shape out = {60, 7, 301};
  BinaryCase c{{BinaryOp::sub, DType::f32, layout_as(a, out), layout_as(b, out)}, a, b, out};
  const int threads = omp_get_max_threads();
  omp_set_num_threads(3);
  const Bytes parallel = run_binary(Device::cpu, c);
  omp_set_num_threads(threads);
  std::vector<double> expected;
  for (int64_t i = 0; i < numel_of(out); ++i) expected.push_back(value_at(a, out, i) - value_at(b, out, i));
  expect_close(DType::f32, parallel, expected, tolerance_of(DType::f32), "sub, 3 threads");
}

TEST(ElementwiseCpu, InPlaceAndEmptyCalls) {
  std::vector<float> x = {1.0f, -2.0f, 3.0f}, y = {10.0f};
  BinaryDesc desc{BinaryOp::add, DType::f32, layout_of(3), layout_of(3)};
  desc.b.strides[0] = 0;  // y broadcast
  cpu::binary(x.data(), x.data(), y.data(), desc, nullptr);
  EXPECT_EQ(x, (std::vector<float>{11.0f, 8.0f, 13.0f}));
  cpu::unary(nullptr, nullptr, {UnaryOp::exp, DType::f32, layout_of(0), {}}, nullptr);  // nothing to touch
}

TEST(ElementwiseCpu, UnsupportedOpDTypeThrowsNamingOpDTypeAndDevice) {
  std::vector<int32_t> in = {1}, out(1);
  try {
    cpu::unary(out.data(), in.data(), {UnaryOp::exp, DType::i32, layout_of(1), {}}, nullptr);
    FAIL() << "exp on i32 should throw";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("exp"), std::string::npos) << message;
    EXPECT_NE(message.find("i32"), std::string::npos) << message;
    EXPECT_NE(message.find("cpu"), std::string::npos) << message;
  }
  // supports() and the kernels agree on every (op, dtype).
  std::vector<double> buffer(4);
  for (DType dtype : kAllDTypes) {
    for (UnaryOp op : kUnaryOps) {
      auto call = [&] { cpu::unary(buffer.data(), buffer.data() + 2, {op, dtype, layout_of(1), {}}, nullptr); };
      if (supports(op, dtype))
        EXPECT_NO_THROW(call()) << op_name(op) << " " << dtype;
      else
        EXPECT_THROW(call(), Error) << op_name(op) << " " << dtype;
    }
    for (BinaryOp op : kBinaryOps) {
      auto call = [&] {
        cpu::binary(buffer.data(), buffer.data() + 1, buffer.data() + 2, {op, dtype, layout_of(1), layout_of(1)},
                    nullptr);
      };
      if (supports(op, dtype))
        EXPECT_NO_THROW(call()) << op_name(op) << " " << dtype;
      else
        EXPECT_THROW(call(), Error) << op_name(op) << " " << dtype;
    }
  }
  EXPECT_THROW(cpu::unary_backward(buffer.data(), buffer.data(), buffer.data(),
                                   {UnaryOp::relu, DType::i32, layout_of(1), layout_of(1), {}}, nullptr),
               Error);
}

TEST(ElementwiseCpu, BadScalarsAndLayoutsThrow) {
  std::vector<int32_t> in = {1}, out(1);
  UnaryParams half;
  half.alpha = 0.5;
  EXPECT_THROW(cpu::unary(out.data(), in.data(), {UnaryOp::mul_scalar, DType::i32, layout_of(1), half}, nullptr),
               Error);
  BinaryDesc mismatched{BinaryOp::add, DType::i32, layout_of(1), layout_of(2)};
  EXPECT_THROW(cpu::binary(out.data(), in.data(), in.data(), mismatched, nullptr), Error);
}

// ================================ CUDA against CPU ================================

#ifdef SEGENGINE_HAS_CUDA

// The CUDA math library and libm differ by a few ulp and nvcc contracts to FMA: same tolerances as
// against the double reference, applied to the CPU result.
TEST(ElementwiseCuda, UnaryMatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  for (DType dtype : kAllDTypes) {
    for (const UnaryCase& c : unary_cases(dtype)) {
      expect_close(dtype, run_unary(Device::cuda, c), decode(dtype, run_unary(Device::cpu, c)), tolerance_of(dtype),
                   describe(c));
    }
  }
}

TEST(ElementwiseCuda, BinaryMatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  for (DType dtype : kAllDTypes) {
    for (const BinaryCase& c : binary_cases(dtype)) {
      const DType out_dtype = output_dtype(c.desc);
      expect_close(out_dtype, run_binary(Device::cuda, c), decode(out_dtype, run_binary(Device::cpu, c)),
                   tolerance_of(out_dtype), describe(c));
    }
  }
}

TEST(ElementwiseCuda, WhereMatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  std::mt19937 rng(5);
  for (DType dtype : kAllDTypes) {
    const WhereCase c = where_case(dtype, rng);
    expect_close(dtype, run_where(Device::cuda, c), decode(dtype, run_where(Device::cpu, c)), {0.0, 0.0},
                 "where " + std::string(dtype_name(dtype)));
  }
}

TEST(ElementwiseCuda, BackwardMatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  for (DType dtype : kFloatTypes) {
    for (const UnaryBackwardCase& c : unary_backward_cases(dtype)) {
      expect_close(dtype, run_unary_backward(Device::cuda, c), decode(dtype, run_unary_backward(Device::cpu, c)),
                   tolerance_of(dtype), std::string(op_name(c.desc.op)) + "_backward");
    }
    for (const BinaryBackwardCase& c : binary_backward_cases(dtype)) {
      expect_close(dtype, run_binary_backward(Device::cuda, c), decode(dtype, run_binary_backward(Device::cpu, c)),
                   tolerance_of(dtype), std::string(op_name(c.desc.op)) + "_backward");
    }
  }
}

TEST(ElementwiseCuda, UnsupportedOpDTypeThrowsNamingDevice) {
  SE_SKIP_WITHOUT_CUDA();
  try {
    cuda::binary(nullptr, nullptr, nullptr, {BinaryOp::div, DType::i64, layout_of(1), layout_of(1)}, nullptr);
    FAIL() << "div on i64 should throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("div: dtype i64 is not supported on cuda"), std::string::npos) << e.what();
  }
}

#endif  // SEGENGINE_HAS_CUDA

}  // namespace
}  // namespace se::kernels
