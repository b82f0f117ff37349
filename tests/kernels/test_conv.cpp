// Conv2d: CPU kernels against a naive direct convolution in f64 (forward, backward data, backward
// weight, bias gradient), f16/bf16 against f32, CUDA against the reference and the CPU (nchw; the
// channels-last layout is test_conv_channels_last.cpp's; the shapes and runners conv_test_util.h's).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cpu/conv_depthwise.h"
#include "kernels/cpu/conv_direct_avx512.h"
#include "kernels/cpu/elementwise_fast.h"
#include "kernels/gemm.h"
#include "tests/kernels/conv_test_util.h"
#include "tests/kernels/kernel_test_util.h"

namespace se::kernels {
namespace {

using namespace conv_test;
using test::relative_error;

TEST(ConvCpu, F32MatchesReference) {
  uint32_t seed = 1;
  for (const Case& c : kCases) {
    const Conv2dDesc d = make_desc(c, DType::f32);
    const Tensors want = rounded_reference<float>(d, seed += 5);
    expect_matches_reference(run_cpu<float>(d, want), want, 1e-5, c.name);
  }
}

TEST(ConvCpu, F64MatchesReference) {
  uint32_t seed = 101;
  for (const Case& c : kCases) {
    const Conv2dDesc d = make_desc(c, DType::f64);
    const Tensors want = rounded_reference<double>(d, seed += 5);
    expect_matches_reference(run_cpu<double>(d, want), want, 1e-13, c.name);
  }
}

TEST(ConvCpu, GenericGemmMatchesReference) {  // the portable micro-kernel behind the same loops
  const cpu::GemmIsa saved = cpu::gemm_isa();
  cpu::set_gemm_isa(cpu::GemmIsa::generic);
  const Case& c = kCases[2];
  const Conv2dDesc d = make_desc(c, DType::f32);
  const Tensors want = rounded_reference<float>(d, 77);
  expect_matches_reference(run_cpu<float>(d, want), want, 1e-5, c.name);
  cpu::set_gemm_isa(saved);
}

// The CPU GEMM's micro-kernel family in use, swapped for the duration of a test.
class ScopedGemmIsa {
 public:
  explicit ScopedGemmIsa(cpu::GemmIsa isa) : saved_(cpu::gemm_isa()) { cpu::set_gemm_isa(isa); }
  ~ScopedGemmIsa() { cpu::set_gemm_isa(saved_); }
  ScopedGemmIsa(const ScopedGemmIsa&) = delete;
  ScopedGemmIsa& operator=(const ScopedGemmIsa&) = delete;

 private:
  cpu::GemmIsa saved_;
};

// Below AVX-512 (or with the GEMM switched to another family) the stride-1 f32 convs that the direct
// kernel takes on AVX-512 run on the GEMM path: it stays exact too.
cpu::GemmIsa gemm_path_isa() {
  return cpu::gemm_isa_supported(cpu::GemmIsa::avx2) ? cpu::GemmIsa::avx2 : cpu::GemmIsa::generic;
}

TEST(ConvCpu, ConvsWithoutTheDirectKernelMatchReference) {
  const ScopedGemmIsa isa(gemm_path_isa());
  uint32_t seed = 401;
  for (const Case& c : kCases) {
    const Conv2dDesc d = make_desc(c, DType::f32);
    const Tensors want = rounded_reference<float>(d, seed += 5);
    expect_matches_reference(run_cpu<float>(d, want), want, 1e-5, std::string(c.name) + " gemm path");
  }
}

// f16/bf16 compute in f32 and round once: within half an ulp of the f32 result on the same inputs.
template <typename T>
void expect_half_matches_f32(const std::vector<T>& got, const std::vector<float>& want, const std::string& what) {
  double scale = 0.0;
  for (float v : want) scale = std::max(scale, double(std::abs(v)));
  for (size_t i = 0; i < want.size(); ++i) {
    const double tol = 1.01 * test::unit_roundoff<T>() * std::abs(want[i]) + test::subnormal_step<T>() + 1e-6 * scale;
    ASSERT_NEAR(static_cast<float>(got[i]), want[i], tol) << what << " at " << i;
  }
}

template <typename T>
void half_vs_f32(DType dtype, uint32_t seed) {
  for (const Case& c : kCases) {
    const Tensors in = rounded_reference<T>(make_desc(c, dtype), seed += 5);
    const Outputs<T> half = run_cpu<T>(make_desc(c, dtype), in);
    const Outputs<float> full = run_cpu<float>(make_desc(c, DType::f32), in);
    expect_half_matches_f32(half.y, full.y, std::string(c.name) + " forward");
    expect_half_matches_f32(half.dx, full.dx, std::string(c.name) + " backward data");
    expect_half_matches_f32(half.dw, full.dw, std::string(c.name) + " backward weight");
    expect_half_matches_f32(half.db, full.db, std::string(c.name) + " bias gradient");
  }
}

TEST(ConvCpu, F16MatchesF32) { half_vs_f32<f16>(DType::f16, 201); }
TEST(ConvCpu, Bf16MatchesF32) { half_vs_f32<bf16>(DType::bf16, 301); }

TEST(ConvCpu, NoBiasGradientWhenDbIsNull) {
  const Conv2dDesc d = make_desc(kCases[0], DType::f32);
  const Tensors want = rounded_reference<float>(d, 5);
  const auto x = test::cast_to<float>(want.x), dy = test::cast_to<float>(want.dy);
  std::vector<float> dw(static_cast<size_t>(conv2d_w_elements(d)));
  cpu::conv2d_backward_weight(d, x.data(), dy.data(), dw.data(), nullptr, nullptr, nullptr);
  EXPECT_LE(relative_error(test::to_double(dw), want.dw), 1e-5);
}

// Every forward path (chunked GEMM, pointwise, depthwise) with each activation; the backward kernels
// ignore it (they take the pre-activation gradient).
template <typename T>
void expect_fused_activation_matches_reference(ConvActivation activation, double tol, uint32_t seed) {
  for (const Case& c : kCases) {
    Conv2dDesc d = make_desc(c, dtype_of<T>());
    Tensors want = rounded_reference<T>(d, seed += 5);
    apply_activation(activation, want.y);
    d.activation = activation;
    expect_matches_reference(run_cpu<T>(d, want), want, tol, std::string(c.name) + " fused");
  }
}

TEST(ConvCpu, FusedReluAndGeluEqualTheActivationOfTheOutput) {
  expect_fused_activation_matches_reference<float>(ConvActivation::relu, 1e-5, 801);
  expect_fused_activation_matches_reference<float>(ConvActivation::gelu, 1e-5, 811);
  expect_fused_activation_matches_reference<double>(ConvActivation::gelu, 1e-13, 821);
}

// f32 fused GELU gives the bits of conv then the CPU's gelu op (its vectorized loop), on every epilogue path:
// in place, through the chunk scratch, depthwise, the direct kernel of shallow convs, and without it
// (the GEMM path) streamed for a large shallow output (the last case).
void expect_fused_gelu_is_bitwise_conv_then_gelu() {
  std::vector<Case> cases = kCases;
  cases.push_back({"large_shallow_streamed", 1, 3, 368, 368, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true});
  uint32_t seed = 831;
  for (const Case& c : cases) {
    Conv2dDesc d = make_desc(c, DType::f32);
    const Tensors in = random_inputs(d, seed += 5);
    const auto x = test::cast_to<float>(in.x), w = test::cast_to<float>(in.w), b = test::cast_to<float>(in.b);
    std::vector<float> plain(static_cast<size_t>(conv2d_y_elements(d))), fused(plain.size()), want(plain.size());
    cpu::conv2d_forward(d, x.data(), w.data(), b.data(), plain.data(), nullptr);
    cpu::run_fast_unary_f32(UnaryOp::gelu, plain.data(), want.data(), static_cast<int64_t>(plain.size()));
    d.activation = ConvActivation::gelu;
    cpu::conv2d_forward(d, x.data(), w.data(), b.data(), fused.data(), nullptr);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(fused[i], want[i]) << c.name << " at " << i;
  }
}

TEST(ConvCpu, FusedGeluIsBitwiseConvThenGelu) {
  for (const cpu::GemmIsa isa : {cpu::gemm_isa(), gemm_path_isa()}) {
    SCOPED_TRACE(cpu::gemm_isa_name(isa));
    const ScopedGemmIsa scoped(isa);
    expect_fused_gelu_is_bitwise_conv_then_gelu();
  }
}

// A shallow conv with a large output (above the CPU's 32 MB threshold for non-temporal stores) equals
// the same conv split into two halves of the output channels, each small enough for normal stores.
void expect_large_shallow_output_streams_the_same_values() {
  Conv2dDesc d = make_desc({"large", 1, 3, 368, 368, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true}, DType::f32);
  d.activation = ConvActivation::relu;
  ASSERT_GT(conv2d_y_elements(d) * 4, int64_t(32) << 20);
  const std::vector<float> x = test::cast_to<float>(test::random_values(conv2d_x_elements(d), 11));
  const std::vector<float> w = test::cast_to<float>(test::random_values(conv2d_w_elements(d), 12));
  const std::vector<float> b = test::cast_to<float>(test::random_values(d.c_out, 13));
  std::vector<float> y(static_cast<size_t>(conv2d_y_elements(d)));
  cpu::conv2d_forward(d, x.data(), w.data(), b.data(), y.data(), nullptr);

  Conv2dDesc half = d;
  half.c_out = d.c_out / 2;
  const int64_t plane = conv2d_output_h(d) * conv2d_output_w(d), half_w = conv2d_w_elements(half);
  for (int part = 0; part < 2; ++part) {
    std::vector<float> y_half(static_cast<size_t>(conv2d_y_elements(half)));
    cpu::conv2d_forward(half, x.data(), w.data() + part * half_w, b.data() + part * half.c_out, y_half.data(),
                        nullptr);
    for (int64_t i = 0; i < half.c_out * plane; ++i) {
      ASSERT_NEAR(y[part * half.c_out * plane + i], y_half[i], 1e-5f * (1.0f + std::abs(y_half[i])))
          << "output channel " << part * half.c_out + i / plane << ", pixel " << i % plane;
    }
  }
}

// The three passes run with one thread, then with all of them (at least 3, so that thread ranges
// split unevenly: on a 2-core machine the third shares a core).
std::pair<Outputs<float>, Outputs<float>> on_one_and_all_threads(const Conv2dDesc& d, const Tensors& in) {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  Outputs<float> one = run_cpu<float>(d, in);
  omp_set_num_threads(std::max(threads, 3));
  Outputs<float> all = run_cpu<float>(d, in);
  omp_set_num_threads(threads);
  return {std::move(one), std::move(all)};
}

// The direct kernel computes each output of forward and backward data on one thread, in a fixed order:
// the same bits with one thread as with all of them (a larger image than the cases, so that the rows
// are spread over the threads).
TEST(ConvCpu, DirectForwardAndBackwardDataDoNotDependOnTheThreadCount) {
  std::vector<Case> cases = kCases;
  cases.push_back({"rgb_96x150", 2, 3, 96, 150, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, true});
  int direct = 0;
  uint32_t seed = 901;
  for (const Case& c : cases) {
    const Conv2dDesc d = make_desc(c, DType::f32);
    const bool forward = cpu::conv2d_runs_direct(d, cpu::DirectPass::forward);
    const bool backward_data = cpu::conv2d_runs_direct(d, cpu::DirectPass::backward_data);
    if (!forward && !backward_data) continue;
    ++direct;
    const Tensors in = random_inputs(d, seed += 5);
    const auto [one, all] = on_one_and_all_threads(d, in);
    if (forward) {
      EXPECT_EQ(one.y, all.y) << c.name;
    }
    if (backward_data) {
      EXPECT_EQ(one.dx, all.dx) << c.name;
    }
  }
  if (cpu::gemm_isa() != cpu::GemmIsa::avx512) GTEST_SKIP() << "no AVX-512: no direct kernel";
  EXPECT_GE(direct, 10);
}

// The vectorized weight-gradient lanes of a stride-1 depthwise conv sum exactly as conv.cpp's generic loop
// (the contract of depthwise_weight_lanes_f32): per tap, lane l of each row's 16-column blocks from the
// tap's first valid column, the last partial block from lane 0, multiplied then added, onto lanes that
// already hold sums. Kernels 3x3 and 5x3, dilation 1 and 2, all rows and a middle range of them.
TEST(ConvCpu, DepthwiseWeightLanesSumAsTheGenericLoop) {
  struct Geometry {
    int64_t h, w, kh, kw, ph, pw, dh, dw, oh0, oh1;
  };
  for (const Geometry& c : {Geometry{7, 53, 3, 3, 1, 1, 1, 1, 0, 7}, Geometry{9, 70, 5, 3, 4, 2, 2, 2, 2, 6},
                            Geometry{6, 16, 3, 3, 1, 1, 1, 1, 1, 5}}) {
    const int64_t oh = c.h + 2 * c.ph - c.dh * (c.kh - 1), ow = c.w + 2 * c.pw - c.dw * (c.kw - 1);
    const int64_t taps = c.kh * c.kw;
    const std::vector<float> x = test::cast_to<float>(test::random_values(c.h * c.w, 61));
    const std::vector<float> dy = test::cast_to<float>(test::random_values(oh * ow, 62));
    std::vector<float> lanes = test::cast_to<float>(test::random_values(taps * 16, 63)), want = lanes;
    const cpu::DepthwiseWeightPlane plane{x.data(), dy.data(), c.h, c.w, oh, ow, c.kh, c.kw, c.ph, c.pw, c.dh, c.dw};
    if (!cpu::depthwise_weight_lanes_f32(plane, c.oh0, c.oh1, lanes.data())) GTEST_SKIP() << "no AVX-512";
    for (int64_t r = c.oh0; r < c.oh1; ++r) {
      for (int64_t i = 0; i < c.kh; ++i) {
        const int64_t ih = r - c.ph + i * c.dh;
        if (ih < 0 || ih >= c.h) continue;
        for (int64_t j = 0; j < c.kw; ++j) {
          const int64_t off = j * c.dw - c.pw;
          const int64_t lo = std::min(std::max<int64_t>(-off, 0), ow), hi = std::clamp(c.w - off, lo, ow);
          float* tap = want.data() + (i * c.kw + j) * 16;
          for (int64_t col = lo; col < hi; ++col) {
            const volatile float product = dy[r * ow + col] * x[ih * c.w + col + off];  // no FMA
            tap[(col - lo) % 16] += product;
          }
        }
      }
    }
    EXPECT_EQ(std::memcmp(lanes.data(), want.data(), lanes.size() * sizeof(float)), 0) << "w " << c.w;
  }
}

// Which convs the direct kernel takes for backward weight: shallow ones, and deep ones with fewer than
// 32 outputs per group over rows at least 64 wide (the cases the tests above then check on that path).
TEST(ConvCpu, DirectBackwardWeightTakesShallowConvsAndDeepOnesWithFewOutputs) {
  if (cpu::gemm_isa() != cpu::GemmIsa::avx512) GTEST_SKIP() << "no AVX-512: no direct kernel";
  auto direct = [](const char* name) {
    const auto c =
        std::find_if(kCases.begin(), kCases.end(), [&](const Case& k) { return std::string(k.name) == name; });
    EXPECT_NE(c, kCases.end()) << name;
    return cpu::conv2d_runs_direct(make_desc(*c, DType::f32), cpu::DirectPass::backward_weight);
  };
  EXPECT_TRUE(direct("shallow_rgb_chunks"));
  EXPECT_TRUE(direct("deep_wide_rows"));
  EXPECT_TRUE(direct("deep_wide_rows_groups2"));
  EXPECT_TRUE(direct("deep_narrow_rows"));
  EXPECT_TRUE(direct("shallow_dilated_bands"));
  EXPECT_FALSE(direct("many_channels"));                // 80 outputs
  EXPECT_FALSE(direct("deep_dilated_channel_slices"));  // rows 32 wide
}

// Forward and backward data of deep convs run directly from rows 128 wide, or 64 where their K is at
// most 288 (32 channels of a 3x3); backward weight from rows 64 wide where a group has fewer than 32
// outputs.
TEST(ConvCpu, DirectKernelTakesNarrowerRowsWhenKOrOutputsAreFew) {
  if (cpu::gemm_isa() != cpu::GemmIsa::avx512) GTEST_SKIP() << "no AVX-512: no direct kernel";
  Conv2dDesc d = make_desc({"narrow", 2, 16, 5, 70, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, true}, DType::f32);
  EXPECT_TRUE(cpu::conv2d_runs_direct(d, cpu::DirectPass::forward));
  EXPECT_TRUE(cpu::conv2d_runs_direct(d, cpu::DirectPass::backward_data));
  EXPECT_TRUE(cpu::conv2d_runs_direct(d, cpu::DirectPass::backward_weight));
  d.c_out = 32;
  EXPECT_FALSE(cpu::conv2d_runs_direct(d, cpu::DirectPass::backward_weight));
  d.c_out = 16, d.w = 63;
  EXPECT_FALSE(cpu::conv2d_runs_direct(d, cpu::DirectPass::backward_weight));
  d.w = 70, d.c_in = 33;  // K = 297
  EXPECT_FALSE(cpu::conv2d_runs_direct(d, cpu::DirectPass::forward));
  d.c_in = 32, d.w = 63;  // K = 288, rows of 63 (padding 1)
  EXPECT_FALSE(cpu::conv2d_runs_direct(d, cpu::DirectPass::forward));
  EXPECT_FALSE(cpu::conv2d_runs_direct(d, cpu::DirectPass::backward_data));
  d.w = 64;
  EXPECT_TRUE(cpu::conv2d_runs_direct(d, cpu::DirectPass::forward));
  EXPECT_TRUE(cpu::conv2d_runs_direct(d, cpu::DirectPass::backward_data));
}

// The GEMM path's forward and backward data (as the dual's forward, chunked, or by channel slices) sum
// each output in an order fixed by the shape, however the images and rows are split into tasks: the
// same bits with one thread as with all of them.
TEST(ConvCpu, GemmForwardAndBackwardDataDoNotDependOnTheThreadCount) {
  for (const cpu::GemmIsa isa : {cpu::gemm_isa(), gemm_path_isa()}) {
    SCOPED_TRACE(cpu::gemm_isa_name(isa));
    const ScopedGemmIsa scoped(isa);
    uint32_t seed = 951;
    for (const Case& c : kCases) {
      const Conv2dDesc d = make_desc(c, DType::f32);
      const Tensors in = random_inputs(d, seed += 5);
      const auto [one, all] = on_one_and_all_threads(d, in);
      EXPECT_EQ(one.y, all.y) << c.name;
      EXPECT_EQ(one.dx, all.dx) << c.name;
    }
  }
}

// Backward weight sums each dW and db element in an order fixed by the shape on every path: the direct
// kernel's slots of bands of rows, the chunked GEMM path's slots of tasks, the channel slices. The same bits
// with one thread as with several; a shallow conv over more rows than the direct kernel has slots too.
TEST(ConvCpu, BackwardWeightDoesNotDependOnTheThreadCount) {
  std::vector<Case> cases = kCases;
  cases.push_back({"rgb_96x150", 2, 3, 96, 150, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, true});
  for (const cpu::GemmIsa isa : {cpu::gemm_isa(), gemm_path_isa()}) {
    SCOPED_TRACE(cpu::gemm_isa_name(isa));
    const ScopedGemmIsa scoped(isa);
    uint32_t seed = 971;
    for (const Case& c : cases) {
      const Conv2dDesc d = make_desc(c, DType::f32);
      const auto [one, all] = on_one_and_all_threads(d, random_inputs(d, seed += 5));
      EXPECT_EQ(one.dw, all.dw) << c.name;
      EXPECT_EQ(one.db, all.db) << c.name;
    }
  }
}

// Both paths: the direct kernel's stores from registers (where the CPU has AVX-512) and the GEMM path's
// streaming epilogue.
TEST(ConvCpu, LargeShallowOutputStreamsTheSameValues) {
  for (const cpu::GemmIsa isa : {cpu::gemm_isa(), gemm_path_isa()}) {
    SCOPED_TRACE(cpu::gemm_isa_name(isa));
    const ScopedGemmIsa scoped(isa);
    expect_large_shallow_output_streams_the_same_values();
  }
}

void expect_invalid(const Conv2dDesc& d, const std::string& what) {
  try {
    validate_conv2d(d);
    ADD_FAILURE() << "expected an error mentioning '" << what << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(ConvValidate, NamesTheBadField) {
  const Conv2dDesc ok = make_desc(kCases[5], DType::f32);
  EXPECT_NO_THROW(validate_conv2d(ok));
  Conv2dDesc d = ok;
  d.groups = 4;
  expect_invalid(d, "groups = 4 does not divide c_in = 6");
  d = ok;
  d.c_out = 5;
  expect_invalid(d, "does not divide c_out = 5");
  d = ok;
  d.stride_w = 0;
  expect_invalid(d, "stride_w = 0");
  d = ok;
  d.pad_h = -1;
  expect_invalid(d, "pad_h = -1");
  d = ok;
  d.dilation_h = 0;
  expect_invalid(d, "dilation_h = 0");
  d = ok;
  d.kernel_w = 20;
  expect_invalid(d, "output width");
  d = ok;
  d.dtype = DType::i32;
  expect_invalid(d, "dtype i32");
}

TEST(ConvValidate, OutputSize) {
  EXPECT_EQ(conv2d_output_size(224, 7, 2, 3, 1), 112);  // ResNet stem
  EXPECT_EQ(conv2d_output_size(64, 3, 1, 6, 6), 64);    // atrous rate 6, "same" padding
  EXPECT_EQ(conv2d_output_size(7, 3, 2, 1, 1), 4);
  EXPECT_EQ(conv2d_output_size(5, 3, 1, 0, 3), 0);  // the dilated kernel does not fit
  EXPECT_EQ(conv2d_output_size(5, 3, 2, 0, 3), 0);
}

// CUDA's backward weight splits the pixels of a conv with few weights into parts (kernels/conv.h): about
// 256 blocks of 64 x 64 weight tiles, each part at least 1024 pixels, f32 and f64 only, never depthwise.
TEST(ConvValidate, BackwardWeightSplitsAndTheirWorkspace) {
  Conv2dDesc d;  // ResNet's 3x3 64 -> 64 at 128x128, batch 2: 1 x 9 tiles, 32768 pixels
  d.n = 2, d.c_in = d.c_out = 64, d.h = d.w = 128, d.kernel_h = d.kernel_w = 3, d.pad_h = d.pad_w = 1;
  EXPECT_EQ(conv2d_backward_weight_splits(d), 256 / 9);
  EXPECT_EQ(conv2d_backward_weight_workspace_bytes(d), 28u * 64 * 64 * 9 * sizeof(float));
  d.dtype = DType::f64;
  EXPECT_EQ(conv2d_backward_weight_workspace_bytes(d), 28u * 64 * 64 * 9 * sizeof(double));
  d.dtype = DType::bf16;  // one part: no 16-bit partial sums
  EXPECT_EQ(conv2d_backward_weight_splits(d), 1);
  EXPECT_EQ(conv2d_backward_weight_workspace_bytes(d), 0u);
  d.dtype = DType::f32;
  d.h = d.w = 40;  // 3200 pixels: parts of >= 1024
  EXPECT_EQ(conv2d_backward_weight_splits(d), 3);
  d.c_in = d.c_out = 512;  // 8 x 72 tiles fill the GPU alone
  EXPECT_EQ(conv2d_backward_weight_splits(d), 1);
  d.groups = 512;  // depthwise: its own kernel
  EXPECT_EQ(conv2d_backward_weight_workspace_bytes(d), 0u);
}

TEST(ConvValidate, CpuChecksPointers) {
  const Conv2dDesc d = make_desc(kCases[0], DType::f32);
  std::vector<float> buf(static_cast<size_t>(conv2d_x_elements(d) + conv2d_y_elements(d)));
  EXPECT_THROW(cpu::conv2d_forward(d, nullptr, buf.data(), buf.data(), buf.data(), nullptr), Error);
  EXPECT_THROW(cpu::conv2d_forward(d, buf.data(), buf.data(), nullptr, buf.data(), nullptr), Error);  // has_bias
}

#ifdef SEGENGINE_HAS_CUDA

TEST(ConvCuda, F32MatchesReference) {
  SE_SKIP_WITHOUT_CUDA();
  uint32_t seed = 401;
  for (const Case& c : cuda_cases()) {
    const Conv2dDesc d = make_desc(c, DType::f32);
    const Tensors want = rounded_reference<float>(d, seed += 5);
    expect_matches_reference(run_cuda<float>(d, want), want, 1e-5, c.name);
  }
}

TEST(ConvCuda, F64MatchesReference) {
  SE_SKIP_WITHOUT_CUDA();
  uint32_t seed = 501;
  for (const Case& c : cuda_cases()) {
    const Conv2dDesc d = make_desc(c, DType::f64);
    const Tensors want = rounded_reference<double>(d, seed += 5);
    expect_matches_reference(run_cuda<double>(d, want), want, 1e-13, c.name);
  }
}

// Both sides round f32 sums once (summed in different orders): at most about one ulp apart.
template <typename T>
void cuda_half_vs_cpu(DType dtype, uint32_t seed, Conv2dLayout layout = Conv2dLayout::nchw) {
  for (const Case& c : cuda_cases()) {
    Conv2dDesc d = make_desc(c, dtype);
    Tensors in = rounded_reference<T>(d, seed += 5);
    if (layout == Conv2dLayout::nhwc) in = channels_last(d, in);
    d.layout = layout;
    const Outputs<T> got = run_cuda<T>(d, in), want = run_cpu<T>(d, in);
    const double tol = 2.01 * test::unit_roundoff<T>();
    EXPECT_LE(relative_error(test::to_double(got.y), test::to_double(want.y)), tol) << c.name << ": forward";
    EXPECT_LE(relative_error(test::to_double(got.dx), test::to_double(want.dx)), tol) << c.name << ": backward data";
    EXPECT_LE(relative_error(test::to_double(got.dw), test::to_double(want.dw)), tol) << c.name << ": backward weight";
    EXPECT_LE(relative_error(test::to_double(got.db), test::to_double(want.db)), tol) << c.name << ": bias gradient";
  }
}

// The fused epilogue on the device: the implicit GEMM (f32), the tensor-core path (bf16), depthwise,
// and 1x1 convolutions, which leave the GEMM route when an activation is fused.
TEST(ConvCuda, FusedActivationMatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  uint32_t seed = 901;
  for (ConvActivation activation : {ConvActivation::relu, ConvActivation::gelu}) {
    for (const Case& c : cuda_cases()) {
      Conv2dDesc d = make_desc(c, DType::f32);
      d.activation = activation;
      const Tensors in = rounded_reference<float>(d, seed += 5);
      EXPECT_LE(relative_error(test::to_double(run_cuda<float>(d, in).y), test::to_double(run_cpu<float>(d, in).y)),
                1e-5)
          << c.name;
      d.dtype = DType::bf16;
      const Tensors in16 = rounded_reference<bf16>(d, seed += 5);
      EXPECT_LE(relative_error(test::to_double(run_cuda<bf16>(d, in16).y), test::to_double(run_cpu<bf16>(d, in16).y)),
                2.01 * test::unit_roundoff<bf16>())
          << c.name << " bf16";
    }
  }
}

TEST(ConvCuda, F16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  cuda_half_vs_cpu<f16>(DType::f16, 601);
}

TEST(ConvCuda, Bf16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  cuda_half_vs_cpu<bf16>(DType::bf16, 701);
}

// The weight gradient of a conv whose pixel reduction is split over blocks (few weights, many pixels) is
// the same bits whatever order the blocks run in, so a training run on a GPU repeats bit for bit.
template <typename T>
void backward_weight_in_several_block_orders(DType dtype, Conv2dLayout layout, double tol, uint32_t seed) {
  const std::vector<Case> split_cases = {
      {"few_weights_many_pixels", 2, 3, 48, 40, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
      {"groups2_stride2", 1, 4, 130, 66, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2, false},
  };
  for (const Case& c : split_cases) {
    Conv2dDesc d = make_desc(c, dtype);
    Tensors in = rounded_reference<T>(d, seed += 5);
    if (layout == Conv2dLayout::nhwc) in = channels_last(d, in);
    d.layout = layout;
    const auto results = test::results_in_several_block_orders([&] {
      test::DeviceBuffer<T> x(test::cast_to<T>(in.x)), dy(test::cast_to<T>(in.dy));
      test::DeviceBuffer<T> dw(static_cast<size_t>(conv2d_w_elements(d))), db(static_cast<size_t>(d.c_out));
      test::DeviceBuffer<unsigned char> workspace(conv2d_backward_weight_workspace_bytes(d));
      cuda::conv2d_backward_weight(d, x.get(), dy.get(), dw.get(), db.get(), workspace.get(), nullptr);
      return std::make_pair(dw.to_host(), db.to_host());
    });
    EXPECT_GT(conv2d_backward_weight_splits(d), 1) << c.name << ": the pixels are not split";
    const Outputs<T> want = run_cpu<T>(d, in);  // the parts add up to the gradient
    EXPECT_LE(relative_error(test::to_double(results[0].first), test::to_double(want.dw)), tol) << c.name;
    for (size_t order = 1; order < results.size(); ++order) {
      EXPECT_EQ(test::bits_of(results[order].first), test::bits_of(results[0].first))
          << c.name << ": dw, block order " << order;
      EXPECT_EQ(test::bits_of(results[order].second), test::bits_of(results[0].second))
          << c.name << ": db, block order " << order;
    }
  }
}

TEST(ConvCuda, BackwardWeightIsTheSameBitsInAnyBlockOrder) {
  SE_SKIP_WITHOUT_CUDA();
  backward_weight_in_several_block_orders<float>(DType::f32, Conv2dLayout::nchw, 1e-5, 1401);
  backward_weight_in_several_block_orders<double>(DType::f64, Conv2dLayout::nchw, 1e-13, 1501);
  backward_weight_in_several_block_orders<float>(DType::f32, Conv2dLayout::nhwc, 1e-5, 1601);
}

TEST(ConvCuda, SplitBackwardWeightWithoutItsWorkspaceIsAnError) {
  SE_SKIP_WITHOUT_CUDA();
  const Conv2dDesc d = make_desc({"split", 2, 3, 48, 40, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, false}, DType::f32);
  test::DeviceBuffer<float> x(static_cast<size_t>(conv2d_x_elements(d))), dy(static_cast<size_t>(conv2d_y_elements(d)));
  test::DeviceBuffer<float> dw(static_cast<size_t>(conv2d_w_elements(d)));
  try {
    cuda::conv2d_backward_weight(d, x.get(), dy.get(), dw.get(), nullptr, nullptr, nullptr);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("conv2d_backward_weight_workspace_bytes = " +
                                         std::to_string(conv2d_backward_weight_workspace_bytes(d))),
              std::string::npos)
        << e.what();
  }
}

// Tensor cores against the CPU on the same nhwc inputs.
TEST(ConvCuda, ChannelsLastHalfMatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  cuda_half_vs_cpu<f16>(DType::f16, 1201, Conv2dLayout::nhwc);
  cuda_half_vs_cpu<bf16>(DType::bf16, 1301, Conv2dLayout::nhwc);
}
#endif

}  // namespace
}  // namespace se::kernels
