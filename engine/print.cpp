// PyTorch-like printing: values row by row, shortened with "..." beyond 1000 elements, then the
// metadata that differs from the defaults.
#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/autograd.h"

namespace se {

namespace {

constexpr int64_t kSummarizeAbove = 1000;
constexpr int64_t kEdgeItems = 3;

struct Formatter {
  bool floating = true;
  bool integral_valued = true;  // all finite values are whole numbers: print "1." like PyTorch
  bool scientific = false;
  int width = 1;

  std::string format(double v) const {
    char text[64];
    if (!floating) {
      std::snprintf(text, sizeof(text), "%lld", static_cast<long long>(v));
    } else if (std::isnan(v)) {
      std::snprintf(text, sizeof(text), "nan");
    } else if (std::isinf(v)) {
      std::snprintf(text, sizeof(text), v > 0 ? "inf" : "-inf");
    } else if (scientific) {
      std::snprintf(text, sizeof(text), "%.4e", v);
    } else if (integral_valued) {
      std::snprintf(text, sizeof(text), "%.0f.", v);
    } else {
      std::snprintf(text, sizeof(text), "%.4f", v);
    }
    return text;
  }
};

// Between elements ", "; between rows a comma, one newline per closed dim, and the indentation.
void separate(std::ostringstream& out, size_t inner_dims, int indent) {
  if (inner_dims == 0) {
    out << ", ";
    return;
  }
  out << ',';
  for (size_t i = 0; i < inner_dims; ++i) out << '\n';
  for (int i = 0; i <= indent; ++i) out << ' ';
}

void print_dim(std::ostringstream& out, const std::vector<double>& values, const Shape& shape, size_t dim,
               int64_t offset, const Formatter& fmt, bool summarize, int indent, DType dtype) {
  const Shape strides = contiguous_strides(shape);
  const int64_t n = shape[dim];
  out << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kEdgeItems && i == kEdgeItems) {
      out << "...";
      i = n - kEdgeItems - 1;
      separate(out, shape.size() - dim - 1, indent);
      continue;
    }
    if (dim + 1 == shape.size()) {
      double v = values[offset + i];
      std::string text = dtype == DType::boolean ? (v != 0 ? "True" : "False") : fmt.format(v);
      out << std::string(std::max<int>(0, fmt.width - static_cast<int>(text.size())), ' ') << text;
    } else {
      print_dim(out, values, shape, dim + 1, offset + i * strides[dim], fmt, summarize, indent + 1, dtype);
    }
    if (i + 1 < n) separate(out, shape.size() - dim - 1, indent);
  }
  out << "]";
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> values = to_vector<double>();
  Formatter fmt;
  fmt.floating = is_floating(dtype());
  double max_abs = 0.0, min_abs = INFINITY;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    fmt.integral_valued = fmt.integral_valued && v == std::floor(v);
    max_abs = std::max(max_abs, std::abs(v));
    if (v != 0.0) min_abs = std::min(min_abs, std::abs(v));
  }
  fmt.scientific = fmt.floating && !fmt.integral_valued && (max_abs >= 1e8 || (min_abs < 1e-4 && min_abs > 0));
  fmt.scientific = fmt.scientific || (fmt.floating && fmt.integral_valued && max_abs >= 1e8);
  for (double v : values) {
    std::string text = dtype() == DType::boolean ? (v != 0 ? "True" : "False") : fmt.format(v);
    fmt.width = std::max(fmt.width, static_cast<int>(text.size()));
  }

  std::ostringstream out;
  out << "tensor(";
  if (dim() == 0) {
    out << (dtype() == DType::boolean ? (values[0] != 0 ? "True" : "False") : fmt.format(values[0]));
  } else if (numel() == 0) {
    out << "[]";
  } else {
    print_dim(out, values, shape(), 0, 0, fmt, numel() > kSummarizeAbove, 7, dtype());
  }
  if (numel() == 0 || numel() > kSummarizeAbove) out << ", size=" << shape_str(shape());
  if (!device().is_cpu()) out << ", device=" << device().str();
  if (dtype() != DType::f32 && dtype() != DType::i64) out << ", dtype=" << dtype_name(dtype());
  if (grad_fn()) {
    out << ", grad_fn=<" << grad_fn()->name() << ">";
  } else if (requires_grad()) {
    out << ", requires_grad=True";
  }
  out << ")";
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Tensor& tensor) { return out << tensor.str(); }

}  // namespace se
