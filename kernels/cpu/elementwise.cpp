// CPU elementwise kernels: one traversal (for_each_run) walks the collapsed iteration space in
// runs along the innermost dimension, split over OpenMP threads; each op supplies a loop body for a
// run, with a unit-stride branch the compiler vectorizes. See kernels/elementwise.h for the contract.
// The shared formulas (kernels/elementwise_math.h) call libm, and a call keeps a loop scalar: f32 exp,
// sigmoid and erf-GELU (forward and backward) use fast_exp and fast_erf instead (elementwise_fast.h), and
// their contiguous f32 runs go to loops compiled per ISA.
#include "kernels/elementwise.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/elementwise_fast.h"
#include "kernels/elementwise_math.h"

namespace se::kernels::cpu {
namespace {

using namespace se::kernels::elementwise;

constexpr std::string_view kDevice = "cpu";
// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelMinElements = int64_t{1} << 15;

// Visits every element of N layouts with equal sizes (layout 0 is the contiguous output) in row-major
// order. Each thread takes a contiguous range of elements and calls
//   body(offsets, inner_strides, count)
// for each run of `count` elements along the innermost dimension, where offsets[l] is layout l's
// element offset of the run's first element and inner_strides[l] its stride along the run.
template <size_t N, typename Body>
void for_each_run(std::array<StridedLayout, N> layouts, const Body& body) {
  collapse_dims(layouts.data(), static_cast<int>(N));
  const StridedLayout& shape = layouts[0];
  const int64_t numel = shape.numel();
  if (numel == 0) return;
  const int nd = shape.ndim;
  const int64_t inner = shape.sizes[nd - 1];
  std::array<int64_t, N> inner_strides;
  for (size_t l = 0; l < N; ++l) inner_strides[l] = layouts[l].strides[nd - 1];

#pragma omp parallel if (numel >= kParallelMinElements)
  {
    const int64_t threads = omp_get_num_threads();
    const int64_t thread = omp_get_thread_num();
    const int64_t begin = numel * thread / threads;
    const int64_t end = numel * (thread + 1) / threads;

    // Multi-index and offsets of element `begin`.
    int64_t index[kMaxDims] = {};
    std::array<int64_t, N> offsets{};
    int64_t rest = begin;
    for (int d = nd - 1; d >= 0; --d) {
      index[d] = rest % shape.sizes[d];
      rest /= shape.sizes[d];
      for (size_t l = 0; l < N; ++l) offsets[l] += index[d] * layouts[l].strides[d];
    }

    for (int64_t pos = begin; pos < end;) {
      const int64_t count = std::min(end - pos, inner - index[nd - 1]);
      body(offsets, inner_strides, count);
      pos += count;
      index[nd - 1] += count;
      for (size_t l = 0; l < N; ++l) offsets[l] += count * inner_strides[l];
      // Carry into the outer dimensions once a run reaches the end of its row.
      for (int d = nd - 1; d > 0 && index[d] == shape.sizes[d]; --d) {
        index[d] = 0;
        ++index[d - 1];
        for (size_t l = 0; l < N; ++l) {
          offsets[l] += layouts[l].strides[d - 1] - shape.sizes[d] * layouts[l].strides[d];
        }
      }
    }
  }
}

template <UnaryOp kOp, typename T>
void run_unary(T* out, const T* in, const UnaryDesc& desc) {
  using C = compute_t<T>;
  const ScalarArgs<C> args = make_scalar_args<C>(kOp, desc.params, desc.dtype, kDevice);
  for_each_run<2>({contiguous_like(desc.in), desc.in}, [&](const auto& offsets, const auto& strides, int64_t count) {
    T* o = out + offsets[0];
    const T* x = in + offsets[1];
    if constexpr (std::is_same_v<T, float> && has_fast_f32_loop(kOp)) {
      if (strides[1] == 1) return run_fast_unary_f32(kOp, x, o, count);
    }
    if (strides[1] == 1) {
#pragma omp simd
      for (int64_t k = 0; k < count; ++k) o[k] = T(cpu_unary_fn<kOp>(C(x[k]), args));
    } else {
      for (int64_t k = 0; k < count; ++k) o[k] = T(cpu_unary_fn<kOp>(C(x[k * strides[1]]), args));
    }
  });
}

template <BinaryOp kOp, typename T>
void run_binary(void* out_ptr, const T* a, const T* b, const BinaryDesc& desc) {
  using C = compute_t<T>;
  using Out = std::conditional_t<is_comparison(kOp), bool, T>;
  Out* out = static_cast<Out*>(out_ptr);
  for_each_run<3>({contiguous_like(desc.a), desc.a, desc.b},
                  [&](const auto& offsets, const auto& strides, int64_t count) {
                    Out* o = out + offsets[0];
                    const T* x = a + offsets[1];
                    const T* y = b + offsets[2];
                    if (strides[1] == 1 && strides[2] == 1) {
#pragma omp simd
                      for (int64_t k = 0; k < count; ++k) o[k] = Out(binary_fn<kOp>(C(x[k]), C(y[k])));
                    } else {
                      for (int64_t k = 0; k < count; ++k) {
                        o[k] = Out(binary_fn<kOp>(C(x[k * strides[1]]), C(y[k * strides[2]])));
                      }
                    }
                  });
}

template <typename T>
void run_where(T* out, const bool* cond, const T* a, const T* b, const WhereDesc& desc) {
  for_each_run<4>({contiguous_like(desc.cond), desc.cond, desc.a, desc.b},
                  [&](const auto& offsets, const auto& strides, int64_t count) {
                    T* o = out + offsets[0];
                    const bool* c = cond + offsets[1];
                    const T* x = a + offsets[2];
                    const T* y = b + offsets[3];
                    for (int64_t k = 0; k < count; ++k) {
                      o[k] = c[k * strides[1]] ? x[k * strides[2]] : y[k * strides[3]];
                    }
                  });
}

template <UnaryOp kOp, typename T>
void run_unary_backward(T* grad_in, const T* grad_out, const T* saved, const UnaryBackwardDesc& desc) {
  using C = compute_t<T>;
  const ScalarArgs<C> args = make_scalar_args<C>(kOp, desc.params, desc.dtype, kDevice);
  for_each_run<3>({contiguous_like(desc.grad_out), desc.grad_out, desc.saved},
                  [&](const auto& offsets, const auto& strides, int64_t count) {
                    T* o = grad_in + offsets[0];
                    const T* g = grad_out + offsets[1];
                    const T* s = saved + offsets[2];
                    if constexpr (std::is_same_v<T, float> && kOp == UnaryOp::gelu) {
                      if (strides[1] == 1 && strides[2] == 1) return run_gelu_backward_f32(g, s, o, count);
                    }
                    if (strides[1] == 1 && strides[2] == 1) {
#pragma omp simd
                      for (int64_t k = 0; k < count; ++k) {
                        o[k] = T(cpu_unary_grad_fn<kOp>(C(g[k]), C(s[k]), args));
                      }
                    } else {
                      for (int64_t k = 0; k < count; ++k) {
                        o[k] = T(cpu_unary_grad_fn<kOp>(C(g[k * strides[1]]), C(s[k * strides[2]]), args));
                      }
                    }
                  });
}

template <BinaryOp kOp, typename T>
void run_binary_backward(T* grad_input, const T* grad_out, const T* a, const T* b, const BinaryBackwardDesc& desc) {
  using C = compute_t<T>;
  const int input = desc.input;
  for_each_run<4>(
      {contiguous_like(desc.grad_out), desc.grad_out, desc.a, desc.b},
      [&](const auto& offsets, const auto& strides, int64_t count) {
        T* o = grad_input + offsets[0];
        const T* g = grad_out + offsets[1];
        const T* x = a + offsets[2];
        const T* y = b + offsets[3];
        for (int64_t k = 0; k < count; ++k) {
          o[k] = T(binary_grad_fn<kOp>(input, C(g[k * strides[1]]), C(x[k * strides[2]]), C(y[k * strides[3]])));
        }
      });
}

}  // namespace

void unary(void* out, const void* in, const UnaryDesc& desc, Stream) {
  require_supported(supports(desc.op, desc.dtype), desc.op, desc.dtype, kDevice);
  dispatch_dtype(desc.dtype, [&](auto type_tag) {
    using T = typename decltype(type_tag)::type;
    visit_unary_op(desc.op, [&](auto op_tag) {
      constexpr UnaryOp kOp = decltype(op_tag)::value;
      if constexpr (supports(kOp, dtype_of<T>())) run_unary<kOp>(static_cast<T*>(out), static_cast<const T*>(in), desc);
    });
  });
}

void binary(void* out, const void* a, const void* b, const BinaryDesc& desc, Stream) {
  require_supported(supports(desc.op, desc.dtype), desc.op, desc.dtype, kDevice);
  require_same_sizes(op_name(desc.op), desc.a, desc.b);
  dispatch_dtype(desc.dtype, [&](auto type_tag) {
    using T = typename decltype(type_tag)::type;
    visit_binary_op(desc.op, [&](auto op_tag) {
      constexpr BinaryOp kOp = decltype(op_tag)::value;
      if constexpr (supports(kOp, dtype_of<T>())) {
        run_binary<kOp>(out, static_cast<const T*>(a), static_cast<const T*>(b), desc);
      }
    });
  });
}

void where(void* out, const bool* cond, const void* a, const void* b, const WhereDesc& desc, Stream) {
  require_same_sizes("where", desc.cond, desc.a);
  require_same_sizes("where", desc.cond, desc.b);
  dispatch_dtype(desc.dtype, [&](auto type_tag) {
    using T = typename decltype(type_tag)::type;
    run_where(static_cast<T*>(out), cond, static_cast<const T*>(a), static_cast<const T*>(b), desc);
  });
}

void unary_backward(void* grad_in, const void* grad_out, const void* saved, const UnaryBackwardDesc& desc, Stream) {
  require_backward_supported(supports_backward(desc.op, desc.dtype), desc.op, desc.dtype, kDevice);
  require_same_sizes(op_name(desc.op), desc.grad_out, desc.saved);
  dispatch_floating(desc.dtype, op_name(desc.op), [&](auto type_tag) {
    using T = typename decltype(type_tag)::type;
    visit_unary_op(desc.op, [&](auto op_tag) {
      constexpr UnaryOp kOp = decltype(op_tag)::value;
      if constexpr (supports_backward(kOp, dtype_of<T>())) {
        run_unary_backward<kOp>(static_cast<T*>(grad_in), static_cast<const T*>(grad_out), static_cast<const T*>(saved),
                                desc);
      }
    });
  });
}

void binary_backward(void* grad_input, const void* grad_out, const void* a, const void* b,
                     const BinaryBackwardDesc& desc, Stream) {
  require_backward_supported(supports_backward(desc.op, desc.dtype), desc.op, desc.dtype, kDevice);
  SE_CHECK(desc.input == 0 || desc.input == 1, "elementwise ", op_name(desc.op), "_backward: input is ", desc.input,
           ", expected 0 (a) or 1 (b)");
  require_same_sizes(op_name(desc.op), desc.grad_out, desc.a);
  require_same_sizes(op_name(desc.op), desc.grad_out, desc.b);
  dispatch_floating(desc.dtype, op_name(desc.op), [&](auto type_tag) {
    using T = typename decltype(type_tag)::type;
    visit_binary_op(desc.op, [&](auto op_tag) {
      constexpr BinaryOp kOp = decltype(op_tag)::value;
      if constexpr (supports_backward(kOp, dtype_of<T>())) {
        run_binary_backward<kOp>(static_cast<T*>(grad_input), static_cast<const T*>(grad_out), static_cast<const T*>(a),
                                 static_cast<const T*>(b), desc);
      }
    });
  });
}

}  // namespace se::kernels::cpu
