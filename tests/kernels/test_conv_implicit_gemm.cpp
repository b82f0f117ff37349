// The CPU conv's implicit GEMM: gemm_packing_b (kernels/cpu/gemm_sources.h), a GEMM whose B panels a
// caller packs, against cpu::gemm with B stored; and conv_gemm::TaskColumns, which packs a conv task's
// im2col matrix from x, against the matrix im2col_channel stores. Both bit for bit: the conv's results must
// not depend on whether col was stored.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cpu/conv_im2col.h"
#include "kernels/cpu/gemm_sources.h"
#include "kernels/gemm.h"
#include "tests/kernels/kernel_test_util.h"

namespace se::kernels {
namespace {

// op(B) from a stored (k, n) matrix, packed as the GEMM packs it.
template <typename T>
class StoredB final : public cpu::GemmBPacker<T> {
 public:
  StoredB(const std::vector<T>& b, int64_t ldb) : b_(b), ldb_(ldb) {}
  void pack(int64_t p0, int64_t kb, int64_t j0, int64_t j1, int nr, T* out) const override {
    for (int64_t j = j0; j < j0 + (j1 - j0 + nr - 1) / nr * nr; ++j) {
      for (int64_t p = 0; p < kb; ++p) {
        out[(j - j0) / nr * nr * kb + p * nr + (j - j0) % nr] = j < j1 ? b_[(p0 + p) * ldb_ + j] : T(0);
      }
    }
  }

 private:
  const std::vector<T>& b_;
  int64_t ldb_;
};

// S from a stored matrix, rows ld apart.
template <typename T>
class StoredRows final : public cpu::GemmRowSource<T> {
 public:
  StoredRows(const std::vector<T>& s, int64_t ld) : s_(s), ld_(ld) {}
  void rows(int64_t r0, int64_t count, int64_t c0, int64_t c1, T* out, int64_t ld) const override {
    for (int64_t r = 0; r < count; ++r) std::copy(&s_[(r0 + r) * ld_ + c0], &s_[(r0 + r) * ld_ + c1], out + r * ld);
  }

 private:
  const std::vector<T>& s_;
  int64_t ld_;
};

template <typename T>
std::vector<T> random_matrix(int64_t count, uint32_t seed) {
  return test::cast_to<T>(test::random_values(count, seed));
}

template <typename T>
void expect_packing_b_is_gemm(int64_t m, int64_t n, int64_t k, bool trans_a, float beta, uint32_t seed) {
  GemmDesc d;
  d.m = m, d.n = n, d.k = k, d.trans_a = trans_a;
  d.lda = trans_a ? m + 3 : k + 1;  // padded rows
  d.ldb = n + 2;
  d.ldc = n + 5;
  d.alpha = 0.75f;
  d.beta = beta;
  d.dtype = dtype_of<T>();
  const std::vector<T> a = random_matrix<T>((trans_a ? k : m) * d.lda, seed);
  const std::vector<T> b = random_matrix<T>(k * d.ldb, seed + 1);
  std::vector<T> want = random_matrix<T>(m * d.ldc, seed + 2), got = want;
  cpu::gemm(d, a.data(), b.data(), want.data(), nullptr);
  cpu::gemm_packing_b(d, a.data(), StoredB<T>(b, d.ldb), got.data());
  EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(T)), 0)
      << m << "x" << n << "x" << k << " trans_a " << trans_a << " beta " << beta;
}

// op(A) = S and op(B) = S^T from row sources against the same products with S stored.
template <typename T>
void expect_row_sources_are_gemm(int64_t m, int64_t n, int64_t k, float beta, uint32_t seed) {
  GemmDesc d;
  d.m = m, d.n = n, d.k = k, d.alpha = 1.25f, d.beta = beta, d.dtype = dtype_of<T>();
  d.ldc = n + 1;
  const std::vector<T> a = random_matrix<T>(m * (k + 2), seed), b = random_matrix<T>(n * (k + 3), seed + 1);
  const std::vector<T> c0 = random_matrix<T>(m * d.ldc, seed + 2);
  // A @ B^T with both stored rows (k + 2 and k + 3 apart), then with A, then B, from a source.
  d.trans_b = true, d.lda = k + 2, d.ldb = k + 3;
  std::vector<T> want = c0, from_a = c0, from_b = c0;
  cpu::gemm(d, a.data(), b.data(), want.data(), nullptr);
  cpu::gemm_rows_a(d, StoredRows<T>(a, k + 2), b.data(), from_a.data());
  cpu::gemm_rows_b(d, a.data(), StoredRows<T>(b, k + 3), from_b.data());
  const std::string what = std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
  if (cpu::gemm_takes_dot_kernel(d)) {  // cpu::gemm sums in the dot kernel's lanes: another order
    const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    EXPECT_LE(test::relative_error(test::to_double(from_a), test::to_double(want)), tol) << what << " A from rows";
    EXPECT_LE(test::relative_error(test::to_double(from_b), test::to_double(want)), tol) << what << " B from rows";
    return;
  }
  EXPECT_EQ(std::memcmp(want.data(), from_a.data(), want.size() * sizeof(T)), 0) << what << " A from rows";
  EXPECT_EQ(std::memcmp(want.data(), from_b.data(), want.size() * sizeof(T)), 0) << what << " B from rows";
}

// Products smaller and larger than a block of K (256) and of N (4096 columns), on one thread and on all.
TEST(ImplicitGemm, PackingBGivesTheBitsOfTheStoredMatrix) {
  for (const bool trans_a : {false, true}) {
    expect_packing_b_is_gemm<float>(13, 70, 33, trans_a, 0.0f, 1);
    expect_packing_b_is_gemm<float>(40, 4133, 300, trans_a, 1.0f, 2);
    expect_packing_b_is_gemm<float>(1, 5, 1, trans_a, 0.5f, 3);
    expect_packing_b_is_gemm<double>(21, 90, 140, trans_a, 1.0f, 4);
  }
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  expect_packing_b_is_gemm<float>(40, 4133, 300, false, 0.0f, 5);
  omp_set_num_threads(threads);
}

// A product that cpu::gemm gives its dot-product kernel (few outputs, long k; the conv keeps col stored
// for those) is packed here, summed in another order: within rounding.
TEST(ImplicitGemm, RowSourcesGiveTheBitsOfTheStoredMatrix) {
  expect_row_sources_are_gemm<float>(13, 70, 33, 0.0f, 11);
  expect_row_sources_are_gemm<float>(300, 40, 700, 1.0f, 12);
  GemmDesc dot;
  dot.m = 16, dot.n = 144, dot.k = 512, dot.trans_b = true, dot.lda = dot.ldb = 512, dot.ldc = 144;
  EXPECT_EQ(cpu::gemm_takes_dot_kernel(dot), cpu::gemm_isa() != cpu::GemmIsa::generic);
  expect_row_sources_are_gemm<float>(16, 144, 512, 1.0f, 13);
  expect_row_sources_are_gemm<double>(21, 90, 140, 0.5f, 14);
}

TEST(ImplicitGemm, PackingBWithNoDepthScalesC) {
  GemmDesc d;
  d.m = 2, d.n = 3, d.k = 0, d.lda = 1, d.ldb = 3, d.ldc = 3, d.beta = 0.5f;
  std::vector<float> c = {2, 4, 6, 8, 10, 12};
  const std::vector<float> none;
  cpu::gemm_packing_b<float>(d, nullptr, StoredB<float>(none, 3), c.data());
  EXPECT_EQ(c, (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

Conv2dDesc conv(int64_t n, int64_t c_in, int64_t h, int64_t w, int64_t c_out, int64_t kh, int64_t kw, int64_t stride,
                int64_t pad_h, int64_t pad_w, int64_t dilation, int64_t groups) {
  Conv2dDesc d;
  d.n = n, d.c_in = c_in, d.h = h, d.w = w, d.c_out = c_out;
  d.kernel_h = kh, d.kernel_w = kw;
  d.stride_h = d.stride_w = stride;
  d.pad_h = pad_h, d.pad_w = pad_w;
  d.dilation_h = d.dilation_w = dilation;
  d.groups = groups;
  return d;
}

// Every task of each conv: the panels TaskColumns packs for blocks of rows and columns (cut anywhere,
// panels of 32 and of 16 columns) hold im2col_channel's values bit for bit, the last panel padded with
// zeros, and so do the blocks of rows it gives. Negative padding (the dual convs of backward data have
// it), stride 2, dilation, a 2x3 kernel, two groups, several images per task and chunks of rows that
// start below the first.
TEST(ImplicitGemm, TaskColumnsGiveTheValuesOfIm2col) {
  const std::vector<std::pair<std::string, Conv2dDesc>> convs = {
      {"3x3 pad 1, images per task", conv(5, 3, 6, 7, 4, 3, 3, 1, 1, 1, 1, 1)},
      {"stride 2, dilation 2, groups 2", conv(2, 4, 13, 11, 6, 3, 3, 2, 2, 2, 2, 2)},
      {"2x3, uneven padding", conv(1, 2, 9, 10, 3, 2, 3, 1, 0, 2, 1, 1)},
      {"negative padding", conv(2, 3, 8, 9, 2, 3, 3, 1, -1, -1, 1, 1)},
      {"row chunks", conv(1, 2, 70, 40, 2, 3, 3, 1, 1, 1, 1, 1)},
  };
  for (const auto& [name, d] : convs) {
    const cpu::conv_gemm::Geometry g = cpu::conv_gemm::geometry(d);
    const std::vector<float> x = random_matrix<float>(d.n * d.c_in * d.h * d.w, 7);
    for (int64_t t = 0; t < cpu::conv_gemm::task_count(g); ++t) {
      const cpu::conv_gemm::Task tk = cpu::conv_gemm::task_of(g, t);
      std::vector<float> col(static_cast<size_t>(g.k * tk.ld));  // each image's im2col, side by side
      for (int64_t j = 0; j < tk.images; ++j) {
        for (int64_t c = 0; c < g.cg; ++c) {
          const float* x_g = x.data() + ((tk.image + j) * g.c_in + tk.group * g.cg) * g.hw;
          cpu::conv_gemm::im2col_channel(g, x_g, c, tk.oh0, tk.oh1, col.data() + j * (tk.oh1 - tk.oh0) * g.ow, tk.ld);
        }
      }
      const cpu::conv_gemm::TaskColumns<float> packer(g, x.data(), tk);
      for (const int nr : {32, 16}) {
        for (const auto& [p0, kb, j0, j1] : std::vector<std::array<int64_t, 4>>{
                 {0, g.k, 0, tk.cols}, {1, g.k - 1, nr, std::min<int64_t>(tk.cols, 2 * nr + 5)}, {g.k / 2, 1, 0, 1}}) {
          if (j0 >= j1 || kb <= 0) continue;
          const int64_t panels = (j1 - j0 + nr - 1) / nr;
          std::vector<float> got(static_cast<size_t>(panels * nr * kb), -1.0f);
          packer.pack(p0, kb, j0, j1, nr, got.data());
          for (int64_t p = 0; p < kb; ++p) {
            for (int64_t j = j0; j < j0 + panels * nr; ++j) {
              const float want = j < j1 ? col[(p0 + p) * tk.ld + j] : 0.0f;
              const float value = got[(j - j0) / nr * nr * kb + p * nr + (j - j0) % nr];
              ASSERT_EQ(std::memcmp(&want, &value, sizeof(float)), 0)
                  << name << ", task " << t << ", nr " << nr << ", row " << p0 + p << ", column " << j;
            }
          }
        }
      }
      // As rows (backward weight's col): blocks of rows and any range of columns.
      for (const auto& [r0, count, c0, c1] : std::vector<std::array<int64_t, 4>>{
               {0, g.k, 0, tk.cols}, {g.k / 3, std::min<int64_t>(12, g.k - g.k / 3), 3, tk.cols - 1}}) {
        if (c0 >= c1) continue;
        const int64_t ld = c1 - c0 + 3;
        std::vector<float> got(static_cast<size_t>(count * ld), -1.0f);
        packer.rows(r0, count, c0, c1, got.data(), ld);
        for (int64_t r = 0; r < count; ++r) {
          ASSERT_EQ(std::memcmp(got.data() + r * ld, col.data() + (r0 + r) * tk.ld + c0, (c1 - c0) * sizeof(float)), 0)
              << name << ", task " << t << ", row " << r0 + r << " of columns " << c0 << " to " << c1;
        }
      }
    }
  }
}

}  // namespace
}  // namespace se::kernels
