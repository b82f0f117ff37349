// CPU loss family. Cross-entropy and focal loss work on blocks of up to kPixelBlock neighbouring pixels of
// one sample: every pass walks the classes in the outer loop and the block's pixels in the inner loop, which
// reads each class plane contiguously and vectorizes (exp is fast_exp, kernels/cpu/vector_math.h). Each
// pixel still sees its classes in order, so the sums are those of the per-pixel formulas in
// kernels/loss_math.h, which also finishes every pixel (the focal term with fast_expm1 for expm1, and its
// backward factor in a vector loop for gamma 0, 1 and 2). Blocks are split over OpenMP threads; the f32
// block loops are compiled per ISA (BlockLoops). Binary cross-entropy is elementwise.
#include "kernels/loss.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/per_isa.h"
#include "kernels/cpu/vector_math.h"
#include "kernels/loss_math.h"

namespace se::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = 16384;
constexpr int64_t kPixelBlock = 256;

// Calls body(n, s0, pixels) for every block of pixels [s0, s0 + pixels) of sample n.
template <typename Body>
void for_each_pixel_block(int64_t batch, int64_t spatial, int64_t classes, Body body) {
  const int64_t blocks = (spatial + kPixelBlock - 1) / kPixelBlock;
#pragma omp parallel for schedule(static) if (batch * spatial * classes >= kParallelWork)
  for (int64_t task = 0; task < batch * blocks; ++task) {
    const int64_t n = task / blocks, s0 = task % blocks * kPixelBlock;
    body(n, s0, std::min(kPixelBlock, spatial - s0));
  }
}

// loss::ClassSums of a block's pixels, one array per field; weight_sum is the same for every pixel.
template <typename C>
struct BlockSums {
  C max[kPixelBlock], sum[kPixelBlock], weighted_gap[kPixelBlock];
  C weight_sum = 0;

  loss::ClassSums<C> pixel(int64_t j) const { return {max[j], sum[j], weighted_gap[j], weight_sum}; }
};

// The class sums of `pixels` neighbouring pixels; z points at the first one's class-0 logit, class c at
// z[c * spatial]. The smoothing sums only with `smoothing`. Without classes there is nothing to read (and
// every target is bad).
template <typename C, typename T>
void accumulate_class_sums(BlockSums<C>& b, const T* z, int64_t spatial, int64_t classes, int64_t pixels,
                           const T* weight, bool smoothing) {
  if (classes == 0) return;
  for (int64_t j = 0; j < pixels; ++j) b.max[j] = static_cast<C>(z[j]);
  for (int64_t c = 1; c < classes; ++c) {
    const T* zc = z + c * spatial;
    for (int64_t j = 0; j < pixels; ++j) b.max[j] = loss::max_step(b.max[j], static_cast<C>(zc[j]));
  }
  std::fill(b.sum, b.sum + pixels, C(0));
  std::fill(b.weighted_gap, b.weighted_gap + pixels, C(0));
  b.weight_sum = 0;
  for (int64_t c = 0; c < classes; ++c) {
    const T* zc = z + c * spatial;
    for (int64_t j = 0; j < pixels; ++j) b.sum[j] += fast_exp(static_cast<C>(zc[j]) - b.max[j]);
    if (!smoothing) continue;
    const C w = weight ? static_cast<C>(weight[c]) : C(1);
    for (int64_t j = 0; j < pixels; ++j) b.weighted_gap[j] += w * (b.max[j] - static_cast<C>(zc[j]));
    b.weight_sum += w;
  }
}

// Per pixel of a block, for the backward passes: its target (-1 when ignored or invalid: gradient 0),
// log-sum-exp, and the scale and offsets of its gradient formula.
template <typename C>
struct BlockGradTerms {
  int32_t target[kPixelBlock];
  C lse[kPixelBlock], scale[kPixelBlock], q_total[kPixelBlock], target_extra[kPixelBlock];
};

// Writes grad[c * spatial + j] = keep_j ? term(c, j) : 0 for every class and pixel of a block.
template <typename C, typename T, typename Term>
void write_block_grad(T* grad, int64_t spatial, int64_t classes, int64_t pixels, const int32_t* target, Term term) {
  for (int32_t c = 0; c < classes; ++c) {
    T* gc = grad + c * spatial;
    for (int64_t j = 0; j < pixels; ++j) gc[j] = static_cast<T>(select(target[j] >= 0, term(c, j), C(0)));
  }
}

// d cross-entropy / d z of a block: scale_j * (e^(z_c - lse_j) * q_total_j - q_c), q_c = class_q[c] plus
// target_extra_j for the pixel's target.
template <typename C, typename T>
void cross_entropy_block_grad(T* grad, const T* z, int64_t spatial, int64_t classes, int64_t pixels,
                              const BlockGradTerms<C>& t, const C* class_q) {
  write_block_grad<C>(grad, spatial, classes, pixels, t.target, [&](int32_t c, int64_t j) {
    const C q = class_q[c] + select(c == t.target[j], t.target_extra[j], C(0));
    return t.scale[j] * (fast_exp(static_cast<C>(z[c * spatial + j]) - t.lse[j]) * t.q_total[j] - q);
  });
}

// d focal / d z of a block: scale_j * ([c == y_j] - p_c), as the CUDA kernel.
template <typename C, typename T>
void focal_block_grad(T* grad, const T* z, int64_t spatial, int64_t classes, int64_t pixels,
                      const BlockGradTerms<C>& t) {
  write_block_grad<C>(grad, spatial, classes, pixels, t.target, [&](int32_t c, int64_t j) {
    const C p = fast_exp(static_cast<C>(z[c * spatial + j]) - t.lse[j]);
    return t.scale[j] * (select(c == t.target[j], C(1), C(0)) - p);
  });
}

// The focal loss of a pixel from log p, as loss::focal_pixel with fast_expm1 for libm's expm1.
template <typename C>
C focal_pixel_cpu(C log_p, C alpha, C gamma) {
  return -alpha * loss::focal_power(-fast_expm1(log_p), gamma) * log_p;
}

// scale_j *= focal_factor(log_p_j, alpha_j) for the block's pixels, gamma = kGamma in {0, 1, 2}: the formula
// of loss::focal_factor with its powers as products and fast_expm1 / fast_exp, so that the loop vectorizes.
template <int kGamma, typename C>
void focal_block_scale(C* scale, const C* log_p, const C* alpha, int64_t pixels) {
  static_assert(kGamma >= 0 && kGamma <= 2);
  for (int64_t j = 0; j < pixels; ++j) {
    const C one_minus_p = -fast_expm1(log_p[j]);
    const C power = kGamma == 2 ? one_minus_p * one_minus_p : kGamma == 1 ? one_minus_p : C(1);  // (1 - p)^gamma
    const C lower_power = kGamma == 2 ? one_minus_p : C(1);                                   // (1 - p)^(gamma - 1)
    const C first = select(kGamma != 0 && one_minus_p > C(0),
                           C(kGamma) * lower_power * fast_exp(log_p[j]) * log_p[j], C(0));
    scale[j] *= alpha[j] * (first - power);
  }
}

// The f32 block loops per ISA (per_isa.h); other dtypes call the templates directly.
struct BlockLoops {
  void (*class_sums)(BlockSums<float>& b, const float* z, int64_t spatial, int64_t classes, int64_t pixels,
                     const float* weight, bool smoothing);
  void (*cross_entropy_grad)(float* grad, const float* z, int64_t spatial, int64_t classes, int64_t pixels,
                             const BlockGradTerms<float>& t, const float* class_q);
  void (*focal_grad)(float* grad, const float* z, int64_t spatial, int64_t classes, int64_t pixels,
                     const BlockGradTerms<float>& t);
  void (*focal_scale[3])(float* scale, const float* log_p, const float* alpha, int64_t pixels);  // gamma 0, 1, 2
};

#define SE_DEFINE_BLOCK_LOOPS(suffix, attribute)                                                                       \
  attribute __attribute__((flatten)) void class_sums_##suffix(BlockSums<float>& b, const float* z, int64_t spatial,    \
                                                              int64_t classes, int64_t pixels, const float* weight,    \
                                                              bool smoothing) {                                        \
    accumulate_class_sums(b, z, spatial, classes, pixels, weight, smoothing);                                          \
  }                                                                                                                    \
  attribute __attribute__((flatten)) void cross_entropy_grad_##suffix(                                                 \
      float* grad, const float* z, int64_t spatial, int64_t classes, int64_t pixels, const BlockGradTerms<float>& t,   \
      const float* class_q) {                                                                                          \
    cross_entropy_block_grad(grad, z, spatial, classes, pixels, t, class_q);                                           \
  }                                                                                                                    \
  attribute __attribute__((flatten)) void focal_grad_##suffix(                                                         \
      float* grad, const float* z, int64_t spatial, int64_t classes, int64_t pixels, const BlockGradTerms<float>& t) { \
    focal_block_grad(grad, z, spatial, classes, pixels, t);                                                            \
  }                                                                                                                    \
  template <int kGamma>                                                                                                \
  attribute __attribute__((flatten)) void focal_scale_##suffix(float* scale, const float* log_p, const float* alpha,   \
                                                               int64_t pixels) {                                       \
    focal_block_scale<kGamma>(scale, log_p, alpha, pixels);                                                            \
  }                                                                                                                    \
  constexpr BlockLoops kBlockLoops_##suffix{                                                                           \
      class_sums_##suffix,                                                                                             \
      cross_entropy_grad_##suffix,                                                                                     \
      focal_grad_##suffix,                                                                                             \
      {focal_scale_##suffix<0>, focal_scale_##suffix<1>, focal_scale_##suffix<2>}};

SE_STAMP_PER_ISA(SE_DEFINE_BLOCK_LOOPS)
#undef SE_DEFINE_BLOCK_LOOPS

const BlockLoops& block_loops() {
  static const BlockLoops best = SE_PICK_PER_ISA(kBlockLoops);
  return best;
}

// The class sums of a block: the f32 ones through the ISA's loops.
template <typename C, typename T>
void class_sums(BlockSums<C>& b, const T* z, int64_t spatial, int64_t classes, int64_t pixels, const T* weight,
                bool smoothing) {
  if constexpr (std::is_same_v<T, float>) {
    block_loops().class_sums(b, z, spatial, classes, pixels, weight, smoothing);
  } else {
    accumulate_class_sums(b, z, spatial, classes, pixels, weight, smoothing);
  }
}

// The forward of a per-pixel loss over NCHW logits: the class sums of each block of pixels, then for each
// pixel clear(i) and, when its target y is neither ignore_index nor outside [0, classes) (which goes to
// *bad_target), finish(i, y, class-0 logit of the pixel, its class sums).
template <typename C, typename T, typename Clear, typename Finish>
void pixel_loss_forward(const T* logits,        // (N, C, S)
                        const int64_t* target,  // (N, S)
                        const T* weight,        // (C) or null, for the smoothing sums
                        int64_t* bad_target, int64_t batch, int64_t classes, int64_t spatial, int64_t ignore_index,
                        bool smoothing, Clear clear, Finish finish) {
  for_each_pixel_block(batch, spatial, classes, [&](int64_t n, int64_t s0, int64_t pixels) {
    const T* z = logits + n * classes * spatial + s0;
    BlockSums<C> b;
    class_sums(b, z, spatial, classes, pixels, weight, smoothing);
    for (int64_t j = 0; j < pixels; ++j) {
      const int64_t i = n * spatial + s0 + j, y = target[i];
      clear(i);
      if (y == ignore_index) continue;
      if (y < 0 || y >= classes) {
#pragma omp atomic write
        *bad_target = y;
        continue;
      }
      finish(i, y, z + j, b.pixel(j));
    }
  });
}

}  // namespace

template <typename T>
void cross_entropy_forward(T* loss, T* pixel_weight, loss_compute_t<T>* lse, int64_t* bad_target, const T* logits,
                           const int64_t* target, const T* weight, const CrossEntropyDesc& d, Stream) {
  using C = loss_compute_t<T>;
  const C smoothing = static_cast<C>(d.label_smoothing);
  pixel_loss_forward<C>(
      logits, target, weight, bad_target, d.batch, d.classes, d.spatial, d.ignore_index, smoothing > 0,
      [&](int64_t i) {
        loss[i] = T(0.0f);
        pixel_weight[i] = T(0.0f);
        lse[i] = 0;
      },
      [&](int64_t i, int64_t y, const T* z, const loss::ClassSums<C>& sums) {
        const auto p = loss::cross_entropy_from_sums(sums, static_cast<C>(z[y * d.spatial]),
                                                     weight ? static_cast<C>(weight[y]) : C(1), d.classes, smoothing);
        loss[i] = static_cast<T>(p.loss);
        pixel_weight[i] = static_cast<T>(p.weight);
        lse[i] = p.lse;
      });
}

template <typename T>
void cross_entropy_backward(T* grad_logits, const T* grad_loss, int64_t grad_loss_stride, const T* logits,
                            const loss_compute_t<T>* lse, const int64_t* target, const T* weight,
                            const CrossEntropyDesc& d, Stream) {
  using C = loss_compute_t<T>;
  const C smoothing = static_cast<C>(d.label_smoothing);
  // q_c without the target's share: per_class * w_c (loss::cross_entropy_pixel_backward).
  const C per_class = smoothing / static_cast<C>(d.classes);
  std::vector<C> class_q(d.classes);
  for (int64_t c = 0; c < d.classes; ++c) class_q[c] = per_class * (weight ? static_cast<C>(weight[c]) : C(1));
  for_each_pixel_block(d.batch, d.spatial, d.classes, [&](int64_t n, int64_t s0, int64_t pixels) {
    BlockGradTerms<C> t;
    for (int64_t j = 0; j < pixels; ++j) {
      const int64_t i = n * d.spatial + s0 + j, y = target[i];
      const bool valid = y >= 0 && y < d.classes;  // ignored (or invalid, which the forward reported): 0
      const loss::CrossEntropyTargets<C> q =
          valid ? loss::cross_entropy_targets<C>(d.classes, y, weight, smoothing) : loss::CrossEntropyTargets<C>{};
      t.target[j] = valid ? static_cast<int32_t>(y) : -1;
      t.lse[j] = lse[i];
      t.scale[j] = static_cast<C>(grad_loss[i * grad_loss_stride]);
      t.q_total[j] = q.q_total;
      t.target_extra[j] = q.target_extra;
    }
    const int64_t offset = n * d.classes * d.spatial + s0;
    if constexpr (std::is_same_v<T, float>) {
      block_loops().cross_entropy_grad(grad_logits + offset, logits + offset, d.spatial, d.classes, pixels, t,
                                       class_q.data());
    } else {
      cross_entropy_block_grad(grad_logits + offset, logits + offset, d.spatial, d.classes, pixels, t, class_q.data());
    }
  });
}

template <typename T>
void focal_loss_forward(T* loss, T* valid, loss_compute_t<T>* lse, int64_t* bad_target, const T* logits,
                        const int64_t* target, const T* alpha, const FocalLossDesc& d, Stream) {
  using C = loss_compute_t<T>;
  const C gamma = static_cast<C>(d.gamma);
  pixel_loss_forward<C, T>(
      logits, target, nullptr, bad_target, d.batch, d.classes, d.spatial, d.ignore_index, false,
      [&](int64_t i) {
        loss[i] = T(0.0f);
        valid[i] = T(0.0f);
        lse[i] = 0;
      },
      [&](int64_t i, int64_t y, const T* z, const loss::ClassSums<C>& sums) {
        const C l = sums.max + loss::math_log(sums.sum);  // loss::log_sum_exp_pixel
        const C a = alpha ? static_cast<C>(alpha[y]) : C(1);
        loss[i] = static_cast<T>(focal_pixel_cpu<C>(static_cast<C>(z[y * d.spatial]) - l, a, gamma));
        valid[i] = T(1.0f);
        lse[i] = l;
      });
}

template <typename T>
void focal_loss_backward(T* grad_logits, const T* grad_loss, int64_t grad_loss_stride, const T* logits,
                         const loss_compute_t<T>* lse, const int64_t* target, const T* alpha, const FocalLossDesc& d,
                         Stream) {
  using C = loss_compute_t<T>;
  const C gamma = static_cast<C>(d.gamma);
  for_each_pixel_block(d.batch, d.spatial, d.classes, [&](int64_t n, int64_t s0, int64_t pixels) {
    const int64_t offset = n * d.classes * d.spatial + s0;
    const T* z = logits + offset;
    BlockGradTerms<C> t;
    C log_p[kPixelBlock], pixel_alpha[kPixelBlock];  // of the target class; 0 and 1 where the pixel is ignored
    for (int64_t j = 0; j < pixels; ++j) {
      const int64_t i = n * d.spatial + s0 + j, y = target[i];
      const bool valid = y >= 0 && y < d.classes;
      t.target[j] = valid ? static_cast<int32_t>(y) : -1;
      t.lse[j] = lse[i];
      t.scale[j] = valid ? static_cast<C>(grad_loss[i * grad_loss_stride]) : C(0);
      log_p[j] = valid ? static_cast<C>(z[y * d.spatial + j]) - lse[i] : C(0);
      pixel_alpha[j] = valid && alpha ? static_cast<C>(alpha[y]) : C(1);
    }
    // scale_j *= focal_factor: gamma 0, 1 and 2 in a vector loop, others with pow.
    const int small_gamma = gamma == C(0) ? 0 : gamma == C(1) ? 1 : gamma == C(2) ? 2 : -1;
    if (small_gamma < 0) {
      for (int64_t j = 0; j < pixels; ++j) t.scale[j] *= loss::focal_factor<C>(log_p[j], pixel_alpha[j], gamma);
    } else if constexpr (std::is_same_v<T, float>) {
      block_loops().focal_scale[small_gamma](t.scale, log_p, pixel_alpha, pixels);
    } else {
      constexpr void (*kScale[])(C*, const C*, const C*, int64_t) = {focal_block_scale<0, C>, focal_block_scale<1, C>,
                                                                      focal_block_scale<2, C>};
      kScale[small_gamma](t.scale, log_p, pixel_alpha, pixels);
    }
    if constexpr (std::is_same_v<T, float>) {
      block_loops().focal_grad(grad_logits + offset, z, d.spatial, d.classes, pixels, t);
    } else {
      focal_block_grad(grad_logits + offset, z, d.spatial, d.classes, pixels, t);
    }
  });
}

template <typename T>
void binary_cross_entropy_forward(T* loss, const T* logits, const T* target, const T* pos_weight,
                                  const BinaryCrossEntropyDesc& d, Stream) {
  using C = loss_compute_t<T>;
  const int64_t count = d.outer * d.channels * d.inner;
#pragma omp parallel for schedule(static) if (count >= kParallelWork)
  for (int64_t i = 0; i < count; ++i) {
    const C p = pos_weight ? static_cast<C>(pos_weight[(i / d.inner) % d.channels]) : C(1);
    loss[i] =
        static_cast<T>(loss::binary_cross_entropy_element(static_cast<C>(logits[i]), static_cast<C>(target[i]), p));
  }
}

template <typename T>
void binary_cross_entropy_backward(T* grad_logits, const T* grad_loss, int64_t grad_loss_stride, const T* logits,
                                   const T* target, const T* pos_weight, const BinaryCrossEntropyDesc& d, Stream) {
  using C = loss_compute_t<T>;
  const int64_t count = d.outer * d.channels * d.inner;
#pragma omp parallel for schedule(static) if (count >= kParallelWork)
  for (int64_t i = 0; i < count; ++i) {
    const C p = pos_weight ? static_cast<C>(pos_weight[(i / d.inner) % d.channels]) : C(1);
    grad_logits[i] = static_cast<T>(
        static_cast<C>(grad_loss[i * grad_loss_stride]) *
        loss::binary_cross_entropy_element_grad(static_cast<C>(logits[i]), static_cast<C>(target[i]), p));
  }
}

#define SE_INSTANTIATE(T)                                                                                            \
  template void cross_entropy_forward<T>(T*, T*, loss_compute_t<T>*, int64_t*, const T*, const int64_t*, const T*,   \
                                         const CrossEntropyDesc&, Stream);                                           \
  template void cross_entropy_backward<T>(T*, const T*, int64_t, const T*, const loss_compute_t<T>*, const int64_t*, \
                                          const T*, const CrossEntropyDesc&, Stream);                                \
  template void binary_cross_entropy_forward<T>(T*, const T*, const T*, const T*, const BinaryCrossEntropyDesc&,     \
                                                Stream);                                                             \
  template void focal_loss_forward<T>(T*, T*, loss_compute_t<T>*, int64_t*, const T*, const int64_t*, const T*,      \
                                      const FocalLossDesc&, Stream);                                                 \
  template void focal_loss_backward<T>(T*, const T*, int64_t, const T*, const loss_compute_t<T>*, const int64_t*,    \
                                       const T*, const FocalLossDesc&, Stream);                                      \
  template void binary_cross_entropy_backward<T>(T*, const T*, int64_t, const T*, const T*, const T*,                \
                                                 const BinaryCrossEntropyDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cpu
