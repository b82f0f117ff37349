// Internal to the CPU kernels: the elementwise formulas (kernels/elementwise_math.h) with f32 exp and
// erf computed by fast_exp and fast_erf (vector_math.h; within 1 and 1.32 ulp, like libm's), so that the
// loops around them vectorize: libm's expf and erff are calls, which keep a loop scalar. The formulas are
// the shared ones; other ops and types go to them unchanged.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/vector_math.h"
#include "kernels/elementwise_math.h"

namespace se::kernels::cpu {

template <UnaryOp kOp, typename C>
inline C cpu_unary_fn(C x, const elementwise::ScalarArgs<C>& s) {
  using namespace elementwise;
  if constexpr (std::is_same_v<C, float> && kOp == UnaryOp::exp) {
    return fast_exp(x);
  } else if constexpr (std::is_same_v<C, float> && kOp == UnaryOp::sigmoid) {
    return 1.0f / (1.0f + fast_exp(-x));
  } else if constexpr (std::is_same_v<C, float> && kOp == UnaryOp::gelu) {
    return 0.5f * x * (1.0f + fast_erf(x * float(kSqrtHalf)));
  } else {
    return unary_fn<kOp>(x, s);
  }
}

template <UnaryOp kOp, typename C>
inline C cpu_unary_grad_fn(C g, C saved, const elementwise::ScalarArgs<C>& s) {
  using namespace elementwise;
  if constexpr (std::is_same_v<C, float> && kOp == UnaryOp::gelu) {
    const float cdf = 0.5f * (1.0f + fast_erf(saved * float(kSqrtHalf)));
    const float pdf = fast_exp(-0.5f * saved * saved) * float(kInvSqrt2Pi);
    return g * (cdf + saved * pdf);
  } else {
    return unary_grad_fn<kOp>(g, saved, s);
  }
}

// The ops whose contiguous f32 loops run_fast_unary_f32 takes.
constexpr bool has_fast_f32_loop(UnaryOp op) {
  return op == UnaryOp::exp || op == UnaryOp::sigmoid || op == UnaryOp::gelu;
}

// out[k] = cpu_unary_fn<op>(x[k]) for k < count (op one of has_fast_f32_loop), and for gelu
// grad_in[k] = cpu_unary_grad_fn<gelu>(g[k], saved[k]): the loops compiled for AVX-512 and AVX2 too and
// picked at run time (the build has no -march flags, and SSE2's 16 registers spill these formulas).
// Built with -ffp-contract=off (kernels/CMakeLists.txt), so every ISA gives the same bits.
void run_fast_unary_f32(UnaryOp op, const float* x, float* out, int64_t count);
void run_gelu_backward_f32(const float* g, const float* saved, float* grad_in, int64_t count);

// For tests: the loops of each ISA this CPU can run, the baseline (SSE2) last.
struct FastLoops {
  const char* isa;
  void (*exp)(const float* x, float* out, int64_t count);
  void (*sigmoid)(const float* x, float* out, int64_t count);
  void (*gelu)(const float* x, float* out, int64_t count);
  void (*gelu_backward)(const float* g, const float* saved, float* grad_in, int64_t count);
};
std::vector<FastLoops> fast_loops_of_this_cpu();

}  // namespace se::kernels::cpu
