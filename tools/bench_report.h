// The report of `segengine bench kernels`: the table it prints and the JSON it writes, with the vendor
// columns (cuDNN/cuBLAS time and our share of its throughput) when the comparison runs. Formatting only,
// so that tests/tools/test_bench_report.cpp checks it on any machine.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace se::tools {

// A case's vendor reference as measured: its time, or why there is none.
struct VendorResult {
  std::string library;  // "cuDNN" or "cuBLAS"
  std::string call;     // what it runs, e.g. "cudnnConvolutionForward IMPLICIT_PRECOMP_GEMM (...)"
  bool timed = false;   // median_ms and the check below are set
  double median_ms = 0;
  // Its output against ours on the same inputs: the largest difference, relative to the output's scale,
  // and the tolerance it must stay under.
  double max_abs_diff = 0, relative_diff = 0, tolerance = 0;
  bool check_failed = false;  // relative_diff above tolerance
  // Why it was not timed: the library does not support the configuration (not_supported), or an error.
  bool not_supported = false;
  std::string error;
};

struct ReportRow {
  std::string kernel, model, shape;
  double median_ms = 0;
  double flops = 0;  // per run; 0 for memory-bound kernels
  double bytes = 0;  // per run
  // With the vendor columns: set when the case has a vendor equivalent ("-" in the table otherwise).
  std::optional<VendorResult> vendor;
};

struct ReportHeader {
  std::string device, dtype;
  int repeats = 0, warmup = 0;
  std::string peak;  // the peak line's text, which names the vendor libraries on CUDA devices
  // "cuDNN 9.19.0, cuBLAS 13.1.0", "not built", or unset (CPU devices: no vendor key in the JSON).
  std::optional<std::string> vendor;
};

// The column titles, and one row per case; vendor_columns adds "vendor ms" and "% of vendor".
std::string table_header(bool vendor_columns);
// peak_gflops > 0 fills the "% peak" column of compute-bound cases.
std::string table_row(const ReportRow& row, double peak_gflops, bool vendor_columns);
// Lines printed under a row whose vendor reference failed, mismatched or is not supported; "" otherwise.
std::string vendor_notes(const ReportRow& row);
// Our throughput as a share of the vendor's for the same work: 100 * vendor ms / our ms.
double percent_of_vendor(double our_ms, double vendor_ms);

// The line after a table with vendor columns: how many outputs were checked against the vendor's, the
// largest relative difference, and which cases failed (an error or a mismatch: `failed`).
struct VendorSummary {
  std::string text;
  bool failed = false;
};
VendorSummary vendor_summary(const std::vector<ReportRow>& rows);

// Our throughput as a share of the vendor's over whole groups of cases, the way a model sees it: the sum
// of the vendor's times over the sum of ours, per kernel ("conv2d/forward") and per family ("conv2d", all
// directions), with each group's lowest case. Only cases timed on both sides whose outputs agreed count;
// "" when there are none. These are the GPU targets' measure (conv >= 0.8x cuDNN, GEMM >= 0.85x cuBLAS).
std::string vendor_share_table(const std::vector<ReportRow>& rows);

// The whole report as JSON; vendor_columns adds a "vendor" object (or null) to every result.
std::string json_report(const ReportHeader& header, const std::vector<ReportRow>& rows, bool vendor_columns);

}  // namespace se::tools
