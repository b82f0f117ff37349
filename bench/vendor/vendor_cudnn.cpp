// The cuDNN references of vendor.h: convolution (forward, backward data, backward filter, the transposed
// convolution on its mirror), batch normalization, pooling and softmax, through cuDNN's legacy API
// (descriptors and cudnnFind*AlgorithmEx), which cuDNN 9 still ships (deprecated in favour of the graph API;
// no deprecation warnings unless CUDNN_WARN_DEPRECATED is defined).
#include <cudnn.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <vector>

#include "bench/vendor/vendor.h"
#include "bench/vendor/vendor_cuda.h"

namespace se::vendor {

namespace {

using detail::device_buffer;
using detail::function_name;

bool is_not_supported(cudnnStatus_t status) {
  return status / 1000 == CUDNN_STATUS_NOT_SUPPORTED / 1000;  // CUDNN_STATUS_NOT_SUPPORTED and its sub-codes
}

// "cudnnConvolutionForward failed for <context>: CUDNN_STATUS_BAD_PARAM (<cuDNN's last message>)".
std::string failure_message(cudnnStatus_t status, const char* call_text, const std::string& context) {
  char detail[512] = "";
  cudnnGetLastErrorString(detail, sizeof(detail));
  std::string message =
      "vendor: " + function_name(call_text) + " failed for " + context + ": " + cudnnGetErrorString(status);
  if (detail[0] != '\0') message += std::string(" (") + detail + ")";
  return message;
}

#define SE_CUDNN_CHECK(expr, context)                                                            \
  do {                                                                                           \
    const cudnnStatus_t se_cudnn_status_ = (expr);                                               \
    if (se_cudnn_status_ != CUDNN_STATUS_SUCCESS) {                                              \
      const std::string se_cudnn_message_ = failure_message(se_cudnn_status_, #expr, (context)); \
      if (is_not_supported(se_cudnn_status_)) throw NotSupported(se_cudnn_message_);             \
      SE_THROW(se_cudnn_message_);                                                               \
    }                                                                                            \
  } while (0)

// One cuDNN handle per device, created on first use. Never destroyed: handles live until the process
// ends, and destroying them from static destructors could run after the CUDA runtime has shut down.
cudnnHandle_t cudnn_handle() {
  static std::mutex mutex;
  static std::map<int, cudnnHandle_t> handles;
  const int device = detail::current_device();
  std::lock_guard<std::mutex> lock(mutex);
  cudnnHandle_t& handle = handles[device];
  if (handle == nullptr) {
    const size_t version = cudnnGetVersion();
    SE_CHECK(version / 10000 == CUDNN_MAJOR, "vendor: cuDNN ", version, " is loaded, but the benchmarks were built ",
             "against cuDNN ", CUDNN_VERSION, " (major versions differ)");
    cudnnHandle_t created = nullptr;
    SE_CUDNN_CHECK(cudnnCreate(&created), "device " + std::to_string(device));
    handle = created;
  }
  return handle;
}

void bind_stream(cudnnHandle_t handle, Stream stream) {
  SE_CUDNN_CHECK(cudnnSetStream(handle, stream), "the benchmark's stream");
}

cudnnDataType_t data_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f16: return CUDNN_DATA_HALF;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    default: SE_THROW("vendor: cuDNN references run f32, f16 and bf16, not ", dtype_name(dtype));
  }
}

std::string dims_str(const Dims4& d) {
  std::string text = "(";
  for (size_t i = 0; i < d.size(); ++i) text += (i > 0 ? ", " : "") + std::to_string(d[i]);
  return text + ")";
}

// Scaling factors: float for float, half and bfloat16 data (cuDNN reads them from host memory).
const float kOne = 1.0f, kZero = 0.0f;

// ---- Descriptors, each owning one cuDNN object.
// Owns one cuDNN descriptor of type T, made by Create and released by Destroy.
template <typename T, cudnnStatus_t (*Create)(T*), cudnnStatus_t (*Destroy)(T)>
class Descriptor {
 public:
  explicit Descriptor(const std::string& context) { SE_CUDNN_CHECK(Create(&desc_), context); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  ~Descriptor() { Destroy(desc_); }
  T get() const { return desc_; }

 private:
  T desc_ = nullptr;
};

class TensorDesc {
 public:
  // dims are (N, C, H, W) in either format; CUDNN_TENSOR_NHWC stores them channels-last.
  TensorDesc(const Dims4& dims, cudnnDataType_t type, const std::string& context,
             cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW)
      : desc_(context) {
    SE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(get(), format, type, dims[0], dims[1], dims[2], dims[3]),
                   context + ", tensor " + dims_str(dims));
  }
  // The per-channel tensor of batch normalization over x, spatial mode: (1, C, 1, 1), f32 for 16-bit x.
  TensorDesc(const TensorDesc& x, const std::string& context) : desc_(context) {
    SE_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(get(), x.get(), CUDNN_BATCHNORM_SPATIAL), context);
  }
  cudnnTensorDescriptor_t get() const { return desc_.get(); }

 private:
  Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor> desc_;
};

using FilterDesc = Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc =
    Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;
using PoolDesc = Descriptor<cudnnPoolingDescriptor_t, cudnnCreatePoolingDescriptor, cudnnDestroyPoolingDescriptor>;

cudnnTensorFormat_t tensor_format(bool channels_last) {
  return channels_last ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
}

// The descriptors of one convolution: tensors x and y, filter w, and the convolution itself. Channels-last
// filters are cuDNN's NHWC filter format, (K, R, S, C) in memory: our (C_out, KH, KW, Cg).
struct ConvSetup {
  ConvSetup(const CudnnConvArgs& a, const std::string& context)
      : type(data_type(a.dtype)),
        x(a.x, type, context, tensor_format(a.channels_last)),
        y(a.y, type, context, tensor_format(a.channels_last)),
        w(context),
        conv(context) {
    SE_CUDNN_CHECK(
        cudnnSetFilter4dDescriptor(w.get(), type, tensor_format(a.channels_last), a.w[0], a.w[1], a.w[2], a.w[3]),
        context);
    // f32 accumulation for every dtype (cuDNN's PSEUDO_HALF and PSEUDO_BFLOAT16 configurations).
    SE_CUDNN_CHECK(
        cudnnSetConvolution2dDescriptor(conv.get(), a.pad[0], a.pad[1], a.stride[0], a.stride[1], a.dilation[0],
                                        a.dilation[1], CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
        context);
    SE_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv.get(), a.groups), context);
    // CUDNN_DEFAULT_MATH would allow TF32 for f32 on Ampere and later; our f32 kernels are strict FP32.
    SE_CUDNN_CHECK(cudnnSetConvolutionMathType(conv.get(), a.tensor_cores ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH),
                   context);
    Dims4 expected{};
    SE_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv.get(), x.get(), w.get(), &expected[0], &expected[1],
                                                         &expected[2], &expected[3]),
                   context);
    SE_CHECK(expected == a.y, "vendor: cuDNN computes the output ", dims_str(expected), " for ", context,
             ", the benchmark expects ", dims_str(a.y));
  }

  cudnnDataType_t type;
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
};

std::string conv_context(const CudnnConvArgs& a, const char* pass) {
  return std::string("conv2d ") + pass + " x " + dims_str(a.x) + ", w " + dims_str(a.w) + ", y " + dims_str(a.y) +
         ", pad (" + std::to_string(a.pad[0]) + ", " + std::to_string(a.pad[1]) + "), stride (" +
         std::to_string(a.stride[0]) + ", " + std::to_string(a.stride[1]) + "), dilation (" +
         std::to_string(a.dilation[0]) + ", " + std::to_string(a.dilation[1]) + "), groups " +
         std::to_string(a.groups) + ", " + std::string(dtype_name(a.dtype)) + (a.channels_last ? ", NHWC" : "");
}

const char* algorithm_name(cudnnConvolutionFwdAlgo_t algo) {
  switch (algo) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return "IMPLICIT_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return "IMPLICIT_PRECOMP_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return "GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return "DIRECT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
  }
}
const char* algorithm_name(cudnnConvolutionBwdDataAlgo_t algo) {
  switch (algo) {
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1: return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
  }
}
const char* algorithm_name(cudnnConvolutionBwdFilterAlgo_t algo) {
  switch (algo) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1: return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3: return "ALGO_3";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING: return "FFT_TILING";
    default: return "?";
  }
}

// The workspace cudnnFind*AlgorithmEx may use: half the free memory, at most 1 GiB (algorithms that need
// more are skipped).
size_t find_workspace_limit() {
  size_t free = 0, total = 0;
  SE_VENDOR_CUDA_CHECK(cudaMemGetInfo(&free, &total), "the workspace of cudnnFind*AlgorithmEx");
  return std::min<size_t>(free / 2, size_t{1} << 30);
}

// The algorithm a convolution pass runs: cudnnFind*AlgorithmEx times every algorithm on the real buffers
// (as torch.backends.cudnn.benchmark) and lists them fastest first; the first that ran is kept, with the
// workspace it needs. `find(count, &returned, results, workspace, bytes)` calls the pass's Find function.
template <typename Perf>
struct ChosenAlgorithm {
  Perf perf{};
  std::shared_ptr<void> workspace;
  std::string description;  // "IMPLICIT_PRECOMP_GEMM (tensor cores, 2.3 MiB workspace)"
};

template <typename Perf, typename Find>
ChosenAlgorithm<Perf> choose_algorithm(ConvSetup& setup, const CudnnConvArgs& args, int max_count, Find find,
                                       const std::string& context) {
  std::vector<Perf> results(static_cast<size_t>(std::max(max_count, 1)));
  int returned = 0;
  {
    const size_t limit = find_workspace_limit();
    const std::shared_ptr<void> scratch = device_buffer(limit, context + ", the search's workspace");
    SE_CUDNN_CHECK(find(static_cast<int>(results.size()), &returned, results.data(), scratch.get(), limit), context);
    SE_VENDOR_CUDA_CHECK(cudaDeviceSynchronize(), context);  // the search's runs finish before its workspace goes
  }
  auto ran = std::find_if(results.begin(), results.begin() + returned,
                          [](const Perf& p) { return p.status == CUDNN_STATUS_SUCCESS; });
  SE_CHECK(ran != results.begin() + returned, "vendor: cudnnFind*AlgorithmEx found no algorithm that runs ", context,
           " (", returned, " tried)");
  ChosenAlgorithm<Perf> chosen;
  chosen.perf = *ran;
  // The math type the algorithm was timed with; for f32 the descriptor keeps CUDNN_FMA_MATH (no TF32).
  if (args.tensor_cores) SE_CUDNN_CHECK(cudnnSetConvolutionMathType(setup.conv.get(), chosen.perf.mathType), context);
  chosen.workspace = device_buffer(chosen.perf.memory, context + ", workspace");
  char memory[32];
  std::snprintf(memory, sizeof(memory), "%.1f MiB", static_cast<double>(chosen.perf.memory) / (1 << 20));
  chosen.description = std::string(algorithm_name(chosen.perf.algo)) + " (" +
                       (chosen.perf.mathType == CUDNN_TENSOR_OP_MATH ? "tensor cores, " : "") + memory + " workspace)";
  return chosen;
}

// One convolution pass: its descriptors, the algorithm Find chose for it, and the Call that runs it.
// `max_count(handle, &count)` is the pass's cudnnGet*AlgorithmMaxCount, `find(handle, setup, count, &returned,
// results, workspace, bytes)` its cudnnFind*AlgorithmEx on the buffers, `run(handle, setup, chosen)` the pass.
template <typename Perf, typename MaxCount, typename Find, typename Run>
Call convolution_pass(const CudnnConvArgs& a, const char* pass, const char* function, MaxCount max_count, Find find,
                      Run run, Stream stream) {
  const std::string context = conv_context(a, pass);
  auto setup = std::make_shared<ConvSetup>(a, context);
  cudnnHandle_t handle = cudnn_handle();
  bind_stream(handle, stream);
  int count = 0;
  SE_CUDNN_CHECK(max_count(handle, &count), context);
  const ChosenAlgorithm<Perf> chosen = choose_algorithm<Perf>(
      *setup, a, count,
      [&](int requested, int* returned, Perf* results, void* workspace, size_t bytes) {
        return find(handle, *setup, requested, returned, results, workspace, bytes);
      },
      context);
  return Call("cuDNN", std::string(function) + " " + chosen.description, [=] {
    bind_stream(handle, stream);
    SE_CUDNN_CHECK(run(handle, *setup, chosen), context);
  });
}

Call convolution_forward(const CudnnConvArgs& a, const void* x, const void* w, void* y, Stream stream) {
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  return convolution_pass<Perf>(
      a, "forward", "cudnnConvolutionForward", cudnnGetConvolutionForwardAlgorithmMaxCount,
      [=](cudnnHandle_t h, const ConvSetup& s, int count, int* returned, Perf* results, void* ws, size_t bytes) {
        return cudnnFindConvolutionForwardAlgorithmEx(h, s.x.get(), x, s.w.get(), w, s.conv.get(), s.y.get(), y, count,
                                                      returned, results, ws, bytes);
      },
      [=](cudnnHandle_t h, const ConvSetup& s, const ChosenAlgorithm<Perf>& c) {
        return cudnnConvolutionForward(h, &kOne, s.x.get(), x, s.w.get(), w, s.conv.get(), c.perf.algo,
                                       c.workspace.get(), c.perf.memory, &kZero, s.y.get(), y);
      },
      stream);
}

Call convolution_backward_data(const CudnnConvArgs& a, const void* dy, const void* w, void* dx, Stream stream) {
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  return convolution_pass<Perf>(
      a, "backward data", "cudnnConvolutionBackwardData", cudnnGetConvolutionBackwardDataAlgorithmMaxCount,
      [=](cudnnHandle_t h, const ConvSetup& s, int count, int* returned, Perf* results, void* ws, size_t bytes) {
        return cudnnFindConvolutionBackwardDataAlgorithmEx(h, s.w.get(), w, s.y.get(), dy, s.conv.get(), s.x.get(), dx,
                                                           count, returned, results, ws, bytes);
      },
      [=](cudnnHandle_t h, const ConvSetup& s, const ChosenAlgorithm<Perf>& c) {
        return cudnnConvolutionBackwardData(h, &kOne, s.w.get(), w, s.y.get(), dy, s.conv.get(), c.perf.algo,
                                            c.workspace.get(), c.perf.memory, &kZero, s.x.get(), dx);
      },
      stream);
}

Call convolution_backward_filter(const CudnnConvArgs& a, const void* x, const void* dy, void* dw, Stream stream) {
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  return convolution_pass<Perf>(
      a, "backward filter", "cudnnConvolutionBackwardFilter", cudnnGetConvolutionBackwardFilterAlgorithmMaxCount,
      [=](cudnnHandle_t h, const ConvSetup& s, int count, int* returned, Perf* results, void* ws, size_t bytes) {
        return cudnnFindConvolutionBackwardFilterAlgorithmEx(h, s.x.get(), x, s.y.get(), dy, s.conv.get(), s.w.get(),
                                                             dw, count, returned, results, ws, bytes);
      },
      [=](cudnnHandle_t h, const ConvSetup& s, const ChosenAlgorithm<Perf>& c) {
        return cudnnConvolutionBackwardFilter(h, &kOne, s.x.get(), x, s.y.get(), dy, s.conv.get(), c.perf.algo,
                                              c.workspace.get(), c.perf.memory, &kZero, s.w.get(), dw);
      },
      stream);
}

// out (N, C, H, W), or channels-last, += bias (C) broadcast over N, H, W.
Call add_bias(const Dims4& out_dims, bool channels_last, DType dtype, const void* bias, void* out, Stream stream) {
  const std::string context = "the bias of " + dims_str(out_dims) + ", " + std::string(dtype_name(dtype));
  auto out_desc = std::make_shared<TensorDesc>(out_dims, data_type(dtype), context, tensor_format(channels_last));
  auto bias_desc = std::make_shared<TensorDesc>(Dims4{1, out_dims[1], 1, 1}, data_type(dtype), context);
  cudnnHandle_t handle = cudnn_handle();
  return Call("cuDNN", "cudnnAddTensor", [=] {
    bind_stream(handle, stream);
    SE_CUDNN_CHECK(cudnnAddTensor(handle, &kOne, bias_desc->get(), bias, &kOne, out_desc->get(), out), context);
  });
}

// db (C) = dy (N, C, H, W), or channels-last, summed over N, H, W.
Call bias_gradient(const Dims4& dy_dims, bool channels_last, DType dtype, const void* dy, void* db, Stream stream) {
  const std::string context = "the bias gradient of " + dims_str(dy_dims) + ", " + std::string(dtype_name(dtype));
  auto dy_desc = std::make_shared<TensorDesc>(dy_dims, data_type(dtype), context, tensor_format(channels_last));
  auto db_desc = std::make_shared<TensorDesc>(Dims4{1, dy_dims[1], 1, 1}, data_type(dtype), context);
  cudnnHandle_t handle = cudnn_handle();
  return Call("cuDNN", "cudnnConvolutionBackwardBias", [=] {
    bind_stream(handle, stream);
    SE_CUDNN_CHECK(cudnnConvolutionBackwardBias(handle, &kOne, dy_desc->get(), dy, &kZero, db_desc->get(), db),
                   context);
  });
}

std::string batch_norm_context(const Dims4& x_dims, DType dtype, const char* pass) {
  return std::string("batch_norm ") + pass + " x " + dims_str(x_dims) + ", " + std::string(dtype_name(dtype));
}

// x's descriptor (also y's, dy's and dx's) and the derived per-channel one.
struct BatchNormSetup {
  BatchNormSetup(const Dims4& x_dims, DType dtype, double eps, const std::string& context)
      : x(x_dims, data_type(dtype), context), channels(x, context) {
    SE_CHECK(eps >= CUDNN_BN_MIN_EPSILON, "vendor: eps ", eps, " is below cuDNN's minimum for ", context);
  }
  TensorDesc x, channels;
};

const char* pool_mode_name(PoolMode mode) {
  switch (mode) {
    case PoolMode::max: return "max";
    case PoolMode::average_count_include_pad: return "average (padding counted)";
    case PoolMode::average_count_exclude_pad: return "average (padding not counted)";
  }
  return "?";
}

std::string pool_context(const CudnnPoolArgs& a, DType dtype, const char* pass) {
  return std::string(pool_mode_name(a.mode)) + " pooling " + pass + " x " + dims_str(a.x) + ", y " + dims_str(a.y) +
         ", window (" + std::to_string(a.window[0]) + ", " + std::to_string(a.window[1]) + "), pad (" +
         std::to_string(a.pad[0]) + ", " + std::to_string(a.pad[1]) + "), stride (" + std::to_string(a.stride[0]) +
         ", " + std::to_string(a.stride[1]) + "), " + std::string(dtype_name(dtype));
}

struct PoolSetup {
  PoolSetup(const CudnnPoolArgs& a, DType dtype, const std::string& context)
      : x(a.x, data_type(dtype), context), y(a.y, data_type(dtype), context), pool(context) {
    const cudnnPoolingMode_t mode = a.mode == PoolMode::max ? CUDNN_POOLING_MAX
                                    : a.mode == PoolMode::average_count_include_pad
                                        ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
                                        : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
    // A NaN in a max window wins, as in PyTorch and our kernels.
    SE_CUDNN_CHECK(cudnnSetPooling2dDescriptor(pool.get(), mode, CUDNN_PROPAGATE_NAN, a.window[0], a.window[1],
                                               a.pad[0], a.pad[1], a.stride[0], a.stride[1]),
                   context);
    Dims4 expected{};
    SE_CUDNN_CHECK(
        cudnnGetPooling2dForwardOutputDim(pool.get(), x.get(), &expected[0], &expected[1], &expected[2], &expected[3]),
        context);
    SE_CHECK(expected == a.y, "vendor: cuDNN computes the output ", dims_str(expected), " for ", context,
             ", the benchmark expects ", dims_str(a.y));
  }
  TensorDesc x, y;
  PoolDesc pool;
};

std::string softmax_context(const Dims4& dims, DType dtype, const char* pass) {
  return std::string("softmax ") + pass + " over C of " + dims_str(dims) + ", " + std::string(dtype_name(dtype));
}

}  // namespace

std::string library_versions() {
  const size_t version = cudnnGetVersion();  // major * 10000 + minor * 100 + patch since cuDNN 9
  return "cuDNN " + std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
         std::to_string(version % 100) + ", cuBLAS " + detail::cublas_version();
}

void check_conv_descriptors(const CudnnConvArgs& args) {
  const ConvSetup setup(args, conv_context(args, "descriptors"));
}

void check_pool_descriptors(const CudnnPoolArgs& args, DType dtype) {
  const PoolSetup setup(args, dtype, pool_context(args, dtype, "descriptors"));
}

void check_batch_norm_descriptors(const Dims4& x_dims, DType dtype) {
  const std::string context = batch_norm_context(x_dims, dtype, "descriptors");
  const BatchNormSetup setup(x_dims, dtype, 1e-5, context);
  cudnnDataType_t type{};
  Dims4 dims{}, strides{};
  SE_CUDNN_CHECK(cudnnGetTensor4dDescriptor(setup.channels.get(), &type, &dims[0], &dims[1], &dims[2], &dims[3],
                                            &strides[0], &strides[1], &strides[2], &strides[3]),
                 context);
  SE_CHECK(type == CUDNN_DATA_FLOAT && dims == (Dims4{1, x_dims[1], 1, 1}), "vendor: cuDNN derives the ",
           type == CUDNN_DATA_FLOAT ? "f32" : "non-f32", " per-channel tensor ", dims_str(dims), " for ", context,
           ", the benchmark passes f32 (1, C, 1, 1)");
}

void check_softmax_descriptors(const Dims4& dims, DType dtype) {
  const TensorDesc desc(dims, data_type(dtype), softmax_context(dims, dtype, "descriptors"));
}

Call conv2d_forward(const CudnnConvArgs& args, const void* x, const void* w, const void* bias, void* y, Stream stream) {
  Call conv = convolution_forward(args, x, w, y, stream);
  return bias == nullptr ? conv : detail::then(conv, add_bias(args.y, args.channels_last, args.dtype, bias, y, stream));
}

Call conv2d_backward_data(const CudnnConvArgs& args, const void* dy, const void* w, void* dx, Stream stream) {
  return convolution_backward_data(args, dy, w, dx, stream);
}

Call conv2d_backward_weight(const CudnnConvArgs& args, const void* x, const void* dy, void* dw, void* db,
                            Stream stream) {
  Call filter = convolution_backward_filter(args, x, dy, dw, stream);
  return db == nullptr ? filter
                       : detail::then(filter, bias_gradient(args.y, args.channels_last, args.dtype, dy, db, stream));
}

Call conv_transpose2d_forward(const CudnnConvArgs& mirror, const void* x, const void* w, const void* bias, void* y,
                              Stream stream) {
  Call conv = convolution_backward_data(mirror, x, w, y, stream);
  return bias == nullptr ? conv
                         : detail::then(conv, add_bias(mirror.x, mirror.channels_last, mirror.dtype, bias, y, stream));
}

Call conv_transpose2d_backward_data(const CudnnConvArgs& mirror, const void* dy, const void* w, void* dx,
                                    Stream stream) {
  return convolution_forward(mirror, dy, w, dx, stream);
}

Call conv_transpose2d_backward_weight(const CudnnConvArgs& mirror, const void* x, const void* dy, void* dw, void* db,
                                      Stream stream) {
  Call filter = convolution_backward_filter(mirror, dy, x, dw, stream);
  return db == nullptr
             ? filter
             : detail::then(filter, bias_gradient(mirror.x, mirror.channels_last, mirror.dtype, dy, db, stream));
}

Call batch_norm_forward_training(const Dims4& x_dims, DType dtype, const void* x, void* y, const float* weight,
                                 const float* bias, float* running_mean, float* running_var, float* save_mean,
                                 float* save_invstd, double momentum, double eps, Stream stream) {
  const std::string context = batch_norm_context(x_dims, dtype, "training forward");
  auto setup = std::make_shared<BatchNormSetup>(x_dims, dtype, eps, context);
  cudnnHandle_t handle = cudnn_handle();
  return Call("cuDNN", "cudnnBatchNormalizationForwardTraining (spatial)", [=] {
    bind_stream(handle, stream);
    SE_CUDNN_CHECK(
        cudnnBatchNormalizationForwardTraining(handle, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, setup->x.get(), x,
                                               setup->x.get(), y, setup->channels.get(), weight, bias, momentum,
                                               running_mean, running_var, eps, save_mean, save_invstd),
        context);
  });
}

Call batch_norm_forward_inference(const Dims4& x_dims, DType dtype, const void* x, void* y, const float* weight,
                                  const float* bias, const float* mean, const float* var, double eps, Stream stream) {
  const std::string context = batch_norm_context(x_dims, dtype, "inference forward");
  auto setup = std::make_shared<BatchNormSetup>(x_dims, dtype, eps, context);
  cudnnHandle_t handle = cudnn_handle();
  return Call("cuDNN", "cudnnBatchNormalizationForwardInference (spatial)", [=] {
    bind_stream(handle, stream);
    SE_CUDNN_CHECK(
        cudnnBatchNormalizationForwardInference(handle, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, setup->x.get(), x,
                                                setup->x.get(), y, setup->channels.get(), weight, bias, mean, var, eps),
        context);
  });
}

Call batch_norm_backward(const Dims4& x_dims, DType dtype, const void* x, const void* dy, void* dx, const float* weight,
                         float* grad_weight, float* grad_bias, const float* save_mean, const float* save_invstd,
                         double eps, Stream stream) {
  const std::string context = batch_norm_context(x_dims, dtype, "backward");
  auto setup = std::make_shared<BatchNormSetup>(x_dims, dtype, eps, context);
  cudnnHandle_t handle = cudnn_handle();
  return Call("cuDNN", "cudnnBatchNormalizationBackward (spatial)", [=] {
    bind_stream(handle, stream);
    SE_CUDNN_CHECK(
        cudnnBatchNormalizationBackward(handle, CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, &kOne, &kZero, setup->x.get(),
                                        x, setup->x.get(), dy, setup->x.get(), dx, setup->channels.get(), weight,
                                        grad_weight, grad_bias, eps, save_mean, save_invstd),
        context);
  });
}

Call pool2d_forward(const CudnnPoolArgs& args, DType dtype, const void* x, void* y, Stream stream) {
  const std::string context = pool_context(args, dtype, "forward");
  auto setup = std::make_shared<PoolSetup>(args, dtype, context);
  cudnnHandle_t handle = cudnn_handle();
  return Call("cuDNN", std::string("cudnnPoolingForward (") + pool_mode_name(args.mode) + ")", [=] {
    bind_stream(handle, stream);
    SE_CUDNN_CHECK(cudnnPoolingForward(handle, setup->pool.get(), &kOne, setup->x.get(), x, &kZero, setup->y.get(), y),
                   context);
  });
}

Call pool2d_backward(const CudnnPoolArgs& args, DType dtype, const void* x, const void* y, const void* dy, void* dx,
                     Stream stream) {
  const std::string context = pool_context(args, dtype, "backward");
  auto setup = std::make_shared<PoolSetup>(args, dtype, context);
  cudnnHandle_t handle = cudnn_handle();
  return Call("cuDNN", std::string("cudnnPoolingBackward (") + pool_mode_name(args.mode) + ")", [=] {
    bind_stream(handle, stream);
    SE_CUDNN_CHECK(cudnnPoolingBackward(handle, setup->pool.get(), &kOne, setup->y.get(), y, setup->y.get(), dy,
                                        setup->x.get(), x, &kZero, setup->x.get(), dx),
                   context);
  });
}

Call softmax_forward(const Dims4& dims, DType dtype, const void* x, void* y, Stream stream) {
  const std::string context = softmax_context(dims, dtype, "forward");
  auto desc = std::make_shared<TensorDesc>(dims, data_type(dtype), context);
  cudnnHandle_t handle = cudnn_handle();
  return Call("cuDNN", "cudnnSoftmaxForward (accurate, channel)", [=] {
    bind_stream(handle, stream);
    SE_CUDNN_CHECK(cudnnSoftmaxForward(handle, CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_CHANNEL, &kOne, desc->get(),
                                       x, &kZero, desc->get(), y),
                   context);
  });
}

Call softmax_backward(const Dims4& dims, DType dtype, const void* y, const void* dy, void* dx, Stream stream) {
  const std::string context = softmax_context(dims, dtype, "backward");
  auto desc = std::make_shared<TensorDesc>(dims, data_type(dtype), context);
  cudnnHandle_t handle = cudnn_handle();
  return Call("cuDNN", "cudnnSoftmaxBackward (accurate, channel)", [=] {
    bind_stream(handle, stream);
    SE_CUDNN_CHECK(cudnnSoftmaxBackward(handle, CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_CHANNEL, &kOne, desc->get(),
                                        y, desc->get(), dy, &kZero, desc->get(), dx),
                   context);
  });
}

}  // namespace se::vendor
