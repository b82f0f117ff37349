// CUDA copy/cast, fill and arange kernels (random fill: random.cu). The 16-bit types are stored as
// se::f16/se::bf16, whose conversions are host-device code, so the values match the CPU kernels bit for bit.
#include "kernels/copy.h"
#include "kernels/cuda/common.cuh"

#include "kernels/convert.h"

namespace se::kernels::cuda {

namespace {

constexpr int kThreads = 256;

unsigned int grid_for(int64_t n) {
  // Grid-stride loops: enough blocks to fill a large GPU, never more than needed.
  long long blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

template <typename Dst, typename Src>
__global__ void copy_contiguous_kernel(const Src* __restrict__ src, Dst* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = convert<Dst>(src[i]);
  }
}

template <typename Dst, typename Src>
__global__ void copy_strided_kernel(StridedLayout src_layout, StridedLayout dst_layout, const Src* __restrict__ src,
                                    Dst* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[dst_layout.offset_of(i)] = convert<Dst>(src[src_layout.offset_of(i)]);
  }
}

template <typename T>
__global__ void fill_kernel(StridedLayout layout, T value, T* __restrict__ dst, int64_t n) {
  const bool contiguous = layout.is_contiguous();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[contiguous ? i : layout.offset_of(i)] = value;
  }
}

template <typename T>
__global__ void arange_kernel(double start, double step, T* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = convert<T>(start + static_cast<double>(i) * step);
  }
}

}  // namespace

void copy_strided(const CopyDesc& desc, const void* src, void* dst, Stream stream) {
  StridedLayout layouts[2] = {desc.src, desc.dst};
  collapse_dims(layouts, 2);
  const int64_t n = layouts[1].numel();
  if (n == 0) return;
  const bool contiguous = layouts[0].is_contiguous() && layouts[1].is_contiguous();
  if (contiguous && desc.src_dtype == desc.dst_dtype) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * dtype_size(desc.src_dtype),
                               cudaMemcpyDeviceToDevice, stream));
    return;
  }
  dispatch_dtype(desc.src_dtype, [&](auto src_tag) {
    using Src = typename decltype(src_tag)::type;
    dispatch_dtype(desc.dst_dtype, [&](auto dst_tag) {
      using Dst = typename decltype(dst_tag)::type;
      const Src* s = static_cast<const Src*>(src);
      Dst* d = static_cast<Dst*>(dst);
      if (contiguous) {
        SE_LAUNCH((copy_contiguous_kernel<Dst, Src>), grid_for(n), kThreads, 0, stream, s, d, n);
      } else {
        SE_LAUNCH((copy_strided_kernel<Dst, Src>), grid_for(n), kThreads, 0, stream, layouts[0], layouts[1], s, d, n);
      }
    });
  });
}

void fill(const FillDesc& desc, void* dst, Stream stream) {
  StridedLayout layout = desc.dst;
  collapse_dims(&layout, 1);
  const int64_t n = layout.numel();
  if (n == 0) return;
  dispatch_dtype(desc.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_LAUNCH((fill_kernel<T>), grid_for(n), kThreads, 0, stream, layout, convert<T>(desc.value),
              static_cast<T*>(dst), n);
  });
}

void arange(const ArangeDesc& desc, void* out, Stream stream) {
  if (desc.count == 0) return;
  dispatch_dtype(desc.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_LAUNCH((arange_kernel<T>), grid_for(desc.count), kThreads, 0, stream, desc.start, desc.step,
              static_cast<T*>(out), desc.count);
  });
}

}  // namespace se::kernels::cuda
