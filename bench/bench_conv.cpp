// Conv2d throughput: forward, backward data and backward weight on U-Net layer shapes (3x3, pad 1, N = 1),
// plus a depthwise and a 1x1 layer, and SegFormer's depthwise + GELU forward, in GFLOP/s; each backward
// pass counts the forward's FLOPs. NAME/cpu
// also reports the percentage of the machine's f32 peak (the same peak as bench_gemm). On a real GPU,
// NAME/cuda times our kernels and, in builds with the vendor references, NAME/cudnn cuDNN's call for the
// same work with the algorithm cudnnFind*AlgorithmEx picks (its label).
// Run: build/bench/bench_conv --benchmark_counters_tabular=true
#include <omp.h>

#include <functional>
#include <string>
#include <vector>

#include "bench/kernel_harness.h"
#include "core/machine.h"
#include "kernels/conv.h"

namespace se::kernels::bench {
namespace {

enum class Pass { forward, backward_data, backward_weight };

const char* pass_name(Pass p) {
  switch (p) {
    case Pass::forward: return "forward";
    case Pass::backward_data: return "backward_data";
    case Pass::backward_weight: return "backward_weight";
  }
  return "?";
}

Conv2dDesc conv3x3(int64_t channels, int64_t size) {
  Conv2dDesc d;
  d.c_in = d.c_out = channels;
  d.h = d.w = size;
  d.kernel_h = d.kernel_w = 3;
  d.pad_h = d.pad_w = 1;
  d.has_bias = true;
  return d;
}

// The tensors of one layer on a backend, inputs random, outputs zero.
struct ConvBuffers {
  ConvBuffers(Backend backend, const Conv2dDesc& d)
      : x(backend, random_values(conv2d_x_elements(d))),
        w(backend, random_values(conv2d_w_elements(d))),
        b(backend, random_values(d.c_out)),
        dy(backend, random_values(conv2d_y_elements(d))),
        y(backend, conv2d_y_elements(d)),
        dx(backend, conv2d_x_elements(d)),
        dw(backend, conv2d_w_elements(d)),
        db(backend, d.c_out),
        workspace(backend, static_cast<int64_t>(conv2d_backward_weight_workspace_bytes(d) / sizeof(float)) + 1) {}
  Buffer<float> x, w, b, dy;  // (N, C_in, H, W), (C_out, Cg, KH, KW), (C_out), (N, C_out, OH, OW)
  Buffer<float> y, dx, dw, db;
  Buffer<float> workspace;  // CUDA's split backward weight (kernels/conv.h)
};

void bm_conv(benchmark::State& state, Backend backend, Conv2dDesc d, Pass pass, double peak_gflops) {
  ConvBuffers t(backend, d);
  std::function<void()> call;
  switch (pass) {
    case Pass::forward:
      call = [&] { SE_BENCH_CALL(backend, conv2d_forward, d, t.x.data(), t.w.data(), t.b.data(), t.y.data()); };
      break;
    case Pass::backward_data:
      call = [&] { SE_BENCH_CALL(backend, conv2d_backward_data, d, t.dy.data(), t.w.data(), t.dx.data()); };
      break;
    case Pass::backward_weight:
      call = [&] {
        SE_BENCH_CALL(backend, conv2d_backward_weight, d, t.x.data(), t.dy.data(), t.dw.data(), t.db.data(),
                      t.workspace.data());
      };
      break;
  }
  time_calls(state, backend, call, "GFLOP/s", conv2d_flops(d));
  if (backend == Backend::cpu) {
    state.counters["%peak"] =
        benchmark::Counter(conv2d_flops(d) * 1e-9 / peak_gflops * 100.0, benchmark::Counter::kIsIterationInvariantRate);
  }
}

#ifdef SEGENGINE_VENDOR_BENCH
// cuDNN for the same pass: forward + cudnnAddTensor (the bias), backward data, backward filter +
// cudnnConvolutionBackwardBias.
void bm_cudnn_conv(benchmark::State& state, Conv2dDesc d, Pass pass) {
  ConvBuffers t(Backend::cuda, d);
  const vendor::CudnnConvArgs args = vendor::cudnn_conv_args(d).value();
  const vendor::Call call =
      pass == Pass::forward ? vendor::conv2d_forward(args, t.x.data(), t.w.data(), t.b.data(), t.y.data(), nullptr)
      : pass == Pass::backward_data
          ? vendor::conv2d_backward_data(args, t.dy.data(), t.w.data(), t.dx.data(), nullptr)
          : vendor::conv2d_backward_weight(args, t.x.data(), t.dy.data(), t.dw.data(), t.db.data(), nullptr);
  state.SetLabel(call.description());
  time_calls(state, Backend::cuda, call, "GFLOP/s", conv2d_flops(d));
}
#endif

void register_benchmarks() {
  const int threads = omp_get_max_threads();
  const double peak = machine::cpu_f32_peak_gflops(threads);
  benchmark::AddCustomContext("threads (OpenMP)", std::to_string(threads));
  benchmark::AddCustomContext("f32 peak GFLOP/s", machine::cpu_f32_peak_description(threads));

  // U-Net's first layer reads the 3 image channels: K = 27, a regime of its own (packing, not FMAs).
  Conv2dDesc first_layer = conv3x3(64, 512);
  first_layer.c_in = 3;
  std::vector<std::pair<std::string, Conv2dDesc>> shapes = {
      {"unet3x3_3to64ch_512", first_layer},
      {"unet3x3_64ch_256", conv3x3(64, 256)},
      {"unet3x3_128ch_128", conv3x3(128, 128)},
      {"unet3x3_256ch_64", conv3x3(256, 64)},
      {"unet3x3_512ch_32", conv3x3(512, 32)},
  };
  // The bottleneck's widening layer: 4608 x 1024 weights over only 1024 pixels.
  Conv2dDesc bottleneck = conv3x3(1024, 32);
  bottleneck.c_in = 512;
  shapes.emplace_back("unet3x3_512to1024ch_32", bottleneck);
  // DeepLab at output stride 8 on a 512 x 512 image: layer4's dilated 3x3 (rate 4) and an ASPP branch
  // (rate 12), the heaviest convs of its training step.
  Conv2dDesc dilated = conv3x3(512, 64);
  dilated.pad_h = dilated.pad_w = dilated.dilation_h = dilated.dilation_w = 4;
  shapes.emplace_back("resnet_dilated3x3_d4_512ch_64", dilated);
  Conv2dDesc aspp = conv3x3(256, 64);
  aspp.c_in = 2048;
  aspp.pad_h = aspp.pad_w = aspp.dilation_h = aspp.dilation_w = 12;
  shapes.emplace_back("deeplab_aspp3x3_d12_2048to256ch_64", aspp);
  // The demo's U-Net (configs/unet.json: base width 16, 64 x 64 images, batch 8): small planes, taken
  // several images per GEMM. Its encoder's first convs double the channels after each pooling (down to
  // 4 x 4 maps), its second ones keep them; its decoder's read the concatenated skip and upsampled maps.
  struct DemoConv {
    int64_t c_in, c_out, size;
  };
  for (const DemoConv& c : {DemoConv{16, 32, 32}, {64, 128, 8}, {128, 256, 4}, {16, 16, 64}, {64, 64, 16},
                            {256, 256, 4}, {32, 16, 64}, {64, 32, 32}, {128, 64, 16}, {256, 128, 8}}) {
    Conv2dDesc demo = conv3x3(c.c_out, c.size);
    demo.n = 8;
    demo.c_in = c.c_in;
    shapes.emplace_back("demo_unet3x3_" + std::to_string(c.c_in) + "to" + std::to_string(c.c_out) + "ch_" +
                            std::to_string(c.size) + "_n8",
                        demo);
  }
  Conv2dDesc depthwise = conv3x3(256, 64);
  depthwise.groups = 256;
  shapes.emplace_back("depthwise3x3_256ch_64", depthwise);
  Conv2dDesc pointwise = conv3x3(256, 64);
  pointwise.kernel_h = pointwise.kernel_w = 1;
  pointwise.pad_h = pointwise.pad_w = 0;
  shapes.emplace_back("pointwise_256ch_64", pointwise);

  for (const auto& [name, d] : shapes) {
    for (Pass p : {Pass::forward, Pass::backward_data, Pass::backward_weight}) {
      const std::string benchmark_name = "conv2d/" + std::string(pass_name(p)) + "/" + name;
      register_on_backends(benchmark_name,
                           [d = d, p, peak](benchmark::State& s, Backend b) { bm_conv(s, b, d, p, peak); });
#ifdef SEGENGINE_VENDOR_BENCH
      register_vendor(benchmark_name, "cudnn", [d = d, p](benchmark::State& s) { bm_cudnn_conv(s, d, p); });
#endif
    }
  }
  // SegFormer-B0's Mix-FFN at stage 1: depthwise 3x3 over 128 hidden channels, the GELU fused into the
  // forward's epilogue (as at inference; under autograd the GELU runs unfused). cuDNN has no exact GELU.
  Conv2dDesc mix_ffn = conv3x3(128, 128);
  mix_ffn.groups = 128;
  mix_ffn.activation = ConvActivation::gelu;
  register_on_backends(
      "conv2d/forward_gelu/segformer_dw3x3_128ch_128",
      [mix_ffn, peak](benchmark::State& s, Backend b) { bm_conv(s, b, mix_ffn, Pass::forward, peak); });
}

}  // namespace
}  // namespace se::kernels::bench

int main(int argc, char** argv) {
  return se::kernels::bench::run_benchmarks(argc, argv, se::kernels::bench::register_benchmarks);
}
