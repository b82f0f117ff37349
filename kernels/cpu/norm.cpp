// CPU normalization kernels. BatchNorm parallelises its statistics over (sample, channel) planes and
// its element-wise passes over planes, LayerNorm and GroupNorm over blocks of rows (one row = one
// normalised group; the f32 row loops are compiled per ISA, kernels/cpu/per_isa.h); every reduction runs
// in a fixed order inside its task, so results do not depend on the thread count. LayerNorm and
// GroupNorm share one row-normalisation core: GroupNorm is rows = N * groups of (C / groups) * HW values
// whose affine parameter is the channel.
//
// Mean and variance come from moments(): chunks of kStatsChunk contiguous values, small enough to stay
// in L1 for two passes (the mean from their sum, then the squared deviations from it), each pass in
// kLanes independent partial sums that vectorize; chunks, and the planes of a BatchNorm channel, combine
// by Chan et al.'s formula. That is more accurate than the per-element Welford update it replaces (see
// NormLargeMean in tests/kernels/test_norm.cpp), without its divide and serial chain per value.
#include "kernels/norm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/cpu/per_isa.h"
#include "kernels/cpu/vector_math.h"
#include "kernels/reduce_ops.h"

namespace se::kernels::cpu {
namespace {

using reduce_ops::acc_t;

constexpr int64_t kParallelWork = 32768;

// A value of T as the accumulator type A (16-bit types through float).
template <typename A, typename T>
A load(T v) {
  if constexpr (std::is_same_v<T, f16> || std::is_same_v<T, bf16>) {
    return static_cast<A>(static_cast<float>(v));
  } else {
    return static_cast<A>(v);
  }
}

template <typename A>
using Moments = typename reduce_ops::VarOp<A>::State;  // count, mean, m2 = sum((x - mean)^2)

constexpr int64_t kStatsChunk = 2048;

// The two-pass moments of n values, 0 < n <= kStatsChunk: the mean from their sum, then the squared
// deviations from it.
template <typename A, typename T>
Moments<A> chunk_moments(const T* x,  // (n)
                         int64_t n) {
  A lanes[kLanes] = {};
  for_each_lane(0, n, [&](int64_t k, int lane) { lanes[lane] += load<A>(x[k]); });
  const A mean = sum_lanes(lanes) / static_cast<A>(n);
  A squares[kLanes] = {};
  for_each_lane(0, n, [&](int64_t k, int lane) {
    const A deviation = load<A>(x[k]) - mean;
    squares[lane] += deviation * deviation;
  });
  return {n, mean, sum_lanes(squares)};
}

// The moments of n contiguous values, chunk by chunk.
template <typename A, typename T>
Moments<A> moments(const T* x,  // (n)
                   int64_t n) {
  Moments<A> total = reduce_ops::VarOp<A>::identity();
  for (int64_t k = 0; k < n; k += kStatsChunk) {
    total = reduce_ops::VarOp<A>::combine(total, chunk_moments<A>(x + k, std::min(kStatsChunk, n - k)));
  }
  return total;
}

// Rows of `cols` values; the affine parameter of (row, col) is (row % groups) * per_group + col / inner.
struct RowNorm {
  int64_t rows, cols, groups, per_group, inner;
  int64_t params() const { return groups * per_group; }
};

RowNorm row_norm(const LayerNormDesc& d) {
  return {d.rows, d.cols, 1, d.cols, 1};
}
RowNorm row_norm(const GroupNormDesc& d) {
  return {d.n * d.groups, d.c / d.groups * d.hw, d.groups, d.c / d.groups, d.hw};
}

// Calls run(k0, k1, param, step) for runs of columns [k0, k1) of row r whose parameters are param, param +
// step, ...: one run for LayerNorm (inner 1, a parameter per column), one per parameter (step 0) for
// GroupNorm, so that no value needs a division to find its parameter.
template <typename Run>
void for_each_param_run(const RowNorm& d, int64_t r, Run run) {
  const int64_t first_param = (r % d.groups) * d.per_group;
  if (d.inner == 1) {
    run(0, d.cols, first_param, 1);
    return;
  }
  for (int64_t p = 0; p < d.per_group; ++p) run(p * d.inner, (p + 1) * d.inner, first_param + p, 0);
}

// Rows [r0, r1) of row_forward.
template <typename T>
void forward_rows(T* y,                           // (rows, cols)
                  norm_param_t<T>* mean,          // (rows)
                  norm_param_t<T>* invstd,        // (rows)
                  const T* x,                     // (rows, cols)
                  const norm_param_t<T>* weight,  // (params) or null
                  const norm_param_t<T>* bias,    // (params) or null
                  const RowNorm& d, double eps, int64_t r0, int64_t r1) {
  using A = acc_t<T>;
  using P = norm_param_t<T>;
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * d.cols;
    T* yr = y + r * d.cols;
    const Moments<A> s = moments<A>(xr, d.cols);
    const A var = d.cols > 0 ? s.m2 / static_cast<A>(d.cols) : A(0);
    const A inv = A(1) / std::sqrt(var + static_cast<A>(eps));
    mean[r] = static_cast<P>(s.mean);
    invstd[r] = static_cast<P>(inv);
    for_each_param_run(d, r, [&](int64_t k0, int64_t k1, int64_t param, int64_t step) {
      for (int64_t k = k0; k < k1; ++k, param += step) {
        A v = (load<A>(xr[k]) - s.mean) * inv;
        if (weight) v *= static_cast<A>(weight[param]);
        if (bias) v += static_cast<A>(bias[param]);
        yr[k] = static_cast<T>(v);
      }
    });
  }
}

// Rows [r0, r1) of row_backward's dx = invstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight,
// the two sums in kLanes partial sums.
template <typename T>
void backward_rows(T* dx,                          // (rows, cols)
                   const T* dy,                    // (rows, cols)
                   const T* x,                     // (rows, cols)
                   const norm_param_t<T>* mean,    // (rows)
                   const norm_param_t<T>* invstd,  // (rows)
                   const norm_param_t<T>* weight,  // (params) or null
                   const RowNorm& d, int64_t r0, int64_t r1) {
  using A = acc_t<T>;
  for (int64_t r = r0; r < r1; ++r) {
    const T* dyr = dy + r * d.cols;
    const T* xr = x + r * d.cols;
    const A mu = static_cast<A>(mean[r]), inv = static_cast<A>(invstd[r]);
    A lane_g[kLanes] = {}, lane_g_xhat[kLanes] = {};
    for_each_param_run(d, r, [&](int64_t k0, int64_t k1, int64_t param, int64_t step) {
      for_each_lane(k0, k1, [&](int64_t k, int lane) {
        const A g = load<A>(dyr[k]) * (weight ? static_cast<A>(weight[param + (k - k0) * step]) : A(1));
        lane_g[lane] += g;
        lane_g_xhat[lane] += g * (load<A>(xr[k]) - mu) * inv;
      });
    });
    const A n = static_cast<A>(d.cols);
    const A mean_g = sum_lanes(lane_g) / n, mean_g_xhat = sum_lanes(lane_g_xhat) / n;
    for_each_param_run(d, r, [&](int64_t k0, int64_t k1, int64_t param, int64_t step) {
      for (int64_t k = k0; k < k1; ++k) {
        const A g = load<A>(dyr[k]) * (weight ? static_cast<A>(weight[param + (k - k0) * step]) : A(1));
        const A xhat = (load<A>(xr[k]) - mu) * inv;
        dx[r * d.cols + k] = static_cast<T>(inv * (g - mean_g - xhat * mean_g_xhat));
      }
    });
  }
}

// GroupNorm's backward of rows [r0, r1), whose parameters each cover a run of `inner` values: per (row,
// parameter) the sums of dy and of dy * xhat over the run, each in kLanes partial sums, into
// sums (rows, per_group, 2); then, when dx is wanted, dx = invstd * (g - mean(g) - xhat * mean(g * xhat))
// with g = dy * w, its means sum_p w_p * (the run's sums) / cols. So dy and x are read twice (the sums,
// then dx), where backward_rows and a pass of its own for the parameter gradients read them three times.
template <typename T>
void group_backward_rows(T* dx,                          // (rows, cols) or null
                         acc_t<T>* sums,                 // (rows, per_group, 2)
                         const T* dy,                    // (rows, cols)
                         const T* x,                     // (rows, cols)
                         const norm_param_t<T>* mean,    // (rows)
                         const norm_param_t<T>* invstd,  // (rows)
                         const norm_param_t<T>* weight,  // (params) or null
                         const RowNorm& d, int64_t r0, int64_t r1) {
  using A = acc_t<T>;
  for (int64_t r = r0; r < r1; ++r) {
    const T* dyr = dy + r * d.cols;
    const T* xr = x + r * d.cols;
    const A mu = static_cast<A>(mean[r]), inv = static_cast<A>(invstd[r]);
    const int64_t first_param = (r % d.groups) * d.per_group;
    A* row_sums = sums + r * d.per_group * 2;
    A g_sum = 0, g_xhat_sum = 0;
    for (int64_t p = 0; p < d.per_group; ++p) {
      A lane_dy[kLanes] = {}, lane_dy_xmu[kLanes] = {};
      for_each_lane(p * d.inner, (p + 1) * d.inner, [&](int64_t k, int lane) {
        const A g = load<A>(dyr[k]);
        lane_dy[lane] += g;
        lane_dy_xmu[lane] += g * (load<A>(xr[k]) - mu);
      });
      const A sum_dy = sum_lanes(lane_dy), sum_dy_xhat = sum_lanes(lane_dy_xmu) * inv;
      row_sums[2 * p] = sum_dy;
      row_sums[2 * p + 1] = sum_dy_xhat;
      const A w = weight ? static_cast<A>(weight[first_param + p]) : A(1);
      g_sum += w * sum_dy;
      g_xhat_sum += w * sum_dy_xhat;
    }
    if (dx == nullptr) continue;
    const A n = static_cast<A>(d.cols);
    const A mean_g = g_sum / n, mean_g_xhat = g_xhat_sum / n;
    for (int64_t p = 0; p < d.per_group; ++p) {
      const A w = weight ? static_cast<A>(weight[first_param + p]) : A(1);
      for (int64_t k = p * d.inner; k < (p + 1) * d.inner; ++k) {
        const A xhat = (load<A>(xr[k]) - mu) * inv;
        dx[r * d.cols + k] = static_cast<T>(inv * (load<A>(dyr[k]) * w - mean_g - xhat * mean_g_xhat));
      }
    }
  }
}

// Rows [r0, r1) of the parameter gradients when each column has its own parameter (LayerNorm):
// sum_dy[p] += dy, sum_dy_xhat[p] += dy * xhat, row by row.
template <typename T>
void param_grad_rows(acc_t<T>* sum_dy,               // (params)
                     acc_t<T>* sum_dy_xhat,          // (params)
                     const T* dy,                    // (rows, cols)
                     const T* x,                     // (rows, cols)
                     const norm_param_t<T>* mean,    // (rows)
                     const norm_param_t<T>* invstd,  // (rows)
                     const RowNorm& d, int64_t r0, int64_t r1) {
  using A = acc_t<T>;
  for (int64_t r = r0; r < r1; ++r) {
    const A mu = static_cast<A>(mean[r]), inv = static_cast<A>(invstd[r]);
    A* row_dy = sum_dy + (r % d.groups) * d.per_group;
    A* row_dy_xhat = sum_dy_xhat + (r % d.groups) * d.per_group;
    const T* dyr = dy + r * d.cols;
    const T* xr = x + r * d.cols;
    for (int64_t k = 0; k < d.cols; ++k) {
      const A g = load<A>(dyr[k]);
      row_dy[k] += g;
      row_dy_xhat[k] += g * (load<A>(xr[k]) - mu) * inv;
    }
  }
}

// The f32 row loops per ISA (per_isa.h): rows of LayerNorm are short (SegFormer's 32 to 256 values), so
// the vector width of each row's passes is most of their cost.
using ForwardRowsFn = void (*)(float* y, float* mean, float* invstd, const float* x, const float* weight,
                               const float* bias, const RowNorm& d, double eps, int64_t r0, int64_t r1);
using BackwardRowsFn = void (*)(float* dx, const float* dy, const float* x, const float* mean, const float* invstd,
                                const float* weight, const RowNorm& d, int64_t r0, int64_t r1);
using ParamGradRowsFn = void (*)(double* sum_dy, double* sum_dy_xhat, const float* dy, const float* x,
                                 const float* mean, const float* invstd, const RowNorm& d, int64_t r0, int64_t r1);
using GroupBackwardRowsFn = void (*)(float* dx, double* sums, const float* dy, const float* x, const float* mean,
                                     const float* invstd, const float* weight, const RowNorm& d, int64_t r0, int64_t r1);
#define SE_DEFINE_NORM_ROWS(suffix, attribute)                                                                        \
  attribute __attribute__((flatten)) void forward_rows_##suffix(                                                      \
      float* y, float* mean, float* invstd, const float* x, const float* weight, const float* bias, const RowNorm& d, \
      double eps, int64_t r0, int64_t r1) {                                                                           \
    forward_rows(y, mean, invstd, x, weight, bias, d, eps, r0, r1);                                                   \
  }                                                                                                                   \
  attribute __attribute__((flatten)) void backward_rows_##suffix(                                                     \
      float* dx, const float* dy, const float* x, const float* mean, const float* invstd, const float* weight,        \
      const RowNorm& d, int64_t r0, int64_t r1) {                                                                     \
    backward_rows(dx, dy, x, mean, invstd, weight, d, r0, r1);                                                        \
  }                                                                                                                   \
  attribute __attribute__((flatten)) void param_grad_rows_##suffix(                                                   \
      double* sum_dy, double* sum_dy_xhat, const float* dy, const float* x, const float* mean, const float* invstd,   \
      const RowNorm& d, int64_t r0, int64_t r1) {                                                                     \
    param_grad_rows(sum_dy, sum_dy_xhat, dy, x, mean, invstd, d, r0, r1);                                             \
  }                                                                                                                   \
  attribute __attribute__((flatten)) void group_backward_rows_##suffix(                                               \
      float* dx, double* sums, const float* dy, const float* x, const float* mean, const float* invstd,               \
      const float* weight, const RowNorm& d, int64_t r0, int64_t r1) {                                                \
    group_backward_rows(dx, sums, dy, x, mean, invstd, weight, d, r0, r1);                                            \
  }
SE_STAMP_PER_ISA(SE_DEFINE_NORM_ROWS)
#undef SE_DEFINE_NORM_ROWS

// ---- BatchNorm planes ----

// dy[k] as A, or 0 where a fused ReLU's output y[k] is not > 0 (relu's backward; kMasked: y is given).
// Both loads unconditional, so that the choice is a select the loops vectorize, not a branch that the
// ReLU's random signs would mispredict half the time.
template <bool kMasked, typename A, typename T>
inline A masked_grad(const T* dy, const T* y, int64_t k) {
  const A g = load<A>(dy[k]);
  if constexpr (kMasked) {
    return load<A>(y[k]) > A(0) ? g : A(0);
  } else {
    return g;
  }
}

// The sums of dy and of dy * (x - mu) over the n values of one plane, each in kLanes partial sums.
template <typename A, bool kMasked, typename T>
void plane_grad_sums(const T* dy,  // (n)
                     const T* x,   // (n)
                     const T* y,   // (n): the fused ReLU's output when kMasked
                     A mu, int64_t n, A* sum_dy, A* sum_dy_xmu) {
  A lanes_dy[kLanes] = {}, lanes_dy_xmu[kLanes] = {};
  for_each_lane(0, n, [&](int64_t k, int lane) {
    const A g = masked_grad<kMasked, A>(dy, y, k);
    lanes_dy[lane] += g;
    lanes_dy_xmu[lane] += g * (load<A>(x[k]) - mu);
  });
  *sum_dy = sum_lanes(lanes_dy);
  *sum_dy_xmu = sum_lanes(lanes_dy_xmu);
}

// plane_grad_sums<double, true> for f32 on GCC vectors: the same lanes (for_each_lane's: k % kLanes, the
// tail in lane 0), so the same bits. The ReLU's select vectorizes here; in the interleaved scalars GCC's
// SLP vectorizer leaves it as branches, which the ReLU's random signs mispredict half the time.
inline void plane_grad_sums_masked_f32(const float* dy,  // (n)
                                       const float* x,   // (n)
                                       const float* y,   // (n): the fused ReLU's output
                                       double mu, int64_t n, double* sum_dy, double* sum_dy_xmu) {
  static_assert(kLanes == 8, "one Double8 of lanes");
  Double8 lanes_dy = {}, lanes_dy_xmu = {};
  const Double8 zero = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) {
    Float8 dy8, x8, y8;
    std::memcpy(&dy8, dy + k, sizeof(dy8));
    std::memcpy(&x8, x + k, sizeof(x8));
    std::memcpy(&y8, y + k, sizeof(y8));
    const Double8 g = __builtin_convertvector(y8, Double8) > zero ? __builtin_convertvector(dy8, Double8) : zero;
    lanes_dy += g;
    lanes_dy_xmu += g * (__builtin_convertvector(x8, Double8) - mu);
  }
  double lane_dy[kLanes], lane_dy_xmu[kLanes];
  for (int lane = 0; lane < kLanes; ++lane) lane_dy[lane] = lanes_dy[lane], lane_dy_xmu[lane] = lanes_dy_xmu[lane];
  for (; k < n; ++k) {
    const double g = masked_grad<true, double>(dy, y, k);
    lane_dy[0] += g;
    lane_dy_xmu[0] += g * (static_cast<double>(x[k]) - mu);
  }
  *sum_dy = sum_lanes(lane_dy);
  *sum_dy_xmu = sum_lanes(lane_dy_xmu);
}

// The f32 plane loops per ISA: widening each float to a double accumulator is most of their work, and
// the baseline ISA does it 2 values at a time.
using PlaneMomentsFn = Moments<double> (*)(const float* x, int64_t n);
using PlaneGradSumsFn = void (*)(const float* dy, const float* x, const float* y, double mu, int64_t n, double* sum_dy,
                                 double* sum_dy_xmu);
#define SE_DEFINE_BATCH_NORM_PLANES(suffix, attribute)                                                             \
  attribute __attribute__((flatten)) Moments<double> plane_moments_##suffix(const float* x, int64_t n) {           \
    return moments<double>(x, n);                                                                                  \
  }                                                                                                                \
  attribute __attribute__((flatten)) void plane_grad_sums_##suffix(                                                \
      const float* dy, const float* x, const float* y, double mu, int64_t n, double* sum_dy, double* sum_dy_xmu) { \
    if (y != nullptr) {                                                                                            \
      plane_grad_sums_masked_f32(dy, x, y, mu, n, sum_dy, sum_dy_xmu);                                             \
    } else {                                                                                                       \
      plane_grad_sums<double, false>(dy, x, y, mu, n, sum_dy, sum_dy_xmu);                                         \
    }                                                                                                              \
  }
SE_STAMP_PER_ISA(SE_DEFINE_BATCH_NORM_PLANES)
#undef SE_DEFINE_BATCH_NORM_PLANES

constexpr int64_t kRowsPerTask = 64;

// Calls run(r0, r1) for blocks of rows [r0, r1), in parallel for large work: up to kRowsPerTask rows per
// block, fewer when there are few rows (GroupNorm: N * groups long rows), so that every thread gets some.
// Rows are independent: the blocks do not change any result.
template <typename Run>
void for_each_row_block(const RowNorm& d, Run run) {
  const int64_t block = std::clamp<int64_t>(d.rows / (4 * omp_get_max_threads()), 1, kRowsPerTask);
  const int64_t blocks = (d.rows + block - 1) / block;
#pragma omp parallel for schedule(static) if (d.rows * d.cols >= kParallelWork)
  for (int64_t b = 0; b < blocks; ++b) run(b * block, std::min(d.rows, (b + 1) * block));
}

template <typename T>
void row_forward(T* y,                           // (rows, cols)
                 norm_param_t<T>* mean,          // (rows)
                 norm_param_t<T>* invstd,        // (rows)
                 const T* x,                     // (rows, cols)
                 const norm_param_t<T>* weight,  // (params) or null
                 const norm_param_t<T>* bias,    // (params) or null
                 const RowNorm& d, double eps) {
  static const ForwardRowsFn f32_rows = SE_PICK_PER_ISA(forward_rows);
  for_each_row_block(d, [&](int64_t r0, int64_t r1) {
    if constexpr (std::is_same_v<T, float>) {
      f32_rows(y, mean, invstd, x, weight, bias, d, eps, r0, r1);
    } else {
      forward_rows(y, mean, invstd, x, weight, bias, d, eps, r0, r1);
    }
  });
}

// Rows per chunk of the parameter gradients when each column has its own parameter: per-parameter
// partial sums of a chunk, combined in chunk order, so the result does not depend on the thread count.
constexpr int64_t kParamGradRows = 256;

// dx (backward_rows), then the parameter gradients sum_dy * xhat and sum_dy; GroupNorm's (a parameter
// per run of HW > 1 values) come from group_backward_rows' sums, each over the samples in order.
template <typename T>
void row_backward(T* dx,                          // (rows, cols) or null
                  norm_param_t<T>* grad_weight,   // (params) or null
                  norm_param_t<T>* grad_bias,     // (params) or null
                  const T* dy,                    // (rows, cols)
                  const T* x,                     // (rows, cols)
                  const norm_param_t<T>* mean,    // (rows)
                  const norm_param_t<T>* invstd,  // (rows)
                  const norm_param_t<T>* weight,  // (params) or null
                  const RowNorm& d) {
  using A = acc_t<T>;
  using P = norm_param_t<T>;
  if (d.inner > 1) {  // GroupNorm: group_backward_rows, then each parameter's sums over the samples in order
    std::vector<A> sums(static_cast<size_t>(d.rows * d.per_group * 2));
    static const GroupBackwardRowsFn f32_group_rows = SE_PICK_PER_ISA(group_backward_rows);
    for_each_row_block(d, [&](int64_t r0, int64_t r1) {
      if constexpr (std::is_same_v<T, float>) {
        f32_group_rows(dx, sums.data(), dy, x, mean, invstd, weight, d, r0, r1);
      } else {
        group_backward_rows(dx, sums.data(), dy, x, mean, invstd, weight, d, r0, r1);
      }
    });
    for (int64_t p = 0; p < d.params(); ++p) {
      const int64_t group = p / d.per_group, in_group = p % d.per_group;
      A sum_dy = 0, sum_dy_xhat = 0;
      for (int64_t r = group; r < d.rows; r += d.groups) {
        sum_dy += sums[static_cast<size_t>((r * d.per_group + in_group) * 2)];
        sum_dy_xhat += sums[static_cast<size_t>((r * d.per_group + in_group) * 2 + 1)];
      }
      if (grad_weight) grad_weight[p] = static_cast<P>(sum_dy_xhat);
      if (grad_bias) grad_bias[p] = static_cast<P>(sum_dy);
    }
    return;
  }
  if (dx) {
    static const BackwardRowsFn f32_rows = SE_PICK_PER_ISA(backward_rows);
    for_each_row_block(d, [&](int64_t r0, int64_t r1) {
      if constexpr (std::is_same_v<T, float>) {
        f32_rows(dx, dy, x, mean, invstd, weight, d, r0, r1);
      } else {
        backward_rows(dx, dy, x, mean, invstd, weight, d, r0, r1);
      }
    });
  }
  if (!grad_weight && !grad_bias) return;
  std::vector<A> sum_dy(d.params()), sum_dy_xhat(d.params());
  // A parameter per column (LayerNorm, and GroupNorm with HW 1): chunks of rows in parallel, each with
  // per-parameter sums.
  const int64_t chunks = (d.rows + kParamGradRows - 1) / kParamGradRows, params = d.params();
  std::vector<A> partial(2 * chunks * params);  // per chunk: the sums of dy, then of dy * xhat
#pragma omp parallel for schedule(static) if (d.rows * d.cols >= kParallelWork)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    A* chunk_dy = partial.data() + 2 * chunk * params;
    const int64_t r0 = chunk * kParamGradRows, r1 = std::min(d.rows, (chunk + 1) * kParamGradRows);
    if constexpr (std::is_same_v<T, float>) {
      static const ParamGradRowsFn f32_param_rows = SE_PICK_PER_ISA(param_grad_rows);
      f32_param_rows(chunk_dy, chunk_dy + params, dy, x, mean, invstd, d, r0, r1);
    } else {
      param_grad_rows(chunk_dy, chunk_dy + params, dy, x, mean, invstd, d, r0, r1);
    }
  }
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    for (int64_t p = 0; p < params; ++p) {
      sum_dy[p] += partial[2 * chunk * params + p];
      sum_dy_xhat[p] += partial[(2 * chunk + 1) * params + p];
    }
  }
  for (int64_t p = 0; p < d.params(); ++p) {
    if (grad_weight) grad_weight[p] = static_cast<P>(sum_dy_xhat[p]);
    if (grad_bias) grad_bias[p] = static_cast<P>(sum_dy[p]);
  }
}

// ---- BatchNorm: the per-plane and per-channel pieces of the building blocks and the fused passes, so
// that both give the same bits.

template <typename T>
Moments<acc_t<T>> bn_plane_moments(const T* plane,  // (HW)
                                   int64_t hw) {
  if constexpr (std::is_same_v<T, float>) {
    static const PlaneMomentsFn f32_moments = SE_PICK_PER_ISA(plane_moments);
    return f32_moments(plane, hw);
  } else {
    return moments<acc_t<T>>(plane, hw);
  }
}

template <typename T>
void bn_plane_grad_sums(const T* dy,  // (HW)
                        const T* x,   // (HW)
                        const T* y,   // (HW): the fused ReLU's output, or null
                        acc_t<T> mu, int64_t hw, acc_t<T>* sum_dy, acc_t<T>* sum_dy_xmu) {
  if constexpr (std::is_same_v<T, float>) {
    static const PlaneGradSumsFn f32_sums = SE_PICK_PER_ISA(plane_grad_sums);
    f32_sums(dy, x, y, mu, hw, sum_dy, sum_dy_xmu);
  } else if (y != nullptr) {
    plane_grad_sums<acc_t<T>, true>(dy, x, y, mu, hw, sum_dy, sum_dy_xmu);
  } else {
    plane_grad_sums<acc_t<T>, false>(dy, x, y, mu, hw, sum_dy, sum_dy_xmu);
  }
}

// A channel's mean and biased variance from the moments of its planes, combined in sample order.
template <typename T>
void bn_channel_stats(const Moments<acc_t<T>>& s, norm_param_t<T>* mean, norm_param_t<T>* var) {
  using A = acc_t<T>;
  *mean = static_cast<norm_param_t<T>>(s.mean);
  *var = static_cast<norm_param_t<T>>(s.count > 0 ? s.m2 / static_cast<A>(s.count) : A(0));
}

// invstd of channel c and its running statistics (when running_mean is not null).
template <typename P>
void bn_finalize_channel(int64_t c, P* invstd, P* running_mean, P* running_var, const P* mean, const P* var,
                         int64_t count, double momentum, double eps) {
  invstd[c] = static_cast<P>(1.0 / std::sqrt(static_cast<double>(var[c]) + eps));
  if (running_mean) {
    const double unbiased = static_cast<double>(var[c]) * count / static_cast<double>(count - 1);
    running_mean[c] = static_cast<P>((1 - momentum) * running_mean[c] + momentum * mean[c]);
    running_var[c] = static_cast<P>((1 - momentum) * running_var[c] + momentum * unbiased);
  }
}

// y = x * scale + shift over one plane of channel c, with the affine folded into scale and shift; with
// relu, then relu(y) of the rounded value (the element-wise ReLU: x < 0 ? 0 : x, which keeps NaN and -0).
template <typename T>
void bn_elemt_plane(T* y,        // (HW)
                    const T* x,  // (HW)
                    int64_t hw, int64_t c, const norm_param_t<T>* mean, const norm_param_t<T>* invstd,
                    const norm_param_t<T>* weight, const norm_param_t<T>* bias, bool relu) {
  using P = norm_param_t<T>;
  const P scale = invstd[c] * (weight ? weight[c] : P(1));
  const P shift = (bias ? bias[c] : P(0)) - mean[c] * scale;
  if (!relu) {
    for (int64_t k = 0; k < hw; ++k) y[k] = static_cast<T>(load<P>(x[k]) * scale + shift);
    return;
  }
  const T zero = static_cast<T>(P(0));
  for (int64_t k = 0; k < hw; ++k) {
    const T v = static_cast<T>(load<P>(x[k]) * scale + shift);
    y[k] = load<P>(v) < P(0) ? zero : v;
  }
}

template <bool kMasked, typename T>
void bn_backward_elemt_plane_loop(T* dx, const T* dy, const T* x, const T* y, int64_t hw, norm_param_t<T> scale,
                                  norm_param_t<T> mean_dy, norm_param_t<T> mean, norm_param_t<T> proj) {
  using P = norm_param_t<T>;
  for (int64_t k = 0; k < hw; ++k) {
    dx[k] = static_cast<T>(scale * (masked_grad<kMasked, P>(dy, y, k) - mean_dy - (load<P>(x[k]) - mean) * proj));
  }
}

template <typename T>
void bn_backward_elemt_plane(T* dx,        // (HW)
                             const T* dy,  // (HW)
                             const T* x,   // (HW)
                             const T* y,   // (HW): the fused ReLU's output, or null
                             int64_t hw, int64_t c, const norm_param_t<T>* mean, const norm_param_t<T>* invstd,
                             const norm_param_t<T>* weight, const norm_param_t<T>* sum_dy,
                             const norm_param_t<T>* sum_dy_xmu, int64_t count) {
  using P = norm_param_t<T>;
  const P scale = invstd[c] * (weight ? weight[c] : P(1));
  const P mean_dy = sum_dy ? sum_dy[c] / static_cast<P>(count) : P(0);
  const P proj = sum_dy_xmu ? sum_dy_xmu[c] / static_cast<P>(count) * invstd[c] * invstd[c] : P(0);
  if (y != nullptr) {
    bn_backward_elemt_plane_loop<true>(dx, dy, x, y, hw, scale, mean_dy, mean[c], proj);
  } else {
    bn_backward_elemt_plane_loop<false>(dx, dy, x, y, hw, scale, mean_dy, mean[c], proj);
  }
}

// The fused passes go channel by channel, one channel's planes per task; with fewer channels than
// threads (or little work) they run the building blocks instead, which split the planes.
bool bn_by_channel(const BatchNormDesc& d) {
  return d.c >= omp_get_max_threads() && d.n * d.c * d.hw >= kParallelWork;
}

}  // namespace

// The moments of every (sample, channel) plane in parallel, then per channel combined over the samples
// in order.
template <typename T>
void batch_norm_stats(norm_param_t<T>* mean, norm_param_t<T>* var, const T* x, const BatchNormDesc& d, Stream) {
  std::vector<Moments<acc_t<T>>> plane_moments(d.n * d.c);
#pragma omp parallel for schedule(static) if (d.n * d.c * d.hw >= kParallelWork)
  for (int64_t nc = 0; nc < d.n * d.c; ++nc) plane_moments[nc] = bn_plane_moments(x + nc * d.hw, d.hw);
  for (int64_t c = 0; c < d.c; ++c) {
    Moments<acc_t<T>> s = reduce_ops::VarOp<acc_t<T>>::identity();
    for (int64_t n = 0; n < d.n; ++n) s = reduce_ops::VarOp<acc_t<T>>::combine(s, plane_moments[n * d.c + c]);
    bn_channel_stats<T>(s, mean + c, var + c);
  }
}

template <typename T>
void batch_norm_finalize(norm_param_t<T>* invstd, norm_param_t<T>* running_mean, norm_param_t<T>* running_var,
                         const norm_param_t<T>* mean, const norm_param_t<T>* var, int64_t channels, int64_t count,
                         double momentum, double eps, Stream) {
  for (int64_t c = 0; c < channels; ++c) {
    bn_finalize_channel(c, invstd, running_mean, running_var, mean, var, count, momentum, eps);
  }
}

template <typename T>
void batch_norm_elemt(T* y, const T* x, const norm_param_t<T>* mean, const norm_param_t<T>* invstd,
                      const norm_param_t<T>* weight, const norm_param_t<T>* bias, const BatchNormDesc& d, Stream) {
#pragma omp parallel for schedule(static) if (d.n * d.c * d.hw >= kParallelWork)
  for (int64_t nc = 0; nc < d.n * d.c; ++nc) {
    bn_elemt_plane(y + nc * d.hw, x + nc * d.hw, d.hw, nc % d.c, mean, invstd, weight, bias, d.relu);
  }
}

// The sums of every (sample, channel) plane in parallel, then per channel added over the samples in
// order.
template <typename T>
void batch_norm_backward_reduce(norm_param_t<T>* sum_dy, norm_param_t<T>* sum_dy_xmu, const T* dy, const T* x,
                                const std::type_identity_t<T>* y, const norm_param_t<T>* mean, const BatchNormDesc& d,
                                Stream) {
  using A = acc_t<T>;
  const T* relu_y = d.relu ? y : nullptr;
  std::vector<A> plane_sums(2 * d.n * d.c);  // per plane: the sum of dy, then of dy * (x - mean)
#pragma omp parallel for schedule(static) if (d.n * d.c * d.hw >= kParallelWork)
  for (int64_t nc = 0; nc < d.n * d.c; ++nc) {
    A* sums = plane_sums.data() + 2 * nc;
    bn_plane_grad_sums(dy + nc * d.hw, x + nc * d.hw, relu_y ? relu_y + nc * d.hw : nullptr,
                       static_cast<A>(mean[nc % d.c]), d.hw, sums, sums + 1);
  }
  for (int64_t c = 0; c < d.c; ++c) {
    A s = 0, s_xmu = 0;
    for (int64_t n = 0; n < d.n; ++n) {
      s += plane_sums[2 * (n * d.c + c)];
      s_xmu += plane_sums[2 * (n * d.c + c) + 1];
    }
    sum_dy[c] = static_cast<norm_param_t<T>>(s);
    sum_dy_xmu[c] = static_cast<norm_param_t<T>>(s_xmu);
  }
}

template <typename T>
void batch_norm_backward_elemt(T* dx, const T* dy, const T* x, const std::type_identity_t<T>* y,
                               const norm_param_t<T>* mean, const norm_param_t<T>* invstd,
                               const norm_param_t<T>* weight, const norm_param_t<T>* sum_dy,
                               const norm_param_t<T>* sum_dy_xmu, int64_t count, const BatchNormDesc& d, Stream) {
  const T* relu_y = d.relu ? y : nullptr;
#pragma omp parallel for schedule(static) if (d.n * d.c * d.hw >= kParallelWork)
  for (int64_t nc = 0; nc < d.n * d.c; ++nc) {
    const int64_t k = nc * d.hw;
    bn_backward_elemt_plane(dx + k, dy + k, x + k, relu_y ? relu_y + k : nullptr, d.hw, nc % d.c, mean, invstd, weight,
                            sum_dy, sum_dy_xmu, count);
  }
}

// Channel by channel: its planes' moments, then (while they are still in cache) their normalisation.
template <typename T>
void batch_norm_forward_training(T* y, norm_param_t<T>* mean, norm_param_t<T>* invstd, norm_param_t<T>* running_mean,
                                 norm_param_t<T>* running_var, const T* x, const norm_param_t<T>* weight,
                                 const norm_param_t<T>* bias, const BatchNormDesc& d, double momentum, double eps,
                                 Stream stream) {
  using P = norm_param_t<T>;
  const int64_t count = d.n * d.hw;
  if (!bn_by_channel(d)) {
    std::vector<P> var(d.c);
    batch_norm_stats(mean, var.data(), x, d, stream);
    batch_norm_finalize<T>(invstd, running_mean, running_var, mean, var.data(), d.c, count, momentum, eps, stream);
    batch_norm_elemt(y, x, mean, invstd, weight, bias, d, stream);
    return;
  }
  std::vector<P> var(d.c);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < d.c; ++c) {
    Moments<acc_t<T>> s = reduce_ops::VarOp<acc_t<T>>::identity();
    for (int64_t n = 0; n < d.n; ++n) {
      s = reduce_ops::VarOp<acc_t<T>>::combine(s, bn_plane_moments(x + (n * d.c + c) * d.hw, d.hw));
    }
    bn_channel_stats<T>(s, mean + c, var.data() + c);
    bn_finalize_channel(c, invstd, running_mean, running_var, mean, var.data(), count, momentum, eps);
    for (int64_t n = 0; n < d.n; ++n) {
      const int64_t k = (n * d.c + c) * d.hw;
      bn_elemt_plane(y + k, x + k, d.hw, c, mean, invstd, weight, bias, d.relu);
    }
  }
}

// Channel by channel: its planes' sums, then (while they are still in cache) dx.
template <typename T>
void batch_norm_backward_training(T* dx, norm_param_t<T>* sum_dy, norm_param_t<T>* sum_dy_xmu, const T* dy, const T* x,
                                  const std::type_identity_t<T>* y, const norm_param_t<T>* mean,
                                  const norm_param_t<T>* invstd, const norm_param_t<T>* weight, const BatchNormDesc& d,
                                  Stream stream) {
  using A = acc_t<T>;
  const int64_t count = d.n * d.hw;
  if (!bn_by_channel(d)) {
    batch_norm_backward_reduce(sum_dy, sum_dy_xmu, dy, x, y, mean, d, stream);
    if (dx) batch_norm_backward_elemt(dx, dy, x, y, mean, invstd, weight, sum_dy, sum_dy_xmu, count, d, stream);
    return;
  }
  const T* relu_y = d.relu ? y : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < d.c; ++c) {
    A s = 0, s_xmu = 0;
    for (int64_t n = 0; n < d.n; ++n) {
      const int64_t k = (n * d.c + c) * d.hw;
      A plane_dy, plane_dy_xmu;
      bn_plane_grad_sums(dy + k, x + k, relu_y ? relu_y + k : nullptr, static_cast<A>(mean[c]), d.hw, &plane_dy,
                         &plane_dy_xmu);
      s += plane_dy;
      s_xmu += plane_dy_xmu;
    }
    sum_dy[c] = static_cast<norm_param_t<T>>(s);
    sum_dy_xmu[c] = static_cast<norm_param_t<T>>(s_xmu);
    if (!dx) continue;
    for (int64_t n = 0; n < d.n; ++n) {
      const int64_t k = (n * d.c + c) * d.hw;
      bn_backward_elemt_plane(dx + k, dy + k, x + k, relu_y ? relu_y + k : nullptr, d.hw, c, mean, invstd, weight,
                              sum_dy, sum_dy_xmu, count);
    }
  }
}

template <typename T>
void layer_norm_forward(T* y, norm_param_t<T>* mean, norm_param_t<T>* invstd, const T* x, const norm_param_t<T>* weight,
                        const norm_param_t<T>* bias, const LayerNormDesc& desc, double eps, Stream) {
  row_forward(y, mean, invstd, x, weight, bias, row_norm(desc), eps);
}
template <typename T>
void layer_norm_backward(T* dx, norm_param_t<T>* grad_weight, norm_param_t<T>* grad_bias, const T* dy, const T* x,
                         const norm_param_t<T>* mean, const norm_param_t<T>* invstd, const norm_param_t<T>* weight,
                         const LayerNormDesc& desc, Stream) {
  row_backward(dx, grad_weight, grad_bias, dy, x, mean, invstd, weight, row_norm(desc));
}
template <typename T>
void group_norm_forward(T* y, norm_param_t<T>* mean, norm_param_t<T>* invstd, const T* x, const norm_param_t<T>* weight,
                        const norm_param_t<T>* bias, const GroupNormDesc& desc, double eps, Stream) {
  row_forward(y, mean, invstd, x, weight, bias, row_norm(desc), eps);
}
template <typename T>
void group_norm_backward(T* dx, norm_param_t<T>* grad_weight, norm_param_t<T>* grad_bias, const T* dy, const T* x,
                         const norm_param_t<T>* mean, const norm_param_t<T>* invstd, const norm_param_t<T>* weight,
                         const GroupNormDesc& desc, Stream) {
  row_backward(dx, grad_weight, grad_bias, dy, x, mean, invstd, weight, row_norm(desc));
}

#define SE_INSTANTIATE(T)                                                                                             \
  template void batch_norm_stats<T>(norm_param_t<T>*, norm_param_t<T>*, const T*, const BatchNormDesc&, Stream);      \
  template void batch_norm_finalize<T>(norm_param_t<T>*, norm_param_t<T>*, norm_param_t<T>*, const norm_param_t<T>*,  \
                                       const norm_param_t<T>*, int64_t, int64_t, double, double, Stream);             \
  template void batch_norm_elemt<T>(T*, const T*, const norm_param_t<T>*, const norm_param_t<T>*,                     \
                                    const norm_param_t<T>*, const norm_param_t<T>*, const BatchNormDesc&, Stream);    \
  template void batch_norm_backward_reduce<T>(norm_param_t<T>*, norm_param_t<T>*, const T*, const T*, const T*,       \
                                              const norm_param_t<T>*, const BatchNormDesc&, Stream);                  \
  template void batch_norm_backward_elemt<T>(T*, const T*, const T*, const T*, const norm_param_t<T>*,                \
                                             const norm_param_t<T>*, const norm_param_t<T>*, const norm_param_t<T>*,  \
                                             const norm_param_t<T>*, int64_t, const BatchNormDesc&, Stream);          \
  template void batch_norm_forward_training<T>(T*, norm_param_t<T>*, norm_param_t<T>*, norm_param_t<T>*,              \
                                               norm_param_t<T>*, const T*, const norm_param_t<T>*,                    \
                                               const norm_param_t<T>*, const BatchNormDesc&, double, double, Stream); \
  template void batch_norm_backward_training<T>(T*, norm_param_t<T>*, norm_param_t<T>*, const T*, const T*, const T*, \
                                                const norm_param_t<T>*, const norm_param_t<T>*,                       \
                                                const norm_param_t<T>*, const BatchNormDesc&, Stream);                \
  template void layer_norm_forward<T>(T*, norm_param_t<T>*, norm_param_t<T>*, const T*, const norm_param_t<T>*,       \
                                      const norm_param_t<T>*, const LayerNormDesc&, double, Stream);                  \
  template void layer_norm_backward<T>(T*, norm_param_t<T>*, norm_param_t<T>*, const T*, const T*,                    \
                                       const norm_param_t<T>*, const norm_param_t<T>*, const norm_param_t<T>*,        \
                                       const LayerNormDesc&, Stream);                                                 \
  template void group_norm_forward<T>(T*, norm_param_t<T>*, norm_param_t<T>*, const T*, const norm_param_t<T>*,       \
                                      const norm_param_t<T>*, const GroupNormDesc&, double, Stream);                  \
  template void group_norm_backward<T>(T*, norm_param_t<T>*, norm_param_t<T>*, const T*, const T*,                    \
                                       const norm_param_t<T>*, const norm_param_t<T>*, const norm_param_t<T>*,        \
                                       const GroupNormDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cpu
