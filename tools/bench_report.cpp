#include "tools/bench_report.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <sstream>

namespace se::tools {

namespace {

__attribute__((format(printf, 1, 2))) std::string format(const char* pattern, ...) {
  va_list args;
  va_start(args, pattern);
  char buffer[512];
  std::vsnprintf(buffer, sizeof(buffer), pattern, args);
  va_end(args);
  return buffer;
}

std::string json_escape(const std::string& text) {
  std::string out;
  for (char ch : text) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out;
}

// The two vendor columns of a row: time and share, "-" without an equivalent.
std::string vendor_cells(const ReportRow& row) {
  if (!row.vendor) return format(" %10s %11s", "-", "-");
  const VendorResult& v = *row.vendor;
  if (!v.timed) return format(" %10s %11s", "-", v.not_supported ? "-" : "error");
  if (v.check_failed) return format(" %10.3f %11s", v.median_ms, "mismatch");
  return format(" %10.3f %10.0f%%", v.median_ms, percent_of_vendor(row.median_ms, v.median_ms));
}

void write_vendor_json(std::ostream& out, const ReportRow& row) {
  if (!row.vendor) {
    out << ", \"vendor\": null";
    return;
  }
  const VendorResult& v = *row.vendor;
  out << ", \"vendor\": {\"library\": \"" << v.library << "\", \"call\": \"" << json_escape(v.call) << "\"";
  if (v.timed) {
    out << ", \"median_ms\": " << v.median_ms
        << ", \"percent_of_vendor\": " << percent_of_vendor(row.median_ms, v.median_ms)
        << ", \"max_abs_diff\": " << v.max_abs_diff << ", \"relative_diff\": " << v.relative_diff
        << ", \"tolerance\": " << v.tolerance << ", \"check\": \"" << (v.check_failed ? "failed" : "passed") << "\"";
  } else {
    out << ", \"" << (v.not_supported ? "not_supported" : "error") << "\": \"" << json_escape(v.error) << "\"";
  }
  out << "}";
}

}  // namespace

double percent_of_vendor(double our_ms, double vendor_ms) {
  return our_ms > 0 ? 100.0 * vendor_ms / our_ms : 0.0;
}

std::string table_header(bool vendor_columns) {
  std::string line = format("%-30s %-13s %-52s %10s %9s %8s %7s", "kernel", "model", "shape", "median ms", "GFLOP/s",
                            "GB/s", "% peak");
  if (vendor_columns) line += format(" %10s %11s", "vendor ms", "% of vendor");
  return line + "\n";
}

std::string table_row(const ReportRow& row, double peak_gflops, bool vendor_columns) {
  const double gflops = row.flops / row.median_ms * 1e-6;
  std::string peak;
  if (row.flops > 0 && peak_gflops > 0) peak = format("%.0f%%", 100.0 * gflops / peak_gflops);
  const std::string rate = row.flops > 0 ? std::to_string(static_cast<int>(gflops + 0.5)) : "-";
  std::string line =
      format("%-30s %-13s %-52s %10.3f %9s %8.1f %7s", row.kernel.c_str(), row.model.c_str(), row.shape.c_str(),
             row.median_ms, rate.c_str(), row.bytes / row.median_ms * 1e-6, peak.c_str());
  if (vendor_columns) line += vendor_cells(row);
  return line + "\n";
}

std::string vendor_notes(const ReportRow& row) {
  if (!row.vendor) return "";
  const VendorResult& v = *row.vendor;
  if (!v.timed) {
    return std::string("  ") + (v.not_supported ? "not supported by " : "error from ") + v.library + ": " + v.error +
           "\n";
  }
  if (v.check_failed) {
    return format("  mismatch: max |ours - %s| = %.3g, %.3g of the output's scale (tolerance %.3g): %s\n",
                  v.library.c_str(), v.max_abs_diff, v.relative_diff, v.tolerance, v.call.c_str());
  }
  return "";
}

VendorSummary vendor_summary(const std::vector<ReportRow>& rows) {
  int checked = 0, not_supported = 0;
  std::vector<std::string> failures;
  const ReportRow* worst = nullptr;
  for (const ReportRow& row : rows) {
    if (!row.vendor) continue;
    const VendorResult& v = *row.vendor;
    if (v.not_supported) ++not_supported;
    if (v.timed) ++checked;
    if (v.timed && (worst == nullptr || v.relative_diff > worst->vendor->relative_diff)) worst = &row;
    if ((!v.timed && !v.not_supported) || v.check_failed) failures.push_back(row.kernel + " (" + row.shape + ")");
  }
  VendorSummary summary;
  summary.text = format("vendor check: %d cases compared with their cuDNN/cuBLAS outputs", checked);
  if (worst != nullptr) {
    summary.text += format(", largest relative difference %.3g (%s, tolerance %.3g)", worst->vendor->relative_diff,
                           worst->kernel.c_str(), worst->vendor->tolerance);
  }
  if (not_supported > 0) summary.text += format(", %d not supported by the library", not_supported);
  summary.text += "\n";
  if (!failures.empty()) {
    summary.failed = true;
    summary.text += format("vendor check FAILED for %zu cases:", failures.size());
    for (const std::string& failure : failures) summary.text += " " + failure + ";";
    summary.text.back() = '\n';
  }
  return summary;
}

std::string vendor_share_table(const std::vector<ReportRow>& rows) {
  struct Group {
    std::string name;
    int cases = 0;
    double our_ms = 0, vendor_ms = 0;
    const ReportRow* lowest = nullptr;  // the case with the smallest share
  };
  std::vector<Group> groups;  // in the order the rows first name them: kernels, then their family
  const auto add = [&](const std::string& name, const ReportRow& row) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) { return g.name == name; });
    if (it == groups.end()) it = groups.insert(groups.end(), Group{name});
    ++it->cases;
    it->our_ms += row.median_ms;
    it->vendor_ms += row.vendor->median_ms;
    const auto share = [](const ReportRow& r) { return r.vendor->median_ms / r.median_ms; };
    if (it->lowest == nullptr || share(row) < share(*it->lowest)) it->lowest = &row;
  };
  for (const ReportRow& row : rows) {
    if (!row.vendor || !row.vendor->timed || row.vendor->check_failed || row.median_ms <= 0) continue;
    add(row.kernel, row);
    const size_t slash = row.kernel.find('/');
    if (slash != std::string::npos) add(row.kernel.substr(0, slash) + " (all)", row);
  }
  if (groups.empty()) return "";
  std::stable_partition(groups.begin(), groups.end(),
                        [](const Group& g) { return g.name.find(" (all)") == std::string::npos; });
  std::string text = "share of the vendor's throughput (sum of its times / sum of ours):\n";
  for (const Group& g : groups) {
    const ReportRow& low = *g.lowest;
    text += format("  %-32s %3d cases %6.2fx   lowest %5.2fx: %s %s\n", g.name.c_str(), g.cases, g.vendor_ms / g.our_ms,
                   low.vendor->median_ms / low.median_ms, low.model.c_str(), low.shape.c_str());
  }
  return text;
}

std::string json_report(const ReportHeader& header, const std::vector<ReportRow>& rows, bool vendor_columns) {
  std::ostringstream out;
  out << "{\n  \"device\": \"" << header.device << "\",\n  \"dtype\": \"" << header.dtype
      << "\",\n  \"repeats\": " << header.repeats << ",\n  \"peak\": \"" << json_escape(header.peak) << "\",\n";
  if (header.vendor) out << "  \"vendor\": \"" << json_escape(*header.vendor) << "\",\n";
  out << "  \"results\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const ReportRow& r = rows[i];
    out << "    {\"kernel\": \"" << r.kernel << "\", \"model\": \"" << r.model << "\", \"shape\": \""
        << json_escape(r.shape) << "\", \"median_ms\": " << r.median_ms
        << ", \"gflops\": " << (r.flops > 0 ? r.flops / r.median_ms * 1e-6 : 0.0)
        << ", \"gbps\": " << r.bytes / r.median_ms * 1e-6;
    if (vendor_columns) write_vendor_json(out, r);
    out << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
  }
  out << "  ]\n}\n";
  return out.str();
}

}  // namespace se::tools
