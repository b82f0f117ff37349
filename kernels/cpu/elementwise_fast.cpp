// The contiguous f32 loops of elementwise_fast.h, stamped out per ISA. GCC inlines the (default-target)
// formulas into a target-attributed loop and vectorizes it at that ISA's width.
#include "kernels/cpu/elementwise_fast.h"

#include "core/error.h"

namespace se::kernels::cpu {
namespace {

using elementwise::ScalarArgs;

template <UnaryOp kOp>
inline void unary_loop(const float* __restrict x, float* __restrict out, int64_t count) {
  const ScalarArgs<float> args{};
  for (int64_t k = 0; k < count; ++k) out[k] = cpu_unary_fn<kOp>(x[k], args);
}

inline void gelu_backward_loop(const float* __restrict g, const float* __restrict saved, float* __restrict grad_in,
                               int64_t count) {
  const ScalarArgs<float> args{};
  for (int64_t k = 0; k < count; ++k) grad_in[k] = cpu_unary_grad_fn<UnaryOp::gelu>(g[k], saved[k], args);
}

#define SE_DEFINE_FAST_LOOPS(suffix, attribute)                                                             \
  attribute void exp_##suffix(const float* x, float* out, int64_t n) { unary_loop<UnaryOp::exp>(x, out, n); } \
  attribute void sigmoid_##suffix(const float* x, float* out, int64_t n) {                                  \
    unary_loop<UnaryOp::sigmoid>(x, out, n);                                                                \
  }                                                                                                         \
  attribute void gelu_##suffix(const float* x, float* out, int64_t n) { unary_loop<UnaryOp::gelu>(x, out, n); } \
  attribute void gelu_backward_##suffix(const float* g, const float* s, float* out, int64_t n) {            \
    gelu_backward_loop(g, s, out, n);                                                                       \
  }

#if defined(__x86_64__)
SE_DEFINE_FAST_LOOPS(avx512, __attribute__((target("avx512f"))))
SE_DEFINE_FAST_LOOPS(avx2, __attribute__((target("avx2"))))
#endif
SE_DEFINE_FAST_LOOPS(baseline, )
#undef SE_DEFINE_FAST_LOOPS

std::vector<FastLoops> all_loops() {
  std::vector<FastLoops> sets;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) {
    sets.push_back({"avx512", exp_avx512, sigmoid_avx512, gelu_avx512, gelu_backward_avx512});
  }
  if (__builtin_cpu_supports("avx2")) sets.push_back({"avx2", exp_avx2, sigmoid_avx2, gelu_avx2, gelu_backward_avx2});
#endif
  sets.push_back({"baseline", exp_baseline, sigmoid_baseline, gelu_baseline, gelu_backward_baseline});
  return sets;
}

const FastLoops& loops() {
  static const FastLoops best = all_loops().front();
  return best;
}

}  // namespace

void run_fast_unary_f32(UnaryOp op, const float* x, float* out, int64_t count) {
  switch (op) {
    case UnaryOp::exp: return loops().exp(x, out, count);
    case UnaryOp::sigmoid: return loops().sigmoid(x, out, count);
    case UnaryOp::gelu: return loops().gelu(x, out, count);
    default: SE_THROW("run_fast_unary_f32: no fast loop for ", op_name(op));
  }
}

void run_gelu_backward_f32(const float* g, const float* saved, float* grad_in, int64_t count) {
  loops().gelu_backward(g, saved, grad_in, count);
}

std::vector<FastLoops> fast_loops_of_this_cpu() { return all_loops(); }

}  // namespace se::kernels::cpu
