// CPU confusion matrix: each OpenMP thread counts into its own C x C histogram over a contiguous range of
// pixels; the histograms are added into the output afterwards (integers: the order is irrelevant).
#include "kernels/metrics.h"

#include <omp.h>

#include <type_traits>
#include <vector>

#include "kernels/metrics_math.h"

namespace se::kernels::cpu {
namespace {

constexpr int64_t kParallelPixels = 32768;

template <typename Prediction>
void accumulate(int64_t* confusion, int64_t* bad_value, Prediction predict, const int64_t* target,
                const ConfusionDesc& d) {
  const int64_t pixels = d.batch * d.spatial, bins = d.classes * d.classes;
  const int threads = pixels >= kParallelPixels ? omp_get_max_threads() : 1;
  std::vector<std::vector<int64_t>> histograms(static_cast<size_t>(threads));
#pragma omp parallel num_threads(threads)
  {
    std::vector<int64_t>& hist = histograms[static_cast<size_t>(omp_get_thread_num())];
    hist.assign(static_cast<size_t>(bins), 0);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < pixels; ++i) {
      const int64_t t = target[i];
      if (t == d.ignore_index) continue;
      const int64_t p = predict(i);
      if (t < 0 || t >= d.classes || p < 0 || p >= d.classes) {
#pragma omp atomic write
        *bad_value = t < 0 || t >= d.classes ? t : p;
        continue;
      }
      ++hist[static_cast<size_t>(t * d.classes + p)];
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
  accumulate(confusion, bad_value, metrics::ArgmaxPrediction<C, T>{logits, d.classes, d.spatial}, target, d);
}

void confusion_update(int64_t* confusion, int64_t* bad_value, const int64_t* prediction, const int64_t* target,
                      const ConfusionDesc& d, Stream) {
  accumulate(confusion, bad_value, metrics::GivenPrediction{prediction}, target, d);
}

#define SE_INSTANTIATE(T) \
  template void argmax_confusion_update<T>(int64_t*, int64_t*, const T*, const int64_t*, const ConfusionDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cpu
