// CPU softmax family, two shapes of work that both read memory in order and vectorize:
//   inner == 1: one contiguous row at a time, its maximum and sums kept in kLanes interleaved partial
//               values along the row;
//   inner > 1:  tasks of (outer, block of up to kColumnBlock columns) walk the softmax axis with stride
//               inner, keeping one running value per column.
// exp(x - max) is computed once per element (fast_exp, kernels/cpu/vector_math.h): the sum pass stores it
// in y when T is the compute type, and the write pass scales it there; 16-bit outputs, which cannot hold it,
// recompute it. The NaN-propagating maximum is reduce_ops::ExtremeOp's, whatever the split.
#include "kernels/softmax.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cpu/per_isa.h"
#include "kernels/cpu/vector_math.h"
#include "kernels/reduce_ops.h"

namespace se::kernels::cpu {
namespace {

using reduce_ops::acc_t;

constexpr int64_t kColumnBlock = 64;
constexpr int64_t kParallelWork = 32768;

template <typename T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Whether y can hold exp(x - max) exactly until the write pass scales it.
template <typename T>
constexpr bool kKeepsExp = std::is_same_v<T, compute_t<T>>;

template <typename C>
C max_of(C a, C b) {
  return reduce_ops::ExtremeOp<C, true>::combine(a, b);
}

// Calls body(o, c0, c1) for every (outer index, column block [c0, c1)), in parallel for large work.
template <typename Body>
void for_each_column_block(const SoftmaxDesc& d, Body body) {
  const int64_t width = std::min(d.inner, kColumnBlock);
  if (d.outer * d.size * d.inner == 0) return;
  const int64_t blocks = (d.inner + width - 1) / width;
#pragma omp parallel for schedule(static) if (d.outer * d.size * d.inner >= kParallelWork)
  for (int64_t task = 0; task < d.outer * blocks; ++task) {
    int64_t o = task / blocks, c0 = (task % blocks) * width;
    body(o, c0, std::min(d.inner, c0 + width));
  }
}

// One contiguous f32 row: the maximum and the (double) sum over 16-float vectors (vector_math.h), which
// vectorize where the template's interleaved scalar lanes do not. A NaN anywhere makes every output NaN,
// as in the template, through the exps and their sum rather than through the maximum.
template <bool kLog>
void forward_row_f32(float* y,        // (n)
                     const float* x,  // (n)
                     int64_t n) {
  const float max = max_of_row(x, n);
  for (int64_t k = 0; k < n; ++k) y[k] = fast_exp(x[k] - max);
  const double sum = sum_of_row_f64(y, n);
  if constexpr (kLog) {
    const float log_sum = static_cast<float>(std::log(sum));
    for (int64_t k = 0; k < n; ++k) y[k] = x[k] - max - log_sum;
  } else {
    const double inverse = 1.0 / sum;
    for (int64_t k = 0; k < n; ++k) y[k] = static_cast<float>(static_cast<double>(y[k]) * inverse);
  }
}

// One contiguous row of n values.
template <bool kLog, typename T>
void forward_row(T* y,        // (n)
                 const T* x,  // (n)
                 int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    forward_row_f32<kLog>(y, x, n);
    return;
  }
  using C = compute_t<T>;
  using A = acc_t<T>;
  C lane_max[kLanes];
  std::fill(lane_max, lane_max + kLanes, -static_cast<C>(INFINITY));
  for_each_lane(0, n, [&](int64_t k, int j) { lane_max[j] = max_of(lane_max[j], static_cast<C>(x[k])); });
  C max = lane_max[0];
  for (int j = 1; j < kLanes; ++j) max = max_of(max, lane_max[j]);
  A lane_sum[kLanes] = {};
  for_each_lane(0, n, [&](int64_t k, int j) {
    const C e = fast_exp(static_cast<C>(x[k]) - max);
    if constexpr (kKeepsExp<T> && !kLog) y[k] = e;
    lane_sum[j] += static_cast<A>(e);
  });
  const A sum = sum_lanes(lane_sum);
  if constexpr (kLog) {
    const C log_sum = static_cast<C>(std::log(sum));
    for (int64_t k = 0; k < n; ++k) y[k] = static_cast<T>(static_cast<C>(x[k]) - max - log_sum);
  } else {
    const A inverse = A(1) / sum;
    for (int64_t k = 0; k < n; ++k) {
      const C e = kKeepsExp<T> ? static_cast<C>(y[k]) : fast_exp(static_cast<C>(x[k]) - max);
      y[k] = static_cast<T>(static_cast<C>(static_cast<A>(e) * inverse));
    }
  }
}

// Columns [c0, c1) of one outer index: row r of the axis is base + r * inner.
template <bool kLog, typename T>
void forward_columns(T* y,        // (outer, size, inner)
                     const T* x,  // (outer, size, inner)
                     const SoftmaxDesc& d, int64_t o, int64_t c0, int64_t c1) {
  using C = compute_t<T>;
  using A = acc_t<T>;
  const int64_t width = c1 - c0;
  x += o * d.size * d.inner + c0;
  y += o * d.size * d.inner + c0;
  C max[kColumnBlock];
  A sum[kColumnBlock];
  std::fill(max, max + width, -static_cast<C>(INFINITY));
  std::fill(sum, sum + width, A(0));
  for (int64_t r = 0; r < d.size; ++r) {
    for (int64_t c = 0; c < width; ++c) max[c] = max_of(max[c], static_cast<C>(x[r * d.inner + c]));
  }
  for (int64_t r = 0; r < d.size; ++r) {
    for (int64_t c = 0; c < width; ++c) {
      const C e = fast_exp(static_cast<C>(x[r * d.inner + c]) - max[c]);
      if constexpr (kKeepsExp<T> && !kLog) y[r * d.inner + c] = e;
      sum[c] += static_cast<A>(e);
    }
  }
  if constexpr (kLog) {
    C log_sum[kColumnBlock];
    for (int64_t c = 0; c < width; ++c) log_sum[c] = static_cast<C>(std::log(sum[c]));
    for (int64_t r = 0; r < d.size; ++r) {
      for (int64_t c = 0; c < width; ++c) {
        y[r * d.inner + c] = static_cast<T>(static_cast<C>(x[r * d.inner + c]) - max[c] - log_sum[c]);
      }
    }
  } else {
    A inverse[kColumnBlock];
    for (int64_t c = 0; c < width; ++c) inverse[c] = A(1) / sum[c];
    for (int64_t r = 0; r < d.size; ++r) {
      for (int64_t c = 0; c < width; ++c) {
        const int64_t k = r * d.inner + c;
        const C e = kKeepsExp<T> ? static_cast<C>(y[k]) : fast_exp(static_cast<C>(x[k]) - max[c]);
        y[k] = static_cast<T>(static_cast<C>(static_cast<A>(e) * inverse[c]));
      }
    }
  }
}

// One element of the backward: grad_y - exp(y) * s for log_softmax (s = sum(grad_y)), y * (grad_y - s) for
// softmax (s = sum(grad_y * y)).
template <bool kLog, typename C>
C backward_element(C g, C out, C s) {
  return kLog ? g - fast_exp(out) * s : out * (g - s);
}

// The backward of one fiber of n values at stride `stride`.
template <bool kLog, typename T>
void backward_fiber(T* grad_x,        // (n) at stride
                    const T* grad_y,  // (n) at stride
                    const T* y,       // (n) at stride
                    int64_t n, int64_t stride) {
  using C = compute_t<T>;
  using A = acc_t<T>;
  A lane_sum[kLanes] = {};
  for_each_lane(0, n, [&](int64_t k, int j) {
    const A g = static_cast<A>(static_cast<C>(grad_y[k * stride]));
    lane_sum[j] += kLog ? g : g * static_cast<A>(static_cast<C>(y[k * stride]));
  });
  const C s = static_cast<C>(sum_lanes(lane_sum));
  for (int64_t k = 0; k < n; ++k) {
    const C g = static_cast<C>(grad_y[k * stride]), out = static_cast<C>(y[k * stride]);
    grad_x[k * stride] = static_cast<T>(backward_element<kLog>(g, out, s));
  }
}

// Columns [c0, c1) of one outer index.
template <bool kLog, typename T>
void backward_columns(T* grad_x,        // (outer, size, inner)
                      const T* grad_y,  // (outer, size, inner)
                      const T* y,       // (outer, size, inner)
                      const SoftmaxDesc& d, int64_t o, int64_t c0, int64_t c1) {
  using C = compute_t<T>;
  using A = acc_t<T>;
  A sum[kColumnBlock];  // sum(grad_y * y) for softmax, sum(grad_y) for log_softmax
  for (int64_t c = c0; c < c1; ++c) sum[c - c0] = 0;
  const int64_t base = o * d.size * d.inner;
  for (int64_t r = 0; r < d.size; ++r) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t k = base + r * d.inner + c;
      A g = static_cast<A>(static_cast<C>(grad_y[k]));
      sum[c - c0] += kLog ? g : g * static_cast<A>(static_cast<C>(y[k]));
    }
  }
  for (int64_t r = 0; r < d.size; ++r) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t k = base + r * d.inner + c;
      C g = static_cast<C>(grad_y[k]), out = static_cast<C>(y[k]), s = static_cast<C>(sum[c - c0]);
      grad_x[k] = static_cast<T>(backward_element<kLog>(g, out, s));
    }
  }
}

// The f32 loops per ISA (per_isa.h), [kLog] each.
struct SoftmaxLoops {
  void (*row[2])(float* y, const float* x, int64_t n);
  void (*columns[2])(float* y, const float* x, const SoftmaxDesc& d, int64_t o, int64_t c0, int64_t c1);
  void (*backward_columns[2])(float* grad_x, const float* grad_y, const float* y, const SoftmaxDesc& d, int64_t o,
                              int64_t c0, int64_t c1);
};

#define SE_DEFINE_SOFTMAX_LOOPS(suffix, attribute)                                                                    \
  template <bool kLog>                                                                                                \
  attribute __attribute__((flatten)) void row_##suffix(float* y, const float* x, int64_t n) {                         \
    forward_row<kLog>(y, x, n);                                                                                       \
  }                                                                                                                   \
  template <bool kLog>                                                                                                \
  attribute __attribute__((flatten)) void columns_##suffix(float* y, const float* x, const SoftmaxDesc& d, int64_t o, \
                                                           int64_t c0, int64_t c1) {                                  \
    forward_columns<kLog>(y, x, d, o, c0, c1);                                                                        \
  }                                                                                                                   \
  template <bool kLog>                                                                                                \
  attribute __attribute__((flatten)) void backward_columns_##suffix(                                                  \
      float* grad_x, const float* grad_y, const float* y, const SoftmaxDesc& d, int64_t o, int64_t c0, int64_t c1) {  \
    backward_columns<kLog>(grad_x, grad_y, y, d, o, c0, c1);                                                          \
  }                                                                                                                   \
  const SoftmaxLoops kLoops_##suffix{{row_##suffix<false>, row_##suffix<true>},                                       \
                                     {columns_##suffix<false>, columns_##suffix<true>},                               \
                                     {backward_columns_##suffix<false>, backward_columns_##suffix<true>}};
SE_STAMP_PER_ISA(SE_DEFINE_SOFTMAX_LOOPS)
#undef SE_DEFINE_SOFTMAX_LOOPS

const SoftmaxLoops& loops() {
  static const SoftmaxLoops best = SE_PICK_PER_ISA(kLoops);
  return best;
}

template <bool kLog, typename T>
void forward(T* y,        // (outer, size, inner)
             const T* x,  // (outer, size, inner)
             const SoftmaxDesc& d) {
  if (d.inner == 1) {
#pragma omp parallel for schedule(static) if (d.outer * d.size >= kParallelWork)
    for (int64_t o = 0; o < d.outer; ++o) {
      if constexpr (std::is_same_v<T, float>) {
        loops().row[kLog](y + o * d.size, x + o * d.size, d.size);
      } else {
        forward_row<kLog>(y + o * d.size, x + o * d.size, d.size);
      }
    }
    return;
  }
  for_each_column_block(d, [&](int64_t o, int64_t c0, int64_t c1) {
    if constexpr (std::is_same_v<T, float>) {
      loops().columns[kLog](y, x, d, o, c0, c1);
    } else {
      forward_columns<kLog>(y, x, d, o, c0, c1);
    }
  });
}

template <bool kLog, typename T>
void backward(T* grad_x,        // (outer, size, inner)
              const T* grad_y,  // (outer, size, inner)
              const T* y,       // (outer, size, inner)
              const SoftmaxDesc& d) {
  if (d.inner == 1) {
#pragma omp parallel for schedule(static) if (d.outer * d.size >= kParallelWork)
    for (int64_t o = 0; o < d.outer; ++o) {
      const int64_t base = o * d.size;
      backward_fiber<kLog>(grad_x + base, grad_y + base, y + base, d.size, 1);
    }
    return;
  }
  for_each_column_block(d, [&](int64_t o, int64_t c0, int64_t c1) {
    if constexpr (std::is_same_v<T, float>) {
      loops().backward_columns[kLog](grad_x, grad_y, y, d, o, c0, c1);
    } else {
      backward_columns<kLog>(grad_x, grad_y, y, d, o, c0, c1);
    }
  });
}

}  // namespace

template <typename T>
void softmax_forward(T* y, const T* x, const SoftmaxDesc& desc, Stream) {
  forward<false>(y, x, desc);
}
template <typename T>
void log_softmax_forward(T* y, const T* x, const SoftmaxDesc& desc, Stream) {
  forward<true>(y, x, desc);
}
template <typename T>
void softmax_backward(T* grad_x, const T* grad_y, const T* y, const SoftmaxDesc& desc, Stream) {
  backward<false>(grad_x, grad_y, y, desc);
}
template <typename T>
void log_softmax_backward(T* grad_x, const T* grad_y, const T* y, const SoftmaxDesc& desc, Stream) {
  backward<true>(grad_x, grad_y, y, desc);
}

#define SE_INSTANTIATE(T)                                                                \
  template void softmax_forward<T>(T*, const T*, const SoftmaxDesc&, Stream);            \
  template void log_softmax_forward<T>(T*, const T*, const SoftmaxDesc&, Stream);        \
  template void softmax_backward<T>(T*, const T*, const T*, const SoftmaxDesc&, Stream); \
  template void log_softmax_backward<T>(T*, const T*, const T*, const SoftmaxDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cpu
