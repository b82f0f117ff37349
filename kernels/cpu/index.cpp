// CPU gather and scatter_add. scatter_add parallelises over fibers along `dim` (all positions that
// differ only in that coordinate): a fiber writes only into its own fiber of dst, so threads never
// collide and each fiber adds in index order, deterministically.
#include "kernels/index.h"

#include "core/error.h"
#include "core/half.h"

namespace se::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = 32768;

// 16-bit floats add in float.
template <typename T> struct AddType { using type = T; };
template <> struct AddType<f16> { using type = float; };
template <> struct AddType<bf16> { using type = float; };
template <typename T> using add_t = typename AddType<T>::type;

struct Offsets {
  int64_t dense = 0;    // into the contiguous side
  int64_t index = 0;    // into the index
  int64_t indexed = 0;  // into the indexed side, without the `dim` coordinate
};

// Offsets of the `linear`-th position in row-major order of desc.sizes, with the `dim` coordinate
// set to 0 when skip_dim is true (a fiber's start).
Offsets offsets_of(const GatherDesc& d, int64_t linear, bool skip_dim) {
  Offsets o;
  int64_t dense_stride = 1;
  for (int k = d.ndim - 1; k >= 0; --k) {
    if (skip_dim && k == d.dim) {
      dense_stride *= d.sizes[k];
      continue;
    }
    int64_t i = linear % d.sizes[k];
    linear /= d.sizes[k];
    o.dense += i * dense_stride;
    o.index += i * d.index_strides[k];
    if (k != d.dim) o.indexed += i * d.strides[k];
    dense_stride *= d.sizes[k];
  }
  return o;
}

int64_t checked(int64_t index, const GatherDesc& d, const char* op) {
  if (index < 0 || index >= d.dim_size) {
    SE_THROW(op, ": index ", index, " is out of range for size ", d.dim_size, " of dim ", d.dim);
  }
  return index;
}

}  // namespace

template <typename T>
void gather(T* out, const T* src, const int64_t* index, const GatherDesc& d, Stream) {
  const int64_t n = d.numel();
  bool bad = false;
  int64_t bad_index = 0;
#pragma omp parallel for schedule(static) if (n >= kParallelWork)
  for (int64_t p = 0; p < n; ++p) {
    Offsets o = offsets_of(d, p, false);
    int64_t i = index[o.index];
    if (i < 0 || i >= d.dim_size) {
#pragma omp critical(se_gather_bad_index)
      {
        bad = true;
        bad_index = i;
      }
      continue;
    }
    out[o.dense] = src[o.indexed + i * d.strides[d.dim]];
  }
  if (bad) checked(bad_index, d, "gather");
}

template <typename T>
void scatter_add(T* dst, const T* src, const int64_t* index, const GatherDesc& d, Stream) {
  const int64_t n = d.numel();
  if (n == 0) return;
  const int64_t length = d.sizes[d.dim], fibers = n / length;
  int64_t dense_step = 1;
  for (int k = d.dim + 1; k < d.ndim; ++k) dense_step *= d.sizes[k];
  // Validate first so that a bad index leaves dst untouched.
  for (int64_t p = 0; p < n; ++p) checked(index[offsets_of(d, p, false).index], d, "scatter_add");
#pragma omp parallel for schedule(static) if (n >= kParallelWork)
  for (int64_t f = 0; f < fibers; ++f) {
    Offsets o = offsets_of(d, f, true);
    for (int64_t j = 0; j < length; ++j) {
      int64_t i = index[o.index + j * d.index_strides[d.dim]];
      T& target = dst[o.indexed + i * d.strides[d.dim]];
      target = static_cast<T>(static_cast<add_t<T>>(target) + static_cast<add_t<T>>(src[o.dense + j * dense_step]));
    }
  }
}

#define SE_INSTANTIATE_GATHER(T) \
  template void gather<T>(T*, const T*, const int64_t*, const GatherDesc&, Stream);
#define SE_INSTANTIATE_SCATTER(T) \
  template void scatter_add<T>(T*, const T*, const int64_t*, const GatherDesc&, Stream);
SE_INSTANTIATE_GATHER(float)
SE_INSTANTIATE_GATHER(double)
SE_INSTANTIATE_GATHER(f16)
SE_INSTANTIATE_GATHER(bf16)
SE_INSTANTIATE_GATHER(int32_t)
SE_INSTANTIATE_GATHER(int64_t)
SE_INSTANTIATE_GATHER(uint8_t)
SE_INSTANTIATE_GATHER(bool)
SE_INSTANTIATE_SCATTER(float)
SE_INSTANTIATE_SCATTER(double)
SE_INSTANTIATE_SCATTER(f16)
SE_INSTANTIATE_SCATTER(bf16)
SE_INSTANTIATE_SCATTER(int32_t)
SE_INSTANTIATE_SCATTER(int64_t)
SE_INSTANTIATE_SCATTER(uint8_t)
#undef SE_INSTANTIATE_GATHER
#undef SE_INSTANTIATE_SCATTER

}  // namespace se::kernels::cpu
