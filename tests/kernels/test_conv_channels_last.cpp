// Channels-last (nhwc) Conv2d: the CPU's permuted runs of its nchw kernels, its native depthwise loops
// (kernels/cpu/conv_depthwise_nhwc.cpp), and the device's nhwc kernels, against the reference and the
// nchw kernels.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/conv.h"
#include "tests/kernels/conv_test_util.h"
#include "tests/kernels/kernel_test_util.h"

namespace se::kernels {
namespace {

using namespace conv_test;
using test::relative_error;

// nhwc runs the nchw kernels on permuted copies: the same results, permuted.
TEST(ConvCpu, ChannelsLastMatchesReference) {
  uint32_t seed = 151;
  for (const Case& c : kCases) {
    Conv2dDesc d = make_desc(c, DType::f32);
    const Tensors want32 = channels_last(d, rounded_reference<float>(d, seed += 5));
    d.layout = Conv2dLayout::nhwc;
    expect_matches_reference(run_cpu<float>(d, want32), want32, 1e-5, std::string(c.name) + " nhwc");
    d.dtype = DType::f64;
    d.layout = Conv2dLayout::nchw;
    const Tensors want64 = channels_last(d, rounded_reference<double>(d, seed += 5));
    d.layout = Conv2dLayout::nhwc;
    expect_matches_reference(run_cpu<double>(d, want64), want64, 1e-13, std::string(c.name) + " nhwc f64");
  }
}

// Stride-1 depthwise convs with one output per channel run channels-last on loops of their own
// (conv_depthwise_nhwc.cpp): forward and backward data give the nchw kernels' bits, permuted, every
// dtype and fused activation; backward weight and bias sum in another order, checked against the
// reference and for the same bits with one thread or several.
const std::vector<Case> kNativeNhwcCases = {
    {"dw_37ch_vector_and_tail", 2, 37, 7, 11, 37, 3, 3, 1, 1, 1, 1, 1, 1, 37, true},
    {"dw_64ch_wide_rows_many_tiles", 1, 64, 5, 70, 64, 3, 3, 1, 1, 1, 1, 1, 1, 64, false},
    {"dw_5x5_dilation2_pad3", 2, 20, 9, 8, 20, 5, 5, 1, 1, 3, 3, 2, 2, 20, true},
    {"dw_3x1_no_pad_2_rows_of_taps_outside", 1, 16, 3, 4, 16, 3, 1, 1, 1, 2, 0, 2, 1, 16, true},
};

TEST(ConvCpu, ChannelsLastDepthwiseRunsNativelyOnlyForStrideOneOneOutputPerChannel) {
  Conv2dDesc d = make_desc(kNativeNhwcCases[0], DType::f32);
  EXPECT_FALSE(cpu::conv2d_runs_nhwc_natively(d));  // nchw
  d.layout = Conv2dLayout::nhwc;
  EXPECT_TRUE(cpu::conv2d_runs_nhwc_natively(d));
  Conv2dDesc strided = d;
  strided.stride_w = 2;
  EXPECT_FALSE(cpu::conv2d_runs_nhwc_natively(strided));
  Conv2dDesc two_per_channel = d;
  two_per_channel.c_out = 2 * d.c_in;
  EXPECT_FALSE(cpu::conv2d_runs_nhwc_natively(two_per_channel));
  Conv2dDesc dense = d;
  dense.groups = 1;
  EXPECT_FALSE(cpu::conv2d_runs_nhwc_natively(dense));
}

template <typename T>
void native_nhwc_matches_nchw(uint32_t seed) {
  for (const Case& c : kNativeNhwcCases) {
    for (ConvActivation activation : {ConvActivation::none, ConvActivation::relu, ConvActivation::gelu}) {
      Conv2dDesc d = make_desc(c, dtype_of<T>());
      d.activation = activation;
      const std::string what = std::string(c.name) + " activation " + std::to_string(static_cast<int>(activation));
      const Tensors in = random_inputs(d, seed += 5);
      const Outputs<T> nchw = run_cpu<T>(d, in);
      const int64_t oh = conv2d_output_h(d), ow = conv2d_output_w(d);
      Tensors nhwc_in = in;  // w (C, 1, KH, KW) and the bias need no permutation
      nhwc_in.x = channels_last(in.x, d.n, d.c_in, d.h, d.w);
      nhwc_in.dy = channels_last(in.dy, d.n, d.c_out, oh, ow);
      d.layout = Conv2dLayout::nhwc;
      ASSERT_TRUE(cpu::conv2d_runs_nhwc_natively(d)) << what;
      const Outputs<T> nhwc = run_cpu<T>(d, nhwc_in);
      EXPECT_EQ(test::to_double(nhwc.y), channels_last(test::to_double(nchw.y), d.n, d.c_out, oh, ow)) << what;
      EXPECT_EQ(test::to_double(nhwc.dx), channels_last(test::to_double(nchw.dx), d.n, d.c_in, d.h, d.w)) << what;
      // dw (C, 1, KH, KW) is the same array in both layouts; another summation order.
      const double tol = sizeof(T) == 2 ? 1e-2 : (sizeof(T) == 4 ? 1e-5 : 1e-13);
      EXPECT_LE(relative_error(test::to_double(nhwc.dw), test::to_double(nchw.dw)), tol) << what;
      EXPECT_LE(relative_error(test::to_double(nhwc.db), test::to_double(nchw.db)), tol) << what;
    }
  }
}

TEST(ConvCpu, NativeChannelsLastDepthwiseF32IsTheNchwKernelsBits) { native_nhwc_matches_nchw<float>(2001); }
TEST(ConvCpu, NativeChannelsLastDepthwiseF64IsTheNchwKernelsBits) { native_nhwc_matches_nchw<double>(2101); }
TEST(ConvCpu, NativeChannelsLastDepthwiseF16IsTheNchwKernelsBits) { native_nhwc_matches_nchw<f16>(2201); }
TEST(ConvCpu, NativeChannelsLastDepthwiseBF16IsTheNchwKernelsBits) { native_nhwc_matches_nchw<bf16>(2301); }

TEST(ConvCpu, NativeChannelsLastDepthwiseMatchesReferenceWithAnyThreadCount) {
  uint32_t seed = 2401;
  const int threads = omp_get_max_threads();
  for (const Case& c : kNativeNhwcCases) {
    Conv2dDesc d = make_desc(c, DType::f32);
    const Tensors want = channels_last(d, rounded_reference<float>(d, seed += 5));
    d.layout = Conv2dLayout::nhwc;
    omp_set_num_threads(1);
    const Outputs<float> one = run_cpu<float>(d, want);
    omp_set_num_threads(std::max(threads, 3));
    const Outputs<float> many = run_cpu<float>(d, want);
    expect_matches_reference(many, want, 1e-5, c.name);
    EXPECT_EQ(one.dw, many.dw) << c.name;
    EXPECT_EQ(one.db, many.db) << c.name;
  }
  omp_set_num_threads(threads);
}

#ifdef SEGENGINE_HAS_CUDA

// Channels-last on the device: the nhwc implicit GEMMs (CUDA cores for f32/f64, tensor cores for bf16),
// the 1x1 GEMM route, the nhwc depthwise kernels and the channel-tiled reductions (backward weight of
// depthwise convs, bias gradient), each with and without a fused activation.
template <typename T>
void cuda_channels_last_vs_reference(DType dtype, double tol, uint32_t seed) {
  for (const Case& c : cuda_cases()) {
    for (ConvActivation activation : {ConvActivation::none, ConvActivation::gelu}) {
      Conv2dDesc d = make_desc(c, dtype);
      Tensors want = rounded_reference<T>(d, seed += 5);
      apply_activation(activation, want.y);
      want = channels_last(d, want);
      d.layout = Conv2dLayout::nhwc;
      d.activation = activation;
      expect_matches_reference(run_cuda<T>(d, want), want, tol, std::string(c.name) + " nhwc");
    }
  }
}

TEST(ConvCuda, ChannelsLastF32MatchesReference) {
  SE_SKIP_WITHOUT_CUDA();
  cuda_channels_last_vs_reference<float>(DType::f32, 1e-5, 1001);
}

TEST(ConvCuda, ChannelsLastF64MatchesReference) {
  SE_SKIP_WITHOUT_CUDA();
  cuda_channels_last_vs_reference<double>(DType::f64, 1e-13, 1101);
}

#endif

}  // namespace
}  // namespace se::kernels
