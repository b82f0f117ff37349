// CPU softmax family. Work is split into (outer, block of up to kColumnBlock columns) tasks; each task
// walks the softmax axis with stride inner, keeping one running value per column, so inner == 1 and
// inner > 1 share the code and both read memory in order.
#include "kernels/softmax.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/reduce_ops.h"

namespace se::kernels::cpu {
namespace {

using reduce_ops::acc_t;

constexpr int64_t kColumnBlock = 64;
constexpr int64_t kParallelWork = 32768;

template <typename T> using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

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

template <bool kLog, typename T>
void forward(T* y,        // (outer, size, inner)
             const T* x,  // (outer, size, inner)
             const SoftmaxDesc& d) {
  using C = compute_t<T>;
  using A = acc_t<T>;
  for_each_column_block(d, [&](int64_t o, int64_t c0, int64_t c1) {
    C max[kColumnBlock];
    A sum[kColumnBlock];
    for (int64_t c = c0; c < c1; ++c) max[c - c0] = -INFINITY, sum[c - c0] = 0;
    const int64_t base = o * d.size * d.inner;
    for (int64_t r = 0; r < d.size; ++r) {
      for (int64_t c = c0; c < c1; ++c) {
        C v = static_cast<C>(x[base + r * d.inner + c]);
        max[c - c0] = reduce_ops::ExtremeOp<C, true>::combine(max[c - c0], v);
      }
    }
    for (int64_t r = 0; r < d.size; ++r) {
      for (int64_t c = c0; c < c1; ++c) sum[c - c0] += std::exp(static_cast<C>(x[base + r * d.inner + c]) - max[c - c0]);
    }
    for (int64_t r = 0; r < d.size; ++r) {
      for (int64_t c = c0; c < c1; ++c) {
        int64_t k = base + r * d.inner + c;
        C shifted = static_cast<C>(x[k]) - max[c - c0];
        if constexpr (kLog) {
          y[k] = static_cast<T>(shifted - static_cast<C>(std::log(sum[c - c0])));
        } else {
          y[k] = static_cast<T>(static_cast<C>(std::exp(shifted) / sum[c - c0]));
        }
      }
    }
  });
}

template <bool kLog, typename T>
void backward(T* grad_x,         // (outer, size, inner)
              const T* grad_y,   // (outer, size, inner)
              const T* y,        // (outer, size, inner)
              const SoftmaxDesc& d) {
  using C = compute_t<T>;
  using A = acc_t<T>;
  for_each_column_block(d, [&](int64_t o, int64_t c0, int64_t c1) {
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
        grad_x[k] = static_cast<T>(kLog ? g - std::exp(out) * s : out * (g - s));
      }
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

#define SE_INSTANTIATE(T)                                                                          \
  template void softmax_forward<T>(T*, const T*, const SoftmaxDesc&, Stream);                      \
  template void log_softmax_forward<T>(T*, const T*, const SoftmaxDesc&, Stream);                  \
  template void softmax_backward<T>(T*, const T*, const T*, const SoftmaxDesc&, Stream);           \
  template void log_softmax_backward<T>(T*, const T*, const T*, const SoftmaxDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cpu
