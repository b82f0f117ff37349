// The table and JSON of `segengine bench kernels` (tools/bench_report.h): unchanged without the vendor
// columns, and with them: "-" for cases without a cuDNN/cuBLAS equivalent, the vendor's time and our share
// of its throughput, and the notes for mismatches, errors and unsupported configurations.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "tools/bench_report.h"

namespace se::tools {
namespace {

ReportRow conv_row() {
  return {"conv2d/forward", "unet", "64x512x512 -> 64, k3 s1 p1 d1 g1", 2.0, 4.0e9, 1.0e8, std::nullopt};
}

VendorResult timed_vendor(double ms) {
  VendorResult v;
  v.library = "cuDNN";
  v.call = "cudnnConvolutionForward IMPLICIT_PRECOMP_GEMM (0.0 MiB workspace) + cudnnAddTensor";
  v.timed = true;
  v.median_ms = ms;
  v.max_abs_diff = 2e-5;
  v.relative_diff = 1e-6;
  v.tolerance = 1e-3;
  return v;
}

TEST(BenchReport, TableWithoutVendorColumnsKeepsItsFormat) {
  char expected[256];
  std::snprintf(expected, sizeof(expected), "%-30s %-13s %-52s %10s %9s %8s %7s\n", "kernel", "model", "shape",
                "median ms", "GFLOP/s", "GB/s", "% peak");
  EXPECT_EQ(table_header(false), expected);
  std::snprintf(expected, sizeof(expected), "%-30s %-13s %-52s %10.3f %9s %8.1f %7s\n", "conv2d/forward", "unet",
                "64x512x512 -> 64, k3 s1 p1 d1 g1", 2.0, "2000", 50.0, "20%");
  EXPECT_EQ(table_row(conv_row(), 10000.0, false), expected);
  EXPECT_EQ(vendor_notes(conv_row()), "");
}

TEST(BenchReport, VendorColumns) {
  const std::string header = table_header(true);
  EXPECT_NE(header.find("% peak  vendor ms % of vendor\n"), std::string::npos) << header;

  // No equivalent: "-" in both columns.
  const std::string none = table_row(conv_row(), 0.0, true);
  EXPECT_NE(none.find("          -           -\n"), std::string::npos) << none;

  // Ours 2 ms, the vendor's 1 ms: half its throughput.
  ReportRow row = conv_row();
  row.vendor = timed_vendor(1.0);
  const std::string line = table_row(row, 0.0, true);
  EXPECT_NE(line.find("      1.000         50%\n"), std::string::npos) << line;
  EXPECT_EQ(line.size(), header.size());
  EXPECT_EQ(vendor_notes(row), "");
  EXPECT_DOUBLE_EQ(percent_of_vendor(0.5, 1.0), 200.0);
}

TEST(BenchReport, VendorMismatchErrorAndUnsupported) {
  ReportRow mismatch = conv_row();
  mismatch.vendor = timed_vendor(1.0);
  mismatch.vendor->check_failed = true;
  mismatch.vendor->relative_diff = 0.4;
  EXPECT_NE(table_row(mismatch, 0.0, true).find("mismatch\n"), std::string::npos);
  EXPECT_NE(vendor_notes(mismatch).find("mismatch: max |ours - cuDNN| = 2e-05, 0.4 of the output's scale"),
            std::string::npos)
      << vendor_notes(mismatch);

  ReportRow failed = conv_row();
  failed.vendor = VendorResult{};
  failed.vendor->library = "cuDNN";
  failed.vendor->error = "vendor: cudnnConvolutionForward failed for conv2d forward ...: CUDNN_STATUS_BAD_PARAM";
  EXPECT_NE(table_row(failed, 0.0, true).find("          -       error\n"), std::string::npos);
  EXPECT_EQ(vendor_notes(failed), "  error from cuDNN: " + failed.vendor->error + "\n");

  ReportRow unsupported = failed;
  unsupported.vendor->not_supported = true;
  EXPECT_NE(table_row(unsupported, 0.0, true).find("          -           -\n"), std::string::npos);
  EXPECT_NE(vendor_notes(unsupported).find("  not supported by cuDNN: "), std::string::npos);

  const VendorSummary summary = vendor_summary({conv_row(), mismatch, failed, unsupported});
  EXPECT_TRUE(summary.failed);
  EXPECT_NE(summary.text.find("vendor check: 1 cases compared"), std::string::npos) << summary.text;
  EXPECT_NE(summary.text.find("1 not supported"), std::string::npos) << summary.text;
  EXPECT_NE(summary.text.find("FAILED for 2 cases: conv2d/forward (64x512x512 -> 64, k3 s1 p1 d1 g1); conv2d/forward"),
            std::string::npos)
      << summary.text;
}

TEST(BenchReport, VendorSummaryOfAPassingRun) {
  ReportRow row = conv_row();
  row.vendor = timed_vendor(1.0);
  const VendorSummary summary = vendor_summary({row, conv_row()});
  EXPECT_FALSE(summary.failed);
  EXPECT_EQ(summary.text,
            "vendor check: 1 cases compared with their cuDNN/cuBLAS outputs, largest relative difference 1e-06 "
            "(conv2d/forward, tolerance 0.001)\n");
}

TEST(BenchReport, VendorShareByKernelAndFamily) {
  const auto timed = [](std::string kernel, std::string shape, double ours, double vendor) {
    ReportRow row{std::move(kernel), "unet", std::move(shape), ours, 1.0e9, 1.0e6, timed_vendor(vendor)};
    return row;
  };
  ReportRow mismatch = timed("conv2d/forward", "c", 1.0, 100.0);
  mismatch.vendor->check_failed = true;
  const std::vector<ReportRow> rows = {
      timed("conv2d/forward", "a", 2.0, 1.0),        // 0.5x
      timed("conv2d/forward", "b", 1.0, 1.0),        // 1x: forward 2 / 3 ms
      mismatch,                                      // not counted
      timed("conv2d/backward_data", "d", 1.0, 2.0),  // 2x
      conv_row(),                                    // no vendor: not counted
      timed("gemm/nn", "e", 4.0, 3.0),               // 0.75x
  };
  const std::string text = vendor_share_table(rows);
  const auto line = [](const char* name, int cases, double share, double lowest, const char* shape) {
    char buffer[256];
    std::snprintf(buffer, sizeof(buffer), "  %-32s %3d cases %6.2fx   lowest %5.2fx: unet %s\n", name, cases, share,
                  lowest, shape);
    return std::string(buffer);
  };
  EXPECT_EQ(text, "share of the vendor's throughput (sum of its times / sum of ours):\n" +
                      line("conv2d/forward", 2, 2.0 / 3.0, 0.5, "a") + line("conv2d/backward_data", 1, 2.0, 2.0, "d") +
                      line("gemm/nn", 1, 0.75, 0.75, "e") + line("conv2d (all)", 3, 4.0 / 4.0, 0.5, "a") +
                      line("gemm (all)", 1, 0.75, 0.75, "e"));
  EXPECT_EQ(vendor_share_table({conv_row(), mismatch}), "");
}

TEST(BenchReport, Json) {
  ReportHeader header{"cuda:0",
                      "f16",
                      5,
                      1,
                      "not known for GPU; vendor comparison: cuDNN 9.19.0, cuBLAS 13.1.0",
                      "cuDNN 9.19.0, cuBLAS 13.1.0"};
  ReportRow row = conv_row();
  row.vendor = timed_vendor(1.0);
  const std::string with_vendor = json_report(header, {row, conv_row()}, true);
  EXPECT_NE(with_vendor.find("\"vendor\": \"cuDNN 9.19.0, cuBLAS 13.1.0\",\n"), std::string::npos) << with_vendor;
  EXPECT_NE(with_vendor.find("\"vendor\": {\"library\": \"cuDNN\", \"call\": \"cudnnConvolutionForward"),
            std::string::npos);
  EXPECT_NE(with_vendor.find("\"median_ms\": 1, \"percent_of_vendor\": 50, \"max_abs_diff\": 2e-05, "
                             "\"relative_diff\": 1e-06, \"tolerance\": 0.001, \"check\": \"passed\"}"),
            std::string::npos)
      << with_vendor;
  EXPECT_NE(with_vendor.find("\"gbps\": 50, \"vendor\": null}\n"), std::string::npos) << with_vendor;

  // A CPU report: no vendor key anywhere.
  const std::string cpu = json_report({"cpu", "f32", 5, 1, "f32 100 GFLOP/s", std::nullopt}, {conv_row()}, false);
  EXPECT_EQ(cpu.find("vendor"), std::string::npos) << cpu;
  EXPECT_NE(cpu.find("{\"kernel\": \"conv2d/forward\", \"model\": \"unet\", \"shape\": \"64x512x512 -> 64, k3 s1 p1 "
                     "d1 g1\", \"median_ms\": 2, \"gflops\": 2000, \"gbps\": 50}\n"),
            std::string::npos)
      << cpu;
}

}  // namespace
}  // namespace se::tools
