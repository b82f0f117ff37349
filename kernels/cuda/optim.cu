// Multi-tensor optimizer kernels. The host writes a table of (tensor, chunk start) pairs plus the
// tensors' pointers into the device workspace with one copy; each block then handles one chunk of
// one tensor, so a whole model is updated in a single launch.
#include <cstring>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/optim.h"
#include "kernels/optim_math.h"

namespace se::kernels::cuda {

namespace {

constexpr int kThreads = 256;

// Views into the workspace, in the layout multi_tensor_workspace_bytes() sizes.
struct DeviceTables {
  float* const* lists;     // (kMaxListsPerStep, count)
  const int64_t* numels;   // (count,)
  const int64_t* chunks;   // (num_chunks, 2): tensor index, first element
  float* partials;         // (num_chunks,)
  int64_t count = 0;
  int64_t num_chunks = 0;
};

size_t align16(size_t bytes) { return (bytes + 15) / 16 * 16; }

// Fills the workspace tables (one host-to-device copy) and returns device views of them.
DeviceTables upload_tables(const MultiTensorList& list, void* workspace, Stream stream) {
  const size_t count = static_cast<size_t>(list.count);
  const size_t lists_bytes = align16(kMaxListsPerStep * count * sizeof(float*));
  const size_t numels_bytes = align16(count * sizeof(int64_t));
  std::vector<int64_t> chunks;
  for (int64_t t = 0; t < list.count; ++t) {
    for (int64_t start = 0; start < list.numels[t]; start += kMultiTensorChunk) {
      chunks.push_back(t);
      chunks.push_back(start);
    }
  }
  const size_t chunks_bytes = align16(chunks.size() * sizeof(int64_t));
  std::vector<unsigned char> host(lists_bytes + numels_bytes + chunks_bytes, 0);
  auto* host_lists = reinterpret_cast<float**>(host.data());
  for (int l = 0; l < kMaxListsPerStep; ++l) {
    for (size_t t = 0; t < count; ++t) host_lists[l * count + t] = list.lists[l] != nullptr ? list.lists[l][t] : nullptr;
  }
  std::memcpy(host.data() + lists_bytes, list.numels, count * sizeof(int64_t));
  std::memcpy(host.data() + lists_bytes + numels_bytes, chunks.data(), chunks.size() * sizeof(int64_t));
  // A copy from pageable memory returns once the data is staged, so `host` may go out of scope.
  CUDA_CHECK(cudaMemcpyAsync(workspace, host.data(), host.size(), cudaMemcpyHostToDevice, stream));
  auto* base = static_cast<unsigned char*>(workspace);
  DeviceTables tables;
  tables.lists = reinterpret_cast<float* const*>(base);
  tables.numels = reinterpret_cast<const int64_t*>(base + lists_bytes);
  tables.chunks = reinterpret_cast<const int64_t*>(base + lists_bytes + numels_bytes);
  tables.partials = reinterpret_cast<float*>(base + lists_bytes + numels_bytes + chunks_bytes);
  tables.count = list.count;
  tables.num_chunks = static_cast<int64_t>(chunks.size() / 2);
  return tables;
}

// The chunk of block `blockIdx.x`: tensor index and the [begin, end) element range.
struct Chunk {
  int64_t tensor;
  int64_t begin;
  int64_t end;
};

__device__ inline Chunk chunk_of_block(const DeviceTables& t) {
  const int64_t tensor = t.chunks[2 * blockIdx.x];
  const int64_t begin = t.chunks[2 * blockIdx.x + 1];
  const int64_t end = min(t.numels[tensor], begin + kMultiTensorChunk);
  return {tensor, begin, end};
}

__device__ inline float* list_tensor(const DeviceTables& t, int list, int64_t tensor) {
  return t.lists[list * t.count + tensor];
}

__global__ void sgd_kernel(SgdDesc desc, DeviceTables tables) {
  const Chunk c = chunk_of_block(tables);
  float* p = list_tensor(tables, 0, c.tensor);
  const float* g = list_tensor(tables, 1, c.tensor);
  float* buf = desc.momentum != 0.0f ? list_tensor(tables, 2, c.tensor) : nullptr;
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    sgd_update(desc, p[i], g[i], buf != nullptr ? buf + i : nullptr);
  }
}

__global__ void adam_kernel(AdamDesc desc, AdamScalars scalars, DeviceTables tables) {
  const Chunk c = chunk_of_block(tables);
  float* p = list_tensor(tables, 0, c.tensor);
  const float* g = list_tensor(tables, 1, c.tensor);
  float* m = list_tensor(tables, 2, c.tensor);
  float* v = list_tensor(tables, 3, c.tensor);
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    adam_update(desc, scalars, p[i], g[i], m[i], v[i]);
  }
}

// Sum of a float over the block; the result is valid in thread 0.
__device__ inline float block_sum(float value) {
  alignas(16) __shared__ float warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  value = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0f;
  if (warp == 0) {
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  }
  return value;
}

__global__ void sum_of_squares_chunks_kernel(DeviceTables tables) {
  const Chunk c = chunk_of_block(tables);
  const float* g = list_tensor(tables, 0, c.tensor);
  float s = 0.0f;
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) s += g[i] * g[i];
  s = block_sum(s);
  if (threadIdx.x == 0) tables.partials[blockIdx.x] = s;
}

// One block adds the per-chunk partial sums in a fixed order (deterministic).
__global__ void sum_partials_kernel(const float* partials, int64_t count, float* out) {
  alignas(16) __shared__ double sums[kThreads];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
  sums[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) sums[threadIdx.x] += sums[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = static_cast<float>(sums[0]);
}

__global__ void unscale_kernel(DeviceTables tables, float inv_scale, float* found_inf) {
  const Chunk c = chunk_of_block(tables);
  float* g = list_tensor(tables, 0, c.tensor);
  bool non_finite = false;
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    non_finite = non_finite || !isfinite(g[i]);
    g[i] *= inv_scale;
  }
  if (non_finite) *found_inf = 1.0f;  // every writer stores the same value: no atomic needed
}

void check_lists(const MultiTensorList& list, int needed, const void* workspace, const char* op) {
  SE_CHECK(list.count >= 0 && (list.count == 0 || list.numels != nullptr), op, ": invalid tensor list");
  SE_CHECK(list.count == 0 || workspace != nullptr, op, ": the CUDA kernels need a workspace of "
           "multi_tensor_workspace_bytes() bytes");
  for (int l = 0; l < needed; ++l) {
    SE_CHECK(list.count == 0 || list.lists[l] != nullptr, op, ": tensor list ", l, " is missing");
  }
}

}  // namespace

void sgd_step(const SgdDesc& desc, const MultiTensorList& list, void* workspace, Stream stream) {
  check_lists(list, desc.momentum != 0.0f ? 3 : 2, workspace, "sgd_step");
  const DeviceTables tables = upload_tables(list, workspace, stream);
  if (tables.num_chunks == 0) return;
  SE_LAUNCH(sgd_kernel, static_cast<unsigned int>(tables.num_chunks), kThreads, 0, stream, desc, tables);
}

void adam_step(const AdamDesc& desc, const MultiTensorList& list, void* workspace, Stream stream) {
  check_lists(list, 4, workspace, "adam_step");
  SE_CHECK(desc.step >= 1, "adam_step: step = ", desc.step, " (expected the 1-based step number)");
  const DeviceTables tables = upload_tables(list, workspace, stream);
  if (tables.num_chunks == 0) return;
  SE_LAUNCH(adam_kernel, static_cast<unsigned int>(tables.num_chunks), kThreads, 0, stream, desc,
            adam_scalars(desc), tables);
}

void sum_of_squares(const MultiTensorList& list, float* out, void* workspace, Stream stream) {
  check_lists(list, 1, workspace, "sum_of_squares");
  const DeviceTables tables = upload_tables(list, workspace, stream);
  if (tables.num_chunks == 0) {
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float), stream));
    return;
  }
  SE_LAUNCH(sum_of_squares_chunks_kernel, static_cast<unsigned int>(tables.num_chunks), kThreads, 0, stream, tables);
  SE_LAUNCH(sum_partials_kernel, 1, kThreads, 0, stream, static_cast<const float*>(tables.partials),
            tables.num_chunks, out);
}

void unscale_and_check(const MultiTensorList& list, float inv_scale, float* found_inf, void* workspace,
                       Stream stream) {
  check_lists(list, 1, workspace, "unscale_and_check");
  const DeviceTables tables = upload_tables(list, workspace, stream);
  if (tables.num_chunks == 0) return;
  SE_LAUNCH(unscale_kernel, static_cast<unsigned int>(tables.num_chunks), kThreads, 0, stream, tables, inv_scale,
            found_inf);
}

}  // namespace se::kernels::cuda
