// Per-pixel predictions for the confusion kernels, shared by kernels/cpu/metrics.cpp and
// kernels/cuda/metrics.cu. Internal to kernels/. `V` is the stored logit type, `C` the compare type.
#pragma once

#include <cstdint>

#include "core/half.h"

namespace se::kernels::metrics {

// The argmax over the class dim of pixel i of (N, C, S) logits: first maximum, NaN wins.
template <typename C, typename V>
struct ArgmaxPrediction {
  const V* logits;
  int64_t classes, spatial;
  SE_HOST_DEVICE int64_t operator()(int64_t i) const {
    const V* z = logits + (i / spatial) * classes * spatial + i % spatial;
    int64_t best_index = 0;
    C best = static_cast<C>(z[0]);
    for (int64_t c = 1; c < classes && best == best; ++c) {
      C v = static_cast<C>(z[c * spatial]);
      if (v > best || v != v) best = v, best_index = c;
    }
    return best_index;
  }
};

struct GivenPrediction {
  const int64_t* prediction;
  SE_HOST_DEVICE int64_t operator()(int64_t i) const { return prediction[i]; }
};

}  // namespace se::kernels::metrics
