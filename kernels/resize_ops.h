// The coordinate mapping of kernels/resize.h, shared by kernels/cpu/resize.cpp and kernels/cuda/resize.cu
// so that both backends compute bit-identical source indices and weights. C is the compute type (float,
// or double for f64); nearest always maps in float, as PyTorch does.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/half.h"
#include "kernels/resize.h"

namespace se::kernels::resize_ops {

template <typename E>
using compute_t = std::conditional_t<std::is_same_v<E, double>, double, float>;

// The taps of one output index along one dim: value = w0 * x[i0] + w1 * x[i1].
template <typename C>
struct Taps {
  int64_t i0 = 0, i1 = 0;
  C w0 = 1, w1 = 0;
};

// One dim of the mapping: sizes, mode and PyTorch's scale in the compute type.
template <typename C>
struct Axis {
  int64_t in = 1, out = 1;
  bool bilinear = false, align_corners = false;
  C scale = 0;              // bilinear
  float nearest_scale = 0;  // nearest

  SE_HOST_DEVICE Axis(int64_t in_size, int64_t out_size, const ResizeDesc& d, double scale_factor)
      : in(in_size), out(out_size), bilinear(d.mode == ResizeMode::bilinear), align_corners(d.align_corners) {
    if (bilinear && align_corners) {
      scale = out > 1 ? static_cast<C>(in - 1) / static_cast<C>(out - 1) : C(0);
    } else {
      scale = scale_factor > 0 ? static_cast<C>(1.0 / scale_factor) : static_cast<C>(in) / static_cast<C>(out);
    }
    nearest_scale =
        scale_factor > 0 ? static_cast<float>(1.0 / scale_factor) : static_cast<float>(in) / static_cast<float>(out);
  }

  // a * b rounded on its own: nvcc fuses a product and the subtraction after it into one FMA (one rounding)
  // unless told not to, g++ without FMA does not, and the source index would move at exact boundaries.
  static SE_HOST_DEVICE C product_rounded(C a, C b) {
#ifdef __CUDA_ARCH__
    if constexpr (std::is_same_v<C, float>) {
      return __fmul_rn(a, b);
    } else {
      return __dmul_rn(a, b);
    }
#else
    return a * b;
#endif
  }

  SE_HOST_DEVICE Taps<C> taps(int64_t dst) const {
    Taps<C> t;
    if (!bilinear) {
      const auto src = static_cast<int64_t>(floorf(static_cast<float>(dst) * nearest_scale));
      t.i0 = t.i1 = src < in - 1 ? src : in - 1;
      return t;
    }
    C src = align_corners ? scale * static_cast<C>(dst)
                          : product_rounded(scale, static_cast<C>(dst) + C(0.5)) - C(0.5);
    if (src < C(0)) src = C(0);
    const auto i0 = static_cast<int64_t>(src);
    t.i0 = i0 < in - 1 ? i0 : in - 1;
    t.i1 = t.i0 < in - 1 ? t.i0 + 1 : t.i0;
    t.w1 = src - static_cast<C>(t.i0);
    t.w0 = C(1) - t.w1;
    return t;
  }

  // The outputs that read input `i` form the range [*first, *last): t.i0 is non-decreasing in dst and
  // an output reads i only when t.i0 is i - 1 or i (bilinear) or i (nearest).
  SE_HOST_DEVICE void readers(int64_t i, int64_t* first, int64_t* last) const {
    const int64_t lowest = bilinear ? i - 1 : i;
    int64_t lo = 0, hi = out;  // binary search: the first dst with taps(dst).i0 >= lowest
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (taps(mid).i0 < lowest) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    *first = lo;
    while (lo < out && taps(lo).i0 <= i) ++lo;
    *last = lo;
  }

  // The weight with which output dst reads input i.
  SE_HOST_DEVICE static C weight(const Taps<C>& t, int64_t i) {
    return (t.i0 == i ? t.w0 : C(0)) + (t.i1 == i ? t.w1 : C(0));
  }
};

template <typename C>
SE_HOST_DEVICE inline Axis<C> axis_h(const ResizeDesc& d) {
  return Axis<C>(d.in_h, d.out_h, d, d.scale_h);
}
template <typename C>
SE_HOST_DEVICE inline Axis<C> axis_w(const ResizeDesc& d) {
  return Axis<C>(d.in_w, d.out_w, d, d.scale_w);
}

// Output cell (oh, ow) of one plane.
template <typename E, typename C>
SE_HOST_DEVICE inline E resize_at(const E* x,  // (in_h, in_w), one plane
                                  const Axis<C>& ah, const Axis<C>& aw, int64_t oh, int64_t ow) {
  const Taps<C> h = ah.taps(oh), w = aw.taps(ow);
  const int64_t in_w = aw.in;
  if (!ah.bilinear) return x[h.i0 * in_w + w.i0];
  const C top = w.w0 * static_cast<C>(x[h.i0 * in_w + w.i0]) + w.w1 * static_cast<C>(x[h.i0 * in_w + w.i1]);
  const C bottom = w.w0 * static_cast<C>(x[h.i1 * in_w + w.i0]) + w.w1 * static_cast<C>(x[h.i1 * in_w + w.i1]);
  return static_cast<E>(h.w0 * top + h.w1 * bottom);
}

}  // namespace se::kernels::resize_ops
