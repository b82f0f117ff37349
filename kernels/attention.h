// Fused scaled-dot-product attention, forward and backward, for float, double, f16 and bf16:
//   out = softmax(q k^T * scale) v      per (batch, head); lk may differ from lq (spatial-reduction attention)
// All tensors are contiguous. The forward never forms the lq x lk matrix: it walks k/v in tiles with an
// online softmax (running max and sum) and saves the per-row log-sum-exp lse = log(sum_j exp(s_ij)),
// s = q k^T * scale. The backward recomputes p_ij = exp(s_ij - lse_i) tile by tile (FlashAttention-2):
//   delta_i = rowsum(grad_out * out),  grad_s = p * (grad_out v^T - delta_i)
//   grad_q = grad_s k * scale,  grad_k = grad_s^T q * scale,  grad_v = p^T grad_out
// and is race-free without atomics: one pass owns a tile of keys (grad_k, grad_v), a second pass owns a
// tile of queries (grad_q); each recomputes p. Memory is linear in lq + lk on both backends.
// f16/bf16 are converted on load and computed in float; lse (and all accumulation) is in float, double
// for f64. Head dims up to 128 (kMaxHeadDim).
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/stream.h"

namespace se::kernels {

constexpr int64_t kMaxHeadDim = 128;

struct AttentionDesc {
  int64_t batch = 1;
  int64_t heads = 1;
  int64_t lq = 1;  // query length
  int64_t lk = 1;  // key/value length
  int64_t d = 1;   // head dim, <= kMaxHeadDim
  double scale = 1.0;
};

// The type of lse and of every accumulation: double for f64, float otherwise.
template <typename T>
using attention_acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Throws se::Error naming the first bad field.
inline void validate_attention(const AttentionDesc& d) {
  SE_CHECK(d.batch >= 0 && d.heads >= 0 && d.lq >= 0, "attention: negative size (batch ", d.batch, ", heads ", d.heads,
           ", lq ", d.lq, ")");
  SE_CHECK(d.lk >= 1, "attention: lk = ", d.lk, " (the softmax needs at least one key)");
  SE_CHECK(d.d >= 1 && d.d <= kMaxHeadDim, "attention: head dim ", d.d, " is not in [1, ", kMaxHeadDim, "]");
}

namespace cpu {
template <typename T>
void attention_forward(T* out,                   // (batch, heads, lq, d)
                       attention_acc_t<T>* lse,  // (batch, heads, lq)
                       const T* q,               // (batch, heads, lq, d)
                       const T* k,               // (batch, heads, lk, d)
                       const T* v,               // (batch, heads, lk, d)
                       const AttentionDesc& desc, Stream stream);
template <typename T>
void attention_backward(T* grad_q,                      // (batch, heads, lq, d)
                        T* grad_k,                      // (batch, heads, lk, d)
                        T* grad_v,                      // (batch, heads, lk, d)
                        const T* grad_out,              // (batch, heads, lq, d)
                        const T* q,                     // (batch, heads, lq, d)
                        const T* k,                     // (batch, heads, lk, d)
                        const T* v,                     // (batch, heads, lk, d)
                        const T* out,                   // (batch, heads, lq, d), the forward output
                        const attention_acc_t<T>* lse,  // (batch, heads, lq), from the forward
                        const AttentionDesc& desc, Stream stream);
}  // namespace cpu

namespace cuda {
template <typename T>
void attention_forward(T* out,                   // (batch, heads, lq, d)
                       attention_acc_t<T>* lse,  // (batch, heads, lq)
                       const T* q,               // (batch, heads, lq, d)
                       const T* k,               // (batch, heads, lk, d)
                       const T* v,               // (batch, heads, lk, d)
                       const AttentionDesc& desc, Stream stream);
template <typename T>
void attention_backward(T* grad_q,                      // (batch, heads, lq, d)
                        T* grad_k,                      // (batch, heads, lk, d)
                        T* grad_v,                      // (batch, heads, lk, d)
                        const T* grad_out,              // (batch, heads, lq, d)
                        const T* q,                     // (batch, heads, lq, d)
                        const T* k,                     // (batch, heads, lk, d)
                        const T* v,                     // (batch, heads, lk, d)
                        const T* out,                   // (batch, heads, lq, d), the forward output
                        const attention_acc_t<T>* lse,  // (batch, heads, lq), from the forward
                        const AttentionDesc& desc, Stream stream);
}  // namespace cuda

}  // namespace se::kernels
