// CPU multi-tensor optimizer kernels. The chunks of all tensors of a list share one parallel loop, so
// a model's many small tensors (biases, norm parameters) are threaded too, not run one by one; the
// per-chunk loops take restrict pointers and local copies of the descriptors so that they vectorize.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <utility>
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

// Below this many elements in all, one thread does the whole list.
constexpr int64_t kParallelElements = 1 << 15;

// Elements [begin, end) of tensor `tensor`, the index-th chunk of the list.
struct Chunk {
  int64_t index, tensor, begin, end;
};

// Calls body(Chunk) for every chunk of kMultiTensorChunk elements of every tensor; returns the count.
template <typename Body>
int64_t for_each_chunk(const MultiTensorList& list, Body body) {
  std::vector<std::pair<int64_t, int64_t>> chunks;  // (tensor, first element)
  int64_t elements = 0;
  for (int64_t t = 0; t < list.count; ++t) {
    for (int64_t begin = 0; begin < list.numels[t]; begin += kMultiTensorChunk) chunks.emplace_back(t, begin);
    elements += list.numels[t];
  }
  const int64_t count = static_cast<int64_t>(chunks.size());
#pragma omp parallel for schedule(dynamic) if (elements > kParallelElements)
  for (int64_t c = 0; c < count; ++c) {
    const auto [t, begin] = chunks[static_cast<size_t>(c)];
    body(Chunk{c, t, begin, std::min(list.numels[t], begin + kMultiTensorChunk)});
  }
  return count;
}

// Stamped out for AVX2 and the baseline (no FMA in either, so both round exactly like the formula).
#define SE_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))

SE_VECTOR_CLONES void sgd_range(const SgdDesc desc, float* __restrict p, const float* __restrict g,
                                float* __restrict buf, int64_t n) {
  if (buf == nullptr) {
    for (int64_t i = 0; i < n; ++i) sgd_update(desc, p[i], g[i], nullptr);
  } else {
    for (int64_t i = 0; i < n; ++i) sgd_update(desc, p[i], g[i], buf + i);
  }
}

SE_VECTOR_CLONES void adam_range(const AdamDesc desc, const AdamScalars scalars, float* __restrict p,
                                 const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) adam_update(desc, scalars, p[i], g[i], m[i], v[i]);
}

// Multiplies by inv_scale; returns whether any value was inf or NaN (NaN fails every comparison).
SE_VECTOR_CLONES bool unscale_range(float* __restrict g, float inv_scale, int64_t n) {
  int non_finite = 0;
  for (int64_t i = 0; i < n; ++i) {
    non_finite |= !(std::fabs(g[i]) <= std::numeric_limits<float>::max());
    g[i] *= inv_scale;
  }
  return non_finite != 0;
}

// Sum of squares in double, over kLanes interleaved partial sums (so that it vectorizes) added in a
// fixed order: the result depends only on n, not on threads or ISA.
SE_VECTOR_CLONES double sum_of_squares_range(const float* __restrict g, int64_t n) {
  constexpr int kLanes = 8;
  double partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) partial[l] += static_cast<double>(g[i + l]) * g[i + l];
  }
  for (; i < n; ++i) partial[i % kLanes] += static_cast<double>(g[i]) * g[i];
  double sum = 0.0;
  for (double p : partial) sum += p;
  return sum;
}

#undef SE_VECTOR_CLONES

}  // namespace

void sgd_step(const SgdDesc& desc, const MultiTensorList& list, void*, Stream) {
  check_lists(list, desc.momentum != 0.0f ? 3 : 2, "sgd_step");
  for_each_chunk(list, [&](const Chunk& c) {
    float* buf = desc.momentum != 0.0f ? list.lists[2][c.tensor] + c.begin : nullptr;
    sgd_range(desc, list.lists[0][c.tensor] + c.begin, list.lists[1][c.tensor] + c.begin, buf, c.end - c.begin);
  });
}

void adam_step(const AdamDesc& desc, const MultiTensorList& list, void*, Stream) {
  check_lists(list, 4, "adam_step");
  SE_CHECK(desc.step >= 1, "adam_step: step = ", desc.step, " (expected the 1-based step number)");
  const AdamScalars scalars = adam_scalars(desc);
  for_each_chunk(list, [&](const Chunk& c) {
    float* const* const* l = list.lists;
    adam_range(desc, scalars, l[0][c.tensor] + c.begin, l[1][c.tensor] + c.begin, l[2][c.tensor] + c.begin,
               l[3][c.tensor] + c.begin, c.end - c.begin);
  });
}

void sum_of_squares(const MultiTensorList& list, float* out, void*, Stream) {
  check_lists(list, 1, "sum_of_squares");
  // Per-chunk sums in double, added in a fixed order: the result does not depend on the threads.
  int64_t chunks = 0;
  for (int64_t t = 0; t < list.count; ++t) chunks += (list.numels[t] + kMultiTensorChunk - 1) / kMultiTensorChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
  for_each_chunk(list, [&](const Chunk& c) {
    partial[static_cast<size_t>(c.index)] = sum_of_squares_range(list.lists[0][c.tensor] + c.begin, c.end - c.begin);
  });
  double total = 0.0;
  for (double p : partial) total += p;
  *out = static_cast<float>(total);
}

void unscale_and_check(const MultiTensorList& list, float inv_scale, float* found_inf, void*, Stream) {
  check_lists(list, 1, "unscale_and_check");
  std::atomic<bool> non_finite{false};
  for_each_chunk(list, [&](const Chunk& c) {
    if (unscale_range(list.lists[0][c.tensor] + c.begin, inv_scale, c.end - c.begin)) {
      non_finite.store(true, std::memory_order_relaxed);
    }
  });
  if (non_finite.load()) *found_inf = 1.0f;
}

}  // namespace cpu
}  // namespace se::kernels
