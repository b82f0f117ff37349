// The host side of the cuDNN/cuBLAS references (bench/vendor/vendor_mapping.h): the row-major to
// column-major GEMM mapping is checked by computing both products naively, the cuDNN arguments against the
// layer shapes they come from, and the output comparison, including max pooling's tie-proof moments.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "bench/vendor/vendor_mapping.h"
#ifdef SEGENGINE_VENDOR_BENCH
#include "bench/vendor/vendor.h"
#endif

namespace se::vendor {
namespace {

// C (m, n) = alpha A B + beta C for m x k A and k x n B, with elements read and written through `a(i, l)`,
// `b(l, j)` and `c(i, j)`: the one naive product both layouts below are checked with.
template <typename A, typename B, typename C>
void naive_gemm(int64_t m, int64_t n, int64_t k, float alpha, float beta, A a, B b, C c) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t l = 0; l < k; ++l) sum += double(a(i, l)) * b(l, j);
      c(i, j) = static_cast<float>(alpha * sum + beta * c(i, j));
    }
  }
}

// Batch item `item` of our GEMM: row-major, element (r, c) of a matrix with row stride ld at r * ld + c.
void row_major_gemm(const kernels::GemmDesc& d, const std::vector<float>& a, const std::vector<float>& b,
                    std::vector<float>& c, int64_t item) {
  const float* pa = a.data() + item * d.stride_a;
  const float* pb = b.data() + item * d.stride_b;
  float* pc = c.data() + item * d.stride_c;
  naive_gemm(
      d.m, d.n, d.k, d.alpha, d.beta,
      [&](int64_t i, int64_t l) { return d.trans_a ? pa[l * d.lda + i] : pa[i * d.lda + l]; },
      [&](int64_t l, int64_t j) { return d.trans_b ? pb[j * d.ldb + l] : pb[l * d.ldb + j]; },
      [&](int64_t i, int64_t j) -> float& { return pc[i * d.ldc + j]; });
}

// Batch item `item` of cuBLAS's GEMM with its own arguments: column-major, element (r, c) of a matrix with
// leading dimension ld at r + c * ld.
void column_major_gemm(const CublasGemmArgs& g, const std::vector<float>& first, const std::vector<float>& second,
                       std::vector<float>& c, int64_t item) {
  const float* pa = first.data() + item * g.stride_a;
  const float* pb = second.data() + item * g.stride_b;
  float* pc = c.data() + item * g.stride_c;
  naive_gemm(
      g.m, g.n, g.k, g.alpha, g.beta,
      [&](int64_t i, int64_t l) { return g.transa ? pa[i * g.lda + l] : pa[l * g.lda + i]; },
      [&](int64_t l, int64_t j) { return g.transb ? pb[l * g.ldb + j] : pb[j * g.ldb + l]; },
      [&](int64_t i, int64_t j) -> float& { return pc[i + j * g.ldc]; });
}

// Small integers, so both products are exact and must be equal.
std::vector<float> integers(int64_t count, int seed) {
  std::vector<float> values(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) values[static_cast<size_t>(i)] = static_cast<float>((i * 7 + seed) % 11 - 5);
  return values;
}

TEST(VendorMapping, CublasGemmOfRowMajorOperandsMatchesOurs) {
  for (bool trans_a : {false, true}) {
    for (bool trans_b : {false, true}) {
      kernels::GemmDesc d;
      d.m = 5;
      d.n = 7;
      d.k = 3;
      d.trans_a = trans_a;
      d.trans_b = trans_b;
      // Padded rows, two batch items with gaps between them, alpha and beta.
      d.lda = (trans_a ? d.m : d.k) + 2;
      d.ldb = (trans_b ? d.k : d.n) + 1;
      d.ldc = d.n + 3;
      d.batch = 2;
      d.stride_a = (trans_a ? d.k : d.m) * d.lda + 4;
      d.stride_b = (trans_b ? d.n : d.k) * d.ldb + 1;
      d.stride_c = d.m * d.ldc + 2;
      d.alpha = 2.0f;
      d.beta = -1.0f;
      const auto args = cublas_gemm_args(d);
      ASSERT_TRUE(args.has_value());
      EXPECT_EQ(args->batch, 2);
      const std::vector<float> a = integers(d.batch * d.stride_a, 1), b = integers(d.batch * d.stride_b, 2);
      std::vector<float> ours = integers(d.batch * d.stride_c, 3), theirs = ours;
      for (int64_t item = 0; item < d.batch; ++item) {
        row_major_gemm(d, a, b, ours, item);
        column_major_gemm(*args, b, a, theirs, item);  // cuBLAS's first operand is our B
      }
      EXPECT_EQ(ours, theirs) << "trans_a " << trans_a << ", trans_b " << trans_b;
    }
  }
}

TEST(VendorMapping, CublasGemmSwapsSizesAndOperands) {
  kernels::GemmDesc d;
  d.m = 16384;
  d.n = 128;
  d.k = 32;
  d.lda = 32;
  d.ldb = 128;
  d.ldc = 128;
  d.dtype = DType::bf16;
  const auto args = cublas_gemm_args(d);
  ASSERT_TRUE(args.has_value());
  EXPECT_EQ(args->m, 128);
  EXPECT_EQ(args->n, 16384);
  EXPECT_EQ(args->k, 32);
  EXPECT_EQ(args->lda, 128);
  EXPECT_EQ(args->ldb, 32);
  EXPECT_EQ(args->ldc, 128);
  EXPECT_FALSE(args->transa);
  EXPECT_FALSE(args->transb);
}

TEST(VendorMapping, CublasGemmHasNoEquivalentForF64OrHugeSizes) {
  kernels::GemmDesc d;
  d.m = d.n = d.k = d.lda = d.ldb = d.ldc = 8;
  d.dtype = DType::f64;
  EXPECT_FALSE(cublas_gemm_args(d).has_value());
  d.dtype = DType::f32;
  d.m = int64_t{1} << 31;
  EXPECT_FALSE(cublas_gemm_args(d).has_value());
}

kernels::Conv2dDesc conv(int64_t c_in, int64_t size, int64_t c_out, int64_t kernel, int64_t stride, int64_t pad,
                         int64_t dilation, int64_t groups, DType dtype = DType::f32) {
  kernels::Conv2dDesc d;
  d.c_in = c_in;
  d.h = d.w = size;
  d.c_out = c_out;
  d.kernel_h = d.kernel_w = kernel;
  d.stride_h = d.stride_w = stride;
  d.pad_h = d.pad_w = pad;
  d.dilation_h = d.dilation_w = dilation;
  d.groups = groups;
  d.has_bias = true;
  d.dtype = dtype;
  return d;
}

TEST(VendorMapping, CudnnConvArgsFollowTheLayer) {
  // ResNet-50's stem: 7x7, stride 2, pad 3 on 3 x 512 x 512.
  auto stem = cudnn_conv_args(conv(3, 512, 64, 7, 2, 3, 1, 1));
  ASSERT_TRUE(stem.has_value());
  EXPECT_EQ(stem->x, (Dims4{1, 3, 512, 512}));
  EXPECT_EQ(stem->w, (Dims4{64, 3, 7, 7}));
  EXPECT_EQ(stem->y, (Dims4{1, 64, 256, 256}));
  EXPECT_EQ(stem->bias, (Dims4{1, 64, 1, 1}));
  EXPECT_EQ(stem->pad, (std::array<int, 2>{3, 3}));
  EXPECT_EQ(stem->stride, (std::array<int, 2>{2, 2}));
  EXPECT_FALSE(stem->tensor_cores);  // f32: strict FP32, no TF32

  // A dilated 3x3 of the output-stride-8 backbone keeps the size.
  auto dilated = cudnn_conv_args(conv(512, 64, 512, 3, 1, 4, 4, 1, DType::f16));
  ASSERT_TRUE(dilated.has_value());
  EXPECT_EQ(dilated->y, (Dims4{1, 512, 64, 64}));
  EXPECT_EQ(dilated->dilation, (std::array<int, 2>{4, 4}));
  EXPECT_TRUE(dilated->tensor_cores);

  // Depthwise: one input channel per filter, the group count passed on.
  auto depthwise = cudnn_conv_args(conv(128, 128, 128, 3, 1, 1, 1, 128, DType::bf16));
  ASSERT_TRUE(depthwise.has_value());
  EXPECT_EQ(depthwise->w, (Dims4{128, 1, 3, 3}));
  EXPECT_EQ(depthwise->groups, 128);
  EXPECT_EQ(depthwise->dtype, DType::bf16);
  EXPECT_FALSE(depthwise->channels_last);

  // Channels-last: the same (N, C, H, W) dims, flagged for cuDNN's NHWC format.
  kernels::Conv2dDesc nhwc = conv(64, 128, 64, 3, 1, 1, 1, 1);
  nhwc.layout = kernels::Conv2dLayout::nhwc;
  auto channels_last = cudnn_conv_args(nhwc);
  ASSERT_TRUE(channels_last.has_value());
  EXPECT_TRUE(channels_last->channels_last);
  EXPECT_EQ(channels_last->x, (Dims4{1, 64, 128, 128}));
  EXPECT_EQ(channels_last->w, (Dims4{64, 64, 3, 3}));
}

TEST(VendorMapping, CudnnConvHasNoEquivalentForFusedActivationsOrF64) {
  kernels::Conv2dDesc d = conv(64, 32, 64, 3, 1, 1, 1, 1);
  d.activation = kernels::ConvActivation::gelu;
  EXPECT_FALSE(cudnn_conv_args(d).has_value());
  EXPECT_FALSE(cudnn_conv_args(conv(64, 32, 64, 3, 1, 1, 1, 1, DType::f64)).has_value());
}

TEST(VendorMapping, TransposedConvRunsOnItsMirror) {
  // U-Net's up-sampling: 512 x 32 x 32 -> 256 x 64 x 64, k2 s2. The mirror conv maps the output's shape
  // back to the input's with the same weight (C_in, C_out, 2, 2).
  kernels::ConvTranspose2dDesc d;
  d.c_in = 512;
  d.c_out = 256;
  d.h = d.w = 32;
  d.kernel_h = d.kernel_w = d.stride_h = d.stride_w = 2;
  d.has_bias = true;
  const auto mirror = cudnn_conv_args(kernels::conv2d_of_transpose(d));
  ASSERT_TRUE(mirror.has_value());
  EXPECT_EQ(mirror->x, (Dims4{1, 256, 64, 64}));
  EXPECT_EQ(mirror->w, (Dims4{512, 256, 2, 2}));
  EXPECT_EQ(mirror->y, (Dims4{1, 512, 32, 32}));
}

kernels::Pool2dDesc pool(int64_t size, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode = false) {
  kernels::Pool2dDesc d;
  d.planes = 64;
  d.in_h = d.in_w = size;
  d.out_h = d.out_w = kernels::pool_output_size(size, kernel, stride, pad, 1, ceil_mode);
  d.kernel_h = d.kernel_w = kernel;
  d.stride_h = d.stride_w = stride;
  d.pad_h = d.pad_w = pad;
  return d;
}

TEST(VendorMapping, CudnnPoolArgs) {
  const auto stem = cudnn_max_pool_args(pool(256, 3, 2, 1));
  ASSERT_TRUE(stem.has_value());
  EXPECT_EQ(stem->x, (Dims4{1, 64, 256, 256}));
  EXPECT_EQ(stem->y, (Dims4{1, 64, 128, 128}));
  EXPECT_EQ(stem->window, (std::array<int, 2>{3, 3}));
  EXPECT_EQ(stem->pad, (std::array<int, 2>{1, 1}));
  EXPECT_EQ(stem->mode, PoolMode::max);

  kernels::Pool2dDesc avg = pool(512, 2, 2, 0);
  EXPECT_EQ(cudnn_avg_pool_args(avg)->mode, PoolMode::average_count_include_pad);
  avg.count_include_pad = false;
  EXPECT_EQ(cudnn_avg_pool_args(avg)->mode, PoolMode::average_count_exclude_pad);
}

TEST(VendorMapping, CudnnPoolHasNoEquivalentForCeilModeOrDilation) {
  // ceil_mode keeps a last partial window: 5 -> 3 where cuDNN's floor formula gives 2.
  EXPECT_FALSE(cudnn_max_pool_args(pool(5, 2, 2, 0, true)).has_value());
  EXPECT_FALSE(cudnn_avg_pool_args(pool(5, 2, 2, 0, true)).has_value());
  EXPECT_TRUE(cudnn_max_pool_args(pool(6, 2, 2, 0, true)).has_value());  // ceil == floor here
  kernels::Pool2dDesc dilated = pool(64, 3, 1, 2);
  dilated.dilation_h = dilated.dilation_w = 2;
  dilated.out_h = dilated.out_w = kernels::pool_output_size(64, 3, 1, 2, 2, false);
  EXPECT_FALSE(cudnn_max_pool_args(dilated).has_value());
}

TEST(VendorMapping, AdaptivePoolingIsAveragePoolingWhenBinsTileTheInput) {
  for (int64_t bins : {1, 2}) {
    const auto args = cudnn_adaptive_avg_pool_args({2048, 64, 64, bins, bins});
    ASSERT_TRUE(args.has_value()) << bins;
    EXPECT_EQ(args->window[0], 64 / bins);
    EXPECT_EQ(args->stride, args->window);
    EXPECT_EQ(args->pad, (std::array<int, 2>{0, 0}));
    EXPECT_EQ(args->y, (Dims4{1, 2048, int(bins), int(bins)}));
  }
  // PSPNet's 3 and 6 bins on 64: bins of 21 and 22 (or 10 and 11) cells overlap; no pooling window does that.
  EXPECT_FALSE(cudnn_adaptive_avg_pool_args({2048, 64, 64, 3, 3}).has_value());
  EXPECT_FALSE(cudnn_adaptive_avg_pool_args({2048, 64, 64, 6, 6}).has_value());
}

TEST(VendorMapping, SoftmaxAndBatchNormDims) {
  EXPECT_EQ(cudnn_softmax_dims({16384, 256, 1}), (Dims4{16384, 256, 1, 1}));
  EXPECT_EQ(cudnn_softmax_dims({2, 19, 4096}), (Dims4{2, 19, 4096, 1}));
  EXPECT_FALSE(cudnn_softmax_dims({1 << 16, 1 << 16, 1}).has_value());  // 2^32 elements
  EXPECT_EQ(cudnn_batch_norm_dims({1, 2048, 64 * 64}), (Dims4{1, 2048, 4096, 1}));
}

TEST(VendorMapping, CompareOutputs) {
  const std::vector<float> ours{1.0f, -4.0f, 2.0f};
  OutputDifference same = compare_outputs(ours, ours);
  EXPECT_EQ(same.max_abs_diff, 0.0);
  EXPECT_EQ(same.max_abs_reference, 4.0);

  const OutputDifference off = compare_outputs(ours, std::vector<float>{1.0f, -4.0f, 2.5f});
  EXPECT_DOUBLE_EQ(off.max_abs_diff, 0.5);
  EXPECT_DOUBLE_EQ(off.relative(), 0.125);

  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(compare_outputs(std::vector<float>{nan, 1.0f}, std::vector<float>{nan, 1.0f}).max_abs_diff, 0.0);
  EXPECT_TRUE(std::isinf(compare_outputs(ours, std::vector<float>{1.0f, nan, 2.0f}).max_abs_diff));
  EXPECT_TRUE(std::isinf(compare_outputs(ours, std::vector<float>{1.0f}).max_abs_diff));
}

TEST(VendorMapping, TolerancesGrowAsPrecisionShrinks) {
  EXPECT_LT(relative_tolerance(DType::f32), relative_tolerance(DType::f16));
  EXPECT_LT(relative_tolerance(DType::f16), relative_tolerance(DType::bf16));
  EXPECT_LE(relative_tolerance(DType::bf16), 0.05);  // far below a descriptor mistake's O(1)
}

TEST(VendorMapping, MaxPoolGradientMomentsIgnoreWhichTiedMaximumIsChosen) {
  // One 2x2 window of one plane whose maximum 3 is tied; grad_y = 5 goes to either tied input.
  const std::vector<float> x{3.0f, 1.0f, 3.0f, 2.0f};
  const std::vector<float> first{5.0f, 0.0f, 0.0f, 0.0f}, second{0.0f, 0.0f, 5.0f, 0.0f};
  EXPECT_EQ(max_pool_gradient_moments(first, x, 1), max_pool_gradient_moments(second, x, 1));
  EXPECT_EQ(max_pool_gradient_moments(first, x, 1), (std::vector<float>{5.0f, 15.0f}));
  // Routing it to an input that is not a maximum changes the second moment.
  const std::vector<float> wrong{0.0f, 5.0f, 0.0f, 0.0f};
  EXPECT_NE(max_pool_gradient_moments(first, x, 1), max_pool_gradient_moments(wrong, x, 1));
  // Per plane.
  EXPECT_EQ(max_pool_gradient_moments(std::vector<float>{1, 2, 3, 4}, std::vector<float>{1, 1, 2, 2}, 2),
            (std::vector<float>{3.0f, 3.0f, 7.0f, 14.0f}));
}

#ifdef SEGENGINE_VENDOR_BENCH
// With the vendor references built: the libraries load (cuBLAS is opened at run time) and cuDNN itself
// agrees with the mappings' shapes. Descriptors need no GPU.
TEST(VendorLibraries, LoadAndNameTheirVersions) {
  const std::string versions = library_versions();
  EXPECT_EQ(versions.rfind("cuDNN ", 0), 0u) << versions;
  EXPECT_NE(versions.find(", cuBLAS "), std::string::npos) << versions;
}

TEST(VendorLibraries, CudnnDescriptorsAgreeWithTheMappings) {
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    for (const kernels::Conv2dDesc& d :
         {conv(3, 512, 64, 7, 2, 3, 1, 1, dtype), conv(2048, 64, 256, 3, 1, 12, 12, 1, dtype),
          conv(256, 128, 64, 1, 1, 0, 1, 1, dtype), conv(3, 512, 32, 7, 4, 3, 1, 1, dtype),
          conv(128, 128, 128, 3, 1, 1, 1, 128, dtype)}) {
      EXPECT_NO_THROW(check_conv_descriptors(cudnn_conv_args(d).value()));
      kernels::Conv2dDesc nhwc = d;
      nhwc.layout = kernels::Conv2dLayout::nhwc;
      EXPECT_NO_THROW(check_conv_descriptors(cudnn_conv_args(nhwc).value())) << "nhwc";
    }
    kernels::ConvTranspose2dDesc up;
    up.c_in = 128;
    up.c_out = 64;
    up.h = up.w = 256;
    up.kernel_h = up.kernel_w = up.stride_h = up.stride_w = 2;
    up.dtype = dtype;
    EXPECT_NO_THROW(check_conv_descriptors(cudnn_conv_args(kernels::conv2d_of_transpose(up)).value()));
    EXPECT_NO_THROW(check_pool_descriptors(cudnn_max_pool_args(pool(256, 3, 2, 1)).value(), dtype));
    EXPECT_NO_THROW(check_pool_descriptors(cudnn_avg_pool_args(pool(512, 2, 2, 0)).value(), dtype));
    EXPECT_NO_THROW(check_pool_descriptors(cudnn_adaptive_avg_pool_args({2048, 64, 64, 2, 2}).value(), dtype));
    EXPECT_NO_THROW(check_batch_norm_descriptors(cudnn_batch_norm_dims({1, 2048, 64 * 64}).value(), dtype));
    EXPECT_NO_THROW(check_softmax_descriptors(cudnn_softmax_dims({16384, 256, 1}).value(), dtype));
  }
}

TEST(VendorLibraries, DescriptorCheckCatchesAWrongOutputShape) {
  CudnnConvArgs args = cudnn_conv_args(conv(64, 128, 64, 3, 1, 1, 1, 1)).value();
  args.pad = {0, 0};  // cuDNN then computes 126 x 126
  try {
    check_conv_descriptors(args);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuDNN computes the output (1, 64, 126, 126)"), std::string::npos) << e.what();
  }
  CudnnPoolArgs pool_args = cudnn_max_pool_args(pool(256, 3, 2, 1)).value();
  pool_args.stride = {1, 1};
  EXPECT_THROW(check_pool_descriptors(pool_args, DType::f32), Error);
}
#endif

}  // namespace
}  // namespace se::vendor
