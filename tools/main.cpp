// segengine: the command-line program. Catches se::Error and turns it into one line on stderr and
// a non-zero exit code; the library itself never exits.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <thread>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "engine/allocator.h"
#include "engine/device.h"
#include "tools/bench_kernels.h"
#include "tools/bench_model.h"
#include "tools/info.h"
#include "tools/train_commands.h"
#include "tools/version.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace {

constexpr const char* kUsage = R"(usage: segengine <command> [options]

commands:
  train CONFIG [--set key=value ...] [--resume CKPT] [--device cpu|cuda[:N]] [--out DIR] [--overwrite]
               [--no-progress]
               train a model: evaluation every N iterations, best/last checkpoints, JSONL and
               TensorBoard logs and PNG curves under DIR (default runs/<config name>)
  eval CONFIG --checkpoint CKPT [--split val|test|train] [--mode whole|slide] [--tta]
               [--weights auto|model|ema] [--set ...] [--device ...] [--out DIR]
               the per-class IoU/Acc/Dice table, metrics.json, confusion.csv and confusion.png
  predict CONFIG --checkpoint CKPT INPUT... --out DIR [--mode whole|slide] [--tta] [--device ...]
               index-PNG masks and colour overlays for images (files or directories)
  devices      report the devices this build sees (CPU, CUDA real or emulated)
  bench kernels [--filter REGEX] [--device cpu|cuda[:N]] [--dtype f32|f16|bf16] [--repeats N]
               [--warmup N] [--json FILE] [--list]
               time every kernel family on the layer shapes of ResNet-50 (OS 8), U-Net and
               SegFormer-B0 at 512x512: median time, GFLOP/s, GB/s, % of the assumed peak
  bench model CONFIG [--set key=value ...] [--input HxW] [--batch N] [--device cpu|cuda[:N]]
               [--iterations N] [--warmup N] [--json FILE] [--train]
               per-layer forward and backward times of a config's model (like `caffe time`), then
               inference and training-step images/s and the training step's peak memory; size from
               the config's "bench": {"input_size": [h, w], "batch_size": n}, else 512x512, batch 2;
               10 iterations after 2 warm-up; --train: the per-layer pass in train mode (else eval)
  info --config FILE [--input HxW] [--batch N] [--device cpu|cuda[:N]] [--no-tree]
               a model's module tree, parameters, MACs and activation memory at an input size
               (default 512x512), from one forward pass
  --version    print the version, the CUDA build kind and the devices
  --help       print this help
)";

std::string format_gib(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f GiB", static_cast<double>(bytes) / (1u << 30));
  return text;
}

std::string device_summary() {
  std::string text = "cpu";
  int count = se::cuda_device_count();
  for (int i = 0; i < count; ++i) text += ", cuda:" + std::to_string(i);
  return text;
}

int print_version() {
  std::cout << "segengine " << SEGENGINE_VERSION << "\n"
            << "cuda build: " << SEGENGINE_CUDA_BUILD_MODE << "\n"
            << "devices: " << device_summary() << "\n";
  return 0;
}

int print_devices() {
  std::cout << "cpu: " << std::thread::hardware_concurrency() << " hardware threads\n";
#ifdef SEGENGINE_HAS_CUDA
  namespace cuda = se::kernels::cuda;
  std::cout << "cuda build: " << cuda::build_kind() << " (runtime " << cuda::runtime_version() << ", driver "
            << cuda::driver_version() << ")\n";
  int count = se::cuda_device_count();
  if (count == 0) std::cout << "cuda: no device found\n";
  for (int i = 0; i < count; ++i) {
    cuda::DeviceInfo info = cuda::device_info(i);
    std::cout << "cuda:" << i << ": " << info.name << (info.emulated ? " (emulated on the CPU)" : "") << ", "
              << format_gib(info.total_memory) << ", compute capability " << info.compute_capability_major << "."
              << info.compute_capability_minor << ", " << info.multiprocessor_count << " multiprocessors\n";
  }
#else
  std::cout << "cuda build: off\n";
#endif
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  try {
    if (args.empty() || args[0] == "--help" || args[0] == "-h") {
      std::cout << kUsage;
      return args.empty() ? 2 : 0;
    }
    // `segengine train --help` and the like: the one usage text covers every command.
    if (std::find(args.begin(), args.end(), "--help") != args.end() ||
        std::find(args.begin(), args.end(), "-h") != args.end()) {
      std::cout << kUsage;
      return 0;
    }
    if (args[0] == "--version") return print_version();
    if (args[0] == "devices") return print_devices();
    if (args[0] == "bench" && args.size() >= 2 && args[1] == "kernels") {
      return se::tools::bench_kernels({args.begin() + 2, args.end()});
    }
    if (args[0] == "bench" && args.size() >= 2 && args[1] == "model") {
      return se::tools::bench_model({args.begin() + 2, args.end()});
    }
    if (args[0] == "info") return se::tools::model_info({args.begin() + 1, args.end()});
    if (args[0] == "train") return se::tools::train_command({args.begin() + 1, args.end()});
    if (args[0] == "eval") return se::tools::eval_command({args.begin() + 1, args.end()});
    if (args[0] == "predict") return se::tools::predict_command({args.begin() + 1, args.end()});
    if (args[0] == "bench") {
      std::cerr << "segengine: bench: expected 'bench kernels' or 'bench model'\n";
      return 2;
    }
    std::cerr << "segengine: unknown command '" << args[0] << "'\n" << kUsage;
    return 2;
  } catch (const se::Error& error) {
    std::cerr << "segengine: error: " << error.what() << "\n";
    return 1;
  } catch (const std::exception& error) {
    std::cerr << "segengine: internal error: " << error.what() << "\n";
    return 3;
  }
}
