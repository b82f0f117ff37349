// `segengine bench kernels`: options, the driver that times the selected cases, the table and the JSON
// report. The cases (one kernel entry point each, on a layer shape of ResNet-50 at output stride 8, the
// classic U-Net or SegFormer-B0 at 512x512, batch 1) are in bench_cases_*.cpp, see bench_kernel_cases.h.
// Time: the median of the repeats after warm-up; on CUDA measured with events on the stream, on the CPU
// with the host clock.
#include "tools/bench_kernels.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <string>
#include <thread>

#include "core/machine.h"
#include "engine/stream.h"
#include "tools/bench_kernel_cases.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace se::tools {

namespace {

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
      try {
        options.filter_regex = std::regex(options.filter);
      } catch (const std::regex_error& e) {
        SE_THROW("bench kernels: --filter '", options.filter, "' is not a valid regular expression (", e.what(), ")");
      }
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

double time_ms(const Run& run, const Options& o) {
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
          << ", \"gflops\": " << (c.flops > 0 ? c.flops / ms * 1e-6 : 0.0) << ", \"gbps\": " << c.bytes / ms * 1e-6
          << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    out << "  ]\n}\n";
    SE_CHECK(out.good(), "bench kernels: writing '", tmp, "' failed");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

int bench_kernels(const std::vector<std::string_view>& args) {
  const Options o = parse_options(args);
  std::vector<Case> all;
  add_compute_cases(all, o);
  add_memory_cases(all, o);
  add_loss_cases(all, o);

  std::vector<const Case*> selected;
  for (const Case& c : all) {
    if (o.selects(c.name, c.model)) selected.push_back(&c);
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
  std::printf("%-30s %-13s %-52s %10s %9s %8s %7s\n", "kernel", "model", "shape", "median ms", "GFLOP/s", "GB/s",
              "% peak");
  std::vector<std::pair<const Case*, double>> rows;
  for (const Case* c : selected) {
    const Run run = c->prepare();
    for (int i = 0; i < o.warmup; ++i) time_ms(run, o);
    std::vector<double> times;
    for (int i = 0; i < o.repeats; ++i) times.push_back(time_ms(run, o));
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    const double ms = times[times.size() / 2];
    rows.emplace_back(c, ms);
    const double gflops = c->flops / ms * 1e-6;
    char peak[16] = "";
    if (c->flops > 0 && peak_gflops > 0) std::snprintf(peak, sizeof(peak), "%.0f%%", 100.0 * gflops / peak_gflops);
    std::printf("%-30s %-13s %-52s %10.3f %9s %8.1f %7s\n", c->name.c_str(), c->model.c_str(), c->shape.c_str(), ms,
                c->flops > 0 ? std::to_string(static_cast<int>(gflops + 0.5)).c_str() : "-", c->bytes / ms * 1e-6,
                peak);
    std::fflush(stdout);
  }
  if (!o.json_path.empty()) write_json(o.json_path, o, rows);
  return 0;
}

}  // namespace se::tools
