#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/optim.h"
#include "kernels/optim_math.h"

namespace se::kernels {

namespace cpu {

namespace {

void check_lists(const MultiTensorList& list, int needed, const char* op) {
  SE_CHECK(list.count >= 0 && (list.count == 0 || list.numels != nullptr), op, ": invalid tensor list");
  for (int l = 0; l < needed; ++l) {
    SE_CHECK(list.count == 0 || list.lists[l] != nullptr, op, ": tensor list ", l, " is missing");
  }
}

}  // namespace

void sgd_step(const SgdDesc& desc, const MultiTensorList& list, void*, Stream) {
  check_lists(list, desc.momentum != 0.0f ? 3 : 2, "sgd_step");
  for (int64_t t = 0; t < list.count; ++t) {
    float* p = list.lists[0][t];
    const float* g = list.lists[1][t];
    float* buf = desc.momentum != 0.0f ? list.lists[2][t] : nullptr;
    const int64_t n = list.numels[t];
#pragma omp parallel for if (n > (1 << 15))
    for (int64_t i = 0; i < n; ++i) sgd_update(desc, p[i], g[i], buf != nullptr ? buf + i : nullptr);
  }
}

void adam_step(const AdamDesc& desc, const MultiTensorList& list, void*, Stream) {
  check_lists(list, 4, "adam_step");
  SE_CHECK(desc.step >= 1, "adam_step: step = ", desc.step, " (expected the 1-based step number)");
  const AdamScalars scalars = adam_scalars(desc);
  for (int64_t t = 0; t < list.count; ++t) {
    float* p = list.lists[0][t];
    const float* g = list.lists[1][t];
    float* m = list.lists[2][t];
    float* v = list.lists[3][t];
    const int64_t n = list.numels[t];
#pragma omp parallel for if (n > (1 << 15))
    for (int64_t i = 0; i < n; ++i) adam_update(desc, scalars, p[i], g[i], m[i], v[i]);
  }
}

void sum_of_squares(const MultiTensorList& list, float* out, void*, Stream) {
  check_lists(list, 1, "sum_of_squares");
  // Per-chunk sums in double, added in a fixed order: the result does not depend on the threads.
  double total = 0.0;
  for (int64_t t = 0; t < list.count; ++t) {
    const float* g = list.lists[0][t];
    const int64_t n = list.numels[t];
    const int64_t chunks = (n + kMultiTensorChunk - 1) / kMultiTensorChunk;
    std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
#pragma omp parallel for if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      double s = 0.0;
      const int64_t end = std::min(n, (c + 1) * kMultiTensorChunk);
      for (int64_t i = c * kMultiTensorChunk; i < end; ++i) s += static_cast<double>(g[i]) * g[i];
      partial[c] = s;
    }
    for (double s : partial) total += s;
  }
  *out = static_cast<float>(total);
}

void unscale_and_check(const MultiTensorList& list, float inv_scale, float* found_inf, void*, Stream) {
  check_lists(list, 1, "unscale_and_check");
  bool non_finite = false;
  for (int64_t t = 0; t < list.count; ++t) {
    float* g = list.lists[0][t];
    const int64_t n = list.numels[t];
#pragma omp parallel for reduction(|| : non_finite) if (n > (1 << 15))
    for (int64_t i = 0; i < n; ++i) {
      non_finite = non_finite || !std::isfinite(g[i]);
      g[i] *= inv_scale;
    }
  }
  if (non_finite) *found_inf = 1.0f;
}

}  // namespace cpu
}  // namespace se::kernels
