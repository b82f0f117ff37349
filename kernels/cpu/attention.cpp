// CPU attention: the same tiling and online softmax as the CUDA kernels, so memory stays linear in
// the sequence lengths. Forward tasks are (batch * head, block of kRows queries); the backward runs
// in one pass over (batch * head, part of the queries) tasks (see backward); OpenMP spreads them.
// Each thread converts the blocks it works on to the compute type once, into its own buffers.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace se::kernels::cpu {
namespace {

constexpr int64_t kRows = 32;  // queries per block
constexpr int64_t kKeys = 64;  // keys per block
constexpr int64_t kParallelWork = 16384;

// dst[r * d + i] = x[(row0 + r) * d + i] for r < rows, in the compute type C.
template <typename C, typename T>
void load_rows(C* dst, const T* x, int64_t row0, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < d; ++i) dst[r * d + i] = static_cast<C>(x[(row0 + r) * d + i]);
  }
}

// dst[i * kKeys + r] = x[(row0 + r) * d + i]: keys along the fast axis, so that the score loops below
// run over keys without a reduction and vectorise.
template <typename C, typename T>
void load_rows_transposed(C* dst, const T* x, int64_t row0, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < d; ++i) dst[i * kKeys + r] = static_cast<C>(x[(row0 + r) * d + i]);
  }
}

// s[c] = scale * a . bt[:, c] for c < keys; a: (d), bt: (d, kKeys).
template <typename C>
void row_times_block(C* s, const C* a, const C* bt, int64_t keys, int64_t d, C scale) {
  for (int64_t c = 0; c < keys; ++c) s[c] = 0;
  for (int64_t i = 0; i < d; ++i) {
    const C ai = scale * a[i];
    for (int64_t c = 0; c < keys; ++c) s[c] += ai * bt[i * kKeys + c];
  }
}

bool parallel(const AttentionDesc& a) {
  return a.batch * a.heads * a.lq * a.lk * a.d >= kParallelWork;
}

template <typename T>
void forward(T* out,                              // (batch, heads, lq, d)
             attention_acc_t<T>* lse,             // (batch, heads, lq)
             const T* q, const T* k, const T* v,  // (batch, heads, lq or lk, d)
             const AttentionDesc& a) {
  using C = attention_acc_t<T>;
  const int64_t d = a.d, row_blocks = (a.lq + kRows - 1) / kRows;
  const C scale = static_cast<C>(a.scale);
#pragma omp parallel if (parallel(a))
  {
    std::vector<C> qb(kRows * d), kt(d * kKeys), vb(kKeys * d), acc(kRows * d), s(kRows * kKeys);
    std::vector<C> max(kRows), sum(kRows);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < a.batch * a.heads * row_blocks; ++task) {
      const int64_t bh = task / row_blocks, r0 = (task % row_blocks) * kRows, rows = std::min(kRows, a.lq - r0);
      const T* qh = q + bh * a.lq * d;
      const T* kh = k + bh * a.lk * d;
      const T* vh = v + bh * a.lk * d;
      load_rows(qb.data(), qh, r0, rows, d);
      std::fill(acc.begin(), acc.end(), C(0));
      std::fill(max.begin(), max.end(), static_cast<C>(-INFINITY));
      std::fill(sum.begin(), sum.end(), C(0));
      for (int64_t c0 = 0; c0 < a.lk; c0 += kKeys) {
        const int64_t keys = std::min(kKeys, a.lk - c0);
        load_rows_transposed(kt.data(), kh, c0, keys, d);
        load_rows(vb.data(), vh, c0, keys, d);
        for (int64_t r = 0; r < rows; ++r) {
          C* sr = s.data() + r * kKeys;
          row_times_block(sr, qb.data() + r * d, kt.data(), keys, d, scale);
          C tile_max = -INFINITY;
          for (int64_t c = 0; c < keys; ++c) tile_max = std::max(tile_max, sr[c]);
          // Online softmax: rescale what was accumulated under the old maximum.
          const C new_max = std::max(max[r], tile_max);
          const C alpha = std::exp(max[r] - new_max);
          C* ar = acc.data() + r * d;
          for (int64_t i = 0; i < d; ++i) ar[i] *= alpha;
          C tile_sum = 0;
          for (int64_t c = 0; c < keys; ++c) {
            const C p = std::exp(sr[c] - new_max);
            tile_sum += p;
            for (int64_t i = 0; i < d; ++i) ar[i] += p * vb[c * d + i];
          }
          sum[r] = sum[r] * alpha + tile_sum;
          max[r] = new_max;
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t row = bh * a.lq + r0 + r;
        for (int64_t i = 0; i < d; ++i) out[row * d + i] = static_cast<T>(acc[r * d + i] / sum[r]);
        lse[row] = max[r] + std::log(sum[r]);
      }
    }
  }
}

// The operands of one (query block, key block) pair of the backward, in the compute type.
template <typename C>
struct BackwardTile {
  std::vector<C> q, dout, delta, lse;  // (kRows, d), (kRows, d), (kRows), (kRows)
  std::vector<C> p, ds;                // (kRows, kKeys) each
  explicit BackwardTile(int64_t d)
      : q(kRows * d), dout(kRows * d), delta(kRows), lse(kRows), p(kRows * kKeys), ds(kRows * kKeys) {}
};

// Loads queries [r0, r0 + rows) of head bh: q, grad_out, lse and delta = rowsum(grad_out * out).
template <typename T, typename C>
void load_query_block(BackwardTile<C>& t, int64_t bh, int64_t r0, int64_t rows, const T* q, const T* grad_out,
                      const T* out, const C* lse, const AttentionDesc& a) {
  const int64_t d = a.d;
  load_rows(t.q.data(), q + bh * a.lq * d, r0, rows, d);
  load_rows(t.dout.data(), grad_out + bh * a.lq * d, r0, rows, d);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = bh * a.lq + r0 + r;
    C delta = 0;
    for (int64_t i = 0; i < d; ++i) delta += t.dout[r * d + i] * static_cast<C>(out[row * d + i]);
    t.delta[r] = delta;
    t.lse[r] = lse[row];
  }
}

// p = exp(s - lse) and grad_s = p * (grad_out v^T - delta) for the loaded query block and the key
// block kt, vt (d, kKeys) each; p and ds first hold s and grad_out v^T.
template <typename C>
void compute_tile(BackwardTile<C>& t, const C* kt, const C* vt, int64_t rows, int64_t keys, int64_t d, C scale) {
  C* s = t.p.data();
  C* dp = t.ds.data();
  for (int64_t r = 0; r < rows; ++r) {
    row_times_block(s + r * kKeys, t.q.data() + r * d, kt, keys, d, scale);
    row_times_block(dp + r * kKeys, t.dout.data() + r * d, vt, keys, d, C(1));
    for (int64_t c = 0; c < keys; ++c) {
      const C p = std::exp(s[r * kKeys + c] - t.lse[r]);
      t.p[r * kKeys + c] = p;
      t.ds[r * kKeys + c] = p * (dp[r * kKeys + c] - t.delta[r]);
    }
  }
}

// The backward splits each head's queries into this many parts (at most kMaxQueryParts, one per
// kQueriesPerPart queries): each part is a task that accumulates grad_k and grad_v over its queries
// in its own buffers, added in part order afterwards. The split depends only on the shape, so the
// results do not depend on the number of threads.
constexpr int64_t kQueriesPerPart = 1024;
constexpr int64_t kMaxQueryParts = 8;

int64_t query_parts(const AttentionDesc& a) {
  const int64_t row_blocks = (a.lq + kRows - 1) / kRows;
  return std::clamp<int64_t>(a.lq / kQueriesPerPart, 1, std::max<int64_t>(1, std::min(kMaxQueryParts, row_blocks)));
}

// One pass, as the flash-attention backward on a CPU can afford: a task owns a part of one head's
// queries, converts the head's keys and values once, and for each (query block, key block) tile
// computes p and grad_s once, adding to grad_v, grad_k (all keys, in the task's buffers) and grad_q
// (its own queries). The CUDA kernels instead recompute the tiles in a second pass to avoid atomics.
template <typename T>
void backward(T* grad_q, T* grad_k, T* grad_v,            // (batch, heads, lq or lk, d)
              const T* grad_out, const T* q, const T* k,  // (batch, heads, lq or lk, d)
              const T* v, const T* out,                   // (batch, heads, lk or lq, d)
              const attention_acc_t<T>* lse,              // (batch, heads, lq)
              const AttentionDesc& a) {
  using C = attention_acc_t<T>;
  const int64_t d = a.d, row_blocks = (a.lq + kRows - 1) / kRows, key_blocks = (a.lk + kKeys - 1) / kKeys;
  const C scale = static_cast<C>(a.scale);
  const int64_t heads = a.batch * a.heads, parts = query_parts(a);
  const int64_t blocks_per_part = (row_blocks + parts - 1) / parts;
  const int64_t head_kv = a.lk * d;
  // (heads, parts, lk, d) each, when a head has several parts to add up.
  std::vector<C> dk_parts(parts > 1 ? static_cast<size_t>(heads * parts * head_kv) : 0);
  std::vector<C> dv_parts(dk_parts.size());
#pragma omp parallel if (parallel(a))
  {
    BackwardTile<C> t(d);
    // The head's keys (lk, d), and keys and values block-transposed: (key_blocks, d, kKeys).
    std::vector<C> k_all(head_kv), kt_all(key_blocks * d * kKeys), vt_all(key_blocks * d * kKeys);
    std::vector<C> dk(head_kv), dv(head_kv), dq(kRows * d);
    int64_t loaded_head = -1;
#pragma omp for schedule(static)
    for (int64_t task = 0; task < heads * parts; ++task) {
      const int64_t bh = task / parts, part = task % parts;
      if (bh != loaded_head) {
        load_rows(k_all.data(), k + bh * head_kv, 0, a.lk, d);
        for (int64_t kb = 0; kb < key_blocks; ++kb) {
          const int64_t c0 = kb * kKeys, keys = std::min(kKeys, a.lk - c0);
          load_rows_transposed(kt_all.data() + kb * d * kKeys, k + bh * head_kv, c0, keys, d);
          load_rows_transposed(vt_all.data() + kb * d * kKeys, v + bh * head_kv, c0, keys, d);
        }
        loaded_head = bh;
      }
      std::fill(dk.begin(), dk.end(), C(0));
      std::fill(dv.begin(), dv.end(), C(0));
      const int64_t block_end = std::min(row_blocks, (part + 1) * blocks_per_part);
      for (int64_t rb = part * blocks_per_part; rb < block_end; ++rb) {
        const int64_t r0 = rb * kRows, rows = std::min(kRows, a.lq - r0);
        load_query_block(t, bh, r0, rows, q, grad_out, out, lse, a);
        std::fill(dq.begin(), dq.end(), C(0));
        for (int64_t kb = 0; kb < key_blocks; ++kb) {
          const int64_t c0 = kb * kKeys, keys = std::min(kKeys, a.lk - c0);
          compute_tile(t, kt_all.data() + kb * d * kKeys, vt_all.data() + kb * d * kKeys, rows, keys, d, scale);
          for (int64_t r = 0; r < rows; ++r) {
            const C* dout_r = t.dout.data() + r * d;
            const C* q_r = t.q.data() + r * d;
            C* dq_r = dq.data() + r * d;
            for (int64_t c = 0; c < keys; ++c) {
              const C p = t.p[r * kKeys + c], ds = scale * t.ds[r * kKeys + c];
              C* dv_c = dv.data() + (c0 + c) * d;
              C* dk_c = dk.data() + (c0 + c) * d;
              const C* k_c = k_all.data() + (c0 + c) * d;
              for (int64_t i = 0; i < d; ++i) {
                dv_c[i] += p * dout_r[i];
                dk_c[i] += ds * q_r[i];
                dq_r[i] += ds * k_c[i];
              }
            }
          }
        }
        for (int64_t e = 0; e < rows * d; ++e) grad_q[(bh * a.lq + r0) * d + e] = static_cast<T>(dq[e]);
      }
      if (parts == 1) {
        for (int64_t e = 0; e < head_kv; ++e) {
          grad_k[bh * head_kv + e] = static_cast<T>(dk[e]);
          grad_v[bh * head_kv + e] = static_cast<T>(dv[e]);
        }
      } else {
        std::copy(dk.begin(), dk.end(), dk_parts.begin() + task * head_kv);
        std::copy(dv.begin(), dv.end(), dv_parts.begin() + task * head_kv);
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
