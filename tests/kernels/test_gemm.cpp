// GEMM: CPU kernels against a naive f64 reference, f16/bf16 against the f32 result, CUDA against CPU.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"
#include "kernels/cpu/gemm_on_thread.h"
#include "kernels/gemm.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace se::kernels {
namespace {

struct Shape {
  int64_t m, n, k;
};

// Odd sizes around the micro-tile (4..12 x 16..32) and cache block (mc 96..192, kc 256) edges.
// m = 27 and 18 take the 9-row AVX-512 tile (a 3x3 conv's backward data), 64 and 16 the 8-row one.
const std::vector<Shape> kShapes = {{1, 1, 1},     {7, 5, 3},     {33, 17, 9},   {64, 64, 64},  {129, 65, 33},
                                    {257, 31, 47}, {3, 257, 129}, {100, 100, 1}, {16, 300, 8},  {13, 33, 300},
                                    {27, 70, 64},  {18, 45, 10}};
const Shape kLongK = {64, 48, 1024};

struct Case {
  Shape shape;
  bool trans_a = false, trans_b = false;
  float alpha = 1.0f, beta = 0.0f;
  int64_t batch = 1;
  bool broadcast_a = false, broadcast_b = false;
  int64_t pad = 0;  // extra elements per row of A, B and C beyond the minimal stride
};

std::string describe(const Case& c, DType dtype) {
  return std::string(dtype_name(dtype)) + " m=" + std::to_string(c.shape.m) + " n=" + std::to_string(c.shape.n) +
         " k=" + std::to_string(c.shape.k) + " ta=" + std::to_string(c.trans_a) + " tb=" + std::to_string(c.trans_b) +
         " alpha=" + std::to_string(c.alpha) + " beta=" + std::to_string(c.beta) + " batch=" +
         std::to_string(c.batch) + " pad=" + std::to_string(c.pad);
}

GemmDesc make_desc(const Case& c, DType dtype) {
  GemmDesc d;
  d.m = c.shape.m;
  d.n = c.shape.n;
  d.k = c.shape.k;
  d.trans_a = c.trans_a;
  d.trans_b = c.trans_b;
  d.lda = std::max<int64_t>(1, c.trans_a ? d.m : d.k) + c.pad;
  d.ldb = std::max<int64_t>(1, c.trans_b ? d.k : d.n) + c.pad;
  d.ldc = std::max<int64_t>(1, d.n) + c.pad;
  d.batch = c.batch;
  const int64_t a_rows = c.trans_a ? d.k : d.m;
  const int64_t b_rows = c.trans_b ? d.n : d.k;
  d.stride_a = c.broadcast_a ? 0 : a_rows * d.lda;
  d.stride_b = c.broadcast_b ? 0 : b_rows * d.ldb;
  d.stride_c = d.m * d.ldc;
  d.alpha = c.alpha;
  d.beta = c.beta;
  d.dtype = dtype;
  return d;
}

int64_t a_elements(const GemmDesc& d) { return (d.trans_a ? d.k : d.m) * d.lda + (d.batch - 1) * d.stride_a; }
int64_t b_elements(const GemmDesc& d) { return (d.trans_b ? d.n : d.k) * d.ldb + (d.batch - 1) * d.stride_b; }
int64_t c_elements(const GemmDesc& d) { return d.m * d.ldc + (d.batch - 1) * d.stride_c; }

// Random values in [-1, 1), already representable in T.
template <typename T>
std::vector<T> random_values(int64_t count, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> out(static_cast<size_t>(count));
  for (auto& x : out) x = static_cast<T>(static_cast<float>(dist(gen)));
  if constexpr (std::is_same_v<T, double>) {
    for (auto& x : out) x = dist(gen);
  }
  return out;
}

template <typename T>
double to_double(T x) {
  if constexpr (std::is_same_v<T, double>) {
    return x;
  } else {
    return static_cast<double>(static_cast<float>(x));
  }
}

// The naive product in f64 on the same inputs; entries of C outside (m, n) keep their value.
template <typename T>
std::vector<double> reference(const GemmDesc& d, const std::vector<T>& a, const std::vector<T>& b,
                              const std::vector<T>& c) {
  std::vector<double> out(c.size());
  for (size_t i = 0; i < c.size(); ++i) out[i] = to_double(c[i]);
  for (int64_t bi = 0; bi < d.batch; ++bi) {
    const T* ab = a.data() + bi * d.stride_a;
    const T* bb = b.data() + bi * d.stride_b;
    double* cb = out.data() + bi * d.stride_c;
    for (int64_t i = 0; i < d.m; ++i) {
      for (int64_t j = 0; j < d.n; ++j) {
        double sum = 0.0;
        for (int64_t p = 0; p < d.k; ++p) {
          const double av = to_double(d.trans_a ? ab[p * d.lda + i] : ab[i * d.lda + p]);
          const double bv = to_double(d.trans_b ? bb[j * d.ldb + p] : bb[p * d.ldb + j]);
          sum += av * bv;
        }
        double& cv = cb[i * d.ldc + j];
        cv = d.alpha * sum + (d.beta == 0.0f ? 0.0 : d.beta * cv);
      }
    }
  }
  return out;
}

// max |got - want| / max |want| over all of C (padding included: it must be left untouched).
template <typename T>
double relative_error(const std::vector<T>& got, const std::vector<double>& want) {
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = to_double(got[i]);
    if (std::isnan(g)) return std::numeric_limits<double>::infinity();
    max_diff = std::max(max_diff, std::abs(g - want[i]));
    max_ref = std::max(max_ref, std::abs(want[i]));
  }
  return max_ref == 0.0 ? max_diff : max_diff / max_ref;
}

// Initial C: random where beta reads it, NaN where it must not be read (except the padding, kept
// finite so we can check it survives).
template <typename T>
std::vector<T> initial_c(const GemmDesc& d, uint32_t seed) {
  std::vector<T> c = random_values<T>(c_elements(d), seed);
  if (d.beta == 0.0f) {
    for (int64_t bi = 0; bi < d.batch; ++bi) {
      for (int64_t i = 0; i < d.m; ++i) {
        for (int64_t j = 0; j < d.n; ++j) {
          c[bi * d.stride_c + i * d.ldc + j] = static_cast<T>(std::numeric_limits<float>::quiet_NaN());
        }
      }
    }
  }
  return c;
}

std::vector<Case> case_table() {
  std::vector<Case> cases;
  for (const Shape& s : kShapes) {
    for (int t = 0; t < 4; ++t) {
      Case c;
      c.shape = s;
      c.trans_a = t & 1;
      c.trans_b = t & 2;
      cases.push_back(c);
    }
  }
  Case scaled{{45, 70, 37}, true, false, -0.5f, 0.75f};
  cases.push_back(scaled);
  Case accumulate{{130, 33, 300}, false, true, 2.0f, 1.0f};
  cases.push_back(accumulate);
  Case padded{{31, 29, 23}, true, true, 1.0f, 0.5f};
  padded.pad = 5;
  cases.push_back(padded);
  Case batched{{17, 19, 21}, false, false, 1.0f, 0.0f, 4};
  cases.push_back(batched);
  Case broadcast_a{{33, 40, 20}, true, false, 1.0f, 0.25f, 3, true, false};
  cases.push_back(broadcast_a);
  Case broadcast_b{{96, 64, 80}, false, true, 1.0f, 0.0f, 3, false, true, 2};
  cases.push_back(broadcast_b);
  // Whole 128 x 128 tiles with 16-byte aligned rows: the CUDA kernels' vector loads, both layouts.
  Case aligned_ta{{136, 132, 24}, true, false, 1.0f, 0.0f, 2};
  cases.push_back(aligned_ta);
  Case aligned_tb{{132, 136, 24}, false, true, 1.0f, 0.0f};
  cases.push_back(aligned_tb);
  Case k_zero{{5, 6, 0}, false, false, 1.0f, 0.5f};
  cases.push_back(k_zero);
  return cases;
}

template <typename T>
double run_cpu_case(const Case& c, DType dtype, uint32_t seed) {
  const GemmDesc d = make_desc(c, dtype);
  const auto a = random_values<T>(a_elements(d), seed);
  const auto b = random_values<T>(b_elements(d), seed + 1);
  auto out = initial_c<T>(d, seed + 2);
  const auto want = reference(d, a, b, out);
  cpu::gemm(d, a.data(), b.data(), out.data(), nullptr);
  return relative_error(out, want);
}

class GemmCpu : public ::testing::TestWithParam<cpu::GemmIsa> {
 protected:
  void SetUp() override {
    if (!cpu::gemm_isa_supported(GetParam())) GTEST_SKIP() << "CPU lacks " << cpu::gemm_isa_name(GetParam());
    saved_ = cpu::gemm_isa();
    cpu::set_gemm_isa(GetParam());
  }
  void TearDown() override { cpu::set_gemm_isa(saved_); }
  cpu::GemmIsa saved_ = cpu::GemmIsa::generic;
};

TEST_P(GemmCpu, F32MatchesReference) {
  uint32_t seed = 1;
  for (const Case& c : case_table()) {
    EXPECT_LE(run_cpu_case<float>(c, DType::f32, seed += 3), 1e-5) << describe(c, DType::f32);
  }
}

TEST_P(GemmCpu, F32LongK) {
  for (int t = 0; t < 4; ++t) {
    Case c{kLongK, bool(t & 1), bool(t & 2)};
    EXPECT_LE(run_cpu_case<float>(c, DType::f32, 7 + t), 1e-4) << describe(c, DType::f32);
  }
}

TEST_P(GemmCpu, F32ManyColumnBlocks) {  // n beyond one nc block, and threads splitting columns
  Case c{{5, 4200, 20}, false, true, 1.0f, 0.5f};
  EXPECT_LE(run_cpu_case<float>(c, DType::f32, 99), 1e-5) << describe(c, DType::f32);
}

// Products with few columns read A in place and products with few rows read a row-major B in place
// (gemm.cpp, in_place_operands); partial last panels are still packed. Tall and short operands, A either
// way, row tiles of 8, 9 and 12 (m % 8, 9, 12), several row and k blocks (mc 192, kc 256), partial panels on
// both sides, padded rows, alpha and beta.
TEST_P(GemmCpu, F32InPlaceOperandsMatchReference) {
  const std::vector<Case> cases = {
      {{1001, 40, 300}, false, true},                                 // A's rows in place, Linear's y = x W^T
      {{1001, 40, 300}, true, true, 0.5f, 0.75f},                     // A's columns (a transposed A) in place
      {{963, 64, 33}, false, false, 1.0f, 0.0f, 1, false, false, 3},  // 9-row tiles, B 2 panels, padded
      {{600, 17, 520}, true, false, -1.0f, 1.0f},                     // 12-row tiles, A and B in place, 3 k blocks
      {{100, 70, 600}, true, false},                                  // B in place but its partial third panel
      {{100, 70, 600}, false, false, 2.0f, 0.5f, 1, false, false, 5},
      {{128, 4200, 40}, false, false},  // B in place over two column blocks (nc 4096)
      {{7, 33, 1000}, true, false},     // one partial row panel: packed, B in place
  };
  uint32_t seed = 900;
  for (const Case& c : cases) {
    EXPECT_LE(run_cpu_case<float>(c, DType::f32, seed += 3), 1e-5) << describe(c, DType::f32);
  }
}

// A @ B^T with few outputs over a long k takes the unpacked dot-product path (AVX2 and AVX-512): tiles
// cut at odd row counts on either side (the wider tile goes to A or to B), k with a partial last
// vector and several k blocks, alpha and beta, padded rows.
std::vector<Case> dot_path_cases() {
  return {
      {{27, 64, 2048}, false, true},                // a shallow conv's weight gradient (tiles fit exactly)
      {{64, 27, 2051}, false, true, 0.5f, 1.0f},    // the same the other way round, k % 16 = 3
      {{5, 7, 300}, false, true, 1.0f, 0.0f, 1, false, false, 3},
      {{1, 1, 257}, false, true, -2.0f, 0.25f},
      {{30, 100, 5000}, false, true, 1.0f, 0.0f, 1, false, false, 16},
      {{64, 64, 999}, false, true, 1.0f, 0.5f, 2},  // batched
  };
}

TEST_P(GemmCpu, F32DotPathMatchesReference) {
  uint32_t seed = 200;
  for (const Case& c : dot_path_cases()) {
    EXPECT_LE(run_cpu_case<float>(c, DType::f32, seed += 3), 1e-5) << describe(c, DType::f32);
  }
}

TEST_P(GemmCpu, F64DotPathMatchesReference) {
  uint32_t seed = 300;
  for (const Case& c : dot_path_cases()) {
    EXPECT_LE(run_cpu_case<double>(c, DType::f64, seed += 3), 1e-13) << describe(c, DType::f64);
  }
}

// Threads split the output rows, never k: the sums, and so the bits of C, are the same on any count.
TEST_P(GemmCpu, DotPathResultDoesNotDependOnThreadCount) {
  const Case c{{27, 64, 4099}, false, true};
  const GemmDesc d = make_desc(c, DType::f32);
  const auto a = random_values<float>(a_elements(d), 41);
  const auto b = random_values<float>(b_elements(d), 42);
  std::vector<float> one(c_elements(d)), many(c_elements(d));
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  cpu::gemm(d, a.data(), b.data(), one.data(), nullptr);
  omp_set_num_threads(std::max(3, saved));
  cpu::gemm(d, a.data(), b.data(), many.data(), nullptr);
  omp_set_num_threads(saved);
  EXPECT_EQ(one, many);
}

// Packed products split C's tiles among the threads and sum every output over k in the same order: a
// thread packs its own panels of B for products with few outputs (a weight gradient over many pixels) and
// shares them for others; either way C matches the reference and has the same bits on 1, 2 and 3 threads.
// Row and column counts that leave partial tiles, k over several blocks, trans_a (dy^T) and beta.
TEST_P(GemmCpu, PackedResultDoesNotDependOnThreadCount) {
  const std::vector<Case> cases = {
      {{128, 32, 3000}, true, false},             // Linear's weight gradient dy^T @ x: B packed per thread
      {{37, 70, 1500}, true, false, 0.5f, 1.0f},  // partial tiles both ways, accumulating into C
      {{20, 33, 900}, false, false, 1.0f, 0.5f},
      {{300, 260, 700}, true, true},  // more outputs than kPrivateBMaxOutputs: B shared by the team
      {{16, 2000, 600}, false, false},  // one row tile: the threads split the columns alone
  };
  uint32_t seed = 700;
  for (const Case& c : cases) {
    const GemmDesc d = make_desc(c, DType::f32);
    const auto a = random_values<float>(a_elements(d), seed += 3);
    const auto b = random_values<float>(b_elements(d), seed + 1);
    const auto c0 = initial_c<float>(d, seed + 2);
    const auto want = reference(d, a, b, c0);
    std::vector<std::vector<float>> got;
    const int saved = omp_get_max_threads();
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      got.push_back(c0);
      cpu::gemm(d, a.data(), b.data(), got.back().data(), nullptr);
    }
    omp_set_num_threads(saved);
    EXPECT_LE(relative_error(got[0], want), 1e-5) << describe(c, DType::f32);
    EXPECT_EQ(got[0], got[1]) << describe(c, DType::f32);
    EXPECT_EQ(got[0], got[2]) << describe(c, DType::f32);
  }
}

// gemm_on_this_thread (kernels/cpu/gemm_on_thread.h) inside a parallel region, one product per thread, as
// attention's tasks use it: each matches the reference and has the bits of the same product run alone on
// one thread.
TEST_P(GemmCpu, ProductsOnEachThreadMatchReference) {
  struct Product {
    GemmDesc desc;
    std::vector<float> a, b, c;
  };
  const std::vector<Case> cases = case_table();
  auto product = [&](size_t i) {
    const GemmDesc d = make_desc(cases[i], DType::f32);
    const uint32_t seed = 500 + 3 * static_cast<uint32_t>(i);
    return Product{d, random_values<float>(a_elements(d), seed), random_values<float>(b_elements(d), seed + 1),
                   initial_c<float>(d, seed + 2)};
  };
  std::vector<double> errors(cases.size());
  std::vector<std::vector<float>> got(cases.size()), alone(cases.size());
#pragma omp parallel for schedule(dynamic) num_threads(std::max(2, omp_get_max_threads()))
  for (size_t i = 0; i < cases.size(); ++i) {
    if (cases[i].batch != 1) continue;
    Product p = product(i);
    const auto want = reference(p.desc, p.a, p.b, p.c);
    cpu::gemm_on_this_thread(p.desc, p.a.data(), p.b.data(), p.c.data());
    errors[i] = relative_error(p.c, want);
    got[i] = std::move(p.c);
  }
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  for (size_t i = 0; i < cases.size(); ++i) {
    if (cases[i].batch != 1) continue;
    Product p = product(i);
    cpu::gemm(p.desc, p.a.data(), p.b.data(), p.c.data(), nullptr);
    alone[i] = std::move(p.c);
  }
  omp_set_num_threads(saved);
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_LE(errors[i], 1e-5) << describe(cases[i], DType::f32);
    EXPECT_EQ(got[i], alone[i]) << describe(cases[i], DType::f32);
  }
}

TEST_P(GemmCpu, F64MatchesReference) {
  uint32_t seed = 11;
  for (const Case& c : case_table()) {
    EXPECT_LE(run_cpu_case<double>(c, DType::f64, seed += 3), 1e-13) << describe(c, DType::f64);
  }
  Case long_k{kLongK, true, false};
  EXPECT_LE(run_cpu_case<double>(long_k, DType::f64, 5), 1e-12) << describe(long_k, DType::f64);
}

INSTANTIATE_TEST_SUITE_P(Isa, GemmCpu,
                         ::testing::Values(cpu::GemmIsa::generic, cpu::GemmIsa::avx2, cpu::GemmIsa::avx512),
                         [](const auto& info) { return std::string(cpu::gemm_isa_name(info.param)); });

// f16/bf16 against the f32 product of the same (rounded) inputs: they differ by the output rounding
// (half an ulp of the format) plus f32 accumulation noise.
template <typename T>
void expect_matches_f32(const Case& c, DType dtype, double ulp, uint32_t seed) {
  const GemmDesc d16 = make_desc(c, dtype);
  GemmDesc d32 = d16;
  d32.dtype = DType::f32;
  const auto a = random_values<T>(a_elements(d16), seed);
  const auto b = random_values<T>(b_elements(d16), seed + 1);
  auto c16 = initial_c<T>(d16, seed + 2);
  std::vector<float> a32(a.begin(), a.end()), b32(b.begin(), b.end()), c32(c16.begin(), c16.end());
  cpu::gemm(d16, a.data(), b.data(), c16.data(), nullptr);
  cpu::gemm(d32, a32.data(), b32.data(), c32.data(), nullptr);
  double scale = 0.0;
  for (float v : c32) scale = std::max(scale, double(std::abs(v)));
  for (size_t i = 0; i < c32.size(); ++i) {
    const double tol = 0.5 * ulp * std::abs(c32[i]) + 1e-5 * scale;
    ASSERT_NEAR(static_cast<float>(c16[i]), c32[i], tol) << describe(c, dtype) << " at " << i;
  }
}

TEST(GemmCpuHalf, F16MatchesF32) {
  uint32_t seed = 21;
  for (const Case& c : case_table()) expect_matches_f32<f16>(c, DType::f16, std::ldexp(1.0, -10), seed += 3);
}

TEST(GemmCpuHalf, Bf16MatchesF32) {
  uint32_t seed = 31;
  for (const Case& c : case_table()) expect_matches_f32<bf16>(c, DType::bf16, std::ldexp(1.0, -7), seed += 3);
}

void expect_invalid(const GemmDesc& d, const std::string& what) {
  try {
    validate_gemm(d);
    ADD_FAILURE() << "expected an error mentioning '" << what << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(GemmValidate, NamesTheBadField) {
  GemmDesc ok;
  ok.m = 4;
  ok.n = 5;
  ok.k = 6;
  ok.lda = 6;
  ok.ldb = 5;
  ok.ldc = 5;
  EXPECT_NO_THROW(validate_gemm(ok));
  GemmDesc d = ok;
  d.m = -1;
  expect_invalid(d, "m = -1");
  d = ok;
  d.lda = 5;
  expect_invalid(d, "lda = 5");
  d = ok;
  d.trans_a = true;  // stored (k, m) = (6, 4): lda >= 4 suffices
  d.lda = 4;
  EXPECT_NO_THROW(validate_gemm(d));
  d = ok;
  d.trans_b = true;
  expect_invalid(d, "ldb = 5");
  d = ok;
  d.ldc = 3;
  expect_invalid(d, "ldc = 3");
  d = ok;
  d.dtype = DType::i32;
  expect_invalid(d, "dtype i32");
  d = ok;
  d.batch = 2;
  d.stride_c = 5;
  expect_invalid(d, "stride_c = 5");
  d = ok;
  d.stride_a = -3;
  expect_invalid(d, "stride_a = -3");
}

TEST(GemmValidate, CpuGemmChecksPointers) {
  GemmDesc d;
  d.m = d.n = d.k = 2;
  d.lda = d.ldb = d.ldc = 2;
  std::vector<float> buf(4);
  EXPECT_THROW(cpu::gemm(d, nullptr, buf.data(), buf.data(), nullptr), Error);
}

#ifdef SEGENGINE_HAS_CUDA
// CUDA against the CPU on the same inputs. Tensor-core f16/bf16 and FMA contraction make the order
// of accumulation differ, so the tolerances are those of the CPU tests against the f64 reference.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<T>& host) : bytes_(host.size() * sizeof(T)) {
    ptr_ = cuda::device_malloc(std::max<size_t>(bytes_, 1));
    cuda::copy_host_to_device(ptr_, host.data(), bytes_, nullptr);
  }
  ~DeviceBuffer() { cuda::device_free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  std::vector<T> to_host() const {
    std::vector<T> out(bytes_ / sizeof(T));
    cuda::copy_device_to_host(out.data(), ptr_, bytes_, nullptr);
    return out;
  }

 private:
  size_t bytes_;
  void* ptr_ = nullptr;
};

template <typename T>
double cuda_vs_reference(const Case& c, DType dtype, uint32_t seed) {
  const GemmDesc d = make_desc(c, dtype);
  const auto a = random_values<T>(a_elements(d), seed);
  const auto b = random_values<T>(b_elements(d), seed + 1);
  const auto c0 = initial_c<T>(d, seed + 2);
  DeviceBuffer<T> da(a), db(b), dc(c0);
  cuda::gemm(d, da.get(), db.get(), dc.get(), nullptr);
  const auto got = dc.to_host();
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    auto cpu_out = c0;
    cpu::gemm(d, a.data(), b.data(), cpu_out.data(), nullptr);
    EXPECT_LE(relative_error(cpu_out, reference(d, a, b, c0)), 1e-4);
    return relative_error(got, reference(d, a, b, c0));
  } else {
    // Compare with the CPU f16/bf16 result, rounded the same way.
    auto cpu_out = c0;
    cpu::gemm(d, a.data(), b.data(), cpu_out.data(), nullptr);
    std::vector<double> want(cpu_out.size());
    for (size_t i = 0; i < want.size(); ++i) want[i] = to_double(cpu_out[i]);
    return relative_error(got, want);
  }
}

class GemmCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(GemmCuda, F32MatchesCpu) {
  uint32_t seed = 41;
  for (const Case& c : case_table()) {
    EXPECT_LE(cuda_vs_reference<float>(c, DType::f32, seed += 3), 1e-5) << describe(c, DType::f32);
  }
  Case long_k{kLongK, false, true};
  EXPECT_LE(cuda_vs_reference<float>(long_k, DType::f32, 3), 1e-4) << describe(long_k, DType::f32);
}

TEST_F(GemmCuda, F64MatchesCpu) {
  uint32_t seed = 51;
  for (const Case& c : case_table()) {
    EXPECT_LE(cuda_vs_reference<double>(c, DType::f64, seed += 3), 1e-13) << describe(c, DType::f64);
  }
}

// Both sides round the same f32 sums once, so they differ by at most about one ulp of the format.
TEST_F(GemmCuda, F16MatchesCpu) {
  uint32_t seed = 61;
  for (const Case& c : case_table()) {
    EXPECT_LE(cuda_vs_reference<f16>(c, DType::f16, seed += 3), 2e-3) << describe(c, DType::f16);
  }
}

TEST_F(GemmCuda, Bf16MatchesCpu) {
  uint32_t seed = 71;
  for (const Case& c : case_table()) {
    EXPECT_LE(cuda_vs_reference<bf16>(c, DType::bf16, seed += 3), 1.6e-2) << describe(c, DType::bf16);
  }
}
#endif

}  // namespace
}  // namespace se::kernels
