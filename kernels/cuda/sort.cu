// CUDA sort and cumsum (kernels/sort.h). The sort is a segmented LSD radix sort with 8-bit digits: per pass a
// histogram of every (row, tile), a per-row scan of those histograms into scatter offsets, and a stable
// scatter in which each block first sorts its tile by the digit in shared memory (1-bit split steps). Nothing
// waits on another block inside a kernel, so it runs as is under the emulator.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/group_reduce.cuh"
#include "kernels/sort.h"
#include "kernels/sort_ops.h"

namespace se::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = static_cast<int>(kSortTile) / kThreads;  // keys per thread in a tile
constexpr int kBins = 256;                                       // 8-bit digits
static_assert(kThreads == kBins, "the histogram and scan kernels give every thread one bin");

// Exclusive prefix sum over the block of one value per thread; `total` receives the block's sum. scratch: 32
// shared values, reusable when the call returns. Every thread of the block calls this.
template <typename T>
__device__ T block_exclusive_scan(T value, T* scratch, T& total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  T inclusive = value;
  for (int offset = 1; offset < 32; offset *= 2) {
    const T other = __shfl_up_sync(kFullMask, inclusive, offset);
    if (lane >= offset) inclusive += other;
  }
  if (lane == 31) scratch[warp] = inclusive;
  __syncthreads();
  T before = T(0);
  total = T(0);
  for (int w = 0; w < warps; ++w) {
    const T s = scratch[w];
    if (w < warp) before += s;
    total += s;
  }
  __syncthreads();
  return before + inclusive - value;
}

// Stable sort of a tile in shared memory by bits [bit_begin, bit_end) of its keys: one 1-bit split per bit
// (keys with a 0 bit first, each side in its previous order). The tile starts in buffer 0; returns the buffer
// that holds the result. pos carries each key's position in the tile as loaded.
template <typename K>
__device__ int block_sort_tile(K (*keys)[kSortTile], int32_t (*pos)[kSortTile], int bit_begin, int bit_end,
                               uint32_t* scratch) {
  int cur = 0;
  const int base = static_cast<int>(threadIdx.x) * kItems;
  for (int bit = bit_begin; bit < bit_end; ++bit) {
    K k[kItems];
    int32_t p[kItems];
    uint32_t zeros = 0;
    for (int i = 0; i < kItems; ++i) {
      k[i] = keys[cur][base + i];
      p[i] = pos[cur][base + i];
      zeros += ((k[i] >> bit) & 1) == 0 ? 1u : 0u;
    }
    uint32_t total_zeros;
    uint32_t zero_rank = block_exclusive_scan(zeros, scratch, total_zeros);
    uint32_t one_rank = static_cast<uint32_t>(base) - zero_rank;
    for (int i = 0; i < kItems; ++i) {
      const uint32_t dst = ((k[i] >> bit) & 1) == 0 ? zero_rank++ : total_zeros + one_rank++;
      keys[cur ^ 1][dst] = k[i];
      pos[cur ^ 1][dst] = p[i];
    }
    __syncthreads();
    cur ^= 1;
  }
  return cur;
}

// Rows of at most one tile: one block per row sorts it completely in shared memory.
template <typename T>
__global__ void sort_tile_kernel(const T* x, T* values, int64_t* indices, int64_t length, bool descending) {
  using K = sort_ops::key_t<T>;
  alignas(16) __shared__ K keys[2][kSortTile];
  alignas(16) __shared__ int32_t pos[2][kSortTile];
  alignas(16) __shared__ uint32_t scratch[32];
  const int64_t row = blockIdx.x;
  const T* in = x + row * length;
  for (int i = threadIdx.x; i < kSortTile; i += blockDim.x) {
    keys[0][i] = i < length ? sort_ops::sort_key(in[i], descending) : ~K(0);  // padding sorts last
    pos[0][i] = i;
  }
  __syncthreads();
  const int cur = block_sort_tile<K>(keys, pos, 0, 8 * static_cast<int>(sizeof(K)), scratch);
  for (int i = threadIdx.x; i < length; i += blockDim.x) {
    indices[row * length + i] = pos[cur][i];
    values[row * length + i] = in[pos[cur][i]];
  }
}

template <typename T>
__global__ void init_keys_kernel(const T* x, sort_ops::key_t<T>* keys, int64_t* indices, int64_t length,
                                 int64_t total, bool descending) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    keys[e] = sort_ops::sort_key(x[e], descending);
    indices[e] = e % length;
  }
}

// Block (row, tile): hist[(row * 256 + digit) * tiles + tile] = how many of the tile's keys have that digit.
template <typename K>
__global__ void histogram_kernel(const K* keys, uint32_t* hist, int64_t length, int64_t tiles, int shift) {
  alignas(16) __shared__ uint32_t counts[kBins];
  const int64_t row = blockIdx.x / tiles, tile = blockIdx.x % tiles;
  counts[threadIdx.x] = 0;
  __syncthreads();
  const int64_t begin = tile * kSortTile, end = begin + kSortTile < length ? begin + kSortTile : length;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    atomicAdd(&counts[(keys[row * length + i] >> shift) & 0xff], 1u);
  }
  __syncthreads();
  hist[(row * kBins + threadIdx.x) * tiles + tile] = counts[threadIdx.x];
}

// Block per row: its 256 * tiles counts, in (digit, tile) order, become exclusive prefix sums: where each
// tile's keys of each digit start in the sorted row.
__global__ void offsets_kernel(uint32_t* hist, int64_t tiles) {
  alignas(16) __shared__ uint32_t scratch[32];
  uint32_t* row_hist = hist + static_cast<int64_t>(blockIdx.x) * kBins * tiles;
  uint32_t carry = 0;
  for (int64_t start = 0; start < kBins * tiles; start += blockDim.x) {
    const int64_t e = start + threadIdx.x;  // kBins * tiles is a multiple of blockDim.x
    uint32_t total;
    const uint32_t before = block_exclusive_scan(row_hist[e], scratch, total);
    row_hist[e] = carry + before;
    carry += total;
  }
}

// Block (row, tile): sorts the tile by the digit, then writes key i of the sorted tile to the row position
// offsets[digit][tile] + (i - where the digit starts in the sorted tile).
template <typename K>
__global__ void scatter_kernel(const K* keys_in, const int64_t* indices_in, K* keys_out, int64_t* indices_out,
                               const uint32_t* offsets, int64_t length, int64_t tiles, int shift) {
  alignas(16) __shared__ K keys[2][kSortTile];
  alignas(16) __shared__ int32_t pos[2][kSortTile];
  alignas(16) __shared__ uint32_t scratch[32];
  alignas(16) __shared__ int32_t digit_start[kBins];
  const int64_t row = blockIdx.x / tiles, tile = blockIdx.x % tiles;
  const int64_t begin = tile * kSortTile;
  const int count = static_cast<int>(length - begin < kSortTile ? length - begin : kSortTile);
  const K* in = keys_in + row * length + begin;
  for (int i = threadIdx.x; i < kSortTile; i += blockDim.x) {
    keys[0][i] = i < count ? in[i] : ~K(0);  // padding: digit 0xff, after every real key of that digit
    pos[0][i] = i;
  }
  __syncthreads();
  const int cur = block_sort_tile<K>(keys, pos, shift, shift + 8, scratch);
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const int digit = static_cast<int>((keys[cur][i] >> shift) & 0xff);
    if (i == 0 || digit != static_cast<int>((keys[cur][i - 1] >> shift) & 0xff)) digit_start[digit] = i;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const K key = keys[cur][i];
    const int digit = static_cast<int>((key >> shift) & 0xff);
    const int64_t dst = row * length + offsets[(row * kBins + digit) * tiles + tile] + (i - digit_start[digit]);
    keys_out[dst] = key;
    indices_out[dst] = indices_in[row * length + begin + pos[cur][i]];
  }
}

template <typename T>
__global__ void gather_values_kernel(const T* x, const int64_t* indices, T* values, int64_t length, int64_t total) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    values[e] = x[e / length * length + indices[e]];
  }
}

// ---- cumsum ----

// inner == 1: block per line, chunks of kThreads * kItems elements, each thread summing kItems consecutive ones.
template <typename T>
__global__ void cumsum_lines_kernel(const T* x, T* y, int64_t length, bool reverse) {
  alignas(16) __shared__ T scratch[32];
  const T* in = x + static_cast<int64_t>(blockIdx.x) * length;
  T* out = y + static_cast<int64_t>(blockIdx.x) * length;
  T carry = T(0);
  for (int64_t start = 0; start < length; start += kThreads * kItems) {
    const int64_t base = start + static_cast<int64_t>(threadIdx.x) * kItems;
    T partial[kItems];
    T local = T(0);
    for (int i = 0; i < kItems; ++i) {
      const int64_t k = base + i;
      local += k < length ? in[reverse ? length - 1 - k : k] : T(0);
      partial[i] = local;
    }
    T total;
    const T before = block_exclusive_scan(local, scratch, total);
    for (int i = 0; i < kItems; ++i) {
      const int64_t k = base + i;
      if (k < length) out[reverse ? length - 1 - k : k] = carry + before + partial[i];
    }
    carry += total;
  }
}

// inner > 1: one thread per (outer, inner) line; neighbouring threads read neighbouring addresses.
template <typename T>
__global__ void cumsum_strided_kernel(const T* x, T* y, int64_t outer, int64_t length, int64_t inner, bool reverse) {
  const int64_t line = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (line >= outer * inner) return;
  const int64_t base = line / inner * length * inner + line % inner;
  T sum = T(0);
  for (int64_t k = 0; k < length; ++k) {
    const int64_t i = base + (reverse ? length - 1 - k : k) * inner;
    sum += x[i];
    y[i] = sum;
  }
}

#define SE_SORT_INSTANTIATE(T)                                                                               \
  template __global__ void sort_tile_kernel<T>(const T*, T*, int64_t*, int64_t, bool);                       \
  template __global__ void init_keys_kernel<T>(const T*, sort_ops::key_t<T>*, int64_t*, int64_t, int64_t,    \
                                               bool);                                                        \
  template __global__ void gather_values_kernel<T>(const T*, const int64_t*, T*, int64_t, int64_t);          \
  template __global__ void cumsum_lines_kernel<T>(const T*, T*, int64_t, bool);                              \
  template __global__ void cumsum_strided_kernel<T>(const T*, T*, int64_t, int64_t, int64_t, bool);
SE_SORT_INSTANTIATE(float)
SE_SORT_INSTANTIATE(double)
SE_SORT_INSTANTIATE(int32_t)
SE_SORT_INSTANTIATE(int64_t)
#undef SE_SORT_INSTANTIATE
#define SE_SORT_KEY_INSTANTIATE(K)                                                                           \
  template __global__ void histogram_kernel<K>(const K*, uint32_t*, int64_t, int64_t, int);                  \
  template __global__ void scatter_kernel<K>(const K*, const int64_t*, K*, int64_t*, const uint32_t*, int64_t, \
                                             int64_t, int);
SE_SORT_KEY_INSTANTIATE(uint32_t)
SE_SORT_KEY_INSTANTIATE(uint64_t)
#undef SE_SORT_KEY_INSTANTIATE

unsigned int grid_for(int64_t total) {
  return static_cast<unsigned int>(std::clamp<int64_t>((total + kThreads - 1) / kThreads, 1, 65536));
}

template <typename T>
void sort_typed(const SortDesc& d, const T* x, T* values, int64_t* indices, unsigned char* workspace,
                Stream stream) {
  using K = sort_ops::key_t<T>;
  SE_CHECK(d.rows < (int64_t{1} << 31), "sort: ", d.rows, " rows exceed the CUDA grid");
  if (d.length <= kSortTile) {
    SE_LAUNCH(sort_tile_kernel<T>, static_cast<unsigned int>(d.rows), kThreads, 0, stream, x, values, indices,
              d.length, d.descending);
    return;
  }
  const SortWorkspace layout = sort_workspace(d);
  K* keys_a = reinterpret_cast<K*>(workspace + layout.keys_a);
  K* keys_b = reinterpret_cast<K*>(workspace + layout.keys_b);
  int64_t* indices_b = reinterpret_cast<int64_t*>(workspace + layout.indices_b);
  uint32_t* hist = reinterpret_cast<uint32_t*>(workspace + layout.histograms);
  const int64_t total = d.rows * d.length, tiles = (d.length + kSortTile - 1) / kSortTile;
  SE_CHECK(d.rows * tiles < (int64_t{1} << 31), "sort: ", d.rows * tiles, " tiles exceed the CUDA grid");
  const auto blocks = static_cast<unsigned int>(d.rows * tiles);
  SE_LAUNCH(init_keys_kernel<T>, grid_for(total), kThreads, 0, stream, x, keys_a, indices, d.length, total,
            d.descending);
  // An even number of passes (4 or 8) ends in keys_a / indices, the caller's buffer.
  int64_t* indices_a = indices;
  for (int shift = 0; shift < static_cast<int>(8 * sizeof(K)); shift += 8) {
    SE_LAUNCH(histogram_kernel<K>, blocks, kThreads, 0, stream, keys_a, hist, d.length, tiles, shift);
    SE_LAUNCH(offsets_kernel, static_cast<unsigned int>(d.rows), kThreads, 0, stream, hist, tiles);
    SE_LAUNCH(scatter_kernel<K>, blocks, kThreads, 0, stream, keys_a, indices_a, keys_b, indices_b, hist, d.length,
              tiles, shift);
    std::swap(keys_a, keys_b);
    std::swap(indices_a, indices_b);
  }
  SE_LAUNCH(gather_values_kernel<T>, grid_for(total), kThreads, 0, stream, x, indices, values, d.length, total);
}

template <typename T>
void cumsum_typed(const CumsumDesc& d, const T* x, T* y, Stream stream) {
  if (d.inner == 1) {
    SE_CHECK(d.outer < (int64_t{1} << 31), "cumsum: ", d.outer, " lines exceed the CUDA grid");
    SE_LAUNCH(cumsum_lines_kernel<T>, static_cast<unsigned int>(d.outer), kThreads, 0, stream, x, y, d.length,
              d.reverse);
  } else {
    SE_LAUNCH(cumsum_strided_kernel<T>, ceil_div(d.outer * d.inner, kThreads), kThreads, 0, stream, x, y, d.outer,
              d.length, d.inner, d.reverse);
  }
}

template <typename F>
void dispatch_sort_types(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::f32: return f(TypeTag<float>{});
    case DType::f64: return f(TypeTag<double>{});
    case DType::i32: return f(TypeTag<int32_t>{});
    case DType::i64: return f(TypeTag<int64_t>{});
    default: SE_THROW(op, ": dtype ", dtype_name(dtype), " is not supported (expected f32, f64, i32 or i64)");
  }
}

}  // namespace

void sort(const SortDesc& desc, const void* x, void* values, int64_t* indices, void* workspace, Stream stream) {
  validate_sort(desc);
  if (desc.rows * desc.length == 0) return;
  SE_CHECK(x != nullptr && values != nullptr && indices != nullptr, "sort: x, values or indices is null");
  SE_CHECK(desc.length <= kSortTile || workspace != nullptr, "sort: rows of ", desc.length,
           " keys need sort_workspace_bytes(desc) of workspace");
  dispatch_sort_types(desc.dtype, "sort", [&](auto tag) {
    using T = typename decltype(tag)::type;
    sort_typed<T>(desc, static_cast<const T*>(x), static_cast<T*>(values), indices,
                  static_cast<unsigned char*>(workspace), stream);
  });
}

void cumsum(const CumsumDesc& desc, const void* x, void* y, Stream stream) {
  validate_cumsum(desc);
  if (desc.outer * desc.length * desc.inner == 0) return;
  SE_CHECK(x != nullptr && y != nullptr, "cumsum: x or y is null");
  dispatch_sort_types(desc.dtype, "cumsum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cumsum_typed<T>(desc, static_cast<const T*>(x), static_cast<T*>(y), stream);
  });
}

}  // namespace se::kernels::cuda
