// CUDA confusion matrix. Each block counts its pixels (grid-stride) into a C x C histogram of 32-bit
// counters in dynamic shared memory, then adds its non-zero bins to the global int64 matrix with one atomic
// each: global atomics stay few even when all pixels hit the same bin. When C * C counters do not fit in
// the default 48 KiB, every pixel adds to the global matrix directly.
#include "kernels/metrics.h"

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/metrics_math.h"

namespace se::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;  // a block's 32-bit counters see at most pixels / blocks increments
constexpr int64_t kSharedBytes = 48 * 1024;

// The bin (t * C + p) pixel i counts into, or -1 to skip it (ignored or, after reporting, out of range).
template <typename Prediction>
__device__ int64_t confusion_bin(int64_t i, Prediction predict, const int64_t* target, unsigned long long* bad_value,
                                 const ConfusionDesc& d) {
  const int64_t t = target[i];
  if (t == d.ignore_index) return -1;
  const int64_t p = predict(i);
  if (t < 0 || t >= d.classes || p < 0 || p >= d.classes) {
    const int64_t bad = t < 0 || t >= d.classes ? t : p;
    atomicCAS(bad_value, static_cast<unsigned long long>(d.ignore_index), static_cast<unsigned long long>(bad));
    return -1;
  }
  return t * d.classes + p;
}

template <typename Prediction>
__global__ void confusion_shared_kernel(unsigned long long* confusion,  // (C, C)
                                        unsigned long long* bad_value,  // (1)
                                        Prediction predict,
                                        const int64_t* target,  // (N, S)
                                        ConfusionDesc d) {
  DYN_SHARED(unsigned, hist);  // (C, C)
  const int64_t bins = d.classes * d.classes, pixels = d.batch * d.spatial;
  for (int64_t k = threadIdx.x; k < bins; k += blockDim.x) hist[k] = 0;
  __syncthreads();
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < pixels;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t bin = confusion_bin(i, predict, target, bad_value, d);
    if (bin >= 0) atomicAdd(&hist[bin], 1u);
  }
  __syncthreads();
  for (int64_t k = threadIdx.x; k < bins; k += blockDim.x) {
    if (hist[k] != 0) atomicAdd(&confusion[k], static_cast<unsigned long long>(hist[k]));
  }
}

template <typename Prediction>
__global__ void confusion_global_kernel(unsigned long long* confusion,  // (C, C)
                                        unsigned long long* bad_value,  // (1)
                                        Prediction predict,
                                        const int64_t* target,  // (N, S)
                                        ConfusionDesc d) {
  const int64_t pixels = d.batch * d.spatial;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < pixels;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t bin = confusion_bin(i, predict, target, bad_value, d);
    if (bin >= 0) atomicAdd(&confusion[bin], 1ull);
  }
}

template <typename Prediction>
void launch(int64_t* confusion, int64_t* bad_value, Prediction predict, const int64_t* target, const ConfusionDesc& d,
            Stream stream) {
  const int64_t pixels = d.batch * d.spatial;
  if (pixels == 0) return;
  const unsigned blocks = ceil_div(std::min(pixels, kMaxBlocks * kThreads), kThreads);
  auto* matrix = reinterpret_cast<unsigned long long*>(confusion);
  auto* bad = reinterpret_cast<unsigned long long*>(bad_value);
  const int64_t shared_bytes = d.classes * d.classes * static_cast<int64_t>(sizeof(unsigned));
  if (shared_bytes <= kSharedBytes) {
    SE_LAUNCH((confusion_shared_kernel<Prediction>), blocks, kThreads, static_cast<size_t>(shared_bytes), stream,
              matrix, bad, predict, target, d);
  } else {
    SE_LAUNCH((confusion_global_kernel<Prediction>), blocks, kThreads, 0, stream, matrix, bad, predict, target, d);
  }
}

}  // namespace

template <typename T>
void argmax_confusion_update(int64_t* confusion, int64_t* bad_value, const T* logits, const int64_t* target,
                             const ConfusionDesc& d, Stream stream) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  launch(confusion, bad_value,
         metrics::ArgmaxPrediction<C, cuda_t<T>>{reinterpret_cast<const cuda_t<T>*>(logits), d.classes, d.spatial},
         target, d, stream);
}

void confusion_update(int64_t* confusion, int64_t* bad_value, const int64_t* prediction, const int64_t* target,
                      const ConfusionDesc& d, Stream stream) {
  launch(confusion, bad_value, metrics::GivenPrediction{prediction}, target, d, stream);
}

#define SE_INSTANTIATE(T) \
  template void argmax_confusion_update<T>(int64_t*, int64_t*, const T*, const int64_t*, const ConfusionDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cuda
