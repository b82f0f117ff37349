// CUDA attention, flash-attention style (see kernels/attention.h for the maths). Blocks of kThreads
// threads; a tile is kB rows of q (or k, v, grad_out) staged in shared memory in the compute type C,
// rows padded to DMAX + 1 against bank conflicts. kB is the largest of 32, 16, 8 whose backward tiles fit
// the static shared-memory budget for (C, DMAX). Each thread owns one row of the output tile and every
// kThreadsPerRow-th column of it, so the running accumulators live in registers.
//   forward:           block = kB queries; loop over key tiles: s = q k^T (shared), one thread per row
//                      updates the running max/sum and turns s into p, then all threads add p v.
//   backward, pass 1:  block = kB keys; loop over query tiles, recompute p and grad_s, accumulate
//                      grad_v += p^T grad_out and grad_k += grad_s^T q in registers.
//   backward, pass 2:  block = kB queries; loop over key tiles, accumulate grad_q += grad_s k.
// Every output element has exactly one owner thread, so no atomics are needed and results are
// deterministic; the price is computing p twice in the backward. No warp collectives are used: row
// statistics are computed by one thread per row between barriers (kB <= 32 rows, cheap next to the
// O(kB^2 * d) tile products). Plain FMA loops, no tensor cores (WMMA would need f16 operands of p).
// The loops over a thread's kCols columns are unrolled (SE_UNROLL) and skip columns past d rather than
// leave the loop: the accumulators then stay in registers (a rolled loop put them in local memory).
// Shared-memory reads are the kernels' bottleneck, so each value read serves several multiply-adds: a
// thread's score entries share their key (column) value (dot_rows), and its output columns share their
// probability or score-gradient value. Every sum keeps the order of the plain loops (over i, then over
// keys or queries), so the results are those of a dot product per entry.
#include "kernels/attention.h"
#include "kernels/cuda/common.cuh"

namespace se::kernels::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kSharedBudget = 44 * 1024;  // bytes of static shared memory per block, below the 48 KiB limit

template <typename C, int DMAX>
struct Tiling {
  static constexpr int kLd = DMAX + 1;
  // Pass 1 of the backward needs the most: four (kB, kLd) tiles and two (kB, kB + 1) score tiles.
  static constexpr int shared_bytes(int b) {
    return static_cast<int>((4 * b * kLd + 2 * b * (b + 1) + 2 * b) * sizeof(C));
  }
  static constexpr int kB = shared_bytes(32) <= kSharedBudget ? 32 : shared_bytes(16) <= kSharedBudget ? 16 : 8;
  static constexpr int kSLd = kB + 1;  // score rows, padded: a warp reads one column of 32 / kThreadsPerRow rows
  static constexpr int kThreadsPerRow = kThreads / kB;
  static constexpr int kCols = DMAX / kThreadsPerRow;  // output columns per thread
  static_assert(shared_bytes(kB) <= kSharedBudget, "attention tiles do not fit in shared memory");
  // Blocks per SM that pass 1's shared memory allows on sm_90 (228 KiB, 1 KiB reserved per block), at most
  // 8: the backward kernels' __launch_bounds__, so that their registers never allow fewer (unbounded, pass 1
  // at d 64 took 146 registers, 3 blocks of 128 threads where shared memory allows 5; bounded, 96).
  static constexpr int kBlocksBySharedMemory = 228 * 1024 / (shared_bytes(kB) + 1024);
  static constexpr int kBlocksPerSm = kBlocksBySharedMemory < 8 ? kBlocksBySharedMemory : 8;
  static_assert(DMAX % kThreadsPerRow == 0, "columns must split evenly over a row's threads");
};

struct AttentionArgs {
  int64_t lq, lk;
  int d;
  double scale;
};

__device__ inline float exp_of(float x) {
  return expf(x);
}
__device__ inline double exp_of(double x) {
  return exp(x);
}
__device__ inline float log_of(float x) {
  return logf(x);
}
__device__ inline double log_of(double x) {
  return log(x);
}
template <typename C>
__device__ inline C max_of(C a, C b) {
  return a > b ? a : b;
}

// s[r * ld + i] = x[(row0 + r) * d + i] for r < rows (kB rows); zero for rows past `total`.
template <int kRows, int kLd, typename C, typename T>
__device__ void load_tile(C* s, const T* x, int64_t row0, int64_t total, int d) {
  for (int e = static_cast<int>(threadIdx.x); e < kRows * d; e += kThreads) {
    const int r = e / d, i = e % d;
    s[r * kLd + i] = row0 + r < total ? static_cast<C>(x[(row0 + r) * d + i]) : C(0);
  }
}

// A thread's entries of a (kB, kB) score tile: column tid % kB of the rows tid / kB + j * kThreads / kB,
// j < score_rows(kB) (with kB * kB < kThreads, threads from kB * kB on have none).
constexpr int score_rows(int b) {
  return b * b >= kThreads ? b * b / kThreads : 1;
}
constexpr int score_row_step(int b) {
  return kThreads / b;
}

// dots[j] = sum over i < d, in order, of rows[(row0 + j * score_row_step(kB)) * kLd + i] * cols[col * kLd + i]:
// the thread's dot products of a score tile. The column's value is read from shared memory once for all
// its rows (a dot product per entry read both operands for every multiply-add).
template <int kB, int kLd, typename C>
__device__ void dot_rows(C (&dots)[score_rows(kB)], const C* rows, const C* cols, int row0, int col, int d) {
  SE_UNROLL
  for (int j = 0; j < score_rows(kB); ++j) dots[j] = 0;
  for (int i = 0; i < d; ++i) {
    const C x = cols[col * kLd + i];
    SE_UNROLL
    for (int j = 0; j < score_rows(kB); ++j) {
      const int row = row0 + j * score_row_step(kB);
      dots[j] += rows[row * kLd + i] * x;
    }
  }
}

template <typename T, int DMAX>
__global__ void attention_forward_kernel(cuda_t<T>* out,           // (batch * heads, lq, d)
                                         attention_acc_t<T>* lse,  // (batch * heads, lq)
                                         const cuda_t<T>* q,       // (batch * heads, lq, d)
                                         const cuda_t<T>* k,       // (batch * heads, lk, d)
                                         const cuda_t<T>* v,       // (batch * heads, lk, d)
                                         AttentionArgs a) {
  using C = attention_acc_t<T>;
  using Tl = Tiling<C, DMAX>;
  constexpr int kB = Tl::kB, kLd = Tl::kLd, kSLd = Tl::kSLd;
  alignas(16) __shared__ C qs[kB * kLd];
  alignas(16) __shared__ C ks[kB * kLd];
  alignas(16) __shared__ C vs[kB * kLd];
  alignas(16) __shared__ C ss[kB * kSLd];  // scores, then probabilities, of the current key tile
  alignas(16) __shared__ C row_max[kB];
  alignas(16) __shared__ C row_sum[kB];
  alignas(16) __shared__ C row_alpha[kB];
  const int tid = static_cast<int>(threadIdx.x), d = a.d;
  const int row = tid / Tl::kThreadsPerRow, col0 = tid % Tl::kThreadsPerRow;
  const int64_t bh = blockIdx.y, r0 = static_cast<int64_t>(blockIdx.x) * kB;
  const C scale = static_cast<C>(a.scale);
  q += bh * a.lq * d;
  k += bh * a.lk * d;
  v += bh * a.lk * d;

  load_tile<kB, kLd>(qs, q, r0, a.lq, d);
  if (tid < kB) {
    row_max[tid] = -INFINITY;
    row_sum[tid] = 0;
  }
  C acc[Tl::kCols];
  for (int j = 0; j < Tl::kCols; ++j) acc[j] = 0;
  for (int64_t c0 = 0; c0 < a.lk; c0 += kB) {
    load_tile<kB, kLd>(ks, k, c0, a.lk, d);
    load_tile<kB, kLd>(vs, v, c0, a.lk, d);
    __syncthreads();
    if (tid < kB * kB) {
      const int c = tid % kB, r_first = tid / kB;
      C s[score_rows(kB)];
      dot_rows<kB, kLd>(s, qs, ks, r_first, c, d);
      SE_UNROLL
      for (int j = 0; j < score_rows(kB); ++j) {
        const int r = r_first + j * score_row_step(kB);
        ss[r * kSLd + c] = c0 + c < a.lk ? scale * s[j] : C(-INFINITY);
      }
    }
    __syncthreads();
    if (tid < kB) {  // online softmax: rescale what was accumulated under the old maximum
      C tile_max = -INFINITY;
      for (int c = 0; c < kB; ++c) tile_max = max_of(tile_max, ss[tid * kSLd + c]);
      const C new_max = max_of(row_max[tid], tile_max);
      C tile_sum = 0;
      for (int c = 0; c < kB; ++c) {
        const C p = exp_of(ss[tid * kSLd + c] - new_max);
        ss[tid * kSLd + c] = p;
        tile_sum += p;
      }
      const C alpha = exp_of(row_max[tid] - new_max);
      row_alpha[tid] = alpha;
      row_sum[tid] = row_sum[tid] * alpha + tile_sum;
      row_max[tid] = new_max;
    }
    __syncthreads();
    const C alpha = row_alpha[row];
    SE_UNROLL
    for (int j = 0; j < Tl::kCols; ++j) acc[j] *= alpha;
    for (int c = 0; c < kB; ++c) {  // p read once for all the thread's columns
      const C p = ss[row * kSLd + c];
      SE_UNROLL
      for (int j = 0; j < Tl::kCols; ++j) {
        const int col = col0 + j * Tl::kThreadsPerRow;
        if (col < d) acc[j] += p * vs[c * kLd + col];
      }
    }
    __syncthreads();  // the next key tile overwrites ks, vs and ss
  }
  if (r0 + row >= a.lq) return;
  const int64_t out_row = bh * a.lq + r0 + row;
  const C inv_sum = C(1) / row_sum[row];
  SE_UNROLL
  for (int j = 0; j < Tl::kCols; ++j) {
    const int col = col0 + j * Tl::kThreadsPerRow;
    if (col >= d) continue;
    out[out_row * d + col] = static_cast<cuda_t<T>>(acc[j] * inv_sum);
  }
  if (col0 == 0) lse[out_row] = row_max[row] + log_of(row_sum[row]);
}

// Loads lse and delta = rowsum(grad_out * out) of queries [r0, r0 + kB); zero past lq.
template <int kB, typename C, typename T>
__device__ void load_row_stats(C* lse_s, C* delta_s, const C* lse, const T* grad_out, const T* out, int64_t r0,
                               AttentionArgs a) {
  const int tid = static_cast<int>(threadIdx.x);
  if (tid >= kB) return;
  C delta = 0, l = 0;
  if (r0 + tid < a.lq) {
    const int64_t row = r0 + tid;
    for (int i = 0; i < a.d; ++i) delta += static_cast<C>(grad_out[row * a.d + i]) * static_cast<C>(out[row * a.d + i]);
    l = lse[row];
  }
  lse_s[tid] = l;
  delta_s[tid] = delta;
}

// p = exp(s - lse) and grad_s = p * (grad_out v^T - delta) for query tile r0 and key tile c0 (p is
// stored only when `ps` is non-null); zero outside the matrix.
template <int kB, int kLd, int kSLd, typename C>
__device__ void compute_grad_s(C* ps, C* dss, const C* qs, const C* dos, const C* ks, const C* vs, const C* lse_s,
                               const C* delta_s, int64_t r0, int64_t c0, AttentionArgs a) {
  const C scale = static_cast<C>(a.scale);
  const int tid = static_cast<int>(threadIdx.x);
  if (tid >= kB * kB) return;
  const int c = tid % kB, r_first = tid / kB;
  C s[score_rows(kB)], t[score_rows(kB)];  // q k^T and grad_out v^T
  dot_rows<kB, kLd>(s, qs, ks, r_first, c, a.d);
  dot_rows<kB, kLd>(t, dos, vs, r_first, c, a.d);
  SE_UNROLL
  for (int j = 0; j < score_rows(kB); ++j) {
    const int r = r_first + j * score_row_step(kB);
    C p = 0, ds = 0;
    if (r0 + r < a.lq && c0 + c < a.lk) {
      p = exp_of(scale * s[j] - lse_s[r]);
      ds = p * (t[j] - delta_s[r]);
    }
    if (ps != nullptr) ps[r * kSLd + c] = p;
    dss[r * kSLd + c] = ds;
  }
}

template <typename T, int DMAX>
__global__ void __launch_bounds__(kThreads, (Tiling<attention_acc_t<T>, DMAX>::kBlocksPerSm))
    attention_backward_kv_kernel(cuda_t<T>* grad_k,              // (batch * heads, lk, d)
                                 cuda_t<T>* grad_v,              // (batch * heads, lk, d)
                                 const cuda_t<T>* grad_out,      // (batch * heads, lq, d)
                                 const cuda_t<T>* q,             // (batch * heads, lq, d)
                                 const cuda_t<T>* k,             // (batch * heads, lk, d)
                                 const cuda_t<T>* v,             // (batch * heads, lk, d)
                                 const cuda_t<T>* out,           // (batch * heads, lq, d)
                                 const attention_acc_t<T>* lse,  // (batch * heads, lq)
                                 AttentionArgs a) {
  using C = attention_acc_t<T>;
  using Tl = Tiling<C, DMAX>;
  constexpr int kB = Tl::kB, kLd = Tl::kLd, kSLd = Tl::kSLd;
  alignas(16) __shared__ C ks[kB * kLd];
  alignas(16) __shared__ C vs[kB * kLd];
  alignas(16) __shared__ C qs[kB * kLd];
  alignas(16) __shared__ C dos[kB * kLd];
  alignas(16) __shared__ C ps[kB * kSLd];
  alignas(16) __shared__ C dss[kB * kSLd];
  alignas(16) __shared__ C lse_s[kB];
  alignas(16) __shared__ C delta_s[kB];
  const int tid = static_cast<int>(threadIdx.x), d = a.d;
  const int key = tid / Tl::kThreadsPerRow, col0 = tid % Tl::kThreadsPerRow;
  const int64_t bh = blockIdx.y, c0 = static_cast<int64_t>(blockIdx.x) * kB;
  grad_out += bh * a.lq * d;
  q += bh * a.lq * d;
  out += bh * a.lq * d;
  lse += bh * a.lq;
  k += bh * a.lk * d;
  v += bh * a.lk * d;

  load_tile<kB, kLd>(ks, k, c0, a.lk, d);
  load_tile<kB, kLd>(vs, v, c0, a.lk, d);
  C dk[Tl::kCols], dv[Tl::kCols];
  for (int j = 0; j < Tl::kCols; ++j) dk[j] = dv[j] = 0;
  for (int64_t r0 = 0; r0 < a.lq; r0 += kB) {
    load_tile<kB, kLd>(qs, q, r0, a.lq, d);
    load_tile<kB, kLd>(dos, grad_out, r0, a.lq, d);
    load_row_stats<kB>(lse_s, delta_s, lse, grad_out, out, r0, a);
    __syncthreads();
    compute_grad_s<kB, kLd, kSLd>(ps, dss, qs, dos, ks, vs, lse_s, delta_s, r0, c0, a);
    __syncthreads();
    for (int r = 0; r < kB; ++r) {  // p and grad_s read once for all the thread's columns
      const C p = ps[r * kSLd + key], ds = dss[r * kSLd + key];
      SE_UNROLL
      for (int j = 0; j < Tl::kCols; ++j) {
        const int col = col0 + j * Tl::kThreadsPerRow;
        if (col >= d) continue;
        dv[j] += p * dos[r * kLd + col];
        dk[j] += ds * qs[r * kLd + col];
      }
    }
    __syncthreads();  // the next query tile overwrites the shared tiles
  }
  if (c0 + key >= a.lk) return;
  const int64_t out_row = bh * a.lk + c0 + key;
  const C scale = static_cast<C>(a.scale);
  SE_UNROLL
  for (int j = 0; j < Tl::kCols; ++j) {
    const int col = col0 + j * Tl::kThreadsPerRow;
    if (col >= d) continue;
    grad_k[out_row * d + col] = static_cast<cuda_t<T>>(scale * dk[j]);
    grad_v[out_row * d + col] = static_cast<cuda_t<T>>(dv[j]);
  }
}

template <typename T, int DMAX>
__global__ void __launch_bounds__(kThreads, (Tiling<attention_acc_t<T>, DMAX>::kBlocksPerSm))
    attention_backward_q_kernel(cuda_t<T>* grad_q,              // (batch * heads, lq, d)
                                const cuda_t<T>* grad_out,      // (batch * heads, lq, d)
                                const cuda_t<T>* q,             // (batch * heads, lq, d)
                                const cuda_t<T>* k,             // (batch * heads, lk, d)
                                const cuda_t<T>* v,             // (batch * heads, lk, d)
                                const cuda_t<T>* out,           // (batch * heads, lq, d)
                                const attention_acc_t<T>* lse,  // (batch * heads, lq)
                                AttentionArgs a) {
  using C = attention_acc_t<T>;
  using Tl = Tiling<C, DMAX>;
  constexpr int kB = Tl::kB, kLd = Tl::kLd, kSLd = Tl::kSLd;
  alignas(16) __shared__ C qs[kB * kLd];
  alignas(16) __shared__ C dos[kB * kLd];
  alignas(16) __shared__ C ks[kB * kLd];
  alignas(16) __shared__ C vs[kB * kLd];
  alignas(16) __shared__ C dss[kB * kSLd];
  alignas(16) __shared__ C lse_s[kB];
  alignas(16) __shared__ C delta_s[kB];
  const int tid = static_cast<int>(threadIdx.x), d = a.d;
  const int row = tid / Tl::kThreadsPerRow, col0 = tid % Tl::kThreadsPerRow;
  const int64_t bh = blockIdx.y, r0 = static_cast<int64_t>(blockIdx.x) * kB;
  grad_out += bh * a.lq * d;
  q += bh * a.lq * d;
  out += bh * a.lq * d;
  lse += bh * a.lq;
  k += bh * a.lk * d;
  v += bh * a.lk * d;

  load_tile<kB, kLd>(qs, q, r0, a.lq, d);
  load_tile<kB, kLd>(dos, grad_out, r0, a.lq, d);
  load_row_stats<kB>(lse_s, delta_s, lse, grad_out, out, r0, a);
  C dq[Tl::kCols];
  for (int j = 0; j < Tl::kCols; ++j) dq[j] = 0;
  for (int64_t c0 = 0; c0 < a.lk; c0 += kB) {
    load_tile<kB, kLd>(ks, k, c0, a.lk, d);
    load_tile<kB, kLd>(vs, v, c0, a.lk, d);
    __syncthreads();
    compute_grad_s<kB, kLd, kSLd>(static_cast<C*>(nullptr), dss, qs, dos, ks, vs, lse_s, delta_s, r0, c0, a);
    __syncthreads();
    for (int c = 0; c < kB; ++c) {  // grad_s read once for all the thread's columns
      const C ds = dss[row * kSLd + c];
      SE_UNROLL
      for (int j = 0; j < Tl::kCols; ++j) {
        const int col = col0 + j * Tl::kThreadsPerRow;
        if (col < d) dq[j] += ds * ks[c * kLd + col];
      }
    }
    __syncthreads();  // the next key tile overwrites ks, vs and dss
  }
  if (r0 + row >= a.lq) return;
  const int64_t out_row = bh * a.lq + r0 + row;
  const C scale = static_cast<C>(a.scale);
  SE_UNROLL
  for (int j = 0; j < Tl::kCols; ++j) {
    const int col = col0 + j * Tl::kThreadsPerRow;
    if (col >= d) continue;
    grad_q[out_row * d + col] = static_cast<cuda_t<T>>(scale * dq[j]);
  }
}

AttentionArgs make_args(const AttentionDesc& desc) {
  validate_attention(desc);
  SE_CHECK(desc.batch * desc.heads < 65536, "attention: batch * heads = ", desc.batch * desc.heads,
           " exceeds the grid limit 65535");
  return AttentionArgs{desc.lq, desc.lk, static_cast<int>(desc.d), desc.scale};
}

template <typename T, int DMAX>
void launch_forward(T* out, attention_acc_t<T>* lse, const T* q, const T* k, const T* v, AttentionArgs a,
                    unsigned heads, Stream stream) {
  constexpr int kB = Tiling<attention_acc_t<T>, DMAX>::kB;
  SE_LAUNCH((attention_forward_kernel<T, DMAX>), dim3(ceil_div(a.lq, kB), heads), kThreads, 0, stream,
            reinterpret_cast<cuda_t<T>*>(out), lse, reinterpret_cast<const cuda_t<T>*>(q),
            reinterpret_cast<const cuda_t<T>*>(k), reinterpret_cast<const cuda_t<T>*>(v), a);
}

template <typename T, int DMAX>
void launch_backward(T* grad_q, T* grad_k, T* grad_v, const T* grad_out, const T* q, const T* k, const T* v,
                     const T* out, const attention_acc_t<T>* lse, AttentionArgs a, unsigned heads, Stream stream) {
  constexpr int kB = Tiling<attention_acc_t<T>, DMAX>::kB;
  const auto* go = reinterpret_cast<const cuda_t<T>*>(grad_out);
  const auto* qc = reinterpret_cast<const cuda_t<T>*>(q);
  const auto* kc = reinterpret_cast<const cuda_t<T>*>(k);
  const auto* vc = reinterpret_cast<const cuda_t<T>*>(v);
  const auto* oc = reinterpret_cast<const cuda_t<T>*>(out);
  // With lq == 0 pass 1 still runs: it writes the zero grad_k and grad_v.
  SE_LAUNCH((attention_backward_kv_kernel<T, DMAX>), dim3(ceil_div(a.lk, kB), heads), kThreads, 0, stream,
            reinterpret_cast<cuda_t<T>*>(grad_k), reinterpret_cast<cuda_t<T>*>(grad_v), go, qc, kc, vc, oc, lse, a);
  if (a.lq == 0) return;
  SE_LAUNCH((attention_backward_q_kernel<T, DMAX>), dim3(ceil_div(a.lq, kB), heads), kThreads, 0, stream,
            reinterpret_cast<cuda_t<T>*>(grad_q), go, qc, kc, vc, oc, lse, a);
}

}  // namespace

// Head dims are bucketed to 32, 64 and 128: DMAX sizes the shared tiles and the register accumulators.
template <typename T>
void attention_forward(T* out, attention_acc_t<T>* lse, const T* q, const T* k, const T* v, const AttentionDesc& desc,
                       Stream stream) {
  const AttentionArgs a = make_args(desc);
  const auto heads = static_cast<unsigned>(desc.batch * desc.heads);
  if (heads == 0 || desc.lq == 0) return;
  if (desc.d <= 32) {
    launch_forward<T, 32>(out, lse, q, k, v, a, heads, stream);
  } else if (desc.d <= 64) {
    launch_forward<T, 64>(out, lse, q, k, v, a, heads, stream);
  } else {
    launch_forward<T, 128>(out, lse, q, k, v, a, heads, stream);
  }
}

template <typename T>
void attention_backward(T* grad_q, T* grad_k, T* grad_v, const T* grad_out, const T* q, const T* k, const T* v,
                        const T* out, const attention_acc_t<T>* lse, const AttentionDesc& desc, Stream stream) {
  const AttentionArgs a = make_args(desc);
  const auto heads = static_cast<unsigned>(desc.batch * desc.heads);
  if (heads == 0) return;
  if (desc.d <= 32) {
    launch_backward<T, 32>(grad_q, grad_k, grad_v, grad_out, q, k, v, out, lse, a, heads, stream);
  } else if (desc.d <= 64) {
    launch_backward<T, 64>(grad_q, grad_k, grad_v, grad_out, q, k, v, out, lse, a, heads, stream);
  } else {
    launch_backward<T, 128>(grad_q, grad_k, grad_v, grad_out, q, k, v, out, lse, a, heads, stream);
  }
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

}  // namespace se::kernels::cuda
