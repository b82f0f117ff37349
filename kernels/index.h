// Indexing along one dim with i64 indices: gather (torch.gather) and its backward scatter_add.
// index_select and its backward index_add are the same kernels with a broadcast index (strides
// (0, 1, 0) over (outer, count, inner)). cat and split need no kernel: they are copies into and
// views of slices (kernels/copy.h).
//
// Geometry: `sizes` is the shape of the index and of the dense side (gather's out, scatter_add's
// src), both row-major contiguous except that the index may broadcast (stride 0). The indexed side
// (gather's src, scatter_add's dst) is strided; along `dim` it is addressed by the index.
//   gather:      out[p] = src[p with p[dim] replaced by index[p]]
//   scatter_add: dst[p with p[dim] replaced by index[p]] += src[p]
// Indices must lie in [0, dim_size): the CPU kernels throw se::Error otherwise, the CUDA kernels
// skip such elements (the engine validates indices before launching).
#pragma once

#include <cstdint>

#include "kernels/stream.h"
#include "kernels/strided.h"

namespace se::kernels {

struct GatherDesc {
  int ndim = 0;
  int dim = 0;
  int64_t sizes[kMaxDims] = {};          // of the index and the dense side
  int64_t index_strides[kMaxDims] = {};  // in elements; 0 broadcasts
  int64_t strides[kMaxDims] = {};        // of the indexed side, in elements
  int64_t dim_size = 0;                  // the indexed side's size along dim

  SE_HOST_DEVICE int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= sizes[d];
    return n;
  }
};

// Instantiated for float, double, f16, bf16, int32_t, int64_t, uint8_t (gather also bool).
// scatter_add on CUDA: atomicAdd over all elements for float and double (summation order varies
// between runs); for the other types one thread per fiber along `dim` adds in index order
// (deterministic). The CPU is deterministic for every type.
namespace cpu {
template <typename T>
void gather(T* out,                // sizes, contiguous
            const T* src,          // strided by desc.strides
            const int64_t* index,  // sizes, strided by desc.index_strides
            const GatherDesc& desc, Stream stream);
template <typename T>
void scatter_add(T* dst,                // strided by desc.strides, accumulated into
                 const T* src,          // sizes, contiguous
                 const int64_t* index,  // sizes, strided by desc.index_strides
                 const GatherDesc& desc, Stream stream);
}  // namespace cpu

namespace cuda {
template <typename T>
void gather(T* out,                // sizes, contiguous
            const T* src,          // strided by desc.strides
            const int64_t* index,  // sizes, strided by desc.index_strides
            const GatherDesc& desc, Stream stream);
template <typename T>
void scatter_add(T* dst,                // strided by desc.strides, accumulated into
                 const T* src,          // sizes, contiguous
                 const int64_t* index,  // sizes, strided by desc.index_strides
                 const GatherDesc& desc, Stream stream);
}  // namespace cuda

}  // namespace se::kernels
