// The CPU GEMM micro-kernels: AVX-512 (12, 8 or 9 rows x 2 zmm), AVX2 + FMA (6 x 2 ymm), f32 and f64, each
// reading packed panels or either operand in place, and portable C++ (f32 4 x 16, f64 4 x 8, packed only);
// and the dot-product kernels of unpacked A @ B^T (AVX-512 8 x 3, AVX2 4 x 3). The vector kernels carry
// __attribute__((target)) so this file builds without -march flags and the driver picks one at run time with
// __builtin_cpu_supports.
#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#include "kernels/cpu/gemm_microkernels.h"

namespace se::kernels::cpu::detail {
namespace {

// Portable kernel: the accumulator array is small enough for the compiler to keep in vector registers.
template <typename Acc, int MR, int NR>
void microkernel_generic(int64_t kc, const Acc* __restrict ap, const Acc* __restrict bp, Acc* c, int64_t ldc,
                         Acc alpha, Acc beta, int mr, int nr) {
  Acc acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int i = 0; i < MR; ++i) {
      for (int j = 0; j < NR; ++j) acc[i][j] += ap[i] * bp[j];
    }
    ap += MR;
    bp += NR;
  }
  store_tile(&acc[0][0], NR, c, ldc, alpha, beta, mr, nr);
}

// Vector operations of one ISA and element type, so that one kernel body serves f32 and f64.
#define SE_AVX2 __attribute__((target("avx2,fma"))) static inline
#define SE_AVX512 __attribute__((target("avx512f"))) static inline

template <typename Acc> struct Avx2;
template <> struct Avx2<float> {
  using Vec = __m256;
  static constexpr int kLanes = 8;
  SE_AVX2 Vec zero() { return _mm256_setzero_ps(); }
  SE_AVX2 Vec set1(float x) { return _mm256_set1_ps(x); }
  SE_AVX2 Vec load(const float* p) { return _mm256_load_ps(p); }
  SE_AVX2 Vec loadu(const float* p) { return _mm256_loadu_ps(p); }
  SE_AVX2 void store(float* p, Vec v) { _mm256_store_ps(p, v); }
  SE_AVX2 void storeu(float* p, Vec v) { _mm256_storeu_ps(p, v); }
  SE_AVX2 Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  SE_AVX2 Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
  SE_AVX2 Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
  // The sum of the lanes, in a fixed tree order.
  SE_AVX2 float hsum(Vec v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
  }
  // The first n (< kLanes) elements at p, zeros after; nothing past them is read.
  SE_AVX2 Vec loadu_first(const float* p, int n) {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_ps(p, mask);
  }
};
template <> struct Avx2<double> {
  using Vec = __m256d;
  static constexpr int kLanes = 4;
  SE_AVX2 Vec zero() { return _mm256_setzero_pd(); }
  SE_AVX2 Vec set1(double x) { return _mm256_set1_pd(x); }
  SE_AVX2 Vec load(const double* p) { return _mm256_load_pd(p); }
  SE_AVX2 Vec loadu(const double* p) { return _mm256_loadu_pd(p); }
  SE_AVX2 void store(double* p, Vec v) { _mm256_store_pd(p, v); }
  SE_AVX2 void storeu(double* p, Vec v) { _mm256_storeu_pd(p, v); }
  SE_AVX2 Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_pd(a, b, c); }
  SE_AVX2 Vec mul(Vec a, Vec b) { return _mm256_mul_pd(a, b); }
  SE_AVX2 Vec add(Vec a, Vec b) { return _mm256_add_pd(a, b); }
  SE_AVX2 double hsum(Vec v) {
    const __m128d x = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(x, _mm_unpackhi_pd(x, x)));
  }
  SE_AVX2 Vec loadu_first(const double* p, int n) {
    const __m256i mask = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
    return _mm256_maskload_pd(p, mask);
  }
};
// GCC 12's AVX-512 headers build the 256-bit extracts and 128-bit-lane shuffles on an "undefined"
// vector, which -Wmaybe-uninitialized flags wherever they inline (the hsum below).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
template <typename Acc> struct Avx512;
template <> struct Avx512<float> {
  using Vec = __m512;
  static constexpr int kLanes = 16;
  SE_AVX512 Vec zero() { return _mm512_setzero_ps(); }
  SE_AVX512 Vec set1(float x) { return _mm512_set1_ps(x); }
  SE_AVX512 Vec load(const float* p) { return _mm512_load_ps(p); }
  SE_AVX512 Vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  SE_AVX512 void store(float* p, Vec v) { _mm512_store_ps(p, v); }
  SE_AVX512 void storeu(float* p, Vec v) { _mm512_storeu_ps(p, v); }
  SE_AVX512 Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  SE_AVX512 Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
  SE_AVX512 Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
  SE_AVX512 float hsum(Vec v) {
    const __m512 hi = _mm512_shuffle_f32x4(v, v, 0x4E);  // the 256-bit halves swapped
    return Avx2<float>::hsum(_mm512_castps512_ps256(_mm512_add_ps(v, hi)));
  }
  SE_AVX512 Vec loadu_first(const float* p, int n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
};
template <> struct Avx512<double> {
  using Vec = __m512d;
  static constexpr int kLanes = 8;
  SE_AVX512 Vec zero() { return _mm512_setzero_pd(); }
  SE_AVX512 Vec set1(double x) { return _mm512_set1_pd(x); }
  SE_AVX512 Vec load(const double* p) { return _mm512_load_pd(p); }
  SE_AVX512 Vec loadu(const double* p) { return _mm512_loadu_pd(p); }
  SE_AVX512 void store(double* p, Vec v) { _mm512_store_pd(p, v); }
  SE_AVX512 void storeu(double* p, Vec v) { _mm512_storeu_pd(p, v); }
  SE_AVX512 Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_pd(a, b, c); }
  SE_AVX512 Vec mul(Vec a, Vec b) { return _mm512_mul_pd(a, b); }
  SE_AVX512 Vec add(Vec a, Vec b) { return _mm512_add_pd(a, b); }
  SE_AVX512 double hsum(Vec v) {
    const __m512d hi = _mm512_shuffle_f64x2(v, v, 0x4E);
    return Avx2<double>::hsum(_mm512_castpd512_pd256(_mm512_add_pd(v, hi)));
  }
  SE_AVX512 Vec loadu_first(const double* p, int n) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
  }
};
#pragma GCC diagnostic pop

// The vector kernel: MR rows x 2 vectors of `Ops` (one of the structs above), either operand from a packed
// panel or read where it lies. B: op(B)(p, j) = b[p * b_step + j] (a packed panel: b_step = NR; a row-major B
// in place: its ldb). A, kRowMajorA: op(A)(i, p) = a[i * a_step + p], MR whole rows of a row-major A read
// along p; else op(A)(i, p) = a[p * a_step + i], a packed panel (a_step = MR) or MR adjacent values of each
// stored row of a transposed A. Products with few rows or columns read an operand in place (gemm.cpp):
// packing is a pass over all of it, and when each of its values serves only m (or n) FMAs, that pass costs
// about as much as the FMAs (SegFormer's Linear layers: 32768 tokens of 32 to 256 features, and their weight
// gradients). GCC inlines intrinsics only into functions compiled for the same ISA, so the one body is
// stamped out per ISA by this macro.
#define SE_DEFINE_IN_PLACE_MICROKERNEL(name, isa, OpsTemplate, MR, kRowMajorA)                                         \
  template <typename Acc>                                                                                              \
  __attribute__((target(isa))) void name(int64_t kc, const Acc* __restrict a, int64_t a_step, const Acc* __restrict b, \
                                         int64_t b_step, Acc* c, int64_t ldc, Acc alpha, Acc beta, int mr, int nr) {   \
    using Ops = OpsTemplate<Acc>;                                                                                      \
    using Vec = typename Ops::Vec;                                                                                     \
    constexpr int L = Ops::kLanes;                                                                                     \
    constexpr int NR = 2 * L;                                                                                          \
    /* Handled first so that GCC keeps acc in registers: with a zero-trip loop possible it also keeps a                \
       copy of acc on the stack, zeroed on entry and stored after the loop, which costs a short-K product              \
       (K = 27 for an RGB 3x3 conv) about 15 % of its time. */                                                         \
    if (kc <= 0) {                                                                                                     \
      alignas(64) Acc zeros[MR * NR] = {};                                                                             \
      store_tile(zeros, NR, c, ldc, alpha, beta, mr, nr);                                                              \
      return;                                                                                                          \
    }                                                                                                                  \
    Vec acc[MR][2];                                                                                                    \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = Ops::zero();                         \
    _Pragma("GCC unroll 2") for (int64_t p = 0; p < kc; ++p) {                                                         \
      const Vec b0 = Ops::loadu(b);                                                                                    \
      const Vec b1 = Ops::loadu(b + L);                                                                                \
      _Pragma("GCC unroll 16") for (int i = 0; i < MR; ++i) {                                                          \
        const Vec av = Ops::set1(kRowMajorA ? a[i * a_step + p] : a[p * a_step + i]);                                  \
        acc[i][0] = Ops::fmadd(av, b0, acc[i][0]);                                                                     \
        acc[i][1] = Ops::fmadd(av, b1, acc[i][1]);                                                                     \
      }                                                                                                                \
      b += b_step;                                                                                                     \
      /* Rows of A in place come from memory as MR short streams that the hardware prefetchers pick up                 \
         late: the next tile's MR rows (MR * kc / kLineValues lines) are requested, spread over this                   \
         tile's steps. That doubled a 32768 x 32 x 128 product (100 -> 190 GFLOP/s). A prefetch past                   \
         the end of A is harmless. */                                                                                  \
      if constexpr (kRowMajorA) {                                                                                      \
        constexpr int64_t kLineValues = 64 / sizeof(Acc);                                                              \
        for (int64_t line = p * MR / kLineValues; line < (p + 1) * MR / kLineValues; ++line) {                         \
          _mm_prefetch(reinterpret_cast<const char*>(a + (MR + line % MR) * a_step + line / MR * kLineValues),         \
                       _MM_HINT_T0);                                                                                   \
        }                                                                                                              \
      }                                                                                                                \
    }                                                                                                                  \
    const Vec va = Ops::set1(alpha);                                                                                   \
    if (mr == MR && nr == NR) {                                                                                        \
      const Vec vb = Ops::set1(beta);                                                                                  \
      _Pragma("GCC unroll 16") for (int i = 0; i < MR; ++i) {                                                          \
        Acc* row = c + i * ldc;                                                                                        \
        Vec r0 = Ops::mul(va, acc[i][0]);                                                                              \
        Vec r1 = Ops::mul(va, acc[i][1]);                                                                              \
        if (beta != Acc(0)) {                                                                                          \
          r0 = Ops::fmadd(vb, Ops::loadu(row), r0);                                                                    \
          r1 = Ops::fmadd(vb, Ops::loadu(row + L), r1);                                                                \
        }                                                                                                              \
        Ops::storeu(row, r0);                                                                                          \
        Ops::storeu(row + L, r1);                                                                                      \
      }                                                                                                                \
      return;                                                                                                          \
    }                                                                                                                  \
    alignas(64) Acc tile[MR * NR];                                                                                     \
    for (int i = 0; i < MR; ++i) {                                                                                     \
      Ops::store(tile + i * NR, acc[i][0]);                                                                            \
      Ops::store(tile + i * NR + L, acc[i][1]);                                                                        \
    }                                                                                                                  \
    store_tile(tile, NR, c, ldc, alpha, beta, mr, nr);                                                                 \
  }

// AVX2 + FMA: 6 rows x 2 ymm = 12 accumulators, 2 B vectors and 1 broadcast: 15 of 16 ymm registers.
constexpr int kAvx2Mr = 6;
SE_DEFINE_IN_PLACE_MICROKERNEL(rows_of_a_avx2, "avx2,fma", Avx2, kAvx2Mr, true)
SE_DEFINE_IN_PLACE_MICROKERNEL(columns_of_a_avx2, "avx2,fma", Avx2, kAvx2Mr, false)

// AVX-512: 12 rows x 2 zmm = 24 accumulators, 2 B vectors and broadcasts: 27 of 32 zmm registers.
// Zen 4 runs a 512-bit FMA as two 256-bit halves, so the peak equals AVX2's, but half the
// instructions leave more room for the loads.
constexpr int kAvx512Mr = 12;
SE_DEFINE_IN_PLACE_MICROKERNEL(rows_of_a_avx512, "avx512f", Avx512, kAvx512Mr, true)
SE_DEFINE_IN_PLACE_MICROKERNEL(columns_of_a_avx512, "avx512f", Avx512, kAvx512Mr, false)
// 8 rows x 2 zmm, for products whose row count is a multiple of 8 but not of 12 (16, 32, 64, 128 output
// channels ...): 12-row panels would leave up to a third of their rows as zero padding.
constexpr int kAvx512ShortMr = 8;
SE_DEFINE_IN_PLACE_MICROKERNEL(rows_of_a_avx512_short, "avx512f", Avx512, kAvx512ShortMr, true)
SE_DEFINE_IN_PLACE_MICROKERNEL(columns_of_a_avx512_short, "avx512f", Avx512, kAvx512ShortMr, false)
// 9 rows x 2 zmm, for row counts that are multiples of 9 but not of 8 or 12: a 3x3 conv's K = Cg * 9, the
// rows of its backward-data GEMM (27 for an RGB input, where 8- and 12-row panels pad 5 and 9 rows).
constexpr int kAvx512NineMr = 9;
SE_DEFINE_IN_PLACE_MICROKERNEL(rows_of_a_avx512_nine, "avx512f", Avx512, kAvx512NineMr, true)
SE_DEFINE_IN_PLACE_MICROKERNEL(columns_of_a_avx512_nine, "avx512f", Avx512, kAvx512NineMr, false)

// The packed micro-kernel of a vector ISA: its columns-of-A kernel over packed panels of A and B.
template <typename Acc, InPlaceKernel<Acc> kColumnsOfA, int MR, int NR>
void packed_panels(int64_t kc, const Acc* ap, const Acc* bp, Acc* c, int64_t ldc, Acc alpha, Acc beta, int mr, int nr) {
  kColumnsOfA(kc, ap, MR, bp, NR, c, ldc, alpha, beta, mr, nr);
}

// The kernels of one vector tile with its cache blocks.
template <typename Acc, InPlaceKernel<Acc> kRowsOfA, InPlaceKernel<Acc> kColumnsOfA, int MR, int NR>
GemmKernel<Acc> vector_kernel(int64_t mc, int64_t kc, int64_t nc) {
  return {packed_panels<Acc, kColumnsOfA, MR, NR>, MR, NR, mc, kc, nc, kRowsOfA, kColumnsOfA};
}

// The dot-product kernel: DW rows of w against DN rows of v, each pair's products summed lane-wise
// over kc (DW * DN accumulators; the DN vectors of v are loaded once per step and each of w streams
// past them). A short final step loads only the kc % L elements left.
#define SE_DEFINE_DOT_KERNEL(name, isa, OpsTemplate, DW, DN)                                                 \
  template <typename Acc>                                                                                    \
  __attribute__((target(isa))) void name(int64_t kc, const Acc* w, int64_t ldw, int rw, const Acc* v,        \
                                         int64_t ldv, int rv, bool accumulate, Acc* lanes,                   \
                                         int64_t lanes_ld) {                                                 \
    using Ops = OpsTemplate<Acc>;                                                                            \
    using Vec = typename Ops::Vec;                                                                           \
    constexpr int L = Ops::kLanes;                                                                           \
    const Acc* w_row[DW];                                                                                    \
    const Acc* v_row[DN];                                                                                    \
    _Pragma("GCC unroll 16") for (int i = 0; i < DW; ++i) w_row[i] = w + std::min(i, rw - 1) * ldw;          \
    _Pragma("GCC unroll 16") for (int j = 0; j < DN; ++j) v_row[j] = v + std::min(j, rv - 1) * ldv;          \
    Vec acc[DW][DN];                                                                                         \
    _Pragma("GCC unroll 16") for (int i = 0; i < DW; ++i) {                                                  \
      _Pragma("GCC unroll 16") for (int j = 0; j < DN; ++j) acc[i][j] = Ops::zero();                         \
    }                                                                                                        \
    int64_t p = 0;                                                                                           \
    for (; p + L <= kc; p += L) {                                                                            \
      Vec vv[DN];                                                                                            \
      _Pragma("GCC unroll 16") for (int j = 0; j < DN; ++j) vv[j] = Ops::loadu(v_row[j] + p);                \
      _Pragma("GCC unroll 16") for (int i = 0; i < DW; ++i) {                                                \
        Vec a = Ops::loadu(w_row[i] + p);                                                                    \
        /* In a register: GCC would otherwise fold the load into each of the DN FMAs (DN loads). */          \
        asm("" : "+v"(a));                                                                                   \
        _Pragma("GCC unroll 16") for (int j = 0; j < DN; ++j) acc[i][j] = Ops::fmadd(a, vv[j], acc[i][j]);   \
      }                                                                                                      \
    }                                                                                                        \
    if (p < kc) { /* the last kc % L elements, zeros after them */                                           \
      const int left = static_cast<int>(kc - p);                                                             \
      Vec vv[DN];                                                                                            \
      _Pragma("GCC unroll 16") for (int j = 0; j < DN; ++j) vv[j] = Ops::loadu_first(v_row[j] + p, left);    \
      _Pragma("GCC unroll 16") for (int i = 0; i < DW; ++i) {                                                \
        const Vec a = Ops::loadu_first(w_row[i] + p, left);                                                  \
        _Pragma("GCC unroll 16") for (int j = 0; j < DN; ++j) acc[i][j] = Ops::fmadd(a, vv[j], acc[i][j]);   \
      }                                                                                                      \
    }                                                                                                        \
    _Pragma("GCC unroll 16") for (int i = 0; i < DW; ++i) {                                                  \
      _Pragma("GCC unroll 16") for (int j = 0; j < DN; ++j) {                                                \
        if (i < rw && j < rv) {                                                                              \
          Acc* t = lanes + (i * lanes_ld + j) * L;                                                           \
          Ops::store(t, accumulate ? Ops::add(Ops::load(t), acc[i][j]) : acc[i][j]);                         \
        }                                                                                                    \
      }                                                                                                      \
    }                                                                                                        \
  }

// AVX-512: 8 x 3 = 24 accumulators, 3 vectors of v and one of w: 28 of 32 zmm registers.
SE_DEFINE_DOT_KERNEL(dot_kernel_avx512, "avx512f", Avx512, 8, 3)
// AVX2: 4 x 3 = 12 accumulators, 3 + 1 loaded vectors: all 16 ymm registers.
SE_DEFINE_DOT_KERNEL(dot_kernel_avx2, "avx2,fma", Avx2, 4, 3)

// sums[o] = the sum of lanes[o * L : (o + 1) * L] for o < count, in vector registers (a scalar loop's
// chain of L dependent adds per output cost a 27 x 64 x 2048 product a third of its time).
#define SE_DEFINE_SUM_LANES(name, isa, OpsTemplate)                                                           \
  template <typename Acc>                                                                                    \
  __attribute__((target(isa))) void name(const Acc* lanes, int64_t count, Acc* sums) {                       \
    using Ops = OpsTemplate<Acc>;                                                                            \
    for (int64_t o = 0; o < count; ++o) sums[o] = Ops::hsum(Ops::load(lanes + o * Ops::kLanes));             \
  }

SE_DEFINE_SUM_LANES(sum_lanes_avx512, "avx512f", Avx512)
SE_DEFINE_SUM_LANES(sum_lanes_avx2, "avx2,fma", Avx2)

#undef SE_DEFINE_DOT_KERNEL
#undef SE_DEFINE_SUM_LANES

// Rows m takes when rounded up to panels of mr.
int64_t padded_rows(int64_t m, int mr) {
  return (m + mr - 1) / mr * mr;
}

#undef SE_DEFINE_IN_PLACE_MICROKERNEL
#undef SE_AVX2
#undef SE_AVX512

}  // namespace

__attribute__((target("avx2"))) void transpose_8_rows_avx2(const float* first, int64_t row_stride, int64_t kb,
                                                           float* out, int64_t ld_out) {
  int64_t p = 0;
  for (; p + 8 <= kb; p += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(first + i * row_stride + p);
    // Pairs of rows interleaved, then quadruples, then the 128-bit halves swapped into place.
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    float* d = out + p * ld_out;
    _mm256_storeu_ps(d + 0 * ld_out, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d + 1 * ld_out, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d + 2 * ld_out, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d + 3 * ld_out, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d + 4 * ld_out, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d + 5 * ld_out, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d + 6 * ld_out, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d + 7 * ld_out, _mm256_permute2f128_ps(u3, u7, 0x31));
  }
  for (; p < kb; ++p) {
    for (int i = 0; i < 8; ++i) out[p * ld_out + i] = first[i * row_stride + p];
  }
}

// The AVX-512 row tile that pads m the least (ties to the earlier of 12, 8, 9): 12, 8 or 9.
int avx512_rows(int64_t m) {
  int best = kAvx512Mr;
  for (int mr : {kAvx512ShortMr, kAvx512NineMr}) {
    if (padded_rows(m, mr) < padded_rows(m, best)) best = mr;
  }
  return best;
}

// The kernel of an ISA and element type: B panels of two vectors (NR = 32 f32 or 16 f64 lanes with AVX-512,
// 16 or 8 with AVX2). f64 panels take twice the bytes: half the kc keeps the same L1/L2 footprint.
template <typename Acc>
GemmKernel<Acc> kernel_of(GemmIsa isa, int64_t m) {
  constexpr bool kF32 = std::is_same_v<Acc, float>;
  constexpr int kZmmPair = 2 * 64 / sizeof(Acc), kYmmPair = 2 * 32 / sizeof(Acc);
  constexpr int64_t kc = kF32 ? 256 : 128;
  switch (isa) {
    case GemmIsa::avx512:
      switch (avx512_rows(m)) {
        case kAvx512ShortMr:
          return vector_kernel<Acc, rows_of_a_avx512_short, columns_of_a_avx512_short, kAvx512ShortMr, kZmmPair>(
              192, kc, 4096);
        case kAvx512NineMr:
          return vector_kernel<Acc, rows_of_a_avx512_nine, columns_of_a_avx512_nine, kAvx512NineMr, kZmmPair>(189, kc,
                                                                                                              4096);
        default: return vector_kernel<Acc, rows_of_a_avx512, columns_of_a_avx512, kAvx512Mr, kZmmPair>(192, kc, 4096);
      }
    case GemmIsa::avx2: return vector_kernel<Acc, rows_of_a_avx2, columns_of_a_avx2, kAvx2Mr, kYmmPair>(192, kc, 4096);
    case GemmIsa::generic:
      if constexpr (kF32) {
        return {microkernel_generic<float, 4, 16>, 4, 16, 128, 256, 4096};
      } else {
        return {microkernel_generic<double, 4, 8>, 4, 8, 96, 128, 2048};
      }
  }
  SE_THROW("gemm: unknown micro-kernel ISA ", static_cast<int>(isa));
}

GemmKernel<float> f32_kernel(GemmIsa isa, int64_t m) {
  return kernel_of<float>(isa, m);
}

// kc keeps the DW rows of w of one block (plus DN rows of v) within a 32 KB L1; f64 takes half.
DotKernel<float> f32_dot_kernel(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::avx512: return {dot_kernel_avx512<float>, sum_lanes_avx512<float>, 8, 3, 16, 768};
    case GemmIsa::avx2: return {dot_kernel_avx2<float>, sum_lanes_avx2<float>, 4, 3, 8, 1024};
    case GemmIsa::generic: return {};
  }
  SE_THROW("gemm: unknown micro-kernel ISA ", static_cast<int>(isa));
}

DotKernel<double> f64_dot_kernel(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::avx512: return {dot_kernel_avx512<double>, sum_lanes_avx512<double>, 8, 3, 8, 384};
    case GemmIsa::avx2: return {dot_kernel_avx2<double>, sum_lanes_avx2<double>, 4, 3, 4, 512};
    case GemmIsa::generic: return {};
  }
  SE_THROW("gemm: unknown micro-kernel ISA ", static_cast<int>(isa));
}

GemmKernel<double> f64_kernel(GemmIsa isa, int64_t m) {
  return kernel_of<double>(isa, m);
}

}  // namespace se::kernels::cpu::detail
