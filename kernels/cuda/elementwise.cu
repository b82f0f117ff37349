// CUDA elementwise kernels: grid-stride loops over the contiguous output, with a contiguous fast path
// (every input unit-stride after collapsing dims) and an index path that turns the linear output
// index into each input's offset over the collapsed dims (32-bit division when the size allows).
// The kernels instantiated are exactly the (op, dtype) pairs supports() accepts: the host wrappers
// dispatch with `if constexpr (supports(...))`. See kernels/elementwise.h for the contract.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/elementwise.h"
#include "kernels/elementwise_math.h"

namespace se::kernels::cuda {
namespace {

using namespace se::kernels::elementwise;

constexpr std::string_view kDevice = "cuda";
constexpr int kBlock = 256;
// Enough blocks of 256 to fill an H100/H200 several times; the grid-stride loop covers the rest.
constexpr int64_t kMaxBlocks = 4096;

// The iteration space of one launch after collapse_dims: shared sizes and, per input, strides.
template <int N>
struct IndexMap {
  int ndim = 0;
  bool small = false;       // numel < 2^32: 32-bit index arithmetic
  bool contiguous = false;  // every input is unit-stride: offsets equal the linear index
  int64_t sizes[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};

  __device__ void offsets(int64_t linear, int64_t (&out)[N]) const {
    for (int l = 0; l < N; ++l) out[l] = 0;
    if (small) {
      uint32_t rest = static_cast<uint32_t>(linear);
      for (int d = ndim - 1; d >= 0; --d) {
        const uint32_t size = static_cast<uint32_t>(sizes[d]);
        const int64_t i = rest % size;
        rest /= size;
        for (int l = 0; l < N; ++l) out[l] += i * strides[l][d];
      }
    } else {
      int64_t rest = linear;
      for (int d = ndim - 1; d >= 0; --d) {
        const int64_t i = rest % sizes[d];
        rest /= sizes[d];
        for (int l = 0; l < N; ++l) out[l] += i * strides[l][d];
      }
    }
  }
};

// Collapses the output (contiguous) together with the N inputs and keeps the inputs' strides.
template <int N>
IndexMap<N> make_index_map(const StridedLayout (&inputs)[N]) {
  StridedLayout layouts[N + 1];
  layouts[0] = contiguous_like(inputs[0]);
  for (int l = 0; l < N; ++l) layouts[l + 1] = inputs[l];
  collapse_dims(layouts, N + 1);
  IndexMap<N> map;
  map.ndim = layouts[0].ndim;
  map.small = layouts[0].numel() < (int64_t{1} << 32);
  map.contiguous = map.ndim == 1;
  for (int d = 0; d < map.ndim; ++d) map.sizes[d] = layouts[0].sizes[d];
  for (int l = 0; l < N; ++l) {
    map.contiguous = map.contiguous && layouts[l + 1].strides[0] == 1;
    for (int d = 0; d < map.ndim; ++d) map.strides[l][d] = layouts[l + 1].strides[d];
  }
  return map;
}

unsigned int grid_for(int64_t numel) {
  return static_cast<unsigned int>(std::min<int64_t>((numel + kBlock - 1) / kBlock, kMaxBlocks));
}

// Element loads and stores between the storage type (cuda_t<T>) and the compute type.
template <typename T>
__device__ compute_t<T> load(const cuda_t<T>* p) {
  if constexpr (std::is_same_v<T, f16>) {
    return __half2float(*p);
  } else if constexpr (std::is_same_v<T, bf16>) {
    return __bfloat162float(*p);
  } else {
    return *p;
  }
}

template <typename T>
__device__ cuda_t<T> to_storage(compute_t<T> v) {
  if constexpr (std::is_same_v<T, f16>) {
    return __float2half_rn(v);
  } else if constexpr (std::is_same_v<T, bf16>) {
    return __float2bfloat16_rn(v);
  } else {
    return v;
  }
}

template <UnaryOp kOp, typename T>
__global__ void unary_kernel(cuda_t<T>* out, const cuda_t<T>* in, IndexMap<1> map, int64_t numel,
                             ScalarArgs<compute_t<T>> args) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i < numel; i += step) {
    int64_t offsets[1] = {i};
    if (!map.contiguous) map.offsets(i, offsets);
    out[i] = to_storage<T>(unary_fn<kOp>(load<T>(in + offsets[0]), args));
  }
}

template <BinaryOp kOp, typename T>
__global__ void binary_kernel(std::conditional_t<is_comparison(kOp), bool, cuda_t<T>>* out, const cuda_t<T>* a,
                              const cuda_t<T>* b, IndexMap<2> map, int64_t numel) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i < numel; i += step) {
    int64_t offsets[2] = {i, i};
    if (!map.contiguous) map.offsets(i, offsets);
    const auto result = binary_fn<kOp>(load<T>(a + offsets[0]), load<T>(b + offsets[1]));
    if constexpr (is_comparison(kOp)) {
      out[i] = result;
    } else {
      out[i] = to_storage<T>(result);
    }
  }
}

template <typename T>
__global__ void where_kernel(cuda_t<T>* out, const bool* cond, const cuda_t<T>* a, const cuda_t<T>* b, IndexMap<3> map,
                             int64_t numel) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i < numel; i += step) {
    int64_t offsets[3] = {i, i, i};
    if (!map.contiguous) map.offsets(i, offsets);
    out[i] = cond[offsets[0]] ? a[offsets[1]] : b[offsets[2]];
  }
}

template <UnaryOp kOp, typename T>
__global__ void unary_backward_kernel(cuda_t<T>* grad_in, const cuda_t<T>* grad_out, const cuda_t<T>* saved,
                                      IndexMap<2> map, int64_t numel, ScalarArgs<compute_t<T>> args) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i < numel; i += step) {
    int64_t offsets[2] = {i, i};
    if (!map.contiguous) map.offsets(i, offsets);
    grad_in[i] = to_storage<T>(unary_grad_fn<kOp>(load<T>(grad_out + offsets[0]), load<T>(saved + offsets[1]), args));
  }
}

template <BinaryOp kOp, typename T>
__global__ void binary_backward_kernel(cuda_t<T>* grad_input, const cuda_t<T>* grad_out, const cuda_t<T>* a,
                                       const cuda_t<T>* b, int input, IndexMap<3> map, int64_t numel) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i < numel; i += step) {
    int64_t offsets[3] = {i, i, i};
    if (!map.contiguous) map.offsets(i, offsets);
    grad_input[i] = to_storage<T>(
        binary_grad_fn<kOp>(input, load<T>(grad_out + offsets[0]), load<T>(a + offsets[1]), load<T>(b + offsets[2])));
  }
}

}  // namespace

void unary(void* out, const void* in, const UnaryDesc& desc, Stream stream) {
  require_supported(supports(desc.op, desc.dtype), desc.op, desc.dtype, kDevice);
  const int64_t numel = desc.in.numel();
  dispatch_dtype(desc.dtype, [&](auto type_tag) {
    using T = typename decltype(type_tag)::type;
    visit_unary_op(desc.op, [&](auto op_tag) {
      constexpr UnaryOp kOp = decltype(op_tag)::value;
      if constexpr (supports(kOp, dtype_of<T>())) {
        const auto args = make_scalar_args<compute_t<T>>(kOp, desc.params, desc.dtype, kDevice);
        if (numel == 0) return;
        const IndexMap<1> map = make_index_map<1>({desc.in});
        SE_LAUNCH((unary_kernel<kOp, T>), grid_for(numel), kBlock, 0, stream, static_cast<cuda_t<T>*>(out),
                  static_cast<const cuda_t<T>*>(in), map, numel, args);
      }
    });
  });
}

void binary(void* out, const void* a, const void* b, const BinaryDesc& desc, Stream stream) {
  require_supported(supports(desc.op, desc.dtype), desc.op, desc.dtype, kDevice);
  require_same_sizes(op_name(desc.op), desc.a, desc.b);
  const int64_t numel = desc.a.numel();
  if (numel == 0) return;
  dispatch_dtype(desc.dtype, [&](auto type_tag) {
    using T = typename decltype(type_tag)::type;
    visit_binary_op(desc.op, [&](auto op_tag) {
      constexpr BinaryOp kOp = decltype(op_tag)::value;
      if constexpr (supports(kOp, dtype_of<T>())) {
        using Out = std::conditional_t<is_comparison(kOp), bool, cuda_t<T>>;
        const IndexMap<2> map = make_index_map<2>({desc.a, desc.b});
        SE_LAUNCH((binary_kernel<kOp, T>), grid_for(numel), kBlock, 0, stream, static_cast<Out*>(out),
                  static_cast<const cuda_t<T>*>(a), static_cast<const cuda_t<T>*>(b), map, numel);
      }
    });
  });
}

void where(void* out, const bool* cond, const void* a, const void* b, const WhereDesc& desc, Stream stream) {
  require_same_sizes("where", desc.cond, desc.a);
  require_same_sizes("where", desc.cond, desc.b);
  const int64_t numel = desc.cond.numel();
  if (numel == 0) return;
  const IndexMap<3> map = make_index_map<3>({desc.cond, desc.a, desc.b});
  dispatch_dtype(desc.dtype, [&](auto type_tag) {
    using T = typename decltype(type_tag)::type;
    SE_LAUNCH((where_kernel<T>), grid_for(numel), kBlock, 0, stream, static_cast<cuda_t<T>*>(out), cond,
              static_cast<const cuda_t<T>*>(a), static_cast<const cuda_t<T>*>(b), map, numel);
  });
}

void unary_backward(void* grad_in, const void* grad_out, const void* saved, const UnaryBackwardDesc& desc,
                    Stream stream) {
  require_backward_supported(supports_backward(desc.op, desc.dtype), desc.op, desc.dtype, kDevice);
  require_same_sizes(op_name(desc.op), desc.grad_out, desc.saved);
  const int64_t numel = desc.grad_out.numel();
  const IndexMap<2> map = make_index_map<2>({desc.grad_out, desc.saved});
  dispatch_floating(desc.dtype, op_name(desc.op), [&](auto type_tag) {
    using T = typename decltype(type_tag)::type;
    visit_unary_op(desc.op, [&](auto op_tag) {
      constexpr UnaryOp kOp = decltype(op_tag)::value;
      if constexpr (supports_backward(kOp, dtype_of<T>())) {
        const auto args = make_scalar_args<compute_t<T>>(kOp, desc.params, desc.dtype, kDevice);
        if (numel == 0) return;
        SE_LAUNCH((unary_backward_kernel<kOp, T>), grid_for(numel), kBlock, 0, stream, static_cast<cuda_t<T>*>(grad_in),
                  static_cast<const cuda_t<T>*>(grad_out), static_cast<const cuda_t<T>*>(saved), map, numel, args);
      }
    });
  });
}

void binary_backward(void* grad_input, const void* grad_out, const void* a, const void* b,
                     const BinaryBackwardDesc& desc, Stream stream) {
  require_backward_supported(supports_backward(desc.op, desc.dtype), desc.op, desc.dtype, kDevice);
  SE_CHECK(desc.input == 0 || desc.input == 1, "elementwise ", op_name(desc.op), "_backward: input is ", desc.input,
           ", expected 0 (a) or 1 (b)");
  require_same_sizes(op_name(desc.op), desc.grad_out, desc.a);
  require_same_sizes(op_name(desc.op), desc.grad_out, desc.b);
  const int64_t numel = desc.grad_out.numel();
  if (numel == 0) return;
  const IndexMap<3> map = make_index_map<3>({desc.grad_out, desc.a, desc.b});
  dispatch_floating(desc.dtype, op_name(desc.op), [&](auto type_tag) {
    using T = typename decltype(type_tag)::type;
    visit_binary_op(desc.op, [&](auto op_tag) {
      constexpr BinaryOp kOp = decltype(op_tag)::value;
      if constexpr (supports_backward(kOp, dtype_of<T>())) {
        SE_LAUNCH((binary_backward_kernel<kOp, T>), grid_for(numel), kBlock, 0, stream,
                  static_cast<cuda_t<T>*>(grad_input), static_cast<const cuda_t<T>*>(grad_out),
                  static_cast<const cuda_t<T>*>(a), static_cast<const cuda_t<T>*>(b), desc.input, map, numel);
      }
    });
  });
}

}  // namespace se::kernels::cuda
