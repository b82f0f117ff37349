// The cuBLAS reference of vendor.h: GEMM through cublasGemmEx / cublasGemmStridedBatchedEx with f32 compute
// (CUBLAS_COMPUTE_32F: strict FP32 for f32 data, TF32 only under CUBLAS_COMPUTE_32F_FAST_TF32; f16 and bf16
// data use tensor cores with f32 accumulation).
// libcublas is opened on first use (dlopen) rather than linked: its static initialisation costs ~0.1 s at
// every start of a program that links it, and `segengine` starts many times (tests) without benchmarking.
#include <cublas_v2.h>
#include <dlfcn.h>

#include <map>
#include <mutex>
#include <type_traits>

#include "bench/vendor/vendor.h"
#include "bench/vendor/vendor_cuda.h"

namespace se::vendor {

namespace {

// The cuBLAS functions used here, with the signatures of the installed header (checked below).
using CreateFn = cublasStatus_t (*)(cublasHandle_t*);
using SetStreamFn = cublasStatus_t (*)(cublasHandle_t, cudaStream_t);
using GetPropertyFn = cublasStatus_t (*)(libraryPropertyType, int*);
using GetStatusStringFn = const char* (*)(cublasStatus_t);
using GemmExFn = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                                    const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                                    cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
using GemmStridedBatchedExFn = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                                  const void*, const void*, cudaDataType, int, long long int,
                                                  const void*, cudaDataType, int, long long int, const void*, void*,
                                                  cudaDataType, int, long long int, int, cublasComputeType_t,
                                                  cublasGemmAlgo_t);
// Each static_cast picks the header's declaration of that type (and fails to compile if there is none);
// decltype keeps it unevaluated, so nothing links against libcublas.
static_assert(std::is_same_v<decltype(static_cast<CreateFn>(&cublasCreate_v2)), CreateFn>);
static_assert(std::is_same_v<decltype(static_cast<SetStreamFn>(&cublasSetStream_v2)), SetStreamFn>);
static_assert(std::is_same_v<decltype(static_cast<GetPropertyFn>(&cublasGetProperty)), GetPropertyFn>);
static_assert(std::is_same_v<decltype(static_cast<GetStatusStringFn>(&cublasGetStatusString)), GetStatusStringFn>);
static_assert(std::is_same_v<decltype(static_cast<GemmExFn>(&cublasGemmEx)), GemmExFn>);
static_assert(
    std::is_same_v<decltype(static_cast<GemmStridedBatchedExFn>(&cublasGemmStridedBatchedEx)), GemmStridedBatchedExFn>);

struct Cublas {
  CreateFn create;
  SetStreamFn set_stream;
  GetPropertyFn get_property;
  GetStatusStringFn get_status_string;
  GemmExFn gemm_ex;
  GemmStridedBatchedExFn gemm_strided_batched_ex;
};

#define SE_STRINGIFY_VALUE(x) SE_STRINGIFY(x)
#define SE_STRINGIFY(x) #x

// The library and its functions, loaded once: the file CMake found (SE_CUBLAS_LIBRARY), else the soname of
// the header's major version on the loader's search path.
const Cublas& cublas() {
  static const Cublas functions = [] {
    const std::string soname = "libcublas.so." SE_STRINGIFY_VALUE(CUBLAS_VER_MAJOR);
    void* library = dlopen(SE_CUBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) library = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
    SE_CHECK(library != nullptr, "vendor: cannot load cuBLAS (", SE_CUBLAS_LIBRARY, " or ", soname, "): ", dlerror());
    auto symbol = [library](const char* name) {
      void* address = dlsym(library, name);
      SE_CHECK(address != nullptr, "vendor: cuBLAS has no ", name, ": ", dlerror());
      return address;
    };
    return Cublas{reinterpret_cast<CreateFn>(symbol("cublasCreate_v2")),
                  reinterpret_cast<SetStreamFn>(symbol("cublasSetStream_v2")),
                  reinterpret_cast<GetPropertyFn>(symbol("cublasGetProperty")),
                  reinterpret_cast<GetStatusStringFn>(symbol("cublasGetStatusString")),
                  reinterpret_cast<GemmExFn>(symbol("cublasGemmEx")),
                  reinterpret_cast<GemmStridedBatchedExFn>(symbol("cublasGemmStridedBatchedEx"))};
  }();
  return functions;
}

// Throws se::Error (vendor::NotSupported for CUBLAS_STATUS_NOT_SUPPORTED) naming the function `name`.
#define SE_CUBLAS_CHECK(name, expr, context)                                                                        \
  do {                                                                                                              \
    const cublasStatus_t se_cublas_status_ = (expr);                                                                \
    if (se_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                                               \
      const std::string se_cublas_message_ = std::string("vendor: ") + (name) + " failed for " + (context) + ": " + \
                                             cublas().get_status_string(se_cublas_status_);                         \
      if (se_cublas_status_ == CUBLAS_STATUS_NOT_SUPPORTED) throw NotSupported(se_cublas_message_);                 \
      SE_THROW(se_cublas_message_);                                                                                 \
    }                                                                                                               \
  } while (0)

// One cuBLAS handle per device, created on first use and never destroyed (as cuDNN's, vendor_cudnn.cpp).
cublasHandle_t cublas_handle() {
  static std::mutex mutex;
  static std::map<int, cublasHandle_t> handles;
  const int device = detail::current_device();
  std::lock_guard<std::mutex> lock(mutex);
  cublasHandle_t& handle = handles[device];
  if (handle == nullptr) {
    cublasHandle_t created = nullptr;
    SE_CUBLAS_CHECK("cublasCreate", cublas().create(&created), "device " + std::to_string(device));
    handle = created;
  }
  return handle;
}

cudaDataType data_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: SE_THROW("vendor: cuBLAS references run f32, f16 and bf16, not ", dtype_name(dtype));
  }
}

cublasOperation_t operation(bool transpose) {
  return transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
}

// "gemm (column-major) m 128, n 16384, k 32, op N N, ld 128 32 128, f16" in cuBLAS's terms.
std::string gemm_context(const CublasGemmArgs& a, DType dtype) {
  return "gemm (cuBLAS's column-major view) m " + std::to_string(a.m) + ", n " + std::to_string(a.n) + ", k " +
         std::to_string(a.k) + ", op " + (a.transa ? "T" : "N") + (a.transb ? "T" : "N") + ", ld " +
         std::to_string(a.lda) + " " + std::to_string(a.ldb) + " " + std::to_string(a.ldc) + ", batch " +
         std::to_string(a.batch) + ", " + std::string(dtype_name(dtype));
}

}  // namespace

namespace detail {

std::string cublas_version() {
  int parts[3] = {0, 0, 0};
  const libraryPropertyType properties[3] = {MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL};
  for (int i = 0; i < 3; ++i)
    SE_CUBLAS_CHECK("cublasGetProperty", cublas().get_property(properties[i], &parts[i]), "the library version");
  return std::to_string(parts[0]) + "." + std::to_string(parts[1]) + "." + std::to_string(parts[2]);
}

}  // namespace detail

Call gemm(const CublasGemmArgs& args, DType dtype, const void* a, const void* b, void* c, Stream stream) {
  const std::string context = gemm_context(args, dtype);
  const cudaDataType type = data_type(dtype);
  cublasHandle_t handle = cublas_handle();
  const bool batched = args.batch > 1;
  return Call("cuBLAS", batched ? "cublasGemmStridedBatchedEx (f32 compute)" : "cublasGemmEx (f32 compute)", [=] {
    SE_CUBLAS_CHECK("cublasSetStream", cublas().set_stream(handle, stream), context);
    // cuBLAS's first operand is our B and its second our A (vendor_mapping.h).
    if (batched) {
      SE_CUBLAS_CHECK("cublasGemmStridedBatchedEx",
                      cublas().gemm_strided_batched_ex(
                          handle, operation(args.transa), operation(args.transb), args.m, args.n, args.k, &args.alpha,
                          b, type, args.lda, args.stride_a, a, type, args.ldb, args.stride_b, &args.beta, c, type,
                          args.ldc, args.stride_c, args.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                      context);
    } else {
      SE_CUBLAS_CHECK("cublasGemmEx",
                      cublas().gemm_ex(handle, operation(args.transa), operation(args.transb), args.m, args.n, args.k,
                                       &args.alpha, b, type, args.lda, a, type, args.ldb, &args.beta, c, type, args.ldc,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                      context);
    }
  });
}

}  // namespace se::vendor
