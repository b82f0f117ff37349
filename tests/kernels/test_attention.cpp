// kernels/attention.h: CPU against a double-precision reference (forward, lse and backward), CUDA
// against CPU, f16/bf16 against f32, on odd lengths, Lq != Lk, head dims 8..128, large logits and
// lengths of several CPU tiles; the CPU's results do not depend on the thread count.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/attention.h"

namespace se::kernels {
namespace {

using test::cast_to;
using test::random_values;
using test::to_double;

AttentionDesc shape(int64_t batch, int64_t heads, int64_t lq, int64_t lk, int64_t d, double scale = 0) {
  return AttentionDesc{batch, heads, lq, lk, d, scale == 0 ? 1 / std::sqrt(static_cast<double>(d)) : scale};
}

// The last case has logits up to 400: exp would overflow float without the running maximum.
const AttentionDesc kShapes[] = {shape(1, 1, 1, 1, 8),    shape(1, 2, 7, 33, 32),      shape(2, 1, 33, 7, 64),
                                 shape(1, 1, 65, 65, 32), shape(1, 1, 33, 65, 8),      shape(1, 1, 7, 1, 64),
                                 shape(1, 1, 5, 9, 128),  shape(1, 1, 33, 17, 8, 50.0)};

std::string describe(const AttentionDesc& a) {
  return "(batch " + std::to_string(a.batch) + ", heads " + std::to_string(a.heads) + ", lq " + std::to_string(a.lq) +
         ", lk " + std::to_string(a.lk) + ", d " + std::to_string(a.d) + ", scale " + std::to_string(a.scale) + ")";
}

struct Inputs {
  std::vector<double> q, k, v, grad_out;
};

Inputs random_inputs(const AttentionDesc& a, uint32_t seed) {
  const int64_t nq = a.batch * a.heads * a.lq * a.d, nk = a.batch * a.heads * a.lk * a.d;
  return Inputs{random_values(nq, seed), random_values(nk, seed + 1), random_values(nk, seed + 2),
                random_values(nq, seed + 3)};
}

struct Results {
  std::vector<double> out, lse, grad_q, grad_k, grad_v;
};

// softmax(q k^T * scale) v and its gradients, one query row at a time, in double.
Results reference(const AttentionDesc& a, const Inputs& in) {
  const int64_t d = a.d;
  Results r{std::vector<double>(in.q.size()), std::vector<double>(a.batch * a.heads * a.lq),
            std::vector<double>(in.q.size()), std::vector<double>(in.k.size()), std::vector<double>(in.k.size())};
  std::vector<double> p(a.lk), dp(a.lk);
  for (int64_t bh = 0; bh < a.batch * a.heads; ++bh) {
    for (int64_t i = 0; i < a.lq; ++i) {
      const int64_t qi = (bh * a.lq + i) * d;
      double max = -INFINITY, sum = 0, delta = 0;
      for (int64_t j = 0; j < a.lk; ++j) {
        const int64_t kj = (bh * a.lk + j) * d;
        p[j] = 0;
        dp[j] = 0;
        for (int64_t e = 0; e < d; ++e) {
          p[j] += a.scale * in.q[qi + e] * in.k[kj + e];
          dp[j] += in.grad_out[qi + e] * in.v[kj + e];
        }
        max = std::max(max, p[j]);
      }
      for (int64_t j = 0; j < a.lk; ++j) sum += (p[j] = std::exp(p[j] - max));
      for (int64_t j = 0; j < a.lk; ++j) {
        p[j] /= sum;
        delta += p[j] * dp[j];
        for (int64_t e = 0; e < d; ++e) r.out[qi + e] += p[j] * in.v[(bh * a.lk + j) * d + e];
      }
      r.lse[bh * a.lq + i] = max + std::log(sum);
      for (int64_t j = 0; j < a.lk; ++j) {
        const int64_t kj = (bh * a.lk + j) * d;
        const double ds = p[j] * (dp[j] - delta) * a.scale;
        for (int64_t e = 0; e < d; ++e) {
          r.grad_q[qi + e] += ds * in.k[kj + e];
          r.grad_k[kj + e] += ds * in.q[qi + e];
          r.grad_v[kj + e] += p[j] * in.grad_out[qi + e];
        }
      }
    }
  }
  return r;
}

// Forward then backward of one backend in type T on inputs rounded to T.
template <typename T, typename Forward, typename Backward>
Results run(const AttentionDesc& a, const Inputs& in, Forward forward, Backward backward) {
  using A = attention_acc_t<T>;
  std::vector<T> q = cast_to<T>(in.q), k = cast_to<T>(in.k), v = cast_to<T>(in.v), g = cast_to<T>(in.grad_out);
  std::vector<T> out(q.size()), gq(q.size()), gk(k.size()), gv(v.size());
  std::vector<A> lse(a.batch * a.heads * a.lq);
  forward(out, lse, q, k, v);
  backward(gq, gk, gv, g, q, k, v, out, lse);
  std::vector<double> lse_d(lse.begin(), lse.end());
  return Results{to_double(out), lse_d, to_double(gq), to_double(gk), to_double(gv)};
}

template <typename T>
Results run_cpu(const AttentionDesc& a, const Inputs& in) {
  return run<T>(
      a, in,
      [&](auto& out, auto& lse, auto& q, auto& k, auto& v) {
        cpu::attention_forward<T>(out.data(), lse.data(), q.data(), k.data(), v.data(), a, nullptr);
      },
      [&](auto& gq, auto& gk, auto& gv, auto& g, auto& q, auto& k, auto& v, auto& out, auto& lse) {
        cpu::attention_backward<T>(gq.data(), gk.data(), gv.data(), g.data(), q.data(), k.data(), v.data(), out.data(),
                                   lse.data(), a, nullptr);
      });
}

// Expects got ~ want within rel_tol * max(1, max |want|): attention outputs and gradients are sums
// whose rounding error scales with the largest terms, not with each element.
void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rel_tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << " at " << i;
    ASSERT_NEAR(got[i], want[i], rel_tol * scale) << what << " at " << i;
  }
}

// u_store: the rounding of the stored results (T); u_compute: of the arithmetic (float or double).
void expect_results_close(const Results& got, const Results& want, const AttentionDesc& a, double u_store,
                          double u_compute, const std::string& what) {
  // Logit errors grow with scale * d; exp turns them into relative errors of p.
  const double tol = u_compute * (1 + a.scale * static_cast<double>(a.d));
  expect_close(got.out, want.out, 2 * u_store + 16 * tol, what + " out " + describe(a));
  expect_close(got.lse, want.lse, 16 * tol, what + " lse " + describe(a));
  expect_close(got.grad_q, want.grad_q, 8 * u_store + 64 * tol, what + " grad_q " + describe(a));
  expect_close(got.grad_k, want.grad_k, 8 * u_store + 64 * tol, what + " grad_k " + describe(a));
  expect_close(got.grad_v, want.grad_v, 8 * u_store + 64 * tol, what + " grad_v " + describe(a));
}

// The reference sees the same rounded inputs as the kernel.
template <typename T>
Inputs rounded(const Inputs& in) {
  return Inputs{to_double(cast_to<T>(in.q)), to_double(cast_to<T>(in.k)), to_double(cast_to<T>(in.v)),
                to_double(cast_to<T>(in.grad_out))};
}

TEST(Attention, F32MatchesReference) {
  uint32_t seed = 1;
  for (const AttentionDesc& a : kShapes) {
    Inputs in = rounded<float>(random_inputs(a, seed += 4));
    expect_results_close(run_cpu<float>(a, in), reference(a, in), a, 6e-8, 6e-8, "cpu f32");
  }
}

TEST(Attention, F64MatchesReference) {
  uint32_t seed = 100;
  for (const AttentionDesc& a : kShapes) {
    Inputs in = random_inputs(a, seed += 4);
    expect_results_close(run_cpu<double>(a, in), reference(a, in), a, 1.2e-16, 1.2e-16, "cpu f64");
  }
}

// Enough queries that the CPU backward splits each head's queries into parts (one per 1024 queries)
// whose grad_k / grad_v buffers are added afterwards, in two heads of a batch; a tail block of 4.
TEST(Attention, SplitQueriesMatchReference) {
  const AttentionDesc a = shape(2, 1, 3076, 20, 8);
  Inputs in = random_inputs(a, 7);
  expect_results_close(run_cpu<double>(a, in), reference(a, in), a, 1.2e-16, 1.2e-16, "cpu f64 split");
  in = rounded<float>(in);
  expect_results_close(run_cpu<float>(a, in), reference(a, in), a, 6e-8, 6e-8, "cpu f32 split");
}

// The CPU works in tiles of 128 queries x 256 keys: these shapes have several of each, with partial last
// tiles; the last one's large logits move the running maximum from key tile to key tile.
const AttentionDesc kTiledShapes[] = {shape(1, 2, 300, 600, 16), shape(2, 1, 129, 257, 32),
                                      shape(1, 1, 200, 520, 8, 50.0)};

TEST(Attention, SeveralTilesMatchReference) {
  uint32_t seed = 600;
  for (const AttentionDesc& a : kTiledShapes) {
    Inputs in = random_inputs(a, seed += 4);
    expect_results_close(run_cpu<double>(a, in), reference(a, in), a, 1.2e-16, 1.2e-16, "cpu f64 tiled");
    in = rounded<float>(in);
    expect_results_close(run_cpu<float>(a, in), reference(a, in), a, 6e-8, 6e-8, "cpu f32 tiled");
  }
}

// Every output is summed on one thread in an order fixed by the shape (grad_k and grad_v of a split head in
// per-part buffers added in part order): the same bits with one thread as with all of them.
TEST(Attention, ResultsDoNotDependOnTheThreadCount) {
  uint32_t seed = 700;
  for (const AttentionDesc& a : {kTiledShapes[0], shape(2, 1, 3076, 20, 8)}) {
    const Inputs in = rounded<float>(random_inputs(a, seed += 4));
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const Results one = run_cpu<float>(a, in);
    omp_set_num_threads(threads);
    const Results all = run_cpu<float>(a, in);
    EXPECT_EQ(one.out, all.out) << describe(a);
    EXPECT_EQ(one.lse, all.lse) << describe(a);
    EXPECT_EQ(one.grad_q, all.grad_q) << describe(a);
    EXPECT_EQ(one.grad_k, all.grad_k) << describe(a);
    EXPECT_EQ(one.grad_v, all.grad_v) << describe(a);
  }
}

// f16/bf16 compute in float: they match the f32 kernel on the same rounded inputs up to the rounding
// of the stored output (which the backward reads for delta).
template <typename T>
void check_half_against_f32(uint32_t seed) {
  std::vector<AttentionDesc> shapes(std::begin(kShapes), std::end(kShapes));
  shapes.insert(shapes.end(), std::begin(kTiledShapes), std::end(kTiledShapes));
  for (const AttentionDesc& a : shapes) {
    Inputs in = rounded<T>(random_inputs(a, seed += 4));
    Results want = run_cpu<float>(a, in), got = run_cpu<T>(a, in);
    const double u = test::unit_roundoff<T>();
    expect_close(got.out, want.out, 2 * u, "out " + describe(a));
    expect_close(got.lse, want.lse, 1e-6, "lse " + describe(a));
    expect_close(got.grad_q, want.grad_q, 8 * u, "grad_q " + describe(a));
    expect_close(got.grad_k, want.grad_k, 8 * u, "grad_k " + describe(a));
    expect_close(got.grad_v, want.grad_v, 8 * u, "grad_v " + describe(a));
  }
}

TEST(Attention, F16MatchesF32) {
  check_half_against_f32<f16>(200);
}
TEST(Attention, BF16MatchesF32) {
  check_half_against_f32<bf16>(300);
}

TEST(Attention, BadShapesAreErrors) {
  std::vector<float> x(8);
  std::vector<float> lse(1);
  auto forward = [&](AttentionDesc a) {
    cpu::attention_forward<float>(x.data(), lse.data(), x.data(), x.data(), x.data(), a, nullptr);
  };
  EXPECT_THROW(forward(shape(1, 1, 1, 1, 129)), Error);
  EXPECT_THROW(forward(shape(1, 1, 1, 0, 8)), Error);
}

#ifdef SEGENGINE_HAS_CUDA
using test::DeviceBuffer;

template <typename T>
Results run_cuda(const AttentionDesc& a, const Inputs& in) {
  using A = attention_acc_t<T>;
  return run<T>(
      a, in,
      [&](std::vector<T>& out, std::vector<A>& lse, auto& q, auto& k, auto& v) {
        DeviceBuffer<T> dq(q), dk(k), dv(v), dout(out.size());
        DeviceBuffer<A> dlse(lse.size());
        cuda::attention_forward<T>(dout.get(), dlse.get(), dq.get(), dk.get(), dv.get(), a, nullptr);
        out = dout.to_host();
        lse = dlse.to_host();
      },
      [&](std::vector<T>& gq, std::vector<T>& gk, std::vector<T>& gv, auto& g, auto& q, auto& k, auto& v, auto& out,
          auto& lse) {
        DeviceBuffer<T> dgq(gq.size()), dgk(gk.size()), dgv(gv.size()), dg(g), dq(q), dk(k), dv(v), dout(out);
        DeviceBuffer<A> dlse(lse);
        cuda::attention_backward<T>(dgq.get(), dgk.get(), dgv.get(), dg.get(), dq.get(), dk.get(), dv.get(), dout.get(),
                                    dlse.get(), a, nullptr);
        gq = dgq.to_host();
        gk = dgk.to_host();
        gv = dgv.to_host();
      });
}

// Both backends compute in the same precision and differ only in summation order and in the device's
// exp; the backward of each starts from its own forward output.
template <typename T>
void check_cuda_against_cpu(uint32_t seed) {
  const double u_compute = std::is_same_v<T, double> ? 1.2e-16 : 6e-8;
  for (const AttentionDesc& a : kShapes) {
    Inputs in = rounded<T>(random_inputs(a, seed += 4));
    expect_results_close(run_cuda<T>(a, in), run_cpu<T>(a, in), a, test::unit_roundoff<T>(), u_compute, "cuda vs cpu");
  }
}

TEST(AttentionCuda, F32MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<float>(1);
}
TEST(AttentionCuda, F64MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<double>(2);
}
TEST(AttentionCuda, F16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<f16>(3);
}
TEST(AttentionCuda, BF16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<bf16>(4);
}

TEST(AttentionCuda, F32MatchesReference) {
  SE_SKIP_WITHOUT_CUDA();
  uint32_t seed = 500;
  for (const AttentionDesc& a : kShapes) {
    Inputs in = rounded<float>(random_inputs(a, seed += 4));
    expect_results_close(run_cuda<float>(a, in), reference(a, in), a, 6e-8, 6e-8, "cuda f32");
  }
}
#endif

}  // namespace
}  // namespace se::kernels
