// Attention on the CPU at SegFormer-B0 stage-1 shapes (512x512 input: 128x128 = 16384 queries, spatial
// reduction 8 -> 256 keys, one head of dim 32): the fused kernel against the unfused path the engine's
// attention_reference takes (GEMM, softmax, GEMM on the same kernels). Counters: GFLOP/s of the two
// matrix products (4 * Lq * Lk * D), and extra_MB, the working memory beyond q, k, v and out, estimated
// from sizes: fused keeps lse (Lq) plus per-thread tiles (linear in L * D); unfused holds the Lq x Lk
// scores and probabilities. Forward and backward (fused backward vs the unfused one's matrix products).
// Run: build/bench/bench_attention --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <vector>

#include "kernels/attention.h"
#include "kernels/gemm.h"
#include "kernels/softmax.h"

namespace se::kernels {
namespace {

constexpr int64_t kLq = 128 * 128, kLk = 256, kD = 32;

AttentionDesc desc() {
  return AttentionDesc{1, 1, kLq, kLk, kD, 1.0 / 5.656854249492381};
}

GemmDesc gemm_desc(int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b, float alpha) {
  GemmDesc g;
  g.m = m;
  g.n = n;
  g.k = k;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.lda = trans_a ? m : k;
  g.ldb = trans_b ? k : n;
  g.ldc = n;
  g.alpha = alpha;
  return g;
}

void set_counters(benchmark::State& state, double flops, double extra_bytes) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["extra_MB"] = extra_bytes / (1 << 20);
}

// Per-thread tiles of the CPU kernel: at most 4 tiles of 64 x D plus two 32 x 64 tiles, in float.
double fused_extra_bytes() {
  return static_cast<double>(kLq) * sizeof(float) +
         omp_get_max_threads() * (6.0 * 64 * kD + 2 * 32 * 64) * sizeof(float);
}

struct Data {
  std::vector<float> q = std::vector<float>(kLq * kD, 0.01f);  // (1, 1, Lq, D)
  std::vector<float> k = std::vector<float>(kLk * kD, 0.02f);  // (1, 1, Lk, D)
  std::vector<float> v = std::vector<float>(kLk * kD, 0.03f);  // (1, 1, Lk, D)
  std::vector<float> out = std::vector<float>(kLq * kD);       // (1, 1, Lq, D)
  std::vector<float> grad_out = std::vector<float>(kLq * kD, 1.0f);
};

void bm_fused_forward(benchmark::State& state) {
  Data x;
  std::vector<float> lse(kLq);  // (1, 1, Lq)
  for (auto _ : state) {
    cpu::attention_forward<float>(x.out.data(), lse.data(), x.q.data(), x.k.data(), x.v.data(), desc(), nullptr);
    benchmark::DoNotOptimize(x.out.data());
  }
  set_counters(state, 4.0 * kLq * kLk * kD, fused_extra_bytes());
}

void bm_reference_forward(benchmark::State& state) {
  Data x;
  std::vector<float> s(kLq * kLk), p(kLq * kLk);  // (Lq, Lk) scores and probabilities
  for (auto _ : state) {
    cpu::gemm(gemm_desc(kLq, kLk, kD, false, true, static_cast<float>(desc().scale)), x.q.data(), x.k.data(), s.data(),
              nullptr);
    cpu::softmax_forward<float>(p.data(), s.data(), SoftmaxDesc{kLq, kLk, 1}, nullptr);
    cpu::gemm(gemm_desc(kLq, kD, kLk, false, false, 1.0f), p.data(), x.v.data(), x.out.data(), nullptr);
    benchmark::DoNotOptimize(x.out.data());
  }
  set_counters(state, 4.0 * kLq * kLk * kD, 2.0 * kLq * kLk * sizeof(float));
}

void bm_fused_backward(benchmark::State& state) {
  Data x;
  std::vector<float> lse(kLq), gq(kLq * kD), gk(kLk * kD), gv(kLk * kD);
  cpu::attention_forward<float>(x.out.data(), lse.data(), x.q.data(), x.k.data(), x.v.data(), desc(), nullptr);
  for (auto _ : state) {
    cpu::attention_backward<float>(gq.data(), gk.data(), gv.data(), x.grad_out.data(), x.q.data(), x.k.data(),
                                   x.v.data(), x.out.data(), lse.data(), desc(), nullptr);
    benchmark::DoNotOptimize(gq.data());
  }
  // One pass on the CPU: q k^T and grad_out v^T recomputed, then grad_v, grad_k, grad_q: 10 Lq Lk D.
  set_counters(state, 10.0 * kLq * kLk * kD, fused_extra_bytes());
}

// The unfused backward from saved probabilities p: grad_v = p^T g, grad_p = g v^T, softmax backward,
// grad_q = grad_s k * scale, grad_k = grad_s^T q * scale.
void bm_reference_backward(benchmark::State& state) {
  Data x;
  const float scale = static_cast<float>(desc().scale);
  std::vector<float> p(kLq * kLk, 1.0f / kLk), gp(kLq * kLk), gs(kLq * kLk);  // (Lq, Lk) each
  std::vector<float> gq(kLq * kD), gk(kLk * kD), gv(kLk * kD);
  for (auto _ : state) {
    cpu::gemm(gemm_desc(kLk, kD, kLq, true, false, 1.0f), p.data(), x.grad_out.data(), gv.data(), nullptr);
    cpu::gemm(gemm_desc(kLq, kLk, kD, false, true, 1.0f), x.grad_out.data(), x.v.data(), gp.data(), nullptr);
    cpu::softmax_backward<float>(gs.data(), gp.data(), p.data(), SoftmaxDesc{kLq, kLk, 1}, nullptr);
    cpu::gemm(gemm_desc(kLq, kD, kLk, false, false, scale), gs.data(), x.k.data(), gq.data(), nullptr);
    cpu::gemm(gemm_desc(kLk, kD, kLq, true, false, scale), gs.data(), x.q.data(), gk.data(), nullptr);
    benchmark::DoNotOptimize(gq.data());
  }
  set_counters(state, 8.0 * kLq * kLk * kD, 3.0 * kLq * kLk * sizeof(float));
}

BENCHMARK(bm_fused_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_reference_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_fused_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_reference_backward)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace se::kernels

BENCHMARK_MAIN();
