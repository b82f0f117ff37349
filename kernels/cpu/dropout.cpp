// CPU dropout: the mask of the counter-based RNG (core/philox.h), identical to the CUDA kernel's.
#include "kernels/dropout.h"

#include "core/philox.h"
#include "kernels/convert.h"
#include "kernels/cpu/vector_math.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace se::kernels::cpu {

namespace {
// f64 is scaled in double; the others in float, as in the CUDA kernels.
template <typename T>
using ScaleT = std::conditional_t<std::is_same_v<T, double>, double, float>;

// philox::random_block of the N blocks first_block, first_block + 1, ... as the words of stream positions
// 4 * first_block + k: words[4 * j + i] is word i of block first_block + j. Each round runs over all N
// counters, kept word by word in arrays, before the next: independent lanes that vectorize.
template <int N>
void random_blocks(uint64_t seed, uint64_t first_block, uint32_t (&words)[4 * N]) {
  uint32_t x[N], y[N], z[N], w[N];
  for (int j = 0; j < N; ++j) {
    const uint64_t block = first_block + static_cast<uint64_t>(j);
    x[j] = static_cast<uint32_t>(block), y[j] = static_cast<uint32_t>(block >> 32), z[j] = 0u, w[j] = 0u;
  }
  uint32_t k0 = static_cast<uint32_t>(seed);
  uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
#pragma omp simd
    for (int j = 0; j < N; ++j) philox::philox_round(x[j], y[j], z[j], w[j], k0, k1);
    k0 += philox::kPhiloxKeyStep0;
    k1 += philox::kPhiloxKeyStep1;
  }
  for (int j = 0; j < N; ++j)
    words[4 * j] = x[j], words[4 * j + 1] = y[j], words[4 * j + 2] = z[j], words[4 * j + 3] = w[j];
}

}  // namespace

// Stream position q = offset + i draws word q % 4 of Philox block q / 4 (philox::uniform_at), so one
// block gives the uniforms of four consecutive elements. Batches of kBatchBlocks consecutive blocks are
// generated together (random_blocks vectorizes across them); only the first and last batch can hold
// positions outside [offset, offset + count).
void dropout_forward(const DropoutDesc& desc, const void* x, void* y, uint8_t* mask, Stream) {
  constexpr int kBatchBlocks = 16;
  if (desc.count == 0) return;
  dispatch_floating(desc.dtype, "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = static_cast<const T*>(x);
    T* out = static_cast<T*>(y);
    using S = ScaleT<T>;
    const float p = desc.p;
    const S scale = S(1) / (S(1) - p);
    const uint64_t begin = desc.offset, end = desc.offset + static_cast<uint64_t>(desc.count);
    const uint64_t first_block = begin / 4;
    const int64_t batches = static_cast<int64_t>(((end - 1) / 4 - first_block) / kBatchBlocks + 1);
#pragma omp parallel for if (desc.count > (1 << 15))
    for (int64_t batch = 0; batch < batches; ++batch) {
      const uint64_t batch_block = first_block + static_cast<uint64_t>(batch) * kBatchBlocks;
      uint32_t words[4 * kBatchBlocks];  // word k: stream position 4 * batch_block + k
      random_blocks<kBatchBlocks>(desc.seed, batch_block, words);
      // Words [k0, k1) of the batch are elements [i0, i0 + k1 - k0).
      const int k0 = static_cast<int>(std::max(4 * batch_block, begin) - 4 * batch_block);
      const int k1 = static_cast<int>(std::min(4 * (batch_block + kBatchBlocks), end) - 4 * batch_block);
      const int64_t i0 = static_cast<int64_t>(4 * batch_block + k0 - begin);
      for (int k = k0; k < k1; ++k) {
        const bool keep = philox::uniform01(words[k]) >= p;
        mask[i0 + k - k0] = keep ? 1 : 0;
        out[i0 + k - k0] = convert<T>(select(keep, convert<S>(in[i0 + k - k0]) * scale, S(0)));
      }
    }
  });
}

void dropout_backward(const DropoutDesc& desc, const void* grad_y, const uint8_t* mask, void* grad_x, Stream) {
  dispatch_floating(desc.dtype, "dropout_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* gy = static_cast<const T*>(grad_y);
    T* gx = static_cast<T*>(grad_x);
    using S = ScaleT<T>;
    const S scale = S(1) / (S(1) - desc.p);
#pragma omp parallel for if (desc.count > (1 << 15))
    for (int64_t i = 0; i < desc.count; ++i) gx[i] = convert<T>(select(mask[i] != 0, convert<S>(gy[i]) * scale, S(0)));
  });
}

}  // namespace se::kernels::cpu
