#include "kernels/copy.h"

#include <cstring>

#include "core/philox.h"
#include "kernels/convert.h"

namespace se::kernels::cpu {

namespace {

constexpr int64_t kParallelThreshold = 1 << 15;  // below this, threads cost more than they save

template <typename Dst, typename Src>
void copy_typed(const CopyDesc& desc, const Src* src, Dst* dst) {
  const int64_t n = desc.dst.numel();
  const bool contiguous = desc.src.is_contiguous() && desc.dst.is_contiguous();
  if (contiguous) {
    if constexpr (std::is_same_v<Dst, Src>) {
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(Src));
    } else {
#pragma omp parallel for if (n > kParallelThreshold)
      for (int64_t i = 0; i < n; ++i) dst[i] = convert<Dst>(src[i]);
    }
    return;
  }
  // Walk the innermost dim with strides; decompose the outer index once per row.
  const int last = desc.dst.ndim - 1;
  const int64_t inner = desc.dst.sizes[last];
  const int64_t src_step = desc.src.strides[last];
  const int64_t dst_step = desc.dst.strides[last];
  const int64_t rows = n / inner;
#pragma omp parallel for if (n > kParallelThreshold)
  for (int64_t row = 0; row < rows; ++row) {
    const Src* s = src + desc.src.offset_of(row * inner);
    Dst* d = dst + desc.dst.offset_of(row * inner);
    for (int64_t i = 0; i < inner; ++i) d[i * dst_step] = convert<Dst>(s[i * src_step]);
  }
}

}  // namespace

void copy_strided(const CopyDesc& desc, const void* src, void* dst, Stream) {
  CopyDesc collapsed = desc;
  StridedLayout layouts[2] = {desc.src, desc.dst};
  collapse_dims(layouts, 2);
  collapsed.src = layouts[0];
  collapsed.dst = layouts[1];
  if (collapsed.dst.numel() == 0) return;
  dispatch_dtype(desc.src_dtype, [&](auto src_tag) {
    using Src = typename decltype(src_tag)::type;
    dispatch_dtype(desc.dst_dtype, [&](auto dst_tag) {
      using Dst = typename decltype(dst_tag)::type;
      copy_typed(collapsed, static_cast<const Src*>(src), static_cast<Dst*>(dst));
    });
  });
}

void fill(const FillDesc& desc, void* dst, Stream) {
  StridedLayout layout = desc.dst;
  collapse_dims(&layout, 1);
  const int64_t n = layout.numel();
  dispatch_dtype(desc.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T value = convert<T>(desc.value);
    T* out = static_cast<T*>(dst);
    if (layout.is_contiguous()) {
#pragma omp parallel for if (n > kParallelThreshold)
      for (int64_t i = 0; i < n; ++i) out[i] = value;
    } else {
#pragma omp parallel for if (n > kParallelThreshold)
      for (int64_t i = 0; i < n; ++i) out[layout.offset_of(i)] = value;
    }
  });
}

void arange(const ArangeDesc& desc, void* out, Stream) {
  dispatch_dtype(desc.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out);
    for (int64_t i = 0; i < desc.count; ++i) o[i] = convert<T>(desc.start + static_cast<double>(i) * desc.step);
  });
}

void random(const RandomDesc& desc, void* out, Stream) {
  dispatch_floating(desc.dtype, "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out);
    const bool uniform = desc.distribution == Distribution::uniform;
#pragma omp parallel for if (desc.count > kParallelThreshold)
    for (int64_t i = 0; i < desc.count; ++i) {
      uint64_t index = desc.offset + static_cast<uint64_t>(i);
      double v = uniform ? desc.a + (desc.b - desc.a) * philox::uniform_at(desc.seed, index)
                         : desc.a + desc.b * philox::normal_at(desc.seed, index);
      o[i] = convert<T>(v);
    }
  });
}

}  // namespace se::kernels::cpu
