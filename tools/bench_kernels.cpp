// `segengine bench kernels`: options, the driver that times the selected cases and the report (table and
// JSON, tools/bench_report.h). The cases (one kernel entry point each, on a layer shape of ResNet-50 at
// output stride 8, the classic U-Net or SegFormer-B0 at 512x512, batch 1) are in bench_cases_*.cpp, see
// bench_kernel_cases.h. Time: the median of the repeats after warm-up; on CUDA measured with events on the
// stream, on the CPU with the host clock. On a GPU, in builds with the vendor references
// (SEGENGINE_VENDOR_BENCH), a case with a cuDNN/cuBLAS equivalent also runs that on the same inputs: its
// output is checked against ours, then it is timed the same way (tools/bench_vendor.h).
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
#include "tools/bench_report.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif
#ifdef SEGENGINE_VENDOR_BENCH
#include "tools/bench_vendor.h"
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
#ifdef SEGENGINE_VENDOR_BENCH
  // The vendor build is the real CUDA build: its CUDA devices are GPUs.
  options.vendor = options.device.is_cuda();
#endif
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

// The vendor libraries on CUDA devices: their versions, or "not built"; unset on the CPU.
std::optional<std::string> vendor_description(const Options& o) {
  if (!o.device.is_cuda()) return std::nullopt;
#ifdef SEGENGINE_VENDOR_BENCH
  return vendor::library_versions() + " (f32 without TF32)";
#else
  return "not built";
#endif
}

std::string peak_description(const Options& o) {
  if (o.device.is_cpu()) {
    return "f32 " + machine::cpu_f32_peak_description(static_cast<int>(std::thread::hardware_concurrency()));
  }
  std::string peak;
#ifdef SEGENGINE_HAS_CUDA
  kernels::cuda::DeviceInfo info = kernels::cuda::device_info(o.device.index);
  peak = info.emulated ? "none: " + info.name + " runs on the CPU (timings are not GPU timings)"
                       : "not known for " + info.name + " (percentages omitted)";
#endif
  const std::optional<std::string> vendor = vendor_description(o);
  return peak + "; vendor comparison: " + vendor.value_or("not built");
}

// Written to FILE.tmp and renamed, so an existing FILE is never left half-written.
void write_json(const std::string& path, const std::string& json) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    SE_CHECK(out.good(), "bench kernels: cannot write '", tmp, "'");
    out << json;
    SE_CHECK(out.good(), "bench kernels: writing '", tmp, "' failed");
  }
  std::filesystem::rename(tmp, path);
}

double median_ms(const Run& run, const Options& o) {
  for (int i = 0; i < o.warmup; ++i) time_ms(run, o);
  std::vector<double> times;
  for (int i = 0; i < o.repeats; ++i) times.push_back(time_ms(run, o));
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

#ifdef SEGENGINE_VENDOR_BENCH
// Runs the vendor's equivalent of a prepared case: once beside ours for the check, then timed. `ours` has
// not run since it was prepared (the vendor copies our outputs' starting values first). Failures of the
// vendor's calls are recorded in the result; a failure of our kernel propagates as usual.
std::optional<VendorResult> measure_vendor(const Prepared& ours, const Options& o) {
  if (!ours.vendor) return std::nullopt;
  VendorResult result;
  result.library = ours.vendor->op == VendorOp::gemm ? "cuBLAS" : "cuDNN";
  auto record_failure = [&](const Error& e) {
    result.not_supported = dynamic_cast<const vendor::NotSupported*>(&e) != nullptr;
    result.error = e.what();
  };
  std::optional<VendorRun> vendor;
  try {
    vendor = prepare_vendor(*ours.vendor, o.device);
    if (!vendor) return std::nullopt;
  } catch (const Error& e) {
    record_failure(e);
    return result;
  }
  result.library = vendor->library;
  result.call = vendor->call;
  ours.run();
  try {
    vendor->run();
    const vendor::OutputDifference difference = vendor->compare();
    result.max_abs_diff = difference.max_abs_diff;
    result.relative_diff = difference.relative();
    result.tolerance = vendor->tolerance;
    result.check_failed = !(result.relative_diff <= result.tolerance);
    result.median_ms = median_ms(vendor->run, o);
    result.timed = true;
  } catch (const Error& e) {
    record_failure(e);
  }
  return result;
}
#endif

}  // namespace

int bench_kernels(const std::vector<std::string_view>& args) {
  const Options o = parse_options(args);
  std::vector<Case> all;
  add_compute_cases(all, o);
  add_memory_cases(all, o);
  add_loss_cases(all, o);

  std::vector<const Case*> selected;
  for (const Case& c : all) {
    if (o.selects(c.name, c.model, c.shape)) selected.push_back(&c);
  }
  if (o.list) {
    for (const Case* c : selected) std::cout << c->name << "  " << c->model << "  " << c->shape << "\n";
    return 0;
  }
  SE_CHECK(!selected.empty(), "bench kernels: --filter '", o.filter, "' matches none of the ", all.size(), " cases");

  const double peak_gflops = o.device.is_cpu() && o.dtype == DType::f32
                                 ? machine::cpu_f32_peak_gflops(static_cast<int>(std::thread::hardware_concurrency()))
                                 : 0.0;
  const ReportHeader header{.device = o.device.str(),
                            .dtype = std::string(dtype_name(o.dtype)),
                            .repeats = o.repeats,
                            .warmup = o.warmup,
                            .peak = peak_description(o),
                            .vendor = vendor_description(o)};
  std::printf("device %s, dtype %s, median of %d after %d warm-up\npeak: %s\n\n", header.device.c_str(),
              header.dtype.c_str(), o.repeats, o.warmup, header.peak.c_str());
  std::printf("%s", table_header(o.vendor).c_str());
  std::vector<ReportRow> rows;
  for (const Case* c : selected) {
    const Prepared prepared = c->prepare();
    ReportRow row{c->name, c->model, c->shape, 0, c->flops, c->bytes, std::nullopt};
#ifdef SEGENGINE_VENDOR_BENCH
    if (o.vendor) row.vendor = measure_vendor(prepared, o);
#endif
    row.median_ms = median_ms(prepared.run, o);
    std::printf("%s%s", table_row(row, peak_gflops, o.vendor).c_str(), vendor_notes(row).c_str());
    std::fflush(stdout);
    rows.push_back(std::move(row));
  }
  if (!o.json_path.empty()) write_json(o.json_path, json_report(header, rows, o.vendor));
  if (o.vendor) {
    // A vendor output that differs from ours, or a vendor call that failed, fails the run (exit code 1).
    const VendorSummary summary = vendor_summary(rows);
    std::printf("\n%s%s", summary.text.c_str(), vendor_share_table(rows).c_str());
    if (summary.failed) return 1;
  }
  return 0;
}

}  // namespace se::tools
