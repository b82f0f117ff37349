// CPU dropout: the mask of the counter-based RNG (core/philox.h), identical to the CUDA kernel's.
#include "kernels/dropout.h"

#include "core/philox.h"
#include "kernels/convert.h"
#include "kernels/cpu/vector_math.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

#if defined(__x86_64__)
#define SE_AVX512 __attribute__((target("avx512f")))
// GCC 12's unmasked AVX-512 integer intrinsics pass _mm512_undefined_epi32() as their merge source,
// which -Wuninitialized reports as a read of an uninitialized value.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"

// (lo, hi) = the 32-bit halves of a * x in each of 16 lanes: the even lanes' 64-bit products, and the
// odd lanes' (shifted down to even), recombined.
SE_AVX512 inline void mulhilo16(__m512i a, __m512i x, __m512i& lo, __m512i& hi) {
  const __m512i even = _mm512_mul_epu32(a, x);
  const __m512i odd = _mm512_mul_epu32(a, _mm512_srli_epi64(x, 32));
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

// philox::random_block of the 16 blocks first_block .. first_block + 15, lane j holding block
// first_block + j; out[e] then holds the words of stream positions 4 * first_block + 16 e .. + 15 in order
// (word i of block j is position 4 j + i): a 4 x 4 transpose of the words, then of 128-bit lanes.
SE_AVX512 inline void random_blocks16(uint64_t seed, uint64_t first_block, __m512i (&out)[4]) {
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i low = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first_block)));
  __m512i x = _mm512_add_epi32(low, iota);
  // The high word, plus 1 in the lanes whose low word wrapped past 2^32.
  __m512i y = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first_block >> 32)));
  y = _mm512_mask_add_epi32(y, _mm512_cmplt_epu32_mask(x, low), y, _mm512_set1_epi32(1));
  __m512i z = _mm512_setzero_si512(), w = _mm512_setzero_si512();
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {  // philox::philox_round
    __m512i lo0, hi0, lo1, hi1;
    mulhilo16(m0, x, lo0, hi0);
    mulhilo16(m1, z, lo1, hi1);
    x = _mm512_xor_si512(_mm512_xor_si512(hi1, y), _mm512_set1_epi32(static_cast<int>(k0)));
    y = lo1;
    z = _mm512_xor_si512(_mm512_xor_si512(hi0, w), _mm512_set1_epi32(static_cast<int>(k1)));
    w = lo0;
    k0 += philox::kPhiloxKeyStep0;
    k1 += philox::kPhiloxKeyStep1;
  }
  // Per 128-bit lane: u_k holds blocks k, k + 4, k + 8, k + 12, each as its 4 words.
  const __m512i t0 = _mm512_unpacklo_epi32(x, y), t1 = _mm512_unpackhi_epi32(x, y);
  const __m512i t2 = _mm512_unpacklo_epi32(z, w), t3 = _mm512_unpackhi_epi32(z, w);
  const __m512i u0 = _mm512_unpacklo_epi64(t0, t2), u1 = _mm512_unpackhi_epi64(t0, t2);
  const __m512i u2 = _mm512_unpacklo_epi64(t1, t3), u3 = _mm512_unpackhi_epi64(t1, t3);
  const __m512i v0 = _mm512_shuffle_i32x4(u0, u1, 0x44), v1 = _mm512_shuffle_i32x4(u2, u3, 0x44);
  const __m512i v2 = _mm512_shuffle_i32x4(u0, u1, 0xEE), v3 = _mm512_shuffle_i32x4(u2, u3, 0xEE);
  out[0] = _mm512_shuffle_i32x4(v0, v1, 0x88);  // blocks 0-3
  out[1] = _mm512_shuffle_i32x4(v0, v1, 0xDD);  // blocks 4-7
  out[2] = _mm512_shuffle_i32x4(v2, v3, 0x88);  // blocks 8-11
  out[3] = _mm512_shuffle_i32x4(v2, v3, 0xDD);  // blocks 12-15
}

// The f32 forward of 64 elements, stream positions 4 * first_block .. + 63: philox::uniform01 (the top 24
// bits, exactly converted and scaled by 2^-24), kept where >= p, scaled by `scale` or +0.
SE_AVX512 void dropout_batch_f32_avx512(uint64_t seed, uint64_t first_block, float p, float scale, const float* in,
                                        float* out, uint8_t* mask) {
  __m512i words[4];
  random_blocks16(seed, first_block, words);
  const __m512 threshold = _mm512_set1_ps(p), to_unit = _mm512_set1_ps(1.0f / 16777216.0f);
  for (int e = 0; e < 4; ++e) {
    const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(words[e], 8)), to_unit);
    const __mmask16 keep = _mm512_cmp_ps_mask(u, threshold, _CMP_GE_OQ);
    _mm512_storeu_ps(out + 16 * e, _mm512_maskz_mul_ps(keep, _mm512_loadu_ps(in + 16 * e), _mm512_set1_ps(scale)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(mask + 16 * e), _mm512_cvtepi32_epi8(_mm512_maskz_set1_epi32(keep, 1)));
  }
}
#pragma GCC diagnostic pop
#undef SE_AVX512
#endif

}  // namespace

// Stream position q = offset + i draws word q % 4 of Philox block q / 4 (philox::uniform_at), so one
// block gives the uniforms of four consecutive elements. Batches of kBatchBlocks consecutive blocks are
// generated together (random_blocks vectorizes across them; in f32 on AVX-512, 16 blocks in the lanes of
// one vector per word); only the first and last batch can hold positions outside [offset, offset + count).
void dropout_forward(const DropoutDesc& desc, const void* x, void* y, uint8_t* mask, Stream) {
  constexpr int kBatchBlocks = 16;
  if (desc.count == 0) return;
#if defined(__x86_64__)
  static const bool avx512 = __builtin_cpu_supports("avx512f");
#else
  constexpr bool avx512 = false;
#endif
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
      // Words [k0, k1) of the batch are elements [i0, i0 + k1 - k0).
      const int k0 = static_cast<int>(std::max(4 * batch_block, begin) - 4 * batch_block);
      const int k1 = static_cast<int>(std::min(4 * (batch_block + kBatchBlocks), end) - 4 * batch_block);
      const int64_t i0 = static_cast<int64_t>(4 * batch_block + k0 - begin);
#if defined(__x86_64__)
      if constexpr (std::is_same_v<T, float>) {
        if (avx512 && k0 == 0 && k1 == 4 * kBatchBlocks) {
          dropout_batch_f32_avx512(desc.seed, batch_block, p, scale, in + i0, out + i0, mask + i0);
          continue;
        }
      }
#endif
      uint32_t words[4 * kBatchBlocks];  // word k: stream position 4 * batch_block + k
      random_blocks<kBatchBlocks>(desc.seed, batch_block, words);
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
