// The direct backward weight of conv_direct_avx512.h (stride 1; shallow convs, and deep ones with few
// outputs per group), in AVX-512 through a target attribute:
//   dW[o][c][i][j] = sum over (n, oh, ow) of dy[n][o][oh][ow] * x[n][c][oh + i*dh - ph][ow + j*dw - pw]
// Each thread takes bands of output rows of an (image, group), staged as the forward stages its rows
// (conv_direct_staging.h). For a tile of 8 output channels x 3 kernel columns, one tap row (c, i) at a
// time, the band's products sum in 24 zmm registers across all its rows and columns, then add into the
// thread's f32 vector lanes, which fold into f64 sums per slot of bands.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/conv_direct_avx512.h"
#include "kernels/cpu/conv_direct_staging.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace se::kernels::cpu {
namespace direct {

#if defined(__x86_64__)
namespace {

// GCC 12's AVX-512 headers start some conversions and reductions from an undefined vector, which
// -Wmaybe-uninitialized reports (fold_into).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// One thread's running sums: `lanes` (C_out, K + 1, 16) f32, the 16 vector lanes of each output's sum
// (entry K, after the K taps: the bias gradient, the sum of dy), folded into a slot's f64 sums (C_out, K + 1)
// after at most kFoldProducts products per lane and at the slot's end.
struct WeightLanes {
  explicit WeightLanes(int64_t outputs) : lanes(static_cast<size_t>(outputs * kLanes)), outputs(outputs) {}
  // sums[e] += the f64 sum of output e's lanes (lane l plus lane l + 8, then a tree of those 8), the lanes
  // zeroed: a vector tree rather than a chain of 16 dependent scalar adds, which at 64 outputs per row
  // took as long as the products.
  SE_AVX512 void fold_into(double* sums) {  // (outputs)
    float* l = lanes.data();
    for (int64_t e = 0; e < outputs; ++e) {
      const __m512 v = _mm512_loadu_ps(l + e * kLanes);
      _mm512_storeu_ps(l + e * kLanes, _mm512_setzero_ps());
      const __m512d low = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
      const __m512d high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
      sums[e] += _mm512_reduce_add_pd(_mm512_add_pd(low, high));
    }
  }
  std::vector<float> lanes;
  int64_t outputs;
};
#pragma GCC diagnostic pop
// Products per f32 lane between folds (a few hundred keep its rounding error near an f64 sum's).
constexpr int64_t kFoldProducts = 512;
// The slots of conv2d_backward_weight_direct: at most kWeightSlots, and at least kMinBandsPerSlot bands
// each, so that a slot's products outweigh folding its lanes and adding up its sums.
constexpr int64_t kWeightSlots = 64;
constexpr int64_t kMinBandsPerSlot = 8;

// Output rows per band: a tile's sums over a band stay in registers across its rows and go to the
// thread's lanes once per band, not once per row (CO * 3 vector adds through memory per tile, which at
// 64 outputs per row cost as much as a quarter of its FMAs). Bands of about kBandOutputs outputs, and
// at least 2 rows, keep a tile's dy rows (8 channels: 16 KB, 32 KB at 512 wide) in L1 while the taps
// (c, i) pass over them. Measured against rows one at a time (2 threads, min of rounds, demo U-Net
// layers): 16 -> 16 ch at 512 x 512 4.28 -> 4.12 ms (bands of 1024 outputs: 3.86, but 24 -> 16 ch at
// 96 x 96 went 0.23 -> 0.39 ms), 32 -> 16 ch 8.47 -> 7.89 ms, the RGB 3 -> 64 ch layer 4.26 -> 4.05 ms;
// at 128 x 128, 16 -> 16 ch 0.63 -> 0.26 ms (the GEMM path before, which rows one at a time lost to).
constexpr int64_t kBandOutputs = 512;
constexpr int64_t kMaxBandRows = 32;

// Bands between folds: about kFoldProducts products per lane.
int64_t weight_fold_bands(const DirectConvShape& s) {
  const int64_t per_band = weight_band_rows(s) * ((s.ow + kLanes - 1) / kLanes);
  return std::max<int64_t>(1, kFoldProducts / per_band);
}

// 16 floats from p (the first `count` of them when kTail, the rest zero and not read).
template <bool kTail>
SE_AVX512 inline __m512 load_row(const float* p, int64_t count) {
  if constexpr (kTail) {
    return _mm512_maskz_loadu_ps(first_lanes(count), p);
  } else {
    (void)count;
    return _mm512_loadu_ps(p);
  }
}

// lanes_o + (u * lanes_ld + jj) * 16 += acc[u][jj]: a tile's sums over one band into the thread's lanes.
template <int CO, int TJ>
SE_AVX512 inline void add_to_lanes(const __m512 (&acc)[CO][TJ], float* lanes_o, int64_t lanes_ld) {
#pragma GCC unroll 8
  for (int u = 0; u < CO; ++u) {
#pragma GCC unroll 4
    for (int jj = 0; jj < TJ; ++jj) {
      float* lane = lanes_o + (u * lanes_ld + jj) * kLanes;
      _mm512_storeu_ps(lane, _mm512_add_ps(_mm512_loadu_ps(lane), acc[u][jj]));
    }
  }
}

// The rows of a band that one tap row (c, i) reads: band row r's staged x row, nullptr where it lies in
// the padding; and the dy rows of the next band (`ahead` of them, from prefetch_o), which the first tap
// row brings into L2 as it goes.
struct BandRows {
  const float* const* x_rows;  // (rows)
  int64_t rows;
  const float* prefetch_o;  // the tile's first channel's dy row after the band, or nullptr
  int64_t ahead;
};

// Columns ow0 .. ow0 + 16 of band row r's next-band dy rows for the CO channels (planes `plane` apart).
template <int CO>
SE_AVX512 inline void prefetch_columns(const BandRows& b, int64_t r, int64_t ow_stride, int64_t plane, int64_t ow0) {
  if (b.prefetch_o == nullptr || r >= b.ahead) return;
#pragma GCC unroll 8
  for (int u = 0; u < CO; ++u) {
    _mm_prefetch(reinterpret_cast<const char*>(b.prefetch_o + u * plane + r * ow_stride + ow0), _MM_HINT_T1);
  }
}

// acc[u][jj] += dy_u[ow0 .. ow0 + 16) * x[ow0 + (j0 + jj) * dw - pw ..] for the tile's CO channels and
// TJ kernel columns: one 16-pixel column block of a row (kTail: the row's last, partial one).
template <int CO, int TJ, bool kTail>
SE_AVX512 inline void weight_block(const DirectConvShape& s, const float* dy_o, int64_t plane, const float* x_j0,
                                   int64_t ow0, __m512 (&acc)[CO][TJ]) {
  const int64_t valid = s.ow - ow0;
  __m512 xv[TJ];
#pragma GCC unroll 4
  for (int jj = 0; jj < TJ; ++jj) xv[jj] = load_row<kTail>(x_j0 + jj * s.dw + ow0, valid);
#pragma GCC unroll 8
  for (int u = 0; u < CO; ++u) {
    __m512 d = load_row<kTail>(dy_o + u * plane + ow0, valid);
    asm("" : "+v"(d));  // one load: GCC would fold it into each of the TJ FMAs
#pragma GCC unroll 4
    for (int jj = 0; jj < TJ; ++jj) acc[u][jj] = _mm512_fmadd_ps(d, xv[jj], acc[u][jj]);
  }
}

// Adds a band's products of CO output channels (from dy_o, the band's first row, planes `plane` apart)
// and TJ kernel columns j0.. of one tap row's staged x rows into lanes_o + (u * (K + 1) + jj) * 16.
template <int CO, int TJ>
SE_AVX512 void weight_band_tile(const DirectConvShape& s, const float* dy_o, int64_t plane, const BandRows& b,
                                int64_t j0, float* lanes_o, int64_t lanes_ld) {
  __m512 acc[CO][TJ];
#pragma GCC unroll 8
  for (int u = 0; u < CO; ++u) {
#pragma GCC unroll 4
    for (int jj = 0; jj < TJ; ++jj) acc[u][jj] = _mm512_setzero_ps();
  }
  for (int64_t r = 0; r < b.rows; ++r) {
    if (b.x_rows[r] == nullptr) continue;
    const float* x_j0 = b.x_rows[r] + j0 * s.dw - s.pw;
    const float* dy_r = dy_o + r * s.ow;
    int64_t ow0 = 0;
    for (; ow0 + kLanes <= s.ow; ow0 += kLanes) {
      prefetch_columns<CO>(b, r, s.ow, plane, ow0);
      weight_block<CO, TJ, false>(s, dy_r, plane, x_j0, ow0, acc);
    }
    if (ow0 < s.ow) weight_block<CO, TJ, true>(s, dy_r, plane, x_j0, ow0, acc);
  }
  add_to_lanes<CO, TJ>(acc, lanes_o, lanes_ld);
}

// Lanes kShift.. of low, then the first kShift of high (valignd). Through the masked form: GCC 12's
// unmasked one passes an undefined vector that -Wmaybe-uninitialized flags.
template <int kShift>
SE_AVX512 inline __m512i rotate(__m512i high, __m512i low) {
  return _mm512_mask_alignr_epi32(high, static_cast<__mmask16>(0xffff), high, low, kShift);
}

// weight_band_tile<CO, 3> for the 3-wide, undilated kernel padded by 1 (nearly every 3x3 conv): the three
// shifted x vectors (columns ow0 - 1, ow0, ow0 + 1) come from one aligned load per 16 columns and two
// lane rotations, instead of three loads that each straddle two cache lines.
template <int CO>
SE_AVX512 void weight_band_tile_3x3(const DirectConvShape& s, const float* dy_o, int64_t plane, const BandRows& b,
                                    float* lanes_o, int64_t lanes_ld) {
  __m512 acc[CO][3];
#pragma GCC unroll 8
  for (int u = 0; u < CO; ++u) acc[u][0] = acc[u][1] = acc[u][2] = _mm512_setzero_ps();
  for (int64_t r = 0; r < b.rows; ++r) {
    const float* x_row = b.x_rows[r];
    if (x_row == nullptr) continue;
    const float* dy_r = dy_o + r * s.ow;
    __m512i previous = _mm512_castps_si512(_mm512_loadu_ps(x_row - kLanes));
    __m512i current = _mm512_castps_si512(_mm512_loadu_ps(x_row));
    int64_t ow0 = 0;
    for (; ow0 + kLanes <= s.ow; ow0 += kLanes) {
      prefetch_columns<CO>(b, r, s.ow, plane, ow0);
      const __m512i next = _mm512_castps_si512(_mm512_loadu_ps(x_row + ow0 + kLanes));
      const __m512 x_left = _mm512_castsi512_ps(rotate<15>(current, previous));  // x[ow0 - 1 ..]
      const __m512 x_mid = _mm512_castsi512_ps(current);
      const __m512 x_right = _mm512_castsi512_ps(rotate<1>(next, current));  // x[ow0 + 1 ..]
#pragma GCC unroll 8
      for (int u = 0; u < CO; ++u) {
        __m512 d = _mm512_loadu_ps(dy_r + u * plane + ow0);
        asm("" : "+v"(d));  // one load: GCC would fold it into each of the 3 FMAs
        acc[u][0] = _mm512_fmadd_ps(d, x_left, acc[u][0]);
        acc[u][1] = _mm512_fmadd_ps(d, x_mid, acc[u][1]);
        acc[u][2] = _mm512_fmadd_ps(d, x_right, acc[u][2]);
      }
      previous = current;
      current = next;
    }
    if (ow0 < s.ow) weight_block<CO, 3, true>(s, dy_r, plane, x_row - 1, ow0, acc);
  }
  add_to_lanes<CO, 3>(acc, lanes_o, lanes_ld);
}

// Up to 3 kernel columns at a time: CO * TJ <= 24 accumulators.
template <int CO>
SE_AVX512 void weight_band_tiles(const DirectConvShape& s, const float* dy_o, int64_t plane, BandRows b, float* lanes_o,
                                 int64_t lanes_ld) {
  if (s.kw == 3 && s.dw == 1 && s.pw == 1) return weight_band_tile_3x3<CO>(s, dy_o, plane, b, lanes_o, lanes_ld);
  for (int64_t j0 = 0; j0 < s.kw; j0 += 3) {
    float* lanes_j = lanes_o + j0 * kLanes;
    switch (std::min<int64_t>(3, s.kw - j0)) {
      case 1: weight_band_tile<CO, 1>(s, dy_o, plane, b, j0, lanes_j, lanes_ld); break;
      case 2: weight_band_tile<CO, 2>(s, dy_o, plane, b, j0, lanes_j, lanes_ld); break;
      default: weight_band_tile<CO, 3>(s, dy_o, plane, b, j0, lanes_j, lanes_ld); break;
    }
    b.prefetch_o = nullptr;  // once per band
  }
}

// lanes (CO rows lanes_ld * 16 apart) += the row of dy of each channel, for the bias gradient.
SE_AVX512 void bias_row(const DirectConvShape& s, const float* dy_o, int64_t plane, int64_t channels, float* lanes,
                        int64_t lanes_ld) {
  for (int64_t u = 0; u < channels; ++u) {
    const float* row = dy_o + u * plane;
    __m512 acc = _mm512_setzero_ps();
    int64_t ow0 = 0;
    for (; ow0 + kLanes <= s.ow; ow0 += kLanes) acc = _mm512_add_ps(acc, _mm512_loadu_ps(row + ow0));
    if (ow0 < s.ow) acc = _mm512_add_ps(acc, load_row<true>(row + ow0, s.ow - ow0));
    float* lane = lanes + u * lanes_ld * kLanes;
    _mm512_storeu_ps(lane, _mm512_add_ps(_mm512_loadu_ps(lane), acc));
  }
}

// Output rows [oh0, oh1) of one (image, group): their products added into `thread_lanes` (every channel,
// every tap, and the bias when with_bias), from the staged rows of x_g and the dy planes of the group
// from dy_g.
SE_AVX512 void weight_band(const DirectConvShape& s, const float* dy_g, StagingRing& ring, int64_t oh0, int64_t oh1,
                           int64_t group, bool with_bias, WeightLanes& thread_lanes) {
  const int64_t cg = s.c_in / s.groups, og = s.c_out / s.groups, k = cg * s.kh * s.kw;
  const int64_t plane = s.oh * s.ow, rows = oh1 - oh0;
  // The dy rows prefetched: those of the next band, or for bands of one row, kPrefetchRowsAhead rows down
  // (as the forward does: the next row's would arrive too late), as far as these planes go.
  const int64_t prefetch_from = oh0 + std::max(rows, kPrefetchRowsAhead);
  const int64_t ahead = std::min(rows, s.oh - prefetch_from);
  const float* x_rows[kMaxBandRows];
  for (int64_t o = 0; o < og; o += kTileChannels) {
    const int64_t channels = std::min(kTileChannels, og - o);
    const float* dy_o = dy_g + o * plane + oh0 * s.ow;
    BandRows band{x_rows, rows, ahead > 0 ? dy_g + o * plane + prefetch_from * s.ow : nullptr, ahead};
    float* lanes_o = thread_lanes.lanes.data() + (group * og + o) * (k + 1) * kLanes;
    for (int64_t c = 0; c < cg; ++c) {
      for (int64_t i = 0; i < s.kh; ++i) {
        bool any = false;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t ih = oh0 + r + i * s.dh - s.ph;
          const bool inside = ih >= 0 && ih < s.h;
          x_rows[r] = inside ? ring.row(c, ih) : nullptr;
          any = any || inside;
        }
        if (!any) continue;
        float* lanes_t = lanes_o + (c * s.kh + i) * s.kw * kLanes;
        switch (channels) {
          case 1: weight_band_tiles<1>(s, dy_o, plane, band, lanes_t, k + 1); break;
          case 2: weight_band_tiles<2>(s, dy_o, plane, band, lanes_t, k + 1); break;
          case 3: weight_band_tiles<3>(s, dy_o, plane, band, lanes_t, k + 1); break;
          case 4: weight_band_tiles<4>(s, dy_o, plane, band, lanes_t, k + 1); break;
          case 5: weight_band_tiles<5>(s, dy_o, plane, band, lanes_t, k + 1); break;
          case 6: weight_band_tiles<6>(s, dy_o, plane, band, lanes_t, k + 1); break;
          case 7: weight_band_tiles<7>(s, dy_o, plane, band, lanes_t, k + 1); break;
          default: weight_band_tiles<8>(s, dy_o, plane, band, lanes_t, k + 1); break;
        }
        band.prefetch_o = nullptr;  // once per band
      }
    }
    if (with_bias) {
      for (int64_t r = 0; r < rows; ++r) bias_row(s, dy_o + r * s.ow, plane, channels, lanes_o + k * kLanes, k + 1);
    }
  }
}

}  // namespace

// The bytes of one thread's WeightLanes.
int64_t weight_lane_bytes(const DirectConvShape& s) {
  return s.c_out * (s.c_in / s.groups * s.kh * s.kw + 1) * kLanes * int64_t(sizeof(float));
}

// Band rows: about kBandOutputs outputs, fewer where the thread's staged rows and lanes would not stay
// within 3/4 of L2 (one row when even that does not: the selection then takes the GEMM path).
int64_t weight_band_rows(const DirectConvShape& s) {
  int64_t rows = std::clamp<int64_t>(kBandOutputs / s.ow, 2, kMaxBandRows);
  rows = std::min(rows, s.oh);
  while (rows > 1 && staging_bytes(s, rows) + weight_lane_bytes(s) > l2_bytes() * 3 / 4) --rows;
  return rows;
}
#endif

}  // namespace direct

void conv2d_backward_weight_direct(const Conv2dDesc& d, const float* x, const float* dy, float* dw, float* db) {
  SE_CHECK(conv2d_runs_direct(d, DirectPass::backward_weight),
           "conv2d_backward_weight_direct: this conv or CPU has no direct kernel");
  using namespace direct;
#if defined(__x86_64__)
  const DirectConvShape s = forward_shape(d);
  const int64_t cg = s.c_in / s.groups, og = s.c_out / s.groups, k = cg * s.kh * s.kw;
  const int64_t band_rows = weight_band_rows(s), bands = (s.oh + band_rows - 1) / band_rows;
  const int64_t tasks = s.n * s.groups * bands, outputs = s.c_out * (k + 1);
  const int64_t fold_bands = weight_fold_bands(s);
  // Slots: contiguous ranges of bands, each summed into f64 sums of its own, which are then added in slot
  // order. Their count is fixed by the shape, not by the threads (which take whole slots), so dW and db
  // do not depend on the thread count; up to 64 of them keep up to 16 threads evenly busy.
  const int64_t slots = std::clamp<int64_t>(tasks / kMinBandsPerSlot, 1, kWeightSlots);
  std::vector<double> slot_sums(static_cast<size_t>(slots * outputs), 0.0);  // (slots, C_out, K + 1)
#pragma omp parallel num_threads(max_threads())
  {
    WeightLanes lanes(outputs);
    StagingRing ring(s, band_rows);
    int64_t previous = -1;
#pragma omp for schedule(static)
    for (int64_t slot = 0; slot < slots; ++slot) {
      double* sums = slot_sums.data() + slot * outputs;
      const int64_t first = slot * tasks / slots, last = (slot + 1) * tasks / slots;
      for (int64_t t = first; t < last; ++t) {
        const int64_t band = t % bands, image_group = t / bands;  // image * groups + group
        const int64_t group = image_group % s.groups, image = image_group / s.groups;
        const int64_t oh0 = band * band_rows, oh1 = std::min(s.oh, oh0 + band_rows);
        ring.advance(x + (image * s.c_in + group * cg) * s.h * s.w, oh0, oh1, previous == t - 1 && band > 0);
        previous = t;
        weight_band(s, dy + image_group * og * s.oh * s.ow, ring, oh0, oh1, group, db != nullptr, lanes);
        if ((t - first + 1) % fold_bands == 0 || t + 1 == last) lanes.fold_into(sums);
      }
    }
  }
#pragma omp parallel for num_threads(max_threads()) schedule(static) if (outputs * slots >= 65536)
  for (int64_t e = 0; e < outputs; ++e) {
    double sum = 0.0;
    for (int64_t slot = 0; slot < slots; ++slot) sum += slot_sums[static_cast<size_t>(slot * outputs + e)];
    const int64_t o = e / (k + 1), tap = e % (k + 1);
    if (tap < k) {
      dw[o * k + tap] = static_cast<float>(sum);
    } else if (db != nullptr) {
      db[o] = static_cast<float>(sum);
    }
  }
#else
  (void)x, (void)dy, (void)dw, (void)db;
#endif
}

}  // namespace se::kernels::cpu
