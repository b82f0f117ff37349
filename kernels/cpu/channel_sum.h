// The per-channel sum of an NCHW gradient: the bias gradient of conv and conv-transpose (depthwise
// convs and conv-transpose; a GEMM conv sums its bias gradient inside its tasks).
#pragma once

#include <omp.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cpu/vector_math.h"

namespace se::kernels::cpu {

// db (c) = the sum over images and pixels of dy (n, c, p): each plane in kLanes lanes of f32 (f64 for
// f64; they vectorize; f16/bf16 are widened as they are read), the planes of a channel in double.
// Channels split over the threads; the order of every sum is fixed, so db does not depend on the
// thread count.
template <typename T>
void channel_sums(const T* dy, int64_t n, int64_t c, int64_t p, T* db) {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
#pragma omp parallel for num_threads(omp_get_max_threads()) if (n * c * p >= 16384) schedule(static)
  for (int64_t ch = 0; ch < c; ++ch) {
    double sum = 0.0;
    for (int64_t image = 0; image < n; ++image) {
      const T* plane = dy + (image * c + ch) * p;
      Acc lanes[kLanes] = {};
      for_each_lane(0, p, [&](int64_t i, int lane) { lanes[lane] += static_cast<Acc>(plane[i]); });
      sum += sum_lanes(lanes);
    }
    db[ch] = static_cast<T>(static_cast<Acc>(sum));
  }
}

}  // namespace se::kernels::cpu
