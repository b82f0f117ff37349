// sort and cumsum kernels: CPU and CUDA against std::stable_sort with PyTorch's ordering (NaN largest,
// -0.0 == +0.0) on odd row lengths around the CUDA tile size, with many ties (stability), infinities, NaN and
// integer extremes; cumsum against a double-precision loop, both directions, inner == 1 and inner > 1.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/sort.h"
#include "tests/kernels/kernel_test_util.h"

namespace se::kernels {
namespace {

template <typename T> constexpr DType dtype_of_test() {
  if constexpr (std::is_same_v<T, float>) return DType::f32;
  if constexpr (std::is_same_v<T, double>) return DType::f64;
  if constexpr (std::is_same_v<T, int32_t>) return DType::i32;
  return DType::i64;
}

// Random keys with many repeats, plus the special values of T.
template <typename T>
std::vector<T> make_keys(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(0, 40);
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) {
    const int r = pick(rng);
    if constexpr (std::is_floating_point_v<T>) {
      if (r == 0) x = std::numeric_limits<T>::quiet_NaN();
      else if (r == 1) x = -std::numeric_limits<T>::quiet_NaN();
      else if (r == 2) x = std::numeric_limits<T>::infinity();
      else if (r == 3) x = -std::numeric_limits<T>::infinity();
      else if (r == 4) x = T(-0.0);
      else if (r == 5) x = T(0.0);
      else if (r < 20) x = T(r % 7 - 3) * T(0.5);  // ties
      else x = static_cast<T>(std::uniform_real_distribution<double>(-1e3, 1e3)(rng));
    } else {
      if (r == 0) x = std::numeric_limits<T>::min();
      else if (r == 1) x = std::numeric_limits<T>::max();
      else if (r < 20) x = T(r % 7 - 3);
      else x = static_cast<T>(std::uniform_int_distribution<int64_t>(-1000000, 1000000)(rng)) *
               (sizeof(T) == 8 ? T(1000003) : T(1));
    }
  }
  return v;
}

template <typename T>
bool less(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(a)) return false;
    if (std::isnan(b)) return true;
  }
  return a < b;
}

// The expected indices of each row: std::stable_sort with PyTorch's comparison.
template <typename T>
std::vector<int64_t> reference_indices(const std::vector<T>& x, int64_t rows, int64_t length, bool descending) {
  std::vector<int64_t> out(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int64_t> order(static_cast<size_t>(length));
    std::iota(order.begin(), order.end(), int64_t{0});
    const T* row = x.data() + r * length;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return descending ? less(row[b], row[a]) : less(row[a], row[b]);
    });
    std::copy(order.begin(), order.end(), out.begin() + r * length);
  }
  return out;
}

template <typename T>
void expect_values_match(const std::vector<T>& x, const std::vector<T>& values, const std::vector<int64_t>& indices,
                         int64_t length, const std::string& what) {
  for (size_t i = 0; i < values.size(); ++i) {
    const T want = x[i / length * length + indices[i]];
    if constexpr (std::is_floating_point_v<T>) {
      ASSERT_EQ(std::memcmp(&want, &values[i], sizeof(T)), 0) << what << " value " << i;  // bit-exact copies
    } else {
      ASSERT_EQ(values[i], want) << what << " value " << i;
    }
  }
}

struct Shape2 {
  int64_t rows, length;
};
// Around the CUDA tile (1024): single-tile rows, several tiles, a short last tile.
const std::vector<Shape2> kShapes = {{1, 1}, {3, 7}, {2, 255}, {5, 256}, {1, 1000}, {2, 1024}, {1, 1025}, {3, 2900}};

using SortFn = void (*)(const SortDesc&, const void*, void*, int64_t*, void*, Stream);

template <typename T>
void check_sort(SortFn fn, bool device) {
  uint32_t seed = 7;
  for (const Shape2& s : kShapes) {
    for (bool descending : {false, true}) {
      const std::string what = std::to_string(s.rows) + "x" + std::to_string(s.length) +
                               (descending ? " descending" : " ascending");
      SortDesc d;
      d.rows = s.rows;
      d.length = s.length;
      d.descending = descending;
      d.dtype = dtype_of_test<T>();
      const std::vector<T> x = make_keys<T>(s.rows * s.length, seed++);
      const std::vector<int64_t> want = reference_indices(x, s.rows, s.length, descending);
      std::vector<T> values(x.size());
      std::vector<int64_t> indices(x.size());
      if (!device) {
        fn(d, x.data(), values.data(), indices.data(), nullptr, nullptr);
      } else {
#ifdef SEGENGINE_HAS_CUDA
        test::DeviceBuffer<T> dx(x), dv(x.size());
        test::DeviceBuffer<int64_t> di(x.size());
        test::DeviceBuffer<unsigned char> ws(sort_workspace_bytes(d));
        fn(d, dx.get(), dv.get(), di.get(), ws.get(), nullptr);
        values = dv.to_host();
        indices = di.to_host();
#endif
      }
      ASSERT_EQ(indices, want) << what;
      expect_values_match(x, values, indices, s.length, what);
    }
  }
}

TEST(SortCpu, F32MatchesStableSort) { check_sort<float>(cpu::sort, false); }
TEST(SortCpu, F64MatchesStableSort) { check_sort<double>(cpu::sort, false); }
TEST(SortCpu, I32MatchesStableSort) { check_sort<int32_t>(cpu::sort, false); }
TEST(SortCpu, I64MatchesStableSort) { check_sort<int64_t>(cpu::sort, false); }

// Rows of 2^16 keys and more, fewer than the threads, are each sorted by all the threads (parts of the
// row counted and scattered side by side): the same stable order, with 1, 2 and 3 threads, many ties.
TEST(SortCpu, LongRowsSortedByAllThreadsMatchStableSort) {
  const int threads = omp_get_max_threads();
  uint32_t seed = 91;
  for (const Shape2 s : {Shape2{1, 70001}, Shape2{2, 65536}}) {
    for (int run_threads : {1, 2, 3}) {
      omp_set_num_threads(run_threads);
      SortDesc d;
      d.rows = s.rows;
      d.length = s.length;
      d.descending = run_threads == 2;
      d.dtype = DType::f32;
      std::vector<float> x = make_keys<float>(s.rows * s.length, seed++);
      if (s.rows == 2) {  // keys in [1, 2): the high digits are the whole row's, and their passes skipped
        for (size_t i = 0; i < x.size(); ++i) x[i] = 1.0f + static_cast<float>((i * 7919) % 1000) / 1000.0f;
      }
      std::vector<float> values(x.size());
      std::vector<int64_t> indices(x.size());
      cpu::sort(d, x.data(), values.data(), indices.data(), nullptr, nullptr);
      const std::string what = std::to_string(s.rows) + "x" + std::to_string(s.length) + " on " +
                               std::to_string(run_threads) + " threads";
      ASSERT_EQ(indices, reference_indices(x, s.rows, s.length, d.descending)) << what;
      expect_values_match(x, values, indices, s.length, what);
    }
  }
  omp_set_num_threads(threads);
}

// Rows whose keys are all one key (here +0.0 and -0.0, which sort as equals) skip every radix pass: the
// positions are the identity, and the values keep each zero's sign. Also a row where only the lowest
// digit varies (every pass but the first skipped).
TEST(SortCpu, RowsOfOneKeySkipEveryPass) {
  for (const bool descending : {false, true}) {
    SortDesc d;
    d.rows = 2;
    d.length = 300;  // past the std::stable_sort cut-off
    d.descending = descending;
    d.dtype = DType::f32;
    std::vector<float> x(static_cast<size_t>(d.rows * d.length));
    for (int64_t i = 0; i < d.length; ++i) x[i] = i % 3 == 0 ? -0.0f : 0.0f;  // row 0: one key
    for (int64_t i = 0; i < d.length; ++i) x[d.length + i] = 1.0f + static_cast<float>((i * 7) % 5) * 0x1p-23f;
    std::vector<float> values(x.size());
    std::vector<int64_t> indices(x.size());
    cpu::sort(d, x.data(), values.data(), indices.data(), nullptr, nullptr);
    ASSERT_EQ(indices, reference_indices(x, d.rows, d.length, descending)) << (descending ? "descending" : "ascending");
    for (int64_t i = 0; i < d.length; ++i) ASSERT_EQ(indices[i], i);
    expect_values_match(x, values, indices, d.length, "one key");
  }
}

TEST(SortCpu, RejectsUnsupportedDtype) {
  SortDesc d;
  d.dtype = DType::f16;
  EXPECT_THROW(cpu::sort(d, nullptr, nullptr, nullptr, nullptr, nullptr), Error);
}

// The sums and, for the tolerance, the running sums of |x| (the rounding error of a prefix sum grows with it).
template <typename T>
std::vector<double> reference_cumsum(const std::vector<T>& x, const CumsumDesc& d, std::vector<double>& abs_sum) {
  std::vector<double> y(x.size());
  abs_sum.assign(x.size(), 0.0);
  for (int64_t o = 0; o < d.outer; ++o) {
    for (int64_t in = 0; in < d.inner; ++in) {
      double sum = 0, magnitude = 0;
      for (int64_t k = 0; k < d.length; ++k) {
        const int64_t i = (o * d.length + (d.reverse ? d.length - 1 - k : k)) * d.inner + in;
        sum += static_cast<double>(x[i]);
        magnitude += std::abs(static_cast<double>(x[i]));
        y[i] = sum;
        abs_sum[i] = magnitude;
      }
    }
  }
  return y;
}

struct Shape3 {
  int64_t outer, length, inner;
};
const std::vector<Shape3> kCumsumShapes = {{1, 1, 1}, {3, 17, 1}, {2, 1023, 1}, {1, 2500, 1}, {2, 9, 5}, {1, 300, 33}};

using CumsumFn = void (*)(const CumsumDesc&, const void*, void*, Stream);

template <typename T>
void check_cumsum(CumsumFn fn, bool device, double tol) {
  uint32_t seed = 3;
  for (const Shape3& s : kCumsumShapes) {
    for (bool reverse : {false, true}) {
      CumsumDesc d;
      d.outer = s.outer;
      d.length = s.length;
      d.inner = s.inner;
      d.reverse = reverse;
      d.dtype = dtype_of_test<T>();
      std::vector<T> x;
      for (double v : test::random_values(s.outer * s.length * s.inner, seed++, -10, 10)) x.push_back(static_cast<T>(v));
      std::vector<T> y(x.size());
      if (!device) {
        fn(d, x.data(), y.data(), nullptr);
      } else {
#ifdef SEGENGINE_HAS_CUDA
        test::DeviceBuffer<T> dx(x), dy(x.size());
        fn(d, dx.get(), dy.get(), nullptr);
        y = dy.to_host();
#endif
      }
      std::vector<double> magnitude;
      const std::vector<double> want = reference_cumsum(x, d, magnitude);
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_NEAR(static_cast<double>(y[i]), want[i], tol * magnitude[i])
            << s.outer << "x" << s.length << "x" << s.inner << (reverse ? " reverse" : "") << " at " << i;
      }
    }
  }
}

TEST(CumsumCpu, MatchesDoubleLoop) {
  check_cumsum<float>(cpu::cumsum, false, 1e-7);  // one rounding of a double sum
  check_cumsum<double>(cpu::cumsum, false, 1e-15);
  check_cumsum<int64_t>(cpu::cumsum, false, 0);
  check_cumsum<int32_t>(cpu::cumsum, false, 0);
}

#ifdef SEGENGINE_HAS_CUDA
TEST(SortCuda, F32MatchesStableSort) {
  SE_SKIP_WITHOUT_CUDA();
  check_sort<float>(cuda::sort, true);
}
TEST(SortCuda, F64MatchesStableSort) {
  SE_SKIP_WITHOUT_CUDA();
  check_sort<double>(cuda::sort, true);
}
TEST(SortCuda, I32MatchesStableSort) {
  SE_SKIP_WITHOUT_CUDA();
  check_sort<int32_t>(cuda::sort, true);
}
TEST(SortCuda, I64MatchesStableSort) {
  SE_SKIP_WITHOUT_CUDA();
  check_sort<int64_t>(cuda::sort, true);
}
TEST(CumsumCuda, MatchesDoubleLoop) {
  SE_SKIP_WITHOUT_CUDA();
  check_cumsum<float>(cuda::cumsum, true, 1e-6);  // f32 accumulation in a different order
  check_cumsum<double>(cuda::cumsum, true, 1e-14);
  check_cumsum<int64_t>(cuda::cumsum, true, 0);
  check_cumsum<int32_t>(cuda::cumsum, true, 0);
}
#endif

}  // namespace
}  // namespace se::kernels
