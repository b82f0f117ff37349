// CPU confusion matrix: each OpenMP thread counts into its own C x C histogram over blocks of pixels (their
// argmax taken class plane by class plane); the histograms are added into the output afterwards (integers:
// the order is irrelevant).
#include "kernels/metrics.h"

#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/cpu/per_isa.h"
#include "kernels/metrics_math.h"

namespace se::kernels::cpu {
namespace {

constexpr int64_t kParallelPixels = 32768;
constexpr int64_t kPixelBlock = 256;

// The argmax over the classes of `count` neighbouring pixels (metrics::ArgmaxPrediction's: first maximum,
// the first NaN wins): classes in the outer loop, the block's pixels in the inner one, so each class plane
// is read contiguously and the loop vectorizes. Reading pixel by pixel instead goes down a column of
// class planes a plane apart, every line in the same L1 set.
template <typename C, typename V>
inline void argmax_block(const V* z,  // pixel 0's class-0 logit; class c at z[c * spatial]
                         int64_t spatial, int64_t classes, int64_t count, int64_t* out) {
  C best[kPixelBlock];
  int32_t index[kPixelBlock];
  for (int64_t j = 0; j < count; ++j) {
    best[j] = static_cast<C>(z[j]);
    index[j] = 0;
  }
  for (int64_t c = 1; c < classes; ++c) {
    const V* zc = z + c * spatial;
    for (int64_t j = 0; j < count; ++j) {
      const C v = static_cast<C>(zc[j]);
      const bool take = (v > best[j] || v != v) && best[j] == best[j];  // a NaN best stays
      best[j] = take ? v : best[j];
      index[j] = take ? static_cast<int32_t>(c) : index[j];
    }
  }
  for (int64_t j = 0; j < count; ++j) out[j] = index[j];
}

// The f32 block per ISA (per_isa.h).
using ArgmaxBlockFn = void (*)(const float* z, int64_t spatial, int64_t classes, int64_t count, int64_t* out);
#define SE_DEFINE_ARGMAX_BLOCK(suffix, attribute)                                                                 \
  attribute __attribute__((flatten)) void argmax_block_##suffix(const float* z, int64_t spatial, int64_t classes, \
                                                                int64_t count, int64_t* out) {                    \
    argmax_block<float>(z, spatial, classes, count, out);                                                         \
  }
SE_STAMP_PER_ISA(SE_DEFINE_ARGMAX_BLOCK)
#undef SE_DEFINE_ARGMAX_BLOCK

ArgmaxBlockFn f32_argmax_block() {
  static const ArgmaxBlockFn best = SE_PICK_PER_ISA(argmax_block);
  return best;
}

// Counts every (target, prediction) pair, a block of up to kPixelBlock pixels of one sample at a time:
// predict(n, s0, count, buffer) returns the predictions of pixels [s0, s0 + count) of sample n, in buffer
// (kPixelBlock values) or elsewhere.
template <typename PredictBlock>
void accumulate(int64_t* confusion, int64_t* bad_value, PredictBlock predict, const int64_t* target,
                const ConfusionDesc& d) {
  const int64_t pixels = d.batch * d.spatial, bins = d.classes * d.classes;
  const int64_t blocks = (d.spatial + kPixelBlock - 1) / kPixelBlock;
  const int threads = pixels >= kParallelPixels ? omp_get_max_threads() : 1;
  std::vector<std::vector<int64_t>> histograms(static_cast<size_t>(threads));
#pragma omp parallel num_threads(threads)
  {
    std::vector<int64_t>& hist = histograms[static_cast<size_t>(omp_get_thread_num())];
    hist.assign(static_cast<size_t>(bins), 0);
    int64_t predicted[kPixelBlock];
#pragma omp for schedule(static)
    for (int64_t task = 0; task < d.batch * blocks; ++task) {
      const int64_t n = task / blocks, s0 = task % blocks * kPixelBlock;
      const int64_t count = std::min(kPixelBlock, d.spatial - s0);
      const int64_t* block = predict(n, s0, count, predicted);
      for (int64_t j = 0; j < count; ++j) {
        const int64_t t = target[n * d.spatial + s0 + j];
        if (t == d.ignore_index) continue;
        const int64_t p = block[j];
        if (t < 0 || t >= d.classes || p < 0 || p >= d.classes) {
#pragma omp atomic write
          *bad_value = t < 0 || t >= d.classes ? t : p;
          continue;
        }
        ++hist[static_cast<size_t>(t * d.classes + p)];
      }
    }
  }
  for (const auto& hist : histograms) {
    for (int64_t k = 0; k < bins && !hist.empty(); ++k) confusion[k] += hist[static_cast<size_t>(k)];
  }
}

}  // namespace

template <typename T>
void argmax_confusion_update(int64_t* confusion, int64_t* bad_value, const T* logits, const int64_t* target,
                             const ConfusionDesc& d, Stream) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  accumulate(
      confusion, bad_value,
      [&](int64_t n, int64_t s0, int64_t count, int64_t* out) -> const int64_t* {
        const T* z = logits + n * d.classes * d.spatial + s0;
        if (d.classes == 0) {  // nothing to read; every target is out of range
          std::fill(out, out + count, int64_t(0));
        } else if constexpr (std::is_same_v<T, float>) {
          f32_argmax_block()(z, d.spatial, d.classes, count, out);
        } else {
          argmax_block<C>(z, d.spatial, d.classes, count, out);
        }
        return out;
      },
      target, d);
}

void confusion_update(int64_t* confusion, int64_t* bad_value, const int64_t* prediction, const int64_t* target,
                      const ConfusionDesc& d, Stream) {
  accumulate(
      confusion, bad_value, [&](int64_t n, int64_t s0, int64_t, int64_t*) { return prediction + n * d.spatial + s0; },
      target, d);
}

#define SE_INSTANTIATE(T) \
  template void argmax_confusion_update<T>(int64_t*, int64_t*, const T*, const int64_t*, const ConfusionDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cpu
