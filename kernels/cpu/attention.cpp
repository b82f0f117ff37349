// CPU attention: the tiling and online softmax of the CUDA kernels (memory linear in the sequence lengths,
// no lq x lk matrix), with each tile's products on the CPU GEMM's micro-kernels (gemm_on_this_thread) and
// its softmax in loops compiled per ISA (RowLoops). Forward tasks are (batch * head, block of kQueryBlock
// queries); backward tasks are (batch * head, part of the queries), see backward. OpenMP spreads the tasks,
// each thread with its own tile buffers. f32 and f64 operands are read in place; f16/bf16 ones are
// converted to float once per head (keys, values) or query block, by the thread that uses them.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/gemm_on_thread.h"
#include "kernels/cpu/per_isa.h"
#include "kernels/cpu/vector_math.h"

namespace se::kernels::cpu {
namespace {

constexpr int64_t kQueryBlock = 128;  // queries per tile
constexpr int64_t kKeyBlock = 256;    // keys per tile: SegFormer's reduced key lengths fit one
constexpr int64_t kParallelWork = 16384;

bool parallel(const AttentionDesc& a) {
  return a.batch * a.heads * a.lq * a.lk * a.d >= kParallelWork;
}

// ---------------------------------------------------------------------------------------------------
// The element loops over one row of a tile. Maxima and sums run in lanes (kLanes interleaved scalars for
// double, one 16-float GCC vector for float), so that the loops vectorize and sum in an order fixed by the
// code, whatever the ISA.

// s[k] *= scale for k < n; returns the largest s[k].
template <typename C>
inline C scale_and_max(C* __restrict s, int64_t n, C scale) {
  C lane_max[kLanes];
  std::fill(lane_max, lane_max + kLanes, -static_cast<C>(INFINITY));
  for_each_lane(0, n, [&](int64_t k, int j) {
    const C x = s[k] * scale;
    s[k] = x;
    lane_max[j] = std::max(lane_max[j], x);
  });
  return *std::max_element(lane_max, lane_max + kLanes);
}

inline float scale_and_max(float* __restrict s, int64_t n, float scale) {
  Float16 lane_max = Float16{} - INFINITY;
  int64_t k = 0;
  for (; k + kFloat16Lanes <= n; k += kFloat16Lanes) {
    Float16 x;
    load16(x, s + k);
    x *= scale;
    store16(s + k, x);
    lane_max = x > lane_max ? x : lane_max;
  }
  float max = lane_max[0];
  for (int64_t j = 1; j < kFloat16Lanes; ++j) max = std::max(max, lane_max[j]);
  for (; k < n; ++k) {
    s[k] *= scale;
    max = std::max(max, s[k]);
  }
  return max;
}

// The sum of s[k] for k < n.
template <typename C>
inline C row_sum(const C* __restrict s, int64_t n) {
  C lane_sum[kLanes] = {};
  for_each_lane(0, n, [&](int64_t k, int j) { lane_sum[j] += s[k]; });
  return sum_lanes(lane_sum);
}

inline float row_sum(const float* __restrict s, int64_t n) {
  Float16 lane_sum = {};
  int64_t k = 0;
  for (; k + kFloat16Lanes <= n; k += kFloat16Lanes) {
    Float16 x;
    load16(x, s + k);
    lane_sum += x;
  }
  float sum = 0;
  for (int64_t j = 0; j < kFloat16Lanes; ++j) sum += lane_sum[j];
  for (; k < n; ++k) sum += s[k];
  return sum;
}

// s[k] = e^(s[k] - shift) for k < n; returns their sum. Two loops: the exp loop without a sum in it
// vectorizes at the ISA's full width.
template <typename C>
inline C exp_and_sum(C* __restrict s, int64_t n, C shift) {
  for (int64_t k = 0; k < n; ++k) s[k] = fast_exp(s[k] - shift);
  return row_sum(s, n);
}

// The backward's probabilities: s[k] = e^(scale * s[k] - lse) for k < n.
template <typename C>
inline void probabilities(C* __restrict s, int64_t n, C scale, C lse) {
  for (int64_t k = 0; k < n; ++k) s[k] = fast_exp(scale * s[k] - lse);
}

// The gradient of the scaled scores: dp[k] = scale * (p[k] * (dp[k] - delta)) for k < n.
template <typename C>
inline void score_gradient(C* __restrict dp, const C* __restrict p, int64_t n, C delta, C scale) {
  for (int64_t k = 0; k < n; ++k) dp[k] = scale * (p[k] * (dp[k] - delta));
}

template <typename C>
struct RowLoops {
  C (*scale_and_max)(C* s, int64_t n, C scale);
  C (*exp_and_sum)(C* s, int64_t n, C shift);
  void (*probabilities)(C* s, int64_t n, C scale, C lse);
  void (*score_gradient)(C* dp, const C* p, int64_t n, C delta, C scale);
};

// The float loops per ISA (per_isa.h).
#define SE_DEFINE_ROW_LOOPS(suffix, attribute)                                                                       \
  attribute float scale_and_max_##suffix(float* s, int64_t n, float scale) {                                         \
    return scale_and_max(s, n, scale);                                                                               \
  }                                                                                                                  \
  attribute float exp_and_sum_##suffix(float* s, int64_t n, float shift) {                                           \
    return exp_and_sum(s, n, shift);                                                                                 \
  }                                                                                                                  \
  attribute void probabilities_##suffix(float* s, int64_t n, float scale, float lse) {                               \
    probabilities(s, n, scale, lse);                                                                                 \
  }                                                                                                                  \
  attribute void score_gradient_##suffix(float* dp, const float* p, int64_t n, float delta, float scale) {           \
    score_gradient(dp, p, n, delta, scale);                                                                          \
  }                                                                                                                  \
  constexpr RowLoops<float> kRowLoops_##suffix{scale_and_max_##suffix, exp_and_sum_##suffix, probabilities_##suffix, \
                                               score_gradient_##suffix};
SE_STAMP_PER_ISA(SE_DEFINE_ROW_LOOPS)
#undef SE_DEFINE_ROW_LOOPS

template <typename C>
const RowLoops<C>& row_loops() {
  if constexpr (std::is_same_v<C, float>) {
    static const RowLoops<float> best = SE_PICK_PER_ISA(kRowLoops);
    return best;
  } else {
    static const RowLoops<double> loops{scale_and_max<double>, exp_and_sum<double>, probabilities<double>,
                                        score_gradient<double>};
    return loops;
  }
}

// ---------------------------------------------------------------------------------------------------
// Operands and products.

// Rows [row0, row0 + rows) of x (rows of d values) in the compute type C: x itself when it is of type C,
// else converted into buffer (which holds at least rows * d values).
template <typename C, typename T>
const C* rows_in(const T* x, int64_t row0, int64_t rows, int64_t d, std::vector<C>& buffer) {
  if constexpr (std::is_same_v<T, C>) {
    return x + row0 * d;
  } else {
    for (int64_t e = 0; e < rows * d; ++e) buffer[e] = static_cast<C>(x[row0 * d + e]);
    return buffer.data();
  }
}

// c (m, n; row stride ldc) = op(a) @ op(b) + beta * c, beta 0 or 1, on this thread. a is (m, k), or (k, m)
// when trans_a; b is (k, n), or (n, k) when trans_b; lda, ldb their row strides as stored.
template <typename C>
void product(int64_t m, int64_t n, int64_t k, const C* a, int64_t lda, bool trans_a, const C* b, int64_t ldb,
             bool trans_b, C* c, int64_t ldc, float beta) {
  const GemmDesc g{.m = m,
                   .n = n,
                   .k = k,
                   .trans_a = trans_a,
                   .trans_b = trans_b,
                   .lda = lda,
                   .ldb = ldb,
                   .ldc = ldc,
                   .beta = beta,
                   .dtype = std::is_same_v<C, float> ? DType::f32 : DType::f64};
  gemm_on_this_thread(g, a, b, c);
}

// The keys and values of the head a thread works on, in the compute type (converted once per head).
template <typename T, typename C>
class HeadOperands {
 public:
  explicit HeadOperands(const AttentionDesc& a)
      : head_size_(a.lk * a.d), k_buffer_(std::is_same_v<T, C> ? 0 : head_size_), v_buffer_(k_buffer_.size()) {}

  void load(int64_t bh, const T* k, const T* v, int64_t lk, int64_t d) {
    if (bh == loaded_) return;
    keys_ = rows_in<C>(k + bh * head_size_, 0, lk, d, k_buffer_);
    values_ = rows_in<C>(v + bh * head_size_, 0, lk, d, v_buffer_);
    loaded_ = bh;
  }
  const C* keys() const { return keys_; }      // (lk, d)
  const C* values() const { return values_; }  // (lk, d)

 private:
  int64_t head_size_;
  std::vector<C> k_buffer_, v_buffer_;
  const C* keys_ = nullptr;
  const C* values_ = nullptr;
  int64_t loaded_ = -1;
};

// Where a result of type T is summed: in place when T is the compute type C, else in buffer.
template <typename T, typename C>
C* result_or(T* result, std::vector<C>& buffer) {
  if constexpr (std::is_same_v<T, C>) {
    return result;
  } else {
    return buffer.data();
  }
}

// ---------------------------------------------------------------------------------------------------
// Forward: for each key block, s = q k^T (kQueryBlock x kKeyBlock), scaled; p = e^(s - running max) with
// the accumulated output and sum rescaled to a new maximum; acc += p v.

template <typename T>
void forward(T* out,                              // (batch, heads, lq, d)
             attention_acc_t<T>* lse,             // (batch, heads, lq)
             const T* q, const T* k, const T* v,  // (batch, heads, lq or lk, d)
             const AttentionDesc& a) {
  using C = attention_acc_t<T>;
  const RowLoops<C>& loops = row_loops<C>();
  const int64_t d = a.d, row_blocks = (a.lq + kQueryBlock - 1) / kQueryBlock;
  const C scale = static_cast<C>(a.scale);
#pragma omp parallel if (parallel(a))
  {
    HeadOperands<T, C> head(a);
    std::vector<C> q_buffer(std::is_same_v<T, C> ? 0 : kQueryBlock * d);
    std::vector<C> s(kQueryBlock * kKeyBlock), acc(kQueryBlock * d), max(kQueryBlock), sum(kQueryBlock);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < a.batch * a.heads * row_blocks; ++task) {
      const int64_t bh = task / row_blocks, r0 = (task % row_blocks) * kQueryBlock;
      const int64_t rows = std::min(kQueryBlock, a.lq - r0);
      head.load(bh, k, v, a.lk, d);
      const C* qb = rows_in<C>(q + bh * a.lq * d, r0, rows, d, q_buffer);
      std::fill(max.begin(), max.end(), -static_cast<C>(INFINITY));
      std::fill(sum.begin(), sum.end(), C(0));
      for (int64_t c0 = 0; c0 < a.lk; c0 += kKeyBlock) {
        const int64_t keys = std::min(kKeyBlock, a.lk - c0);
        product(rows, keys, d, qb, d, false, head.keys() + c0 * d, d, true, s.data(), keys, 0.0f);
        for (int64_t r = 0; r < rows; ++r) {
          C* sr = s.data() + r * keys;
          const C new_max = std::max(max[r], loops.scale_and_max(sr, keys, scale));
          // Online softmax: what was accumulated under the old maximum is rescaled (by 0 at the start).
          const C alpha = std::exp(max[r] - new_max);
          sum[r] = sum[r] * alpha + loops.exp_and_sum(sr, keys, new_max);
          max[r] = new_max;
          if (c0 > 0) {
            for (int64_t i = 0; i < d; ++i) acc[r * d + i] *= alpha;
          }
        }
        product(rows, d, keys, s.data(), keys, false, head.values() + c0 * d, d, false, acc.data(), d,
                c0 > 0 ? 1.0f : 0.0f);
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t row = bh * a.lq + r0 + r;
        const C inverse = C(1) / sum[r];
        for (int64_t i = 0; i < d; ++i) out[row * d + i] = static_cast<T>(acc[r * d + i] * inverse);
        lse[row] = max[r] + std::log(sum[r]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Backward.

// The backward splits each head's queries into this many parts (at most kMaxQueryParts, one per
// kQueriesPerPart queries): each part is a task that accumulates grad_k and grad_v over its queries
// in its own buffers, added in part order afterwards. The split depends only on the shape, so the
// results do not depend on the number of threads.
constexpr int64_t kQueriesPerPart = 1024;
constexpr int64_t kMaxQueryParts = 8;

int64_t query_parts(const AttentionDesc& a) {
  const int64_t row_blocks = (a.lq + kQueryBlock - 1) / kQueryBlock;
  return std::clamp<int64_t>(a.lq / kQueriesPerPart, 1, std::max<int64_t>(1, std::min(kMaxQueryParts, row_blocks)));
}

// One pass, as the flash-attention backward on a CPU can afford: a task owns a part of one head's
// queries and, for each (query block, key block) tile, computes p and grad_s once and adds to grad_v,
// grad_k (all keys, in the task's buffers) and grad_q (its own queries):
//   s = q k^T, p = e^(scale s - lse), dp = grad_out v^T, grad_s = scale p (dp - delta),
//   grad_v += p^T grad_out, grad_k += grad_s^T q, grad_q += grad_s k.
// The CUDA kernels instead recompute the tiles in a second pass to avoid atomics.
template <typename T>
void backward(T* grad_q, T* grad_k, T* grad_v,            // (batch, heads, lq or lk, d)
              const T* grad_out, const T* q, const T* k,  // (batch, heads, lq or lk, d)
              const T* v, const T* out,                   // (batch, heads, lk or lq, d)
              const attention_acc_t<T>* lse,              // (batch, heads, lq)
              const AttentionDesc& a) {
  using C = attention_acc_t<T>;
  constexpr bool kInPlace = std::is_same_v<T, C>;  // operands and results used directly, not converted
  const RowLoops<C>& loops = row_loops<C>();
  const int64_t d = a.d, row_blocks = (a.lq + kQueryBlock - 1) / kQueryBlock;
  const C scale = static_cast<C>(a.scale);
  const int64_t heads = a.batch * a.heads, parts = query_parts(a);
  const int64_t blocks_per_part = (row_blocks + parts - 1) / parts;
  const int64_t head_kv = a.lk * d;
  // (heads, parts, lk, d) each, when a head has several parts to add up.
  std::vector<C> dk_parts(parts > 1 ? static_cast<size_t>(heads * parts * head_kv) : 0);
  std::vector<C> dv_parts(dk_parts.size());
#pragma omp parallel if (parallel(a))
  {
    HeadOperands<T, C> head(a);
    std::vector<C> q_buffer(kInPlace ? 0 : kQueryBlock * d), dout_buffer(q_buffer.size());
    std::vector<C> dq_buffer(q_buffer.size()), dk_buffer(kInPlace ? 0 : head_kv), dv_buffer(dk_buffer.size());
    std::vector<C> p(kQueryBlock * kKeyBlock), ds(kQueryBlock * kKeyBlock), delta(kQueryBlock);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < heads * parts; ++task) {
      const int64_t bh = task / parts, part = task % parts;
      head.load(bh, k, v, a.lk, d);
      // Where this task sums grad_k and grad_v: straight into the result for a head of one part.
      C* dk = parts > 1 ? dk_parts.data() + task * head_kv : result_or(grad_k + bh * head_kv, dk_buffer);
      C* dv = parts > 1 ? dv_parts.data() + task * head_kv : result_or(grad_v + bh * head_kv, dv_buffer);
      std::fill(dk, dk + head_kv, C(0));
      std::fill(dv, dv + head_kv, C(0));
      const int64_t block_end = std::min(row_blocks, (part + 1) * blocks_per_part);
      for (int64_t rb = part * blocks_per_part; rb < block_end; ++rb) {
        const int64_t r0 = rb * kQueryBlock, rows = std::min(kQueryBlock, a.lq - r0);
        const int64_t first_row = bh * a.lq + r0;
        const C* qb = rows_in<C>(q + bh * a.lq * d, r0, rows, d, q_buffer);
        const C* dout = rows_in<C>(grad_out + bh * a.lq * d, r0, rows, d, dout_buffer);
        for (int64_t r = 0; r < rows; ++r) {  // delta = rowsum(grad_out * out)
          C sum = 0;
          for (int64_t i = 0; i < d; ++i) sum += dout[r * d + i] * static_cast<C>(out[(first_row + r) * d + i]);
          delta[r] = sum;
        }
        C* dq = result_or(grad_q + first_row * d, dq_buffer);
        for (int64_t c0 = 0; c0 < a.lk; c0 += kKeyBlock) {
          const int64_t keys = std::min(kKeyBlock, a.lk - c0);
          const C* kb = head.keys() + c0 * d;
          const C* vb = head.values() + c0 * d;
          product(rows, keys, d, qb, d, false, kb, d, true, p.data(), keys, 0.0f);
          product(rows, keys, d, dout, d, false, vb, d, true, ds.data(), keys, 0.0f);
          for (int64_t r = 0; r < rows; ++r) {
            loops.probabilities(p.data() + r * keys, keys, scale, static_cast<C>(lse[first_row + r]));
            loops.score_gradient(ds.data() + r * keys, p.data() + r * keys, keys, delta[r], scale);
          }
          product(keys, d, rows, p.data(), keys, true, dout, d, false, dv + c0 * d, d, 1.0f);
          product(keys, d, rows, ds.data(), keys, true, qb, d, false, dk + c0 * d, d, 1.0f);
          product(rows, d, keys, ds.data(), keys, false, kb, d, false, dq, d, c0 > 0 ? 1.0f : 0.0f);
        }
        if constexpr (!kInPlace) {
          for (int64_t e = 0; e < rows * d; ++e) grad_q[first_row * d + e] = static_cast<T>(dq[e]);
        }
      }
      if (!kInPlace && parts == 1) {
        for (int64_t e = 0; e < head_kv; ++e) {
          grad_k[bh * head_kv + e] = static_cast<T>(dk[e]);
          grad_v[bh * head_kv + e] = static_cast<T>(dv[e]);
        }
      }
    }
    if (parts > 1) {
      // grad_k, grad_v = the sums of each head's parts, in part order.
#pragma omp for schedule(static)
      for (int64_t e = 0; e < heads * head_kv; ++e) {
        const int64_t bh = e / head_kv, at = e % head_kv;
        C sum_k = 0, sum_v = 0;
        for (int64_t part = 0; part < parts; ++part) {
          sum_k += dk_parts[(bh * parts + part) * head_kv + at];
          sum_v += dv_parts[(bh * parts + part) * head_kv + at];
        }
        grad_k[e] = static_cast<T>(sum_k);
        grad_v[e] = static_cast<T>(sum_v);
      }
    }
  }
}

}  // namespace

template <typename T>
void attention_forward(T* out, attention_acc_t<T>* lse, const T* q, const T* k, const T* v, const AttentionDesc& desc,
                       Stream) {
  validate_attention(desc);
  forward(out, lse, q, k, v, desc);
}

template <typename T>
void attention_backward(T* grad_q, T* grad_k, T* grad_v, const T* grad_out, const T* q, const T* k, const T* v,
                        const T* out, const attention_acc_t<T>* lse, const AttentionDesc& desc, Stream) {
  validate_attention(desc);
  backward(grad_q, grad_k, grad_v, grad_out, q, k, v, out, lse, desc);
}

#define SE_INSTANTIATE(T)                                                                                         \
  template void attention_forward<T>(T*, attention_acc_t<T>*, const T*, const T*, const T*, const AttentionDesc&, \
                                     Stream);                                                                     \
  template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*,               \
                                      const attention_acc_t<T>*, const AttentionDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cpu
