// `segengine bench kernels`: each case calls one kernel entry point directly (outputs allocated once,
// outside the timing) on a layer shape of ResNet-50 (output stride 8), the classic U-Net or
// SegFormer-B0 at 512x512, batch 1 (the losses, sort and cumsum on 19-class Cityscapes-sized logits). Time: the median
// of the repeats after warm-up; on CUDA measured with events on the stream, on the CPU with the host clock.
#include "tools/bench_kernels.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <regex>
#include <string>
#include <thread>

#include "core/machine.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/conv.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/loss.h"
#include "kernels/reduce.h"
#include "kernels/softmax.h"
#include "kernels/sort.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace se::tools {

namespace {

struct Case {
  std::string name;   // "family/direction", matched by --filter
  std::string model;  // where the shape comes from
  std::string shape;
  double flops = 0;   // per run; 0 for memory-bound kernels
  double bytes = 0;   // moved per run (reads + writes), for GB/s
  // Allocates the case's tensors (only for the selected cases) and returns the timed call.
  std::function<std::function<void()>()> prepare;
};

struct Options {
  std::string filter = ".*";
  Device device = Device::cpu();
  DType dtype = DType::f32;
  std::string json_path;
  int repeats = 5;
  int warmup = 1;
  bool list = false;
};

constexpr const char* kUsage =
    "usage: segengine bench kernels [--filter REGEX] [--device cpu|cuda[:N]] [--dtype f32|f16|bf16]\n"
    "                               [--repeats N] [--warmup N] [--json FILE] [--list]\n";

Options parse_options(const std::vector<std::string_view>& args) {
  Options options;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&](std::string_view flag) -> std::string {
      SE_CHECK(i + 1 < args.size(), "bench kernels: ", flag, " needs a value\n", kUsage);
      return std::string(args[++i]);
    };
    auto count = [&](std::string_view flag) {
      std::string text = value(flag);
      int n = 0;
      try {
        n = std::stoi(text);
      } catch (const std::exception&) {
        n = -1;
      }
      SE_CHECK(n >= 0 && n <= 1000, "bench kernels: ", flag, " '", text, "' (expected a number from 0 to 1000)");
      return n;
    };
    if (args[i] == "--filter") {
      options.filter = value("--filter");
    } else if (args[i] == "--device") {
      options.device = Device::parse(value("--device"));
    } else if (args[i] == "--dtype") {
      options.dtype = parse_dtype(value("--dtype"));
      SE_CHECK(options.dtype == DType::f32 || options.dtype == DType::f16 || options.dtype == DType::bf16,
               "bench kernels: --dtype ", options.dtype, " (expected f32, f16 or bf16)");
    } else if (args[i] == "--repeats") {
      options.repeats = std::max(1, count("--repeats"));
    } else if (args[i] == "--warmup") {
      options.warmup = count("--warmup");
    } else if (args[i] == "--json") {
      options.json_path = value("--json");
    } else if (args[i] == "--list") {
      options.list = true;
    } else {
      SE_THROW("bench kernels: unknown option '", args[i], "'\n", kUsage);
    }
  }
  check_device(options.device, "bench kernels");
  return options;
}

struct ConvLayer {
  const char* model;
  int64_t c_in, size, c_out, kernel, stride, pad, dilation, groups;
};

// Layer shapes at a 512x512 input, batch 1.
const std::vector<ConvLayer>& conv_layers() {
  static const std::vector<ConvLayer> layers = {
      {"unet", 3, 512, 64, 3, 1, 1, 1, 1},         {"unet", 64, 512, 64, 3, 1, 1, 1, 1},
      {"unet", 128, 256, 128, 3, 1, 1, 1, 1},      {"unet", 256, 128, 256, 3, 1, 1, 1, 1},
      {"unet", 512, 64, 512, 3, 1, 1, 1, 1},       {"unet", 512, 32, 1024, 3, 1, 1, 1, 1},
      {"resnet50-os8", 3, 512, 64, 7, 2, 3, 1, 1}, {"resnet50-os8", 256, 128, 64, 1, 1, 0, 1, 1},
      {"resnet50-os8", 64, 128, 64, 3, 1, 1, 1, 1}, {"resnet50-os8", 256, 64, 256, 3, 1, 2, 2, 1},
      {"resnet50-os8", 512, 64, 512, 3, 1, 4, 4, 1}, {"resnet50-os8", 2048, 64, 256, 3, 1, 12, 12, 1},
      {"segformer-b0", 3, 512, 32, 7, 4, 3, 1, 1}, {"segformer-b0", 128, 128, 128, 3, 1, 1, 1, 128},
  };
  return layers;
}

Tensor random_tensor(const Shape& shape, const Options& o) { return randn(shape, {o.dtype, o.device}); }

void add_conv_cases(std::vector<Case>& cases, const Options& o) {
  for (const ConvLayer& layer : conv_layers()) {
    kernels::Conv2dDesc d;
    d.n = 1;
    d.c_in = layer.c_in;
    d.h = d.w = layer.size;
    d.c_out = layer.c_out;
    d.kernel_h = d.kernel_w = layer.kernel;
    d.stride_h = d.stride_w = layer.stride;
    d.pad_h = d.pad_w = layer.pad;
    d.dilation_h = d.dilation_w = layer.dilation;
    d.groups = layer.groups;
    d.has_bias = true;
    d.dtype = o.dtype;
    kernels::validate_conv2d(d);
    char shape[160];
    std::snprintf(shape, sizeof(shape), "%lldx%lldx%lld -> %lld, k%lld s%lld p%lld d%lld g%lld",
                  static_cast<long long>(d.c_in), static_cast<long long>(d.h), static_cast<long long>(d.w),
                  static_cast<long long>(d.c_out), static_cast<long long>(d.kernel_h),
                  static_cast<long long>(d.stride_h), static_cast<long long>(d.pad_h),
                  static_cast<long long>(d.dilation_h), static_cast<long long>(d.groups));
    const double flops = kernels::conv2d_flops(d);
    const double elem = static_cast<double>(dtype_size(o.dtype));
    const double bytes =
        elem * static_cast<double>(kernels::conv2d_x_elements(d) + kernels::conv2d_w_elements(d) +
                                   kernels::conv2d_y_elements(d));
    const Device device = o.device;
    auto x = [=] { return random_tensor({d.n, d.c_in, d.h, d.w}, o); };
    auto w = [=] { return random_tensor({d.c_out, d.c_in / d.groups, d.kernel_h, d.kernel_w}, o); };
    auto y = [=] { return random_tensor({d.n, d.c_out, kernels::conv2d_output_h(d), kernels::conv2d_output_w(d)}, o); };
    cases.push_back({"conv2d/forward", layer.model, shape, flops, bytes, [=] {
                       Tensor tx = x(), tw = w(), tb = random_tensor({d.c_out}, o), ty = y();
                       return std::function<void()>([=] {
                         SE_DISPATCH(device, conv2d_forward, d, tx.data_ptr(), tw.data_ptr(), tb.data_ptr(),
                                     ty.data_ptr());
                       });
                     }});
    cases.push_back({"conv2d/backward_data", layer.model, shape, flops, bytes, [=] {
                       Tensor tdy = y(), tw = w(), tdx = x();
                       return std::function<void()>([=] {
                         SE_DISPATCH(device, conv2d_backward_data, d, tdy.data_ptr(), tw.data_ptr(), tdx.data_ptr());
                       });
                     }});
    cases.push_back({"conv2d/backward_weight", layer.model, shape, flops, bytes, [=] {
                       Tensor tx = x(), tdy = y(), tdw = w(), tdb = random_tensor({d.c_out}, o);
                       return std::function<void()>([=] {
                         SE_DISPATCH(device, conv2d_backward_weight, d, tx.data_ptr(), tdy.data_ptr(), tdw.data_ptr(),
                                     tdb.data_ptr());
                       });
                     }});
  }
}

void add_gemm_cases(std::vector<Case>& cases, const Options& o) {
  struct GemmShape {
    const char* model;
    const char* what;
    int64_t m, n, k;
  };
  const GemmShape shapes[] = {
      {"segformer-b0", "mix-ffn fc1 (128x128 tokens)", 16384, 128, 32},
      {"segformer-b0", "decoder linear fuse", 16384, 256, 1024},
      {"segformer-b0", "attention q k^T (stage 1)", 16384, 256, 32},
      {"resnet50-os8", "1x1 conv 1024->256 at 64x64 as GEMM", 256, 4096, 1024},
      {"square", "1024^3", 1024, 1024, 1024},
  };
  for (const GemmShape& s : shapes) {
    kernels::GemmDesc d;
    d.m = s.m;
    d.n = s.n;
    d.k = s.k;
    d.lda = s.k;
    d.ldb = s.n;
    d.ldc = s.n;
    d.dtype = o.dtype;
    const double elem = static_cast<double>(dtype_size(o.dtype));
    const Device device = o.device;
    cases.push_back({"gemm/nn", s.model,
                     std::string(s.what) + ": " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                         std::to_string(s.k),
                     2.0 * s.m * s.n * s.k, elem * static_cast<double>(s.m * s.k + s.k * s.n + s.m * s.n), [=] {
                       Tensor a = random_tensor({s.m, s.k}, o), b = random_tensor({s.k, s.n}, o);
                       Tensor c = empty({s.m, s.n}, {o.dtype, o.device});
                       return std::function<void()>(
                           [=] { SE_DISPATCH(device, gemm, d, a.data_ptr(), b.data_ptr(), c.data_ptr()); });
                     }});
  }
}

kernels::StridedLayout flat_layout(int64_t n) {
  kernels::StridedLayout layout;
  layout.ndim = 1;
  layout.sizes[0] = n;
  layout.strides[0] = 1;
  return layout;
}

void add_memory_bound_cases(std::vector<Case>& cases, const Options& o) {
  const Device device = o.device;
  const double elem = static_cast<double>(dtype_size(o.dtype));
  // U-Net's first activation: 64 x 512 x 512.
  const int64_t n = 64 * 512 * 512;
  const kernels::BinaryDesc add_desc{kernels::BinaryOp::add, o.dtype, flat_layout(n), flat_layout(n)};
  cases.push_back({"elementwise/add", "unet", "64x512x512", 0, 3 * elem * n, [=] {
                     Tensor a = random_tensor({n}, o), b = random_tensor({n}, o), out = empty({n}, {o.dtype, o.device});
                     return std::function<void()>(
                         [=] { SE_DISPATCH(device, binary, out.data_ptr(), a.data_ptr(), b.data_ptr(), add_desc); });
                   }});
  for (auto [op, name] : {std::pair{kernels::UnaryOp::relu, "elementwise/relu"},
                          std::pair{kernels::UnaryOp::gelu, "elementwise/gelu"}}) {
    const kernels::UnaryDesc desc{op, o.dtype, flat_layout(n), {}};
    cases.push_back({name, "unet", "64x512x512", 0, 2 * elem * n, [=] {
                       Tensor a = random_tensor({n}, o), out = empty({n}, {o.dtype, o.device});
                       return std::function<void()>([=] { SE_DISPATCH(device, unary, out.data_ptr(), a.data_ptr(), desc); });
                     }});
  }
  dispatch_floating(o.dtype, "bench kernels", [&](auto tag) {
    using T = typename decltype(tag)::type;
    // SegFormer-B0 stage-1 attention scores: 16384 queries x 256 keys, softmax over the keys.
    const kernels::SoftmaxDesc softmax_desc{16384, 256, 1};
    cases.push_back({"softmax/forward", "segformer-b0", "16384x256 over 256", 0, 2 * elem * 16384 * 256, [=] {
                       Tensor scores = random_tensor({16384, 256}, o), probs = empty_like(scores);
                       return std::function<void()>([=] {
                         SE_DISPATCH(device, softmax_forward<T>, static_cast<T*>(probs.data_ptr()),
                                     static_cast<const T*>(scores.data_ptr()), softmax_desc);
                       });
                     }});
    // Sums over an activation: each channel's plane (a contiguous row), and across channels per
    // pixel (a strided reduction, as batch-norm statistics of channels-last data need).
    const kernels::ReduceDesc rows{64, 512 * 512, 1, 1};
    const kernels::ReduceDesc across{1, 64, 512 * 512, 1};
    cases.push_back({"reduce/sum_rows", "unet", "64 rows of 512x512", 0, elem * n, [=] {
                       Tensor a = random_tensor({n}, o), out = empty({64}, {o.dtype, o.device});
                       return std::function<void()>([=] {
                         SE_DISPATCH(device, reduce<T>, kernels::ReduceOp::sum, static_cast<T*>(out.data_ptr()),
                                     static_cast<const T*>(a.data_ptr()), rows);
                       });
                     }});
    cases.push_back({"reduce/sum_across", "unet", "64 channels per pixel of 512x512", 0, elem * n, [=] {
                       Tensor a = random_tensor({n}, o), out = empty({512 * 512}, {o.dtype, o.device});
                       return std::function<void()>([=] {
                         SE_DISPATCH(device, reduce<T>, kernels::ReduceOp::sum, static_cast<T*>(out.data_ptr()),
                                     static_cast<const T*>(a.data_ptr()), across);
                       });
                     }});
  });
}

// U-Net's transposed-conv upsampling (k2 s2, C -> C / 2) at 512x512 input.
void add_conv_transpose_cases(std::vector<Case>& cases, const Options& o) {
  for (int64_t size : {32, 64, 128, 256}) {
    kernels::ConvTranspose2dDesc d;
    d.c_in = 64 * 512 / size;
    d.c_out = d.c_in / 2;
    d.h = d.w = size;
    d.kernel_h = d.kernel_w = d.stride_h = d.stride_w = 2;
    d.has_bias = true;
    d.dtype = o.dtype;
    kernels::validate_conv_transpose2d(d);
    const std::string shape = std::to_string(d.c_in) + "x" + std::to_string(size) + "x" + std::to_string(size) +
                              " -> " + std::to_string(d.c_out) + "x" + std::to_string(2 * size) + "x" +
                              std::to_string(2 * size) + ", k2 s2";
    const double flops = 2.0 * static_cast<double>(kernels::conv_transpose2d_x_elements(d) * d.c_out * 4);
    const double bytes =
        static_cast<double>(dtype_size(o.dtype)) *
        static_cast<double>(kernels::conv_transpose2d_x_elements(d) + kernels::conv_transpose2d_w_elements(d) +
                            kernels::conv_transpose2d_y_elements(d));
    const Device device = o.device;
    auto x = [=] { return random_tensor({1, d.c_in, d.h, d.w}, o); };
    auto w = [=] { return random_tensor({d.c_in, d.c_out, 2, 2}, o); };
    auto y = [=] { return random_tensor({1, d.c_out, 2 * d.h, 2 * d.w}, o); };
    cases.push_back({"conv_transpose2d/forward", "unet", shape, flops, bytes, [=] {
                       Tensor tx = x(), tw = w(), tb = random_tensor({d.c_out}, o), ty = y();
                       return std::function<void()>([=] {
                         SE_DISPATCH(device, conv_transpose2d_forward, d, tx.data_ptr(), tw.data_ptr(), tb.data_ptr(),
                                     ty.data_ptr());
                       });
                     }});
    cases.push_back({"conv_transpose2d/backward_data", "unet", shape, flops, bytes, [=] {
                       Tensor tdy = y(), tw = w(), tdx = x();
                       return std::function<void()>([=] {
                         SE_DISPATCH(device, conv_transpose2d_backward_data, d, tdy.data_ptr(), tw.data_ptr(),
                                     tdx.data_ptr());
                       });
                     }});
    cases.push_back({"conv_transpose2d/backward_weight", "unet", shape, flops, bytes, [=] {
                       Tensor tx = x(), tdy = y(), tdw = w(), tdb = random_tensor({d.c_out}, o);
                       return std::function<void()>([=] {
                         SE_DISPATCH(device, conv_transpose2d_backward_weight, d, tx.data_ptr(), tdy.data_ptr(),
                                     tdw.data_ptr(), tdb.data_ptr());
                       });
                     }});
  }
}

// The segmentation losses on Cityscapes-sized logits (19 classes at 512x512): the fused focal kernels, and
// the sort and cumsum that Lovasz-softmax runs over 19 rows of every pixel's error (f32 only).
void add_sort_and_loss_cases(std::vector<Case>& cases, const Options& o) {
  const Device device = o.device;
  const int64_t classes = 19, pixels = 512 * 512;
  const double elem = static_cast<double>(dtype_size(o.dtype));
  if (o.dtype == DType::f32) {
    for (bool descending : {false, true}) {
      const kernels::SortDesc d{classes, pixels, descending, DType::f32};
      cases.push_back(
          {descending ? "sort/descending" : "sort/ascending", "lovasz", "19 rows of 512x512", 0,
           static_cast<double>(classes * pixels) * (2 * 4 + 8), [=] {
             Tensor x = random_tensor({classes, pixels}, o), values = empty_like(x);
             Tensor indices = empty({classes, pixels}, {DType::i64, device});
             Tensor workspace;
             if (device.is_cuda()) {
               workspace = empty({static_cast<int64_t>(kernels::sort_workspace_bytes(d))}, {DType::u8, device});
             }
             return std::function<void()>([=] {
               SE_DISPATCH(device, sort, d, x.data_ptr(), values.data_ptr(), indices.data<int64_t>(),
                           workspace.defined() ? workspace.data_ptr() : nullptr);
             });
           }});
    }
    const kernels::CumsumDesc cumsum_desc{1, pixels, 1, false, DType::f32};
    cases.push_back({"cumsum/rows", "lovasz", "19 rows of 512x512", 0, 2.0 * 4 * classes * pixels, [=] {
                       Tensor x = random_tensor({classes, pixels}, o), y = empty_like(x);
                       kernels::CumsumDesc desc = cumsum_desc;
                       desc.outer = classes;
                       return std::function<void()>(
                           [=] { SE_DISPATCH(device, cumsum, desc, x.data_ptr(), y.data_ptr()); });
                     }});
  }
  dispatch_floating(o.dtype, "bench kernels", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = kernels::loss_compute_t<T>;
    kernels::FocalLossDesc d;
    d.classes = classes;
    d.spatial = pixels;
    d.ignore_index = 255;
    d.gamma = 2.0;
    const double bytes = elem * static_cast<double>(classes * pixels) + 24.0 * pixels;
    auto inputs = [=] {
      Tensor logits = random_tensor({1, classes, 512, 512}, o);
      Tensor target = clamp(mul(rand({1, 512, 512}, {DType::f32, device}), static_cast<double>(classes)), 0.0,
                            static_cast<double>(classes - 1))
                          .to(DType::i64);
      return std::pair{logits, target};
    };
    cases.push_back({"focal_loss/forward", "cityscapes", "19x512x512", 0, bytes, [=] {
                       auto [logits, target] = inputs();
                       Tensor loss = empty({pixels}, {o.dtype, device}), valid = empty_like(loss);
                       Tensor lse = empty({pixels}, {o.dtype == DType::f64 ? DType::f64 : DType::f32, device});
                       Tensor bad = full({1}, 255, {DType::i64, device});
                       return std::function<void()>([=] {
                         SE_DISPATCH(device, focal_loss_forward<T>, static_cast<T*>(loss.data_ptr()),
                                     static_cast<T*>(valid.data_ptr()), static_cast<C*>(lse.data_ptr()),
                                     static_cast<int64_t*>(bad.data_ptr()), static_cast<const T*>(logits.data_ptr()),
                                     static_cast<const int64_t*>(target.data_ptr()), nullptr, d);
                       });
                     }});
    cases.push_back({"focal_loss/backward", "cityscapes", "19x512x512", 0, 2 * bytes, [=] {
                       auto [logits, target] = inputs();
                       Tensor grad = empty_like(logits), one = ones({1}, {o.dtype, device});
                       // The work does not depend on the saved log-sum-exp's values.
                       Tensor lse = zeros({pixels}, {o.dtype == DType::f64 ? DType::f64 : DType::f32, device});
                       return std::function<void()>([=] {
                         SE_DISPATCH(device, focal_loss_backward<T>, static_cast<T*>(grad.data_ptr()),
                                     static_cast<const T*>(one.data_ptr()), 0, static_cast<const T*>(logits.data_ptr()),
                                     static_cast<const C*>(lse.data_ptr()),
                                     static_cast<const int64_t*>(target.data_ptr()), nullptr, d);
                       });
                     }});
  });
}

double time_ms(const std::function<void()>& run, const Options& o) {
  if (o.device.is_cuda()) {
    Event start(o.device), end(o.device);
    Stream stream = current_stream(o.device);
    start.record(stream);
    run();
    end.record(stream);
    end.synchronize();
    return start.elapsed_ms(end);
  }
  auto begin = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count();
}

std::string peak_description(const Options& o) {
  if (o.device.is_cpu()) {
    return "f32 " + machine::cpu_f32_peak_description(static_cast<int>(std::thread::hardware_concurrency()));
  }
#ifdef SEGENGINE_HAS_CUDA
  kernels::cuda::DeviceInfo info = kernels::cuda::device_info(o.device.index);
  if (info.emulated) return "none: " + info.name + " runs on the CPU (timings are not GPU timings)";
  return "not known for " + info.name + " (percentages omitted)";
#else
  return "";
#endif
}

std::string json_escape(const std::string& text) {
  std::string out;
  for (char ch : text) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out;
}

// Written to FILE.tmp and renamed, so an existing FILE is never left half-written.
void write_json(const std::string& path, const Options& o, const std::vector<std::pair<const Case*, double>>& rows) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    SE_CHECK(out.good(), "bench kernels: cannot write '", tmp, "'");
    out << "{\n  \"device\": \"" << o.device.str() << "\",\n  \"dtype\": \"" << dtype_name(o.dtype)
        << "\",\n  \"repeats\": " << o.repeats << ",\n  \"peak\": \"" << json_escape(peak_description(o))
        << "\",\n  \"results\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Case& c = *rows[i].first;
      const double ms = rows[i].second;
      out << "    {\"kernel\": \"" << c.name << "\", \"model\": \"" << c.model << "\", \"shape\": \""
          << json_escape(c.shape) << "\", \"median_ms\": " << ms
          << ", \"gflops\": " << (c.flops > 0 ? c.flops / ms * 1e-6 : 0.0)
          << ", \"gbps\": " << c.bytes / ms * 1e-6 << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    out << "  ]\n}\n";
    SE_CHECK(out.good(), "bench kernels: writing '", tmp, "' failed");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

int bench_kernels(const std::vector<std::string_view>& args) {
  const Options o = parse_options(args);
  std::regex filter;
  try {
    filter = std::regex(o.filter);
  } catch (const std::regex_error& e) {
    SE_THROW("bench kernels: --filter '", o.filter, "' is not a valid regular expression (", e.what(), ")");
  }
  std::vector<Case> all;
  add_conv_cases(all, o);
  add_gemm_cases(all, o);
  add_memory_bound_cases(all, o);
  add_conv_transpose_cases(all, o);
  add_sort_and_loss_cases(all, o);

  std::vector<const Case*> selected;
  for (const Case& c : all) {
    if (std::regex_search(c.name + " " + c.model, filter)) selected.push_back(&c);
  }
  if (o.list) {
    for (const Case* c : selected) std::cout << c->name << "  " << c->model << "  " << c->shape << "\n";
    return 0;
  }
  SE_CHECK(!selected.empty(), "bench kernels: --filter '", o.filter, "' matches none of the ", all.size(), " cases");

  const double peak_gflops = o.device.is_cpu() && o.dtype == DType::f32
                                 ? machine::cpu_f32_peak_gflops(static_cast<int>(std::thread::hardware_concurrency()))
                                 : 0.0;
  std::printf("device %s, dtype %s, median of %d after %d warm-up\npeak: %s\n\n", o.device.str().c_str(),
              std::string(dtype_name(o.dtype)).c_str(), o.repeats, o.warmup, peak_description(o).c_str());
  std::printf("%-24s %-13s %-52s %10s %9s %8s %7s\n", "kernel", "model", "shape", "median ms", "GFLOP/s", "GB/s",
              "% peak");
  std::vector<std::pair<const Case*, double>> rows;
  for (const Case* c : selected) {
    const std::function<void()> run = c->prepare();
    for (int i = 0; i < o.warmup; ++i) time_ms(run, o);
    std::vector<double> times;
    for (int i = 0; i < o.repeats; ++i) times.push_back(time_ms(run, o));
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    const double ms = times[times.size() / 2];
    rows.emplace_back(c, ms);
    const double gflops = c->flops / ms * 1e-6;
    char peak[16] = "";
    if (c->flops > 0 && peak_gflops > 0) std::snprintf(peak, sizeof(peak), "%.0f%%", 100.0 * gflops / peak_gflops);
    std::printf("%-24s %-13s %-52s %10.3f %9s %8.1f %7s\n", c->name.c_str(), c->model.c_str(), c->shape.c_str(), ms,
                c->flops > 0 ? std::to_string(static_cast<int>(gflops + 0.5)).c_str() : "-", c->bytes / ms * 1e-6,
                peak);
    std::fflush(stdout);
  }
  if (!o.json_path.empty()) write_json(o.json_path, o, rows);
  return 0;
}

}  // namespace se::tools
