// The per-pixel math of the loss family, shared by kernels/cpu/loss.cpp and kernels/cuda/loss.cu so that
// both backends compute the same formulas in the same order. Internal to kernels/. `V` is the stored
// element type (se::f16 on the host, __half on the device, ...), `C` the compute type.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/half.h"

namespace se::kernels::loss {

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
SE_HOST_DEVICE inline float math_log1p(float x) {
  return ::log1pf(x);
}
SE_HOST_DEVICE inline double math_log1p(double x) {
  return ::log1p(x);
}

SE_HOST_DEVICE inline float math_expm1(float x) {
  return ::expm1f(x);
}
SE_HOST_DEVICE inline double math_expm1(double x) {
  return ::expm1(x);
}
SE_HOST_DEVICE inline float math_pow(float x, float y) {
  return ::powf(x, y);
}
SE_HOST_DEVICE inline double math_pow(double x, double y) {
  return ::pow(x, y);
}

template <typename C>
struct CrossEntropyPixel {
  C loss = 0;
  C weight = 0;  // w_y
  C lse = 0;
};

// One step of the NaN-propagating maximum over a pixel's logits (a NaN wins and stays).
template <typename C>
SE_HOST_DEVICE C max_step(C max, C v) {
  return v > max || v != v ? v : max;
}

// A pixel's reductions over its classes, accumulated in class order: the maximum logit (max_step from
// z_0), sum_c exp(z_c - max), and for label smoothing sum_c w_c * (max - z_c) and sum_c w_c.
template <typename C>
struct ClassSums {
  C max = 0;
  C sum = 0;
  C weighted_gap = 0;
  C weight_sum = 0;
};

// One pixel's cross-entropy from its class sums, z_y its target's logit and w_y its weight. The smoothing
// term sum_c w_c * (lse - z_c) is taken as sum_w * log(sum) + sum_c w_c * (max - z_c): every term is
// non-negative, so nothing cancels.
template <typename C>
SE_HOST_DEVICE CrossEntropyPixel<C> cross_entropy_from_sums(const ClassSums<C>& s, C z_y, C w_y, int64_t classes,
                                                            C smoothing) {
  CrossEntropyPixel<C> out;
  const C log_sum = math_log(s.sum);
  out.lse = s.max + log_sum;
  out.weight = w_y;
  out.loss = (1 - smoothing) * w_y * (out.lse - z_y);
  if (smoothing > 0) out.loss += smoothing / static_cast<C>(classes) * (s.weight_sum * log_sum + s.weighted_gap);
  return out;
}

// One pixel's cross-entropy; `z` points at its class-0 logit, the others follow with stride `stride`. y
// must lie in [0, classes).
template <typename C, typename V>
SE_HOST_DEVICE CrossEntropyPixel<C> cross_entropy_pixel(const V* z, int64_t stride, int64_t classes, int64_t y,
                                                        const V* weight, C smoothing) {
  ClassSums<C> s;
  s.max = static_cast<C>(z[0]);
  for (int64_t c = 1; c < classes; ++c) s.max = max_step(s.max, static_cast<C>(z[c * stride]));
  for (int64_t c = 0; c < classes; ++c) {
    C v = static_cast<C>(z[c * stride]);
    s.sum += math_exp(v - s.max);
    if (smoothing > 0) {
      C w = weight ? static_cast<C>(weight[c]) : C(1);
      s.weighted_gap += w * (s.max - v);
      s.weight_sum += w;
    }
  }
  return cross_entropy_from_sums(s, static_cast<C>(z[y * stride]), weight ? static_cast<C>(weight[y]) : C(1), classes,
                                 smoothing);
}

// The target distribution q of a pixel with target y: q_c = per_class * w_c, plus target_extra for c == y,
// and q_total = sum_c q_c; the gradient is d loss / d z_c = exp(z_c - lse) * q_total - q_c.
template <typename C>
struct CrossEntropyTargets {
  C per_class = 0;
  C target_extra = 0;
  C q_total = 0;
};

template <typename C, typename V>
SE_HOST_DEVICE CrossEntropyTargets<C> cross_entropy_targets(int64_t classes, int64_t y, const V* weight, C smoothing) {
  const C w_y = weight ? static_cast<C>(weight[y]) : C(1);
  C weight_sum = static_cast<C>(classes);
  if (weight && smoothing > 0) {
    weight_sum = 0;
    for (int64_t c = 0; c < classes; ++c) weight_sum += static_cast<C>(weight[c]);
  }
  CrossEntropyTargets<C> t;
  t.per_class = smoothing / static_cast<C>(classes);
  t.target_extra = (1 - smoothing) * w_y;
  t.q_total = t.target_extra + t.per_class * weight_sum;
  return t;
}

// Gradients of one pixel's loss scaled by `grad` into g[c * stride], c in [0, classes):
//   grad * (exp(z_c - lse) * q_total - q_c)
template <typename C, typename V>
SE_HOST_DEVICE void cross_entropy_pixel_backward(V* g, const V* z, int64_t stride, int64_t classes, int64_t y,
                                                 const V* weight, C smoothing, C lse, C grad) {
  const CrossEntropyTargets<C> t = cross_entropy_targets<C>(classes, y, weight, smoothing);
  for (int64_t c = 0; c < classes; ++c) {
    C q = t.per_class * (weight ? static_cast<C>(weight[c]) : C(1));
    if (c == y) q += t.target_extra;
    g[c * stride] = static_cast<V>(grad * (math_exp(static_cast<C>(z[c * stride]) - lse) * t.q_total - q));
  }
}

// Binary cross-entropy with logits of one element: x the logit, y the target, p the positive weight.
template <typename C>
SE_HOST_DEVICE C binary_cross_entropy_element(C x, C y, C p) {
  const C softplus_neg = (x < 0 ? -x : C(0)) + math_log1p(math_exp(x < 0 ? x : -x));
  return (1 - y) * x + (1 + (p - 1) * y) * softplus_neg;
}

// Its derivative with respect to x; sigmoid(-x) is evaluated from exp(-|x|), which cannot overflow.
template <typename C>
SE_HOST_DEVICE C binary_cross_entropy_element_grad(C x, C y, C p) {
  const C e = math_exp(x < 0 ? x : -x);
  const C sigmoid_neg = x < 0 ? 1 / (1 + e) : e / (1 + e);
  return (1 - y) - (1 + (p - 1) * y) * sigmoid_neg;
}

// log-sum-exp over one pixel's logits z[c * stride], c in [0, classes); NaN propagates.
template <typename C, typename V>
SE_HOST_DEVICE C log_sum_exp_pixel(const V* z, int64_t stride, int64_t classes) {
  C max = static_cast<C>(z[0]);
  for (int64_t c = 1; c < classes; ++c) max = max_step(max, static_cast<C>(z[c * stride]));
  C sum = 0;
  for (int64_t c = 0; c < classes; ++c) sum += math_exp(static_cast<C>(z[c * stride]) - max);
  return max + math_log(sum);
}

// x^e for the focal term (x = 1 - p in [0, 1]): the exponents 0, 1 and 2 (gamma 1 and 2, the usual
// settings, and their gamma - 1) as products, which is what pow returns for them (x * x is exact in the
// double pow rounds from, then rounded once), at a fraction of pow's cost; others through pow.
template <typename C>
SE_HOST_DEVICE C focal_power(C x, C e) {
  if (e == C(2)) return x * x;
  if (e == C(1)) return x;
  if (e == C(0)) return C(1);
  return math_pow(x, e);
}

// Softmax focal loss of one pixel from log p = z_y - lse: -alpha * (1 - p)^gamma * log p, with 1 - p as
// -expm1(log p), exact when p is near 1.
template <typename C>
SE_HOST_DEVICE C focal_pixel(C log_p, C alpha, C gamma) {
  const C one_minus_p = -math_expm1(log_p);
  return -alpha * focal_power(one_minus_p, gamma) * log_p;
}

// d loss / d z_c = focal_factor * ([c == y] - p_c) with
//   focal_factor = alpha * (gamma * (1 - p)^(gamma - 1) * p * log p - (1 - p)^gamma),
// the first term taken as 0 at p == 1 (its limit for gamma > 0; pow would give inf * 0 there).
template <typename C>
SE_HOST_DEVICE C focal_factor(C log_p, C alpha, C gamma) {
  const C one_minus_p = -math_expm1(log_p);
  const C p = math_exp(log_p);
  const C first = gamma != 0 && one_minus_p > 0 ? gamma * focal_power(one_minus_p, gamma - 1) * p * log_p : C(0);
  return alpha * (first - focal_power(one_minus_p, gamma));
}

}  // namespace se::kernels::loss
