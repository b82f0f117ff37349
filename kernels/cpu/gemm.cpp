// CPU GEMM, GotoBLAS/BLIS style: for each (kc, nc) block of op(B), packed once into a buffer shared by
// the threads, each thread packs (mc, kc) blocks of op(A) for its rows and runs the register-blocked
// micro-kernel over them. Packing absorbs transposes, strides and the f16/bf16 -> f32 conversion, so
// the micro-kernels see one layout; f32 and f64 products with few rows or columns instead read the
// operand that packing would copy for little reuse where it lies. f16/bf16 results accumulate in an f32
// scratch and round once.
// f32/f64 A @ B^T with few outputs and a long k skips packing for a dot-product kernel (gemm_dot).
#include <omp.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <type_traits>

#include "kernels/cpu/gemm_microkernels.h"
#include "kernels/cpu/gemm_on_thread.h"
#include "kernels/cpu/gemm_sources.h"
#include "kernels/gemm.h"

namespace se::kernels::cpu {
namespace {

using detail::GemmKernel;

GemmIsa best_isa() {
  if (gemm_isa_supported(GemmIsa::avx512)) return GemmIsa::avx512;
  if (gemm_isa_supported(GemmIsa::avx2)) return GemmIsa::avx2;
  return GemmIsa::generic;
}

std::atomic<GemmIsa>& current_isa() {
  static std::atomic<GemmIsa> isa{best_isa()};
  return isa;
}

// A 64-byte aligned buffer that grows and is kept per thread: packing buffers are reused across calls.
class ScratchBuffer {
 public:
  template <typename T>
  T* get(size_t count) {
    const size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
    if (bytes > bytes_) {
      data_.reset(static_cast<std::byte*>(std::aligned_alloc(64, bytes)));
      SE_CHECK(data_ != nullptr, "gemm: out of memory allocating ", bytes, " bytes of scratch");
      bytes_ = bytes;
    }
    return reinterpret_cast<T*>(data_.get());
  }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> data_;
  size_t bytes_ = 0;
};

thread_local ScratchBuffer t_pack_a, t_pack_b, t_accum, t_source_rows;

template <typename Acc, typename T>
inline Acc to_acc(T x) {
  if constexpr (std::is_same_v<T, Acc>) {
    return x;
  } else {
    return static_cast<Acc>(static_cast<float>(x));
  }
}

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

// One batch item with the accumulation type's C: c = alpha * op(a) @ op(b) + beta * c.
template <typename T, typename Acc>
struct Problem {
  int64_t m, n, k;
  const T* a;  // (m, k) row-major, or (k, m) when trans_a
  int64_t lda;
  bool trans_a;
  const T* b;  // (k, n) row-major, or (n, k) when trans_b
  int64_t ldb;
  bool trans_b;
  Acc* c;  // (m, n) row-major
  int64_t ldc;
  Acc alpha, beta;
  // Operands given on demand in place of a or b (T is Acc then): op(B) packed, op(A) = S, op(B) = S^T.
  const GemmBPacker<Acc>* b_packer = nullptr;
  const GemmRowSource<Acc>* a_rows = nullptr;
  const GemmRowSource<Acc>* b_rows = nullptr;
};

// out[p * ld_out + r] = rows[r][p] for r < count, p < kb, where row r starts at first + r * row_stride:
// the transposing half of packing (an A panel of a non-transposed A, a B panel of a transposed B).
// Written element by element, each store lands ld_out elements after the last; f32 and f64 instead go
// through 8x8 (AVX2) or 4x4 and 2x2 (SSE2) register transposes, which turn a block's scattered stores
// into a few vector ones.
template <typename T, typename Acc>
void interleave_rows(const T* first, int64_t row_stride, int count, int64_t kb, Acc* out, int ld_out) {
  int r = 0;
  if constexpr (std::is_same_v<T, float> && std::is_same_v<Acc, float>) {
    static const bool avx2 = gemm_isa_supported(GemmIsa::avx2);
    if (avx2) {
      for (; r + 8 <= count; r += 8) {
        detail::transpose_8_rows_avx2(first + r * row_stride, row_stride, kb, out + r, ld_out);
      }
    }
  }
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float> && std::is_same_v<Acc, float>) {
    for (; r + 4 <= count; r += 4) {
      const float* s = first + r * row_stride;
      int64_t p = 0;
      for (; p + 4 <= kb; p += 4) {
        __m128 r0 = _mm_loadu_ps(s + p), r1 = _mm_loadu_ps(s + row_stride + p);
        __m128 r2 = _mm_loadu_ps(s + 2 * row_stride + p), r3 = _mm_loadu_ps(s + 3 * row_stride + p);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        float* d = out + p * ld_out + r;
        _mm_storeu_ps(d, r0);
        _mm_storeu_ps(d + ld_out, r1);
        _mm_storeu_ps(d + 2 * ld_out, r2);
        _mm_storeu_ps(d + 3 * ld_out, r3);
      }
      for (; p < kb; ++p) {
        for (int q = 0; q < 4; ++q) out[p * ld_out + r + q] = s[q * row_stride + p];
      }
    }
  } else if constexpr (std::is_same_v<T, double> && std::is_same_v<Acc, double>) {
    for (; r + 2 <= count; r += 2) {
      const double* s = first + r * row_stride;
      int64_t p = 0;
      for (; p + 2 <= kb; p += 2) {
        const __m128d r0 = _mm_loadu_pd(s + p), r1 = _mm_loadu_pd(s + row_stride + p);
        double* d = out + p * ld_out + r;
        _mm_storeu_pd(d, _mm_unpacklo_pd(r0, r1));
        _mm_storeu_pd(d + ld_out, _mm_unpackhi_pd(r0, r1));
      }
      for (; p < kb; ++p) {
        for (int q = 0; q < 2; ++q) out[p * ld_out + r + q] = s[q * row_stride + p];
      }
    }
  }
#endif
  for (; r < count; ++r) {
    const T* src = first + r * row_stride;
    for (int64_t p = 0; p < kb; ++p) out[p * ld_out + r] = to_acc<Acc>(src[p]);
  }
}

// Packs op(A)[i0:i0+mb, p0:p0+kb] into micro-panels of mr rows: out[panel][p][i], zero-padded rows.
template <typename T, typename Acc>
void pack_a(const Problem<T, Acc>& pr, int64_t i0, int64_t p0, int64_t mb, int64_t kb, int mr, Acc* out) {
  if (pr.a_rows == nullptr && pr.trans_a) {
    // op(A)(i, p) = a[p * lda + i]: row p of the stored A holds column p of every panel. Read it once, in
    // order, rather than panel by panel: a panel's mr values a row apart are a stride of lda, which for a
    // tall A from memory (a weight gradient dy^T over many pixels) waits on a cache miss per row.
    for (int64_t p = 0; p < kb; ++p) {
      const T* src = pr.a + (p0 + p) * pr.lda + i0;
      for (int64_t ir = 0; ir < mb; ir += mr) {
        const int rows = static_cast<int>(std::min<int64_t>(mr, mb - ir));
        Acc* dst = out + ir * kb + p * mr;
        for (int i = 0; i < rows; ++i) dst[i] = to_acc<Acc>(src[ir + i]);
        for (int i = rows; i < mr; ++i) dst[i] = Acc(0);
      }
    }
    return;
  }
  for (int64_t ir = 0; ir < mb; ir += mr) {
    const int rows = static_cast<int>(std::min<int64_t>(mr, mb - ir));
    Acc* panel = out + ir * kb;
    if (pr.a_rows != nullptr) {  // the rows from the source, then interleaved as a stored A's
      Acc* rows_of_a = t_source_rows.get<Acc>(static_cast<size_t>(rows * kb));
      pr.a_rows->rows(i0 + ir, rows, p0, p0 + kb, rows_of_a, kb);
      interleave_rows(rows_of_a, kb, rows, kb, panel, mr);
      for (int i = rows; i < mr; ++i) {
        for (int64_t p = 0; p < kb; ++p) panel[p * mr + i] = Acc(0);
      }
    } else {  // op(A)(i, p) = a[i * lda + p]: read along p, write with stride mr
      interleave_rows(pr.a + (i0 + ir) * pr.lda + p0, pr.lda, rows, kb, panel, mr);
      for (int i = rows; i < mr; ++i) {
        for (int64_t p = 0; p < kb; ++p) panel[p * mr + i] = Acc(0);
      }
    }
  }
}

// Packs micro-panel `s` (nr columns from j0 + s * nr) of op(B)[p0:p0+kb, j0:j0+nb]: out[p][j], zero-padded.
template <typename T, typename Acc>
void pack_b_panel(const Problem<T, Acc>& pr, int64_t p0, int64_t j0, int64_t nb, int64_t kb, int nr, int64_t s,
                  Acc* out) {
  const int64_t js = s * nr;
  const int cols = static_cast<int>(std::min<int64_t>(nr, nb - js));
  Acc* panel = out + js * kb;
  if (pr.b_rows != nullptr || pr.trans_b) {  // op(B)(p, j) = b[j * ldb + p], or S(j, p) from the source
    if (pr.b_rows != nullptr) {
      Acc* rows_of_s = t_source_rows.get<Acc>(static_cast<size_t>(cols * kb));
      pr.b_rows->rows(j0 + js, cols, p0, p0 + kb, rows_of_s, kb);
      interleave_rows(rows_of_s, kb, cols, kb, panel, nr);
    } else {
      interleave_rows(pr.b + (j0 + js) * pr.ldb + p0, pr.ldb, cols, kb, panel, nr);
    }
    for (int j = cols; j < nr; ++j) {
      for (int64_t p = 0; p < kb; ++p) panel[p * nr + j] = Acc(0);
    }
  } else {  // op(B)(p, j) = b[p * ldb + j]
    for (int64_t p = 0; p < kb; ++p) {
      const T* src = pr.b + (p0 + p) * pr.ldb + j0 + js;
      Acc* dst = panel + p * nr;
      for (int j = 0; j < cols; ++j) dst[j] = to_acc<Acc>(src[j]);
      for (int j = cols; j < nr; ++j) dst[j] = Acc(0);
    }
  }
}

constexpr int64_t kPrefetchRows = 2;

inline void prefetch(const char* p) {
#if defined(__SSE__)
  _mm_prefetch(p, _MM_HINT_T0);
#else
  (void)p;
#endif
}

// Packs micro-panels [s_begin, s_end) of op(B)[p0:p0+kb, j0:j0+nb]. Untransposed B is read a whole row
// of the block at a time: panel by panel, the rows of a large B (an activation with rows a plane apart)
// would be as many interleaved 128-byte streams, too many for the hardware prefetchers.
template <typename T, typename Acc>
void pack_b_panels(const Problem<T, Acc>& pr, int64_t p0, int64_t j0, int64_t nb, int64_t kb, int nr,
                   int64_t s_begin, int64_t s_end, Acc* out) {
  if (s_begin >= s_end) return;
  if (pr.b_packer != nullptr) {
    pr.b_packer->pack(p0, kb, j0 + s_begin * nr, j0 + std::min(nb, s_end * nr), nr, out + s_begin * nr * kb);
    return;
  }
  if (pr.trans_b || pr.b_rows != nullptr) {
    for (int64_t s = s_begin; s < s_end; ++s) pack_b_panel(pr, p0, j0, nb, kb, nr, s, out);
    return;
  }
  const int64_t j_end = std::min(nb, s_end * nr);
  for (int64_t p = 0; p < kb; ++p) {
    const T* src = pr.b + (p0 + p) * pr.ldb + j0;
    // Rows a plane apart are short streams that the hardware prefetchers pick up late: the row
    // kPrefetchRows ahead is requested line by line while this one is copied.
    const T* ahead = p + kPrefetchRows < kb ? src + kPrefetchRows * pr.ldb : nullptr;
    for (int64_t s = s_begin; s < s_end; ++s) {
      const int64_t js = s * nr;
      const int cols = static_cast<int>(std::min<int64_t>(nr, j_end - js));
      if (ahead != nullptr) {
        for (int64_t at = 0; at < cols * int64_t(sizeof(T)); at += 64) {
          prefetch(reinterpret_cast<const char*>(ahead + js) + at);
        }
      }
      Acc* dst = out + js * kb + p * nr;
      for (int j = 0; j < cols; ++j) dst[j] = to_acc<Acc>(src[js + j]);
      for (int j = cols; j < nr; ++j) dst[j] = Acc(0);
    }
  }
}

// Splits `nthreads` into a (rows x cols) grid that minimises the largest per-thread tile, counted in
// whole micro-tiles; ties prefer splitting rows, since every thread packs its own A but shares B.
void thread_grid(int64_t m, int64_t nb, int mr, int nr, int nthreads, int& grid_m, int& grid_n) {
  grid_m = nthreads;
  grid_n = 1;
  int64_t best = -1;
  for (int gn = 1; gn <= nthreads; ++gn) {
    if (nthreads % gn != 0) continue;
    const int gm = nthreads / gn;
    const int64_t tile = (m + mr * int64_t(gm) - 1) / (mr * int64_t(gm)) * ((nb + nr * int64_t(gn) - 1) / (nr * int64_t(gn)));
    if (best < 0 || tile < best) {
      best = tile;
      grid_m = gm;
      grid_n = gn;
    }
  }
}

// [begin, end) of part `index` of `count` parts of [0, total), in whole units of `unit`.
void split_range(int64_t total, int64_t unit, int count, int index, int64_t& begin, int64_t& end) {
  const int64_t units = (total + unit - 1) / unit;
  const int64_t per = (units + count - 1) / count;
  begin = std::min(total, index * per * unit);
  end = std::min(total, (index + 1) * per * unit);
}

// Operands read in place rather than packed (GemmKernel::rows_of_a, columns_of_a): A in products with at most
// this many columns, B in products with at most this many rows. Each value of such an operand serves only n
// (or m) FMAs, and a pass that copies all of it costs about as much as they do (SegFormer's stage-1 Linear
// weight gradient, 32 x 32 x 32768: 75 -> 200 GFLOP/s on a Zen 4 core pair; its fc2, 32768 x 32 x 128: 100
// -> 190). At 128 columns A's block is read once per panel of B, and its packed copy served those reads
// better (fc1, 32768 x 128 x 32: 146 GFLOP/s packed, 117 in place).
constexpr int64_t kInPlaceAMaxColumns = 64;
constexpr int64_t kInPlaceBMaxRows = 128;

// Which operands of this product the micro-kernels read in place. Only where they are stored as the
// micro-kernels read them (B row-major; A either way) in the accumulation type, and given in memory.
struct InPlace {
  bool a = false, b = false;
};

template <typename T, typename Acc>
InPlace in_place_operands(const GemmKernel<Acc>& kern, const Problem<T, Acc>& pr) {
  InPlace in_place;
  if constexpr (std::is_same_v<T, Acc>) {
    if (kern.rows_of_a == nullptr || kern.columns_of_a == nullptr) return in_place;
    in_place.a = pr.a_rows == nullptr && pr.n <= kInPlaceAMaxColumns;
    in_place.b = pr.b_packer == nullptr && pr.b_rows == nullptr && !pr.trans_b && pr.m <= kInPlaceBMaxRows;
  }
  return in_place;
}

// Thread `tid`'s share of one product on a (grid_m x grid_n) grid of `nthreads`: its rows of every block
// of A, and its columns of every block of B. kSharedB: the team packs each block of B once into the shared
// pack_b, each thread a part, and waits for the others around it; else the thread packs the panels of its
// own columns into its own pack_b and never waits, which products with few outputs over a long k take:
// there a block's work per thread is a few microseconds, two barriers cost a sizeable part of it, and a
// B of one or two panels would be packed by one thread while the other waits. A thread alone packs all.
template <bool kSharedB, typename T, typename Acc>
void gemm_share(const GemmKernel<Acc>& kern, const Problem<T, Acc>& pr, int tid, int nthreads, int grid_m, int grid_n,
                int64_t mc, int64_t kc, int64_t nc, Acc* pack_b) {
  Acc* pack_a_buf = t_pack_a.get<Acc>(static_cast<size_t>(mc * kc));
  const InPlace in_place = in_place_operands(kern, pr);
  int64_t row_begin, row_end;
  split_range(pr.m, kern.mr, grid_m, tid % grid_m, row_begin, row_end);
  for (int64_t jc = 0; jc < pr.n; jc += nc) {
    const int64_t nb = std::min(nc, pr.n - jc);
    const int64_t panels_b = (nb + kern.nr - 1) / kern.nr;
    // Read in place, B still has its last panel packed where that has fewer than nr columns.
    const int64_t whole_b = in_place.b ? nb / kern.nr * kern.nr : 0;
    int64_t col_begin, col_end;
    split_range(nb, kern.nr, grid_n, tid / grid_m, col_begin, col_end);
    for (int64_t pc = 0; pc < pr.k; pc += kc) {
      const int64_t kb = std::min(kc, pr.k - pc);
      if constexpr (kSharedB) {
        int64_t s_begin, s_end;
        split_range(panels_b, 1, nthreads, tid, s_begin, s_end);
        pack_b_panels(pr, pc, jc, nb, kb, kern.nr, s_begin, s_end, pack_b);
#pragma omp barrier
      } else {
        pack_b_panels(pr, pc, jc, nb, kb, kern.nr, std::max(col_begin, whole_b) / kern.nr,
                      (col_end + kern.nr - 1) / kern.nr, pack_b);
      }
      // Later k blocks add to what the first one stored.
      const Acc beta = pc == 0 ? pr.beta : Acc(1);
      for (int64_t ic = row_begin; ic < row_end; ic += mc) {
        const int64_t mb = std::min(mc, row_end - ic);
        // Read in place, A still has its last panel packed where that has fewer than mr rows.
        const int64_t whole_a = in_place.a ? mb / kern.mr * kern.mr : 0;
        if (whole_a < mb) pack_a(pr, ic + whole_a, pc, mb - whole_a, kb, kern.mr, pack_a_buf + whole_a * kb);
        for (int64_t jr = col_begin; jr < col_end; jr += kern.nr) {
          const int nr = static_cast<int>(std::min<int64_t>(kern.nr, col_end - jr));
          const bool b_in_place = jr < whole_b;
          for (int64_t ir = 0; ir < mb; ir += kern.mr) {
            const int mr = static_cast<int>(std::min<int64_t>(kern.mr, mb - ir));
            const bool a_in_place = ir < whole_a;
            Acc* c_tile = pr.c + (ic + ir) * pr.ldc + jc + jr;
            if (!a_in_place && !b_in_place) {
              kern.run(kb, pack_a_buf + ir * kb, pack_b + jr * kb, c_tile, pr.ldc, pr.alpha, beta, mr, nr);
              continue;
            }
            if constexpr (std::is_same_v<T, Acc>) {
              const Acc* b = b_in_place ? pr.b + pc * pr.ldb + jc + jr : pack_b + jr * kb;
              const int64_t b_step = b_in_place ? pr.ldb : kern.nr;
              if (!a_in_place) {
                kern.columns_of_a(kb, pack_a_buf + ir * kb, kern.mr, b, b_step, c_tile, pr.ldc, pr.alpha, beta, mr, nr);
              } else if (pr.trans_a) {
                kern.columns_of_a(kb, pr.a + pc * pr.lda + ic + ir, pr.lda, b, b_step, c_tile, pr.ldc, pr.alpha, beta,
                                  mr, nr);
              } else {
                kern.rows_of_a(kb, pr.a + (ic + ir) * pr.lda + pc, pr.lda, b, b_step, c_tile, pr.ldc, pr.alpha, beta,
                               mr, nr);
              }
            }
          }
        }
      }
      if constexpr (kSharedB) {
#pragma omp barrier
      }
    }
  }
}

// Products with at most this many outputs pack B per thread (gemm_share): their blocks of B are small, so
// packing one twice costs less than the barriers around sharing it.
constexpr int64_t kPrivateBMaxOutputs = 256 * 256;

template <typename T, typename Acc>
void gemm_problem(const GemmKernel<Acc>& kern, const Problem<T, Acc>& pr, int nthreads) {
  const int64_t nc = std::min(kern.nc, round_up(pr.n, kern.nr));
  const int64_t kc = std::min(kern.kc, pr.k);
  const int64_t mc = std::min(kern.mc, round_up(pr.m, kern.mr));
  if (nthreads == 1) {
    // No parallel region: small products, and products inside another kernel's tasks (attention).
    gemm_share<false>(kern, pr, 0, 1, 1, 1, mc, kc, nc, t_pack_b.get<Acc>(static_cast<size_t>(kc * nc)));
    return;
  }
  Acc* shared_pack_b = t_pack_b.get<Acc>(static_cast<size_t>(kc * nc));
#pragma omp parallel num_threads(nthreads)
  {
    // The team OpenMP gave, which may be smaller than asked for (OMP_THREAD_LIMIT).
    const int team = omp_get_num_threads();
    int grid_m = 1, grid_n = 1;
    thread_grid(pr.m, std::min(nc, pr.n), kern.mr, kern.nr, team, grid_m, grid_n);
    // With the columns split alone, every thread packs only its own panels of B anyway.
    if (grid_m == 1 || pr.m * pr.n <= kPrivateBMaxOutputs || in_place_operands(kern, pr).b) {
      gemm_share<false>(kern, pr, omp_get_thread_num(), team, grid_m, grid_n, mc, kc, nc,
                        t_pack_b.get<Acc>(static_cast<size_t>(kc * nc)));
    } else {
      gemm_share<true>(kern, pr, omp_get_thread_num(), team, grid_m, grid_n, mc, kc, nc, shared_pack_b);
    }
  }
}

// A @ B^T with both operands contiguous along k and few outputs over a long k (a shallow conv's weight
// gradient: 27 x 64 outputs over thousands of pixels) by the dot-product kernel, without packing: packing
// would transpose both operands, A and B in full, for only m or n FMAs per element, and it reads them from
// memory while no FMA runs. Each output sums lane-wise partial sums (in one fixed order, whatever the
// thread count) and then its lanes.
constexpr int64_t kDotMaxOutputs = 64 * 64;
constexpr int64_t kDotMinDepth = 256;

template <typename Acc>
detail::DotKernel<Acc> dot_kernel() {
  if constexpr (std::is_same_v<Acc, float>) {
    return detail::f32_dot_kernel(gemm_isa());
  } else {
    return detail::f64_dot_kernel(gemm_isa());
  }
}

template <typename Acc>
bool use_dot_kernel(const GemmDesc& d) {
  return !d.trans_a && d.trans_b && d.m * d.n <= kDotMaxOutputs && d.k >= kDotMinDepth &&
         dot_kernel<Acc>().run != nullptr;
}

template <typename Acc>
void gemm_dot(const detail::DotKernel<Acc>& kern, const Problem<Acc, Acc>& pr, int nthreads) {
  // The DW-row side goes to whichever of A's m rows and B's n rows pads fewer rows to whole tiles.
  const int64_t pad_a_wide = round_up(pr.m, kern.dw) * round_up(pr.n, kern.dn);
  const int64_t pad_b_wide = round_up(pr.n, kern.dw) * round_up(pr.m, kern.dn);
  const bool a_wide = pad_a_wide <= pad_b_wide;
  const Acc* w = a_wide ? pr.a : pr.b;
  const Acc* v = a_wide ? pr.b : pr.a;
  const int64_t ldw = a_wide ? pr.lda : pr.ldb, ldv = a_wide ? pr.ldb : pr.lda;
  const int64_t rows_w = a_wide ? pr.m : pr.n, rows_v = a_wide ? pr.n : pr.m;
  const int L = kern.lanes;
  // lanes (rows_w, rows_v, L): the lane-wise partial sums of every output; sums (rows_w, rows_v): their totals.
  Acc* lanes = t_accum.get<Acc>(static_cast<size_t>(rows_w * rows_v * (L + 1)));
  Acc* sums = lanes + rows_w * rows_v * L;
  const int threads = static_cast<int>(std::min<int64_t>(nthreads, (rows_w + kern.dw - 1) / kern.dw));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    int64_t begin, end;
    split_range(rows_w, kern.dw, omp_get_num_threads(), omp_get_thread_num(), begin, end);
    // Row groups of w outermost: each streams its rows once, in order, which the prefetchers follow.
    for (int64_t i = begin; i < end; i += kern.dw) {
      const int rw = static_cast<int>(std::min<int64_t>(kern.dw, end - i));
      for (int64_t pc = 0; pc < pr.k; pc += kern.kc) {
        const int64_t kb = std::min(kern.kc, pr.k - pc);
        for (int64_t j = 0; j < rows_v; j += kern.dn) {
          const int rv = static_cast<int>(std::min<int64_t>(kern.dn, rows_v - j));
          kern.run(kb, w + i * ldw + pc, ldw, rw, v + j * ldv + pc, ldv, rv, pc > 0, lanes + (i * rows_v + j) * L,
                   rows_v);
        }
      }
    }
    kern.sum_lanes(lanes + begin * rows_v * L, (end - begin) * rows_v, sums + begin * rows_v);
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t j = 0; j < rows_v; ++j) {
        const Acc sum = sums[i * rows_v + j];
        Acc& out = a_wide ? pr.c[i * pr.ldc + j] : pr.c[j * pr.ldc + i];
        out = pr.beta == Acc(0) ? pr.alpha * sum : pr.alpha * sum + pr.beta * out;
      }
    }
  }
}

// Threads for one product: 1 for small ones (a parallel region costs more than it saves), never
// nested inside another parallel region.
int threads_for(int64_t m, int64_t n, int64_t k) {
  if (omp_in_parallel()) return 1;
  const double flops = 2.0 * double(m) * double(n) * double(k);
  if (flops < 2.0e6) return 1;
  return omp_get_max_threads();
}

// C = beta * C for k == 0, where there is no product to add; beta == 0 writes zeros without reading.
template <typename T>
void scale_c(const GemmDesc& d, T* c) {
  for (int64_t i = 0; i < d.m; ++i) {
    T* row = c + i * d.ldc;
    for (int64_t j = 0; j < d.n; ++j) row[j] = d.beta == 0.0f ? T(0.0f) : T(d.beta * static_cast<float>(row[j]));
  }
}

template <>
void scale_c<double>(const GemmDesc& d, double* c) {
  for (int64_t i = 0; i < d.m; ++i) {
    double* row = c + i * d.ldc;
    for (int64_t j = 0; j < d.n; ++j) row[j] = d.beta == 0.0f ? 0.0 : double(d.beta) * row[j];
  }
}

// The micro-kernel of an f32 or f64 product of m rows.
template <typename Acc>
GemmKernel<Acc> kernel_for(int64_t m) {
  if constexpr (std::is_same_v<Acc, float>) {
    return detail::f32_kernel(gemm_isa(), m);
  } else {
    return detail::f64_kernel(gemm_isa(), m);
  }
}

// One batch item of type T. f32 and f64 write C directly; f16/bf16 accumulate in an f32 scratch.
template <typename T>
void gemm_item(const GemmDesc& d, const T* a, const T* b, T* c, int nthreads) {
  if (d.k == 0) {
    scale_c(d, c);
    return;
  }
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    using Acc = T;
    const GemmKernel<Acc> kern = kernel_for<Acc>(d.m);
    const Problem<T, Acc> pr{d.m, d.n, d.k, a, d.lda, d.trans_a, b, d.ldb, d.trans_b, c, d.ldc,
                             Acc(d.alpha), Acc(d.beta)};
    if (use_dot_kernel<Acc>(d)) {
      gemm_dot(dot_kernel<Acc>(), pr, nthreads);
      return;
    }
    gemm_problem(kern, pr, nthreads);
  } else {
    float* acc = t_accum.get<float>(static_cast<size_t>(d.m * d.n));
    const Problem<T, float> pr{d.m, d.n, d.k, a, d.lda, d.trans_a, b, d.ldb, d.trans_b, acc, d.n, d.alpha, 0.0f};
    gemm_problem(detail::f32_kernel(gemm_isa(), d.m), pr, nthreads);
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t i = 0; i < d.m; ++i) {
      T* row = c + i * d.ldc;
      const float* acc_row = acc + i * d.n;
      if (d.beta == 0.0f) {
        for (int64_t j = 0; j < d.n; ++j) row[j] = T(acc_row[j]);
      } else {
        for (int64_t j = 0; j < d.n; ++j) row[j] = T(acc_row[j] + d.beta * static_cast<float>(row[j]));
      }
    }
  }
}

template <typename T>
void gemm_typed(const GemmDesc& d, const T* a, const T* b, T* c) {
  const int item_threads = threads_for(d.m, d.n, d.k);
  const int max_threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  // Many small products: one thread per item beats splitting each small item across threads.
  if (d.batch > 1 && item_threads < max_threads) {
#pragma omp parallel for num_threads(max_threads) schedule(static)
    for (int64_t i = 0; i < d.batch; ++i) {
      gemm_item(d, a + i * d.stride_a, b + i * d.stride_b, c + i * d.stride_c, 1);
    }
    return;
  }
  for (int64_t i = 0; i < d.batch; ++i) {
    gemm_item(d, a + i * d.stride_a, b + i * d.stride_b, c + i * d.stride_c, item_threads);
  }
}

}  // namespace

const char* gemm_isa_name(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::generic: return "generic";
    case GemmIsa::avx2: return "avx2";
    case GemmIsa::avx512: return "avx512";
  }
  return "?";
}

bool gemm_isa_supported(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::generic: return true;
    case GemmIsa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case GemmIsa::avx512: return __builtin_cpu_supports("avx512f");
  }
  return false;
}

GemmIsa gemm_isa() { return current_isa().load(std::memory_order_relaxed); }

void set_gemm_isa(GemmIsa isa) {
  SE_CHECK(gemm_isa_supported(isa), "set_gemm_isa: this CPU does not support the ", gemm_isa_name(isa),
           " micro-kernel");
  current_isa().store(isa, std::memory_order_relaxed);
}

void gemm(const GemmDesc& desc, const void* a, const void* b, void* c, Stream /*stream*/) {
  validate_gemm(desc);
  if (desc.batch == 0 || desc.m == 0 || desc.n == 0) return;
  SE_CHECK(c != nullptr, "gemm: C is null");
  SE_CHECK(desc.k == 0 || (a != nullptr && b != nullptr), "gemm: A or B is null");
  dispatch_floating(desc.dtype, "gemm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    gemm_typed(desc, static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(c));
  });
}

template <typename T>
void gemm_on_this_thread(const GemmDesc& desc, const T* a, const T* b, T* c) {
  validate_gemm(desc);
  SE_CHECK(desc.dtype == dtype_of<T>(), "gemm_on_this_thread: dtype ", dtype_name(desc.dtype), " does not match ",
           dtype_name(dtype_of<T>()), " operands");
  SE_CHECK(desc.batch == 1, "gemm_on_this_thread: batch = ", desc.batch, " (expected 1)");
  if (desc.m == 0 || desc.n == 0) return;
  gemm_item(desc, a, b, c, 1);
}

namespace {

// The checks of validate_gemm that concern C, A's and B's shapes, and the dtype.
template <typename T>
void validate_sourced(const GemmDesc& d, const char* what) {
  SE_CHECK(d.dtype == dtype_of<T>(), what, ": dtype ", dtype_name(d.dtype), " does not match ", dtype_name(dtype_of<T>()),
           " operands");
  SE_CHECK(d.m >= 0 && d.n >= 0 && d.k >= 0, what, ": negative size m = ", d.m, ", n = ", d.n, ", k = ", d.k);
  SE_CHECK(d.ldc >= std::max<int64_t>(1, d.n), what, ": ldc = ", d.ldc, " is smaller than n = ", d.n);
}

// A product with operands given on demand (set in pr by the caller).
template <typename T>
void gemm_sourced(const GemmDesc& d, Problem<T, T>& pr) {
  if (d.m == 0 || d.n == 0) return;
  if (d.k == 0) return scale_c(d, pr.c);
  gemm_problem(kernel_for<T>(d.m), pr, threads_for(d.m, d.n, d.k));
}

}  // namespace

template <typename T>
void gemm_packing_b(const GemmDesc& desc, const T* a, const GemmBPacker<T>& b, T* c) {
  validate_sourced<T>(desc, "gemm_packing_b");
  SE_CHECK(desc.lda >= std::max<int64_t>(1, desc.trans_a ? desc.m : desc.k), "gemm_packing_b: lda = ", desc.lda,
           " is smaller than the columns of A as stored");
  Problem<T, T> pr{desc.m, desc.n, desc.k, a, desc.lda, desc.trans_a, nullptr, desc.n, false, c, desc.ldc,
                   T(desc.alpha), T(desc.beta)};
  pr.b_packer = &b;
  gemm_sourced(desc, pr);
}

template <typename T>
void gemm_rows_a(const GemmDesc& desc, const GemmRowSource<T>& a, const T* b, T* c) {
  validate_sourced<T>(desc, "gemm_rows_a");
  SE_CHECK(desc.ldb >= std::max<int64_t>(1, desc.trans_b ? desc.k : desc.n), "gemm_rows_a: ldb = ", desc.ldb,
           " is smaller than the columns of B as stored");
  Problem<T, T> pr{desc.m, desc.n, desc.k, nullptr, desc.k, false, b, desc.ldb, desc.trans_b, c, desc.ldc,
                   T(desc.alpha), T(desc.beta)};
  pr.a_rows = &a;
  gemm_sourced(desc, pr);
}

template <typename T>
void gemm_rows_b(const GemmDesc& desc, const T* a, const GemmRowSource<T>& b, T* c) {
  validate_sourced<T>(desc, "gemm_rows_b");
  SE_CHECK(desc.lda >= std::max<int64_t>(1, desc.trans_a ? desc.m : desc.k), "gemm_rows_b: lda = ", desc.lda,
           " is smaller than the columns of A as stored");
  Problem<T, T> pr{desc.m, desc.n, desc.k, a, desc.lda, desc.trans_a, nullptr, desc.k, true, c, desc.ldc,
                   T(desc.alpha), T(desc.beta)};
  pr.b_rows = &b;
  gemm_sourced(desc, pr);
}

bool gemm_takes_dot_kernel(const GemmDesc& desc) {
  switch (desc.dtype) {
    case DType::f32: return use_dot_kernel<float>(desc);
    case DType::f64: return use_dot_kernel<double>(desc);
    default: return false;
  }
}

#define SE_INSTANTIATE_SOURCED(T)                                                                    \
  template void gemm_packing_b<T>(const GemmDesc&, const T*, const GemmBPacker<T>&, T*);           \
  template void gemm_rows_a<T>(const GemmDesc&, const GemmRowSource<T>&, const T*, T*);            \
  template void gemm_rows_b<T>(const GemmDesc&, const T*, const GemmRowSource<T>&, T*);
SE_INSTANTIATE_SOURCED(float)
SE_INSTANTIATE_SOURCED(double)
#undef SE_INSTANTIATE_SOURCED

template void gemm_on_this_thread<float>(const GemmDesc&, const float*, const float*, float*);
template void gemm_on_this_thread<double>(const GemmDesc&, const double*, const double*, double*);

}  // namespace se::kernels::cpu
