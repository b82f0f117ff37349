// ConvTranspose2d kernels against a naive scatter-form transposed convolution in f64 (forward, backward data,
// backward weight, bias gradient): CPU in f32/f64, f16 against f32, CUDA against the reference and the CPU.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/conv.h"
#include "tests/kernels/kernel_test_util.h"

namespace se::kernels {
namespace {

using test::relative_error;

struct Case {
  const char* name;
  int64_t n, c_in, h, w, c_out;
  int64_t kh, kw, sh, sw, ph, pw, oph, opw, dh, dw;
  int64_t groups;
  bool bias;
};

// Odd sizes; every Conv2d path of the mirror conv (chunked GEMM, pointwise, depthwise when groups == C_out),
// and the kernel == stride path of its own.
const std::vector<Case> kCases = {
    {"unet_up_k2_s2", 2, 6, 5, 7, 3, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1, true},
    {"k3_s2_pad1_outpad1", 1, 4, 6, 5, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, true},
    {"k3_s1_pad1", 2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 0, 0, 1, 1, 1, false},
    {"k4_s3_dilation2", 1, 5, 4, 6, 2, 4, 3, 3, 2, 2, 1, 2, 1, 2, 3, 1, true},
    {"groups2", 2, 4, 5, 5, 6, 3, 2, 2, 1, 1, 0, 1, 0, 1, 1, 2, true},
    {"depthwise", 1, 3, 6, 7, 3, 3, 3, 2, 2, 1, 1, 0, 1, 1, 1, 3, false},
    {"1x1", 2, 7, 3, 4, 5, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, true},
    {"wide_odd", 1, 2, 3, 41, 3, 2, 3, 2, 3, 0, 1, 1, 2, 1, 1, 1, true},
    // kernel == stride runs as a GEMM and a pixel shuffle (as do unet_up_k2_s2 and 1x1 above): a 2x3
    // kernel, and 64 outputs x 4 taps over rows of 40, which take chunks of 16, 16 and 8 input rows;
    // then 5 small images, several to a task (3 and 2 with two threads, 5 with one).
    {"shuffle_k2x3_s2x3", 2, 4, 5, 6, 3, 2, 3, 2, 3, 0, 0, 0, 0, 1, 1, 1, true},
    {"shuffle_row_chunks", 2, 3, 40, 64, 64, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1, false},
    {"shuffle_small_images", 5, 6, 3, 5, 4, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1, true},
};

ConvTranspose2dDesc make_desc(const Case& c, DType dtype) {
  ConvTranspose2dDesc d;
  d.n = c.n;
  d.c_in = c.c_in;
  d.h = c.h;
  d.w = c.w;
  d.c_out = c.c_out;
  d.kernel_h = c.kh;
  d.kernel_w = c.kw;
  d.stride_h = c.sh;
  d.stride_w = c.sw;
  d.pad_h = c.ph;
  d.pad_w = c.pw;
  d.output_padding_h = c.oph;
  d.output_padding_w = c.opw;
  d.dilation_h = c.dh;
  d.dilation_w = c.dw;
  d.groups = c.groups;
  d.has_bias = c.bias;
  d.dtype = dtype;
  return d;
}

struct Tensors {
  std::vector<double> x, w, b, dy;    // inputs
  std::vector<double> y, dx, dw, db;  // outputs
};

// The definition in scatter form: x[n, ci, ih, iw] * w[ci, co, i, j] lands on
// y[n, g * Og + co, ih * stride - pad + i * dilation, iw * stride - pad + j * dilation] when that is inside y.
void reference(const ConvTranspose2dDesc& d, Tensors& t) {
  const int64_t oh_size = conv_transpose2d_output_h(d), ow_size = conv_transpose2d_output_w(d);
  const int64_t cg = d.c_in / d.groups, og = d.c_out / d.groups;
  t.y.assign(static_cast<size_t>(conv_transpose2d_y_elements(d)), 0.0);
  t.dx.assign(static_cast<size_t>(conv_transpose2d_x_elements(d)), 0.0);
  t.dw.assign(static_cast<size_t>(conv_transpose2d_w_elements(d)), 0.0);
  t.db.assign(static_cast<size_t>(d.c_out), 0.0);
  for (int64_t n = 0; n < d.n; ++n) {
    for (int64_t co = 0; co < d.c_out; ++co) {
      for (int64_t p = 0; p < oh_size * ow_size; ++p) {
        const int64_t yi = (n * d.c_out + co) * oh_size * ow_size + p;
        if (d.has_bias) t.y[yi] += t.b[co];
        t.db[co] += t.dy[yi];
      }
    }
    for (int64_t ci = 0; ci < d.c_in; ++ci) {
      const int64_t g = ci / cg;
      for (int64_t ih = 0; ih < d.h; ++ih) {
        for (int64_t iw = 0; iw < d.w; ++iw) {
          const int64_t xi = ((n * d.c_in + ci) * d.h + ih) * d.w + iw;
          for (int64_t co = 0; co < og; ++co) {
            for (int64_t i = 0; i < d.kernel_h; ++i) {
              for (int64_t j = 0; j < d.kernel_w; ++j) {
                const int64_t oh = ih * d.stride_h - d.pad_h + i * d.dilation_h;
                const int64_t ow = iw * d.stride_w - d.pad_w + j * d.dilation_w;
                if (oh < 0 || oh >= oh_size || ow < 0 || ow >= ow_size) continue;
                const int64_t yi = ((n * d.c_out + g * og + co) * oh_size + oh) * ow_size + ow;
                const int64_t wi = ((ci * og + co) * d.kernel_h + i) * d.kernel_w + j;
                t.y[yi] += t.x[xi] * t.w[wi];
                t.dx[xi] += t.dy[yi] * t.w[wi];
                t.dw[wi] += t.dy[yi] * t.x[xi];
              }
            }
          }
        }
      }
    }
  }
}

template <typename T>
Tensors rounded_reference(const ConvTranspose2dDesc& d, uint32_t seed) {
  Tensors t;
  t.x = test::to_double(test::cast_to<T>(test::random_values(conv_transpose2d_x_elements(d), seed)));
  t.w = test::to_double(test::cast_to<T>(test::random_values(conv_transpose2d_w_elements(d), seed + 1)));
  t.b = test::to_double(test::cast_to<T>(test::random_values(d.c_out, seed + 2)));
  t.dy = test::to_double(test::cast_to<T>(test::random_values(conv_transpose2d_y_elements(d), seed + 3)));
  reference(d, t);
  return t;
}

template <typename T>
struct Outputs {
  std::vector<T> y, dx, dw, db;
};

template <typename T>
Outputs<T> run_cpu(const ConvTranspose2dDesc& d, const Tensors& in) {
  const auto x = test::cast_to<T>(in.x), w = test::cast_to<T>(in.w), b = test::cast_to<T>(in.b);
  const auto dy = test::cast_to<T>(in.dy);
  Outputs<T> out;
  out.y.resize(static_cast<size_t>(conv_transpose2d_y_elements(d)));
  out.dx.resize(static_cast<size_t>(conv_transpose2d_x_elements(d)));
  out.dw.resize(static_cast<size_t>(conv_transpose2d_w_elements(d)));
  out.db.resize(static_cast<size_t>(d.c_out));
  cpu::conv_transpose2d_forward(d, x.data(), w.data(), b.data(), out.y.data(), nullptr);
  cpu::conv_transpose2d_backward_data(d, dy.data(), w.data(), out.dx.data(), nullptr);
  cpu::conv_transpose2d_backward_weight(d, x.data(), dy.data(), out.dw.data(), out.db.data(), nullptr, nullptr);
  return out;
}

template <typename T>
void expect_matches(const Outputs<T>& got, const Tensors& want, double tol, const std::string& what) {
  EXPECT_LE(relative_error(test::to_double(got.y), want.y), tol) << what << ": forward";
  EXPECT_LE(relative_error(test::to_double(got.dx), want.dx), tol) << what << ": backward data";
  EXPECT_LE(relative_error(test::to_double(got.dw), want.dw), tol) << what << ": backward weight";
  EXPECT_LE(relative_error(test::to_double(got.db), want.db), tol) << what << ": bias gradient";
}

TEST(ConvTransposeCpu, OutputSizeIsPyTorchs) {
  EXPECT_EQ(conv_transpose2d_output_size(32, 2, 2, 0, 0, 1), 64);  // U-Net up-convolution
  EXPECT_EQ(conv_transpose2d_output_size(5, 3, 2, 1, 1, 1), 10);
  EXPECT_EQ(conv_transpose2d_output_size(4, 4, 3, 2, 2, 2), 14);
}

TEST(ConvTransposeCpu, F32MatchesReference) {
  uint32_t seed = 11;
  for (const Case& c : kCases) {
    const ConvTranspose2dDesc d = make_desc(c, DType::f32);
    const Tensors want = rounded_reference<float>(d, seed += 5);
    expect_matches(run_cpu<float>(d, want), want, 1e-5, c.name);
  }
}

TEST(ConvTransposeCpu, F64MatchesReference) {
  uint32_t seed = 111;
  for (const Case& c : kCases) {
    const ConvTranspose2dDesc d = make_desc(c, DType::f64);
    const Tensors want = rounded_reference<double>(d, seed += 5);
    expect_matches(run_cpu<double>(d, want), want, 1e-13, c.name);
  }
}

TEST(ConvTransposeCpu, F16MatchesReference) {  // f32 accumulation, one rounding per output (plus the bias add)
  uint32_t seed = 211;
  for (const Case& c : kCases) {
    const ConvTranspose2dDesc d = make_desc(c, DType::f16);
    const Tensors want = rounded_reference<f16>(d, seed += 5);
    expect_matches(run_cpu<f16>(d, want), want, 3 * test::unit_roundoff<f16>(), c.name);
  }
}

// Every pass sums each output in an order fixed by the shape: the same bits with one thread as with
// several (at least 3, so that thread ranges split unevenly).
TEST(ConvTransposeCpu, ResultsDoNotDependOnTheThreadCount) {
  uint32_t seed = 311;
  for (const Case& c : kCases) {
    const ConvTranspose2dDesc d = make_desc(c, DType::f32);
    const Tensors in = rounded_reference<float>(d, seed += 5);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const Outputs<float> one = run_cpu<float>(d, in);
    omp_set_num_threads(std::max(threads, 3));
    const Outputs<float> all = run_cpu<float>(d, in);
    omp_set_num_threads(threads);
    EXPECT_EQ(one.y, all.y) << c.name;
    EXPECT_EQ(one.dx, all.dx) << c.name;
    EXPECT_EQ(one.dw, all.dw) << c.name;
    EXPECT_EQ(one.db, all.db) << c.name;
  }
}

TEST(ConvTransposeCpu, ValidateNamesTheBadField) {
  ConvTranspose2dDesc d = make_desc(kCases[1], DType::f32);
  EXPECT_NO_THROW(validate_conv_transpose2d(d));
  d.output_padding_h = 2;
  EXPECT_THROW(
      {
        try {
          validate_conv_transpose2d(d);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("output_padding_h = 2"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  d = make_desc(kCases[4], DType::f32);
  d.c_out = 5;
  EXPECT_THROW(validate_conv_transpose2d(d), Error);  // groups does not divide C_out
}

#ifdef SEGENGINE_HAS_CUDA
template <typename T>
Outputs<T> run_cuda(const ConvTranspose2dDesc& d, const Tensors& in) {
  test::DeviceBuffer<T> x(test::cast_to<T>(in.x)), w(test::cast_to<T>(in.w)), b(test::cast_to<T>(in.b));
  test::DeviceBuffer<T> dy(test::cast_to<T>(in.dy));
  test::DeviceBuffer<T> y(static_cast<size_t>(conv_transpose2d_y_elements(d)));
  test::DeviceBuffer<T> dx(static_cast<size_t>(conv_transpose2d_x_elements(d)));
  test::DeviceBuffer<T> dw(static_cast<size_t>(conv_transpose2d_w_elements(d))), db(static_cast<size_t>(d.c_out));
  test::DeviceBuffer<unsigned char> workspace(conv_transpose2d_backward_weight_workspace_bytes(d));
  cuda::conv_transpose2d_forward(d, x.get(), w.get(), b.get(), y.get(), nullptr);
  cuda::conv_transpose2d_backward_data(d, dy.get(), w.get(), dx.get(), nullptr);
  cuda::conv_transpose2d_backward_weight(d, x.get(), dy.get(), dw.get(), db.get(), workspace.get(), nullptr);
  return {y.to_host(), dx.to_host(), dw.to_host(), db.to_host()};
}

TEST(ConvTransposeCuda, F32MatchesReference) {
  SE_SKIP_WITHOUT_CUDA();
  uint32_t seed = 311;
  for (const Case& c : kCases) {
    const ConvTranspose2dDesc d = make_desc(c, DType::f32);
    const Tensors want = rounded_reference<float>(d, seed += 5);
    expect_matches(run_cuda<float>(d, want), want, 1e-5, c.name);
  }
}

TEST(ConvTransposeCuda, F64MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  uint32_t seed = 411;
  for (const Case& c : kCases) {
    const ConvTranspose2dDesc d = make_desc(c, DType::f64);
    const Tensors in = rounded_reference<double>(d, seed += 5);
    const Outputs<double> got = run_cuda<double>(d, in), want = run_cpu<double>(d, in);
    EXPECT_LE(relative_error(got.y, want.y), 1e-13) << c.name;
    EXPECT_LE(relative_error(got.dx, want.dx), 1e-13) << c.name;
    EXPECT_LE(relative_error(got.dw, want.dw), 1e-13) << c.name;
    EXPECT_LE(relative_error(got.db, want.db), 1e-13) << c.name;
  }
}

TEST(ConvTransposeCuda, Bf16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  uint32_t seed = 511;
  for (const Case& c : kCases) {
    const ConvTranspose2dDesc d = make_desc(c, DType::bf16);
    const Tensors in = rounded_reference<bf16>(d, seed += 5);
    expect_matches(run_cuda<bf16>(d, in), in, 3 * test::unit_roundoff<bf16>(), c.name);
  }
}
#endif

}  // namespace
}  // namespace se::kernels
