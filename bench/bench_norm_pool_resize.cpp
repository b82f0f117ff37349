// Bandwidth of the normalization, pooling and resize kernels, f32, on layer shapes of the model zoo at a
// 512x512 input: BatchNorm2d (training forward = statistics, finalize, normalize; eval forward; training
// backward) on ResNet-50's stage-1 activation, LayerNorm on SegFormer-B0's stage 1, GroupNorm (32 groups),
// max pooling of ResNet-50's stem, 2x2 average pooling, PSPNet's adaptive pooling (bins 1, 2, 3, 6 of the
// 2048x64x64 features at output stride 8), and bilinear / nearest resize of 19-class logits 128 -> 512.
// Counter GB/s: what each kernel call reads and writes at least (every input once, every output once).
// On a real GPU, in builds with the vendor references, NAME/cudnn times cuDNN's call for the work of
// NAME/cuda (BatchNorm, max and average pooling, adaptive pooling with 1 and 2 bins), with the same byte
// counts, so the GB/s compare as times do.
// Run: build/bench/bench_norm_pool_resize --benchmark_counters_tabular=true
#include <omp.h>

#include <optional>
#include <string>

#include "bench/kernel_harness.h"
#include "kernels/norm.h"
#include "kernels/pool.h"
#include "kernels/resize.h"

namespace se::kernels::bench {
namespace {

constexpr double kF32 = sizeof(float);

// ResNet-50's stage-1 activation: 256 channels of 128x128.
constexpr BatchNormDesc kBatchNorm{1, 256, 128 * 128};

enum class BatchNormPass { forward_train, forward_eval, backward_train };

void bm_batch_norm(benchmark::State& state, Backend backend, BatchNormPass pass) {
  const BatchNormDesc d = kBatchNorm;
  const int64_t n = d.n * d.c * d.hw;
  Buffer<float> x(backend, random_values(n)), dy(backend, random_values(n)), y(backend, n);  // (N, C, HW) each
  Buffer<float> weight(backend, random_values(d.c)), bias(backend, random_values(d.c));      // (C) each
  Buffer<float> mean(backend, d.c), var(backend, d.c), invstd(backend, d.c), sum_dy(backend, d.c),
      sum_dy_xmu(backend, d.c), running_mean(backend, d.c), running_var(backend, std::vector<float>(d.c, 1.0f));
  auto statistics = [&] {
    SE_BENCH_CALL(backend, batch_norm_stats<float>, mean.data(), var.data(), x.data(), d);
    SE_BENCH_CALL(backend, batch_norm_finalize<float>, invstd.data(), running_mean.data(), running_var.data(),
                  mean.data(), var.data(), d.c, d.n * d.hw, 0.1, 1e-5);
  };
  auto normalize = [&] {
    SE_BENCH_CALL(backend, batch_norm_elemt<float>, y.data(), x.data(), mean.data(), invstd.data(), weight.data(),
                  bias.data(), d);
  };
  statistics();
  switch (pass) {
    case BatchNormPass::forward_train:  // x read by two calls, y written
      time_calls(
          state, backend,
          [&] {
            statistics();
            normalize();
          },
          "GB/s", 3 * kF32 * n);
      break;
    case BatchNormPass::forward_eval: time_calls(state, backend, normalize, "GB/s", 2 * kF32 * n); break;
    case BatchNormPass::backward_train:  // dy and x read by both calls, dx written
      time_calls(
          state, backend,
          [&] {
            SE_BENCH_CALL(backend, batch_norm_backward_reduce<float>, sum_dy.data(), sum_dy_xmu.data(), dy.data(),
                          x.data(), nullptr, mean.data(), d);
            SE_BENCH_CALL(backend, batch_norm_backward_elemt<float>, y.data(), dy.data(), x.data(), nullptr,
                          mean.data(), invstd.data(), weight.data(), sum_dy.data(), sum_dy_xmu.data(), d.n * d.hw, d);
          },
          "GB/s", 5 * kF32 * n);
      break;
  }
}

#ifdef SEGENGINE_VENDOR_BENCH
// cuDNN's BatchNorm (spatial) on the same shape: the training forward computes the statistics, updates the
// running ones and normalizes in one call.
void bm_cudnn_batch_norm(benchmark::State& state, BatchNormPass pass) {
  const BatchNormDesc d = kBatchNorm;
  const int64_t n = d.n * d.c * d.hw;
  const Backend gpu = Backend::cuda;
  Buffer<float> x(gpu, random_values(n)), dy(gpu, random_values(n)), y(gpu, n), dx(gpu, n);  // (N, C, HW) each
  Buffer<float> weight(gpu, random_values(d.c)), bias(gpu, random_values(d.c));              // (C) each
  Buffer<float> mean(gpu, d.c), invstd(gpu, d.c), grad_weight(gpu, d.c), grad_bias(gpu, d.c), running_mean(gpu, d.c),
      running_var(gpu, std::vector<float>(d.c, 1.0f));
  const vendor::Dims4 dims = *vendor::cudnn_batch_norm_dims(d);
  const vendor::Call forward = vendor::batch_norm_forward_training(dims, DType::f32, x.data(), y.data(), weight.data(),
                                                                   bias.data(), running_mean.data(), running_var.data(),
                                                                   mean.data(), invstd.data(), 0.1, 1e-5, nullptr);
  switch (pass) {
    case BatchNormPass::forward_train: time_calls(state, gpu, forward, "GB/s", 3 * kF32 * n); break;
    case BatchNormPass::forward_eval:
      time_calls(state, gpu,
                 vendor::batch_norm_forward_inference(dims, DType::f32, x.data(), y.data(), weight.data(), bias.data(),
                                                      running_mean.data(), running_var.data(), 1e-5, nullptr),
                 "GB/s", 2 * kF32 * n);
      break;
    case BatchNormPass::backward_train:
      forward();
      time_calls(
          state, gpu,
          vendor::batch_norm_backward(dims, DType::f32, x.data(), dy.data(), dx.data(), weight.data(),
                                      grad_weight.data(), grad_bias.data(), mean.data(), invstd.data(), 1e-5, nullptr),
          "GB/s", 5 * kF32 * n);
      break;
  }
}
#endif

// LayerNorm and GroupNorm: `count` values, `stats` saved statistics, `params` affine parameters.
// Forward reads x, weight, bias and writes y, mean, invstd; backward reads dy, x, mean, invstd, weight and
// writes dx, grad_weight, grad_bias.
struct AffineNormSizes {
  int64_t count, stats, params;
};

template <typename Forward, typename Backward>
void bm_affine_norm(benchmark::State& state, Backend backend, AffineNormSizes s, bool backward_pass, Forward forward,
                    Backward backward) {
  Buffer<float> x(backend, random_values(s.count)), dy(backend, random_values(s.count)), y(backend, s.count);
  Buffer<float> weight(backend, random_values(s.params)), bias(backend, random_values(s.params));
  Buffer<float> grad_weight(backend, s.params), grad_bias(backend, s.params);
  Buffer<float> mean(backend, s.stats), invstd(backend, s.stats);
  auto run_forward = [&] {
    forward(backend, y.data(), mean.data(), invstd.data(), x.data(), weight.data(), bias.data());
  };
  if (!backward_pass) {
    time_calls(state, backend, run_forward, "GB/s", kF32 * double(2 * s.count + 2 * s.stats + 2 * s.params));
    return;
  }
  run_forward();
  time_calls(
      state, backend,
      [&] {
        backward(backend, y.data(), grad_weight.data(), grad_bias.data(), dy.data(), x.data(), mean.data(),
                 invstd.data(), weight.data());
      },
      "GB/s", kF32 * double(3 * s.count + 2 * s.stats + 3 * s.params));
}

// SegFormer-B0 stage 1: 128x128 tokens of 32 channels.
constexpr LayerNormDesc kLayerNorm{128 * 128, 32};
// 32 groups on ResNet-50's stage-1 activation (no model of the zoo uses GroupNorm).
constexpr GroupNormDesc kGroupNorm{1, 256, 128 * 128, 32};

void bm_layer_norm(benchmark::State& state, Backend backend, bool backward_pass) {
  const LayerNormDesc d = kLayerNorm;
  bm_affine_norm(
      state, backend, {d.rows * d.cols, d.rows, d.cols}, backward_pass,
      [d](Backend b, float* y, float* mean, float* invstd, const float* x, const float* weight, const float* bias) {
        SE_BENCH_CALL(b, layer_norm_forward<float>, y, mean, invstd, x, weight, bias, d, 1e-6);
      },
      [d](Backend b, float* dx, float* grad_weight, float* grad_bias, const float* dy, const float* x,
          const float* mean, const float* invstd, const float* weight) {
        SE_BENCH_CALL(b, layer_norm_backward<float>, dx, grad_weight, grad_bias, dy, x, mean, invstd, weight, d);
      });
}

void bm_group_norm(benchmark::State& state, Backend backend, bool backward_pass) {
  const GroupNormDesc d = kGroupNorm;
  bm_affine_norm(
      state, backend, {d.n * d.c * d.hw, d.n * d.groups, d.c}, backward_pass,
      [d](Backend b, float* y, float* mean, float* invstd, const float* x, const float* weight, const float* bias) {
        SE_BENCH_CALL(b, group_norm_forward<float>, y, mean, invstd, x, weight, bias, d, 1e-5);
      },
      [d](Backend b, float* dx, float* grad_weight, float* grad_bias, const float* dy, const float* x,
          const float* mean, const float* invstd, const float* weight) {
        SE_BENCH_CALL(b, group_norm_backward<float>, dx, grad_weight, grad_bias, dy, x, mean, invstd, weight, d);
      });
}

// ResNet-50's stem max pool: 64 planes of 256x256, 3x3, stride 2, pad 1.
Pool2dDesc max_pool_desc() {
  Pool2dDesc d;
  d.planes = 64;
  d.in_h = d.in_w = 256;
  d.kernel_h = d.kernel_w = 3;
  d.stride_h = d.stride_w = 2;
  d.pad_h = d.pad_w = 1;
  d.out_h = d.out_w = pool_output_size(256, 3, 2, 1, 1, false);
  return d;
}

// The demo U-Net's third 2x2 pooling (configs/unet.json: 8 images, 64 channels of 16x16): output rows
// narrower than a vector.
Pool2dDesc small_max_pool_desc() {
  Pool2dDesc d;
  d.planes = 8 * 64;
  d.in_h = d.in_w = 16;
  d.kernel_h = d.kernel_w = 2;
  d.stride_h = d.stride_w = 2;
  d.out_h = d.out_w = 8;
  return d;
}

// x read, y and the i64 argmax indices written; backward reads grad_y and the indices and writes grad_x.
double max_pool_bytes(const Pool2dDesc& d) {
  return kF32 * double(d.planes * d.in_h * d.in_w) + (kF32 + 8.0) * double(d.planes * d.out_h * d.out_w);
}

void bm_max_pool(benchmark::State& state, Backend backend, const Pool2dDesc& d, bool backward_pass) {
  const int64_t in = d.planes * d.in_h * d.in_w, out = d.planes * d.out_h * d.out_w;
  Buffer<float> x(backend, random_values(in)), grad_x(backend, in);    // (planes, in_h, in_w)
  Buffer<float> y(backend, out), grad_y(backend, random_values(out));  // (planes, out_h, out_w)
  Buffer<int64_t> indices(backend, out);                               // (planes, out_h, out_w)
  auto forward = [&] { SE_BENCH_CALL(backend, max_pool2d_forward<float>, y.data(), indices.data(), x.data(), d); };
  const double bytes = max_pool_bytes(d);
  if (!backward_pass) {
    time_calls(state, backend, forward, "GB/s", bytes);
    return;
  }
  forward();
  time_calls(
      state, backend,
      [&] { SE_BENCH_CALL(backend, max_pool2d_backward<float>, grad_x.data(), grad_y.data(), indices.data(), d); },
      "GB/s", bytes);
}

#ifdef SEGENGINE_VENDOR_BENCH
// cuDNN's pooling for the work of a pooling benchmark: forward reads x and writes y; the backward reads x,
// y and grad_y and writes grad_x (it finds the maxima again instead of reading indices). `bytes` is the
// benchmark's own count.
void bm_cudnn_pool(benchmark::State& state, const vendor::CudnnPoolArgs& args, bool backward_pass, double bytes) {
  const int64_t in = int64_t{args.x[1]} * args.x[2] * args.x[3], out = int64_t{args.y[1]} * args.y[2] * args.y[3];
  const Backend gpu = Backend::cuda;
  Buffer<float> x(gpu, random_values(in)), grad_x(gpu, in);    // (planes, H, W)
  Buffer<float> y(gpu, out), grad_y(gpu, random_values(out));  // (planes, OH, OW)
  const vendor::Call forward = vendor::pool2d_forward(args, DType::f32, x.data(), y.data(), nullptr);
  if (!backward_pass) {
    time_calls(state, gpu, forward, "GB/s", bytes);
    return;
  }
  forward();
  time_calls(state, gpu,
             vendor::pool2d_backward(args, DType::f32, x.data(), y.data(), grad_y.data(), grad_x.data(), nullptr),
             "GB/s", bytes);
}

// Registers NAME/forward/SHAPE/cudnn and NAME/backward/SHAPE/cudnn when cuDNN pools the same way.
void register_cudnn_pool_directions(const std::string& family, const std::string& shape,
                                    const std::optional<vendor::CudnnPoolArgs>& args, double bytes) {
  if (!args) return;
  for (bool backward : {false, true}) {
    register_vendor(family + (backward ? "/backward/" : "/forward/") + shape, "cudnn",
                    [args = *args, backward, bytes](benchmark::State& s) { bm_cudnn_pool(s, args, backward, bytes); });
  }
}
#endif

// Kernels of the form forward(y, x) and backward(grad_x, grad_y) over (planes, H, W): average pooling,
// adaptive average pooling and resize. Each call reads its input once and writes its output once.
struct PlaneMap {
  int64_t in, out;  // elements of x and y
};

double plane_map_bytes(const PlaneMap& s) {
  return kF32 * double(s.in + s.out);
}

template <typename Forward, typename Backward>
void bm_plane_map(benchmark::State& state, Backend backend, PlaneMap s, bool backward_pass, Forward forward,
                  Backward backward) {
  Buffer<float> x(backend, random_values(s.in)), grad_x(backend, s.in);
  Buffer<float> y(backend, s.out), grad_y(backend, random_values(s.out));
  const double bytes = plane_map_bytes(s);
  if (backward_pass) {
    time_calls(
        state, backend, [&] { backward(backend, grad_x.data(), grad_y.data()); }, "GB/s", bytes);
  } else {
    time_calls(
        state, backend, [&] { forward(backend, y.data(), x.data()); }, "GB/s", bytes);
  }
}

// 2x2, stride 2 on 64 planes of 256x256.
Pool2dDesc avg_pool_desc() {
  Pool2dDesc d;
  d.planes = 64;
  d.in_h = d.in_w = 256;
  d.out_h = d.out_w = 128;
  d.kernel_h = d.kernel_w = d.stride_h = d.stride_w = 2;
  return d;
}

void bm_avg_pool(benchmark::State& state, Backend backend, bool backward_pass) {
  const Pool2dDesc d = avg_pool_desc();
  bm_plane_map(
      state, backend, {d.planes * d.in_h * d.in_w, d.planes * d.out_h * d.out_w}, backward_pass,
      [d](Backend b, float* y, const float* x) { SE_BENCH_CALL(b, avg_pool2d_forward<float>, y, x, d); },
      [d](Backend b, float* gx, const float* gy) { SE_BENCH_CALL(b, avg_pool2d_backward<float>, gx, gy, d); });
}

void bm_adaptive_avg_pool(benchmark::State& state, Backend backend, int64_t bins, bool backward_pass) {
  const AdaptivePool2dDesc d{2048, 64, 64, bins, bins};
  bm_plane_map(
      state, backend, {d.planes * d.in_h * d.in_w, d.planes * d.out_h * d.out_w}, backward_pass,
      [d](Backend b, float* y, const float* x) { SE_BENCH_CALL(b, adaptive_avg_pool2d_forward<float>, y, x, d); },
      [d](Backend b, float* gx, const float* gy) { SE_BENCH_CALL(b, adaptive_avg_pool2d_backward<float>, gx, gy, d); });
}

// 19-class logits at stride 4 (SegFormer-B0, DeepLabV3+) up to 512x512, align_corners false.
void bm_resize(benchmark::State& state, Backend backend, ResizeMode mode, bool backward_pass) {
  ResizeDesc d;
  d.planes = 19;
  d.in_h = d.in_w = 128;
  d.out_h = d.out_w = 512;
  d.mode = mode;
  bm_plane_map(
      state, backend, {d.planes * d.in_h * d.in_w, d.planes * d.out_h * d.out_w}, backward_pass,
      [d](Backend b, float* y, const float* x) { SE_BENCH_CALL(b, resize_forward<float>, y, x, d); },
      [d](Backend b, float* gx, const float* gy) { SE_BENCH_CALL(b, resize_backward<float>, gx, gy, d); });
}

void register_benchmarks() {
  benchmark::AddCustomContext("threads (OpenMP)", std::to_string(omp_get_max_threads()));
  const std::pair<BatchNormPass, const char*> batch_norm_passes[] = {{BatchNormPass::forward_train, "forward_train"},
                                                                     {BatchNormPass::forward_eval, "forward_eval"},
                                                                     {BatchNormPass::backward_train, "backward_train"}};
  for (auto [pass, name] : batch_norm_passes) {
    register_on_backends(std::string("batch_norm/") + name + "/256x128x128",
                         [pass = pass](benchmark::State& s, Backend b) { bm_batch_norm(s, b, pass); });
  }
  register_directions("layer_norm", "16384x32", bm_layer_norm);
  register_directions("group_norm", "256x128x128_g32", bm_group_norm);
  register_directions("max_pool2d", "64x256x256_k3s2p1", [](benchmark::State& s, Backend b, bool backward) {
    bm_max_pool(s, b, max_pool_desc(), backward);
  });
  register_directions("max_pool2d", "512x16x16_k2s2", [](benchmark::State& s, Backend b, bool backward) {
    bm_max_pool(s, b, small_max_pool_desc(), backward);
  });
  register_directions("avg_pool2d", "64x256x256_k2s2", bm_avg_pool);
  for (int64_t bins : {1, 2, 3, 6}) {
    register_directions(
        "adaptive_avg_pool2d", "2048x64x64_to_" + std::to_string(bins),
        [bins](benchmark::State& s, Backend b, bool backward) { bm_adaptive_avg_pool(s, b, bins, backward); });
  }
#ifdef SEGENGINE_VENDOR_BENCH
  for (auto [pass, name] : batch_norm_passes) {
    register_vendor(std::string("batch_norm/") + name + "/256x128x128", "cudnn",
                    [pass = pass](benchmark::State& s) { bm_cudnn_batch_norm(s, pass); });
  }
  const Pool2dDesc max_pool = max_pool_desc(), avg_pool = avg_pool_desc();
  register_cudnn_pool_directions("max_pool2d", "64x256x256_k3s2p1", vendor::cudnn_max_pool_args(max_pool),
                                 max_pool_bytes(max_pool));
  const Pool2dDesc small_max_pool = small_max_pool_desc();
  register_cudnn_pool_directions("max_pool2d", "512x16x16_k2s2", vendor::cudnn_max_pool_args(small_max_pool),
                                 max_pool_bytes(small_max_pool));
  register_cudnn_pool_directions("avg_pool2d", "64x256x256_k2s2", vendor::cudnn_avg_pool_args(avg_pool),
                                 plane_map_bytes({64 * 256 * 256, 64 * 128 * 128}));
  for (int64_t bins : {1, 2}) {  // PSPNet's 3 and 6 bins overlap: no cuDNN pooling does that
    register_cudnn_pool_directions("adaptive_avg_pool2d", "2048x64x64_to_" + std::to_string(bins),
                                   vendor::cudnn_adaptive_avg_pool_args({2048, 64, 64, bins, bins}),
                                   plane_map_bytes({2048 * 64 * 64, 2048 * bins * bins}));
  }
#endif
  for (auto [mode, name] : {std::pair{ResizeMode::bilinear, "bilinear"}, std::pair{ResizeMode::nearest, "nearest"}}) {
    register_directions(
        std::string("resize_") + name, "19x128x128_to_512",
        [mode = mode](benchmark::State& s, Backend b, bool backward) { bm_resize(s, b, mode, backward); });
  }
}

}  // namespace
}  // namespace se::kernels::bench

int main(int argc, char** argv) {
  return se::kernels::bench::run_benchmarks(argc, argv, se::kernels::bench::register_benchmarks);
}
