// nvcuda::wmma for the emulator. CUDA leaves the mapping of fragment elements to lanes unspecified, so here
// every lane holds a whole copy of the tile, row-major: matrix_a is M x K, matrix_b K x N, accumulator M x N.
// Element-wise loops over x[0..num_elements) therefore work as on a GPU; code that assumes a particular
// lane/element layout does not (and must not, see the kernel rules). mma_sync accumulates in float.
#pragma once

#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
template <typename Use, int M, int N, int K>
struct FragmentShape;
template <int M, int N, int K>
struct FragmentShape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct FragmentShape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct FragmentShape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
 public:
  using element_type = T;
  static constexpr int rows = detail::FragmentShape<Use, M, N, K>::rows;
  static constexpr int cols = detail::FragmentShape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  T x[num_elements];  // row-major rows x cols
};

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& value) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = T(value);
}

// matrix_a / matrix_b: the layout is part of the fragment type. Element (r, c) of the tile lives at
// ptr[r * ldm + c] (row_major) or ptr[c * ldm + r] (col_major).
template <typename Use, int M, int N, int K, typename T, typename Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* ptr, unsigned ldm) {
  static_assert(!std::is_same_v<Layout, void>, "matrix_a/matrix_b fragments need row_major or col_major");
  constexpr bool row = std::is_same_v<Layout, row_major>;
  for (int r = 0; r < f.rows; ++r) {
    for (int c = 0; c < f.cols; ++c) f.x[r * f.cols + c] = row ? ptr[r * ldm + c] : ptr[c * ldm + r];
  }
}

// Accumulators: the memory layout is an argument.
template <int M, int N, int K, typename T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* ptr, unsigned ldm, layout_t layout) {
  for (int r = 0; r < M; ++r) {
    for (int c = 0; c < N; ++c) f.x[r * N + c] = layout == mem_row_major ? ptr[r * ldm + c] : ptr[c * ldm + r];
  }
}

template <int M, int N, int K, typename T>
inline void store_matrix_sync(T* ptr, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
  for (int r = 0; r < M; ++r) {
    for (int c = 0; c < N; ++c) {
      if (layout == mem_row_major) {
        ptr[r * ldm + c] = f.x[r * N + c];
      } else {
        ptr[c * ldm + r] = f.x[r * N + c];
      }
    }
  }
}

// d = a * b + c, products and sums in float, one rounding to the accumulator type at the end.
template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB, typename TC>
inline void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, TC>& c) {
  float a_f[M * K];
  float b_f[K * N];
  for (int i = 0; i < M * K; ++i) a_f[i] = static_cast<float>(a.x[i]);
  for (int i = 0; i < K * N; ++i) b_f[i] = static_cast<float>(b.x[i]);
  for (int r = 0; r < M; ++r) {
    for (int col = 0; col < N; ++col) {
      float sum = static_cast<float>(c.x[r * N + col]);
      for (int k = 0; k < K; ++k) sum += a_f[r * K + k] * b_f[k * N + col];
      d.x[r * N + col] = TC(sum);
    }
  }
}

}  // namespace nvcuda::wmma
