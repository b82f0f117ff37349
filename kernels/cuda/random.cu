// CUDA random fill: element i of the output is philox value desc.offset + i (core/philox.h), the same
// function the CPU kernel evaluates, so both devices produce the same tensor for a seed.
// This source alone may use local memory (SE_CUDA_LOCAL_MEMORY_OK in kernels/CMakeLists.txt): normal_at's
// double sin and cos carry CUDA's slow argument reduction for huge angles, whose 40-byte scratch array is
// local. Box-Muller angles lie in [0, 2 pi), so that path never runs and the frame is never touched.
#include <algorithm>

#include "kernels/copy.h"
#include "kernels/cuda/common.cuh"

#include "core/philox.h"
#include "kernels/convert.h"

namespace se::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

template <typename T>
__global__ void random_kernel(RandomDesc desc, T* __restrict__ out) {  // out: (count,)
  const bool uniform = desc.distribution == Distribution::uniform;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < desc.count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint64_t index = desc.offset + static_cast<uint64_t>(i);
    double v = uniform ? desc.a + (desc.b - desc.a) * philox::uniform_at(desc.seed, index)
                       : desc.a + desc.b * philox::normal_at(desc.seed, index);
    out[i] = convert<T>(v);
  }
}

}  // namespace

void random(const RandomDesc& desc, void* out, Stream stream) {
  if (desc.count == 0) return;
  // A grid-stride loop: enough blocks to fill a large GPU, never more than the elements need.
  const auto blocks = static_cast<unsigned int>(std::min<int64_t>((desc.count + kThreads - 1) / kThreads, kMaxBlocks));
  dispatch_floating(desc.dtype, "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_LAUNCH((random_kernel<T>), blocks, kThreads, 0, stream, desc, static_cast<T*>(out));
  });
}

}  // namespace se::kernels::cuda
