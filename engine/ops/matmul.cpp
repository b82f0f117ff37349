// matmul, mm, bmm on top of the GEMM kernels. Transposed views are passed to GEMM as transposed
// operands instead of being copied, which also makes the backward (g @ B^T, A^T @ g) copy-free.
#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/gemm.h"

namespace se {

namespace {

struct Operand {
  Tensor tensor;  // (batch, rows, cols), possibly a copy
  bool transposed = false;
  int64_t ld = 0;
  int64_t batch_stride = 0;
};

// Describes a (batch, rows, cols) tensor as a GEMM operand, copying only when neither the row-major
// nor the column-major reading fits its strides.
Operand as_operand(const Tensor& x) {
  const int64_t rows = x.size(1), cols = x.size(2);
  auto describe = [&](const Tensor& t) -> std::optional<Operand> {
    const int64_t s0 = t.stride(0), s1 = t.stride(1), s2 = t.stride(2);
    const int64_t batch_stride = t.size(0) == 1 ? 0 : s0;
    if ((s2 == 1 || cols == 1) && s1 >= std::max<int64_t>(cols, 1)) return Operand{t, false, s1, batch_stride};
    if ((s1 == 1 || rows == 1) && s2 >= std::max<int64_t>(rows, 1)) return Operand{t, true, s2, batch_stride};
    return std::nullopt;
  };
  if (auto op = describe(x)) return *op;
  return *describe(x.contiguous());
}

void check_matmul_inputs(const Tensor& a, const Tensor& b, const char* op) {
  SE_CHECK(a.device() == b.device(), op, ": operands on different devices (", a.device().str(), " and ",
           b.device().str(), ")");
  SE_CHECK(a.dtype() == b.dtype(), op, ": operands of different dtypes (", a.dtype(), " and ", b.dtype(), ")");
  SE_CHECK(a.dtype() == DType::f32 || a.dtype() == DType::f64 || a.dtype() == DType::f16 || a.dtype() == DType::bf16,
           op, ": dtype ", a.dtype(), " is not supported (expected f32, f64, f16 or bf16)");
}

// (batch or 1, m, k) @ (batch or 1, k, n) -> (batch, m, n); no autograd.
Tensor batched_gemm(const Tensor& a, const Tensor& b) {
  const int64_t batch = std::max(a.size(0), b.size(0));
  const int64_t m = a.size(1), k = a.size(2), n = b.size(2);
  Tensor c = empty({batch, m, n}, {a.dtype(), a.device()});
  if (c.numel() == 0) return c;
  if (k == 0) return c.zero_();
  Operand oa = as_operand(a), ob = as_operand(b);
  kernels::GemmDesc desc;
  desc.m = m;
  desc.n = n;
  desc.k = k;
  desc.trans_a = oa.transposed;
  desc.trans_b = ob.transposed;
  desc.lda = oa.ld;
  desc.ldb = ob.ld;
  desc.ldc = n;
  desc.batch = batch;
  desc.stride_a = oa.batch_stride;
  desc.stride_b = ob.batch_stride;
  desc.stride_c = m * n;
  desc.dtype = a.dtype();
  kernels::validate_gemm(desc);
  SE_DISPATCH(c.device(), gemm, desc, oa.tensor.data_ptr(), ob.tensor.data_ptr(), c.data_ptr());
  return c;
}

// (batch or 1, m, k) @ (batch or 1, k, n) -> (batch, m, n), differentiable. A batch of 1 is
// broadcast by the GEMM itself (batch stride 0); its gradient is summed over the batch.
Tensor batched_matmul(const Tensor& a, const Tensor& b) {
  Tensor c = batched_gemm(a.detach(), b.detach());
  if (autograd::needs_grad({a, b})) {
    autograd::record("matmul", {a, b}, {c},
                     [sa = SavedTensor(a), sb = SavedTensor(b)](const GradOutputs& g, const NeedsGrad& needs) {
                       GradInputs grads(2);
                       const Tensor a = sa.unpack(), b = sb.unpack();
                       const bool batched = g[0].size(0) > 1;
                       if (needs[0]) {
                         grads[0] = batched_matmul(g[0], b.transpose(1, 2));
                         if (batched && a.size(0) == 1) grads[0] = sum(grads[0], {0}, true);
                       }
                       if (needs[1]) {
                         grads[1] = batched_matmul(a.transpose(1, 2), g[0]);
                         if (batched && b.size(0) == 1) grads[1] = sum(grads[1], {0}, true);
                       }
                       return grads;
                     });
  }
  return c;
}

}  // namespace

Tensor bmm(const Tensor& a_arg, const Tensor& b_arg) {
  // Autocast (engine/autocast.h): computed in f16/bf16.
  const Tensor a = autocast::to_low_precision(a_arg), b = autocast::to_low_precision(b_arg);
  check_matmul_inputs(a, b, "bmm");
  SE_CHECK(a.dim() == 3 && b.dim() == 3, "bmm: expects 3-d operands, got ", shape_str(a.shape()), " and ",
           shape_str(b.shape()));
  SE_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(1), "bmm: shapes ", shape_str(a.shape()), " and ",
           shape_str(b.shape()), " do not multiply (expected (b, m, k) and (b, k, n))");
  return batched_matmul(a, b);
}

Tensor mm(const Tensor& a_arg, const Tensor& b_arg) {
  // Autocast (engine/autocast.h): computed in f16/bf16.
  const Tensor a = autocast::to_low_precision(a_arg), b = autocast::to_low_precision(b_arg);
  check_matmul_inputs(a, b, "mm");
  SE_CHECK(a.dim() == 2 && b.dim() == 2, "mm: expects 2-d operands, got ", shape_str(a.shape()), " and ",
           shape_str(b.shape()));
  SE_CHECK(a.size(1) == b.size(0), "mm: shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()),
           " do not multiply (expected (m, k) and (k, n))");
  return batched_matmul(a.unsqueeze(0), b.unsqueeze(0)).squeeze(0);
}

Tensor matmul(const Tensor& a_arg, const Tensor& b_arg) {
  // Autocast (engine/autocast.h): computed in f16/bf16.
  const Tensor a = autocast::to_low_precision(a_arg), b = autocast::to_low_precision(b_arg);
  check_matmul_inputs(a, b, "matmul");
  SE_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: operands must have at least 1 dim, got ", shape_str(a.shape()),
           " and ", shape_str(b.shape()));
  // Vectors become matrices (a row on the left, a column on the right) and that dim is dropped from
  // the result, as in torch.matmul.
  const bool a_vector = a.dim() == 1, b_vector = b.dim() == 1;
  Tensor a2 = a_vector ? a.unsqueeze(0) : a;
  Tensor b2 = b_vector ? b.unsqueeze(1) : b;
  const int64_t m = a2.size(-2), k = a2.size(-1), n = b2.size(-1);
  SE_CHECK(b2.size(-2) == k, "matmul: shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()),
           " do not multiply (inner sizes ", k, " and ", b2.size(-2), ")");
  const Shape a_batch(a2.shape().begin(), a2.shape().end() - 2);
  const Shape b_batch(b2.shape().begin(), b2.shape().end() - 2);
  const Shape batch = broadcast_shapes(a_batch, b_batch, "matmul");
  const int64_t batch_numel = shape_numel(batch);

  // An operand without (effective) batch dims stays one matrix shared by all items, not a copy.
  auto to_3d = [&](const Tensor& x, const Shape& own_batch, int64_t rows, int64_t cols) {
    if (shape_numel(own_batch) == 1) return x.reshape({1, rows, cols});
    Shape full = batch;
    full.push_back(rows);
    full.push_back(cols);
    return x.expand(full).reshape({batch_numel, rows, cols});
  };
  Tensor c = batched_matmul(to_3d(a2, a_batch, m, k), to_3d(b2, b_batch, k, n));
  Shape out_shape = batch;
  if (!a_vector) out_shape.push_back(m);
  if (!b_vector) out_shape.push_back(n);
  return c.reshape(out_shape);
}

Tensor linear(const Tensor& x_arg, const Tensor& weight_arg, const Tensor& bias_arg) {
  // Autocast (engine/autocast.h): computed in f16/bf16, the bias included.
  const Tensor x = autocast::to_low_precision(x_arg), weight = autocast::to_low_precision(weight_arg),
               bias = autocast::to_low_precision(bias_arg);
  SE_CHECK(x.defined() && weight.defined(), "linear: input or weight is undefined");
  check_matmul_inputs(x, weight, "linear");
  SE_CHECK(weight.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", shape_str(x.shape()),
           " and weight ", shape_str(weight.shape()), " do not fit (expected (*, in) and (out, in))");
  SE_CHECK(!bias.defined() || bias.shape() == Shape{weight.size(0)}, "linear: bias has shape ",
           shape_str(bias.shape()), ", expected ", shape_str(Shape{weight.size(0)}));
  if (bias.defined()) check_matmul_inputs(x, bias, "linear");
  // One GEMM over every row of x, as torch's addmm: (rows, in) @ (in, out), starting from the bias
  // (beta = 1 over C prefilled with it) instead of adding it in a pass and a tensor of its own; the
  // weight's gradient is then one GEMM over all rows rather than one per batch item and their sum.
  const int64_t in = weight.size(1), out = weight.size(0);
  const int64_t row_count = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const Tensor rows = x.detach().reshape({row_count, in});  // (rows, in): a view when x's strides allow
  Tensor y = empty({rows.size(0), out}, {x.dtype(), x.device()});
  if (y.numel() > 0) {
    const bool with_bias = bias.defined();
    if (with_bias) y.copy_(bias.detach().unsqueeze(0).expand(y.shape()));
    if (in == 0) {
      if (!with_bias) y.zero_();
    } else {
      const Operand a = as_operand(rows.unsqueeze(0));
      const Tensor w = weight.detach().contiguous();  // (out, in) row-major: op(B) = w^T
      kernels::GemmDesc desc;
      desc.m = rows.size(0);
      desc.n = out;
      desc.k = in;
      desc.trans_a = a.transposed;
      desc.trans_b = true;
      desc.lda = a.ld;
      desc.ldb = in;
      desc.ldc = out;
      desc.beta = with_bias ? 1.0f : 0.0f;
      desc.dtype = x.dtype();
      kernels::validate_gemm(desc);
      SE_DISPATCH(y.device(), gemm, desc, a.tensor.data_ptr(), w.data_ptr(), y.data_ptr());
    }
  }
  Shape out_shape = x.shape();
  out_shape.back() = out;
  if (autograd::needs_grad({x, weight, bias})) {
    const bool weight_grad = weight.requires_grad(), x_grad = x.requires_grad();
    autograd::record("linear", {x, weight, bias}, {y},
                     [saved_rows = SavedTensor(weight_grad ? rows : Tensor()),
                      saved_w = SavedTensor(x_grad ? weight : Tensor()),
                      x_shape = x.shape()](const GradOutputs& g, const NeedsGrad& needs) {
                       GradInputs grads(needs.size());
                       const Tensor dy = g[0];  // (rows, out)
                       // Differentiable (double backward), without mm's autocast: dy has y's dtype.
                       auto mm_2d = [](const Tensor& a, const Tensor& b) {
                         return batched_matmul(a.unsqueeze(0), b.unsqueeze(0)).squeeze(0);
                       };
                       if (needs[0]) grads[0] = mm_2d(dy, saved_w.unpack()).reshape(x_shape);
                       if (needs[1]) grads[1] = mm_2d(dy.t(), saved_rows.unpack());
                       if (needs.size() > 2 && needs[2]) grads[2] = sum(dy, {0});
                       return grads;
                     });
  }
  return y.reshape(out_shape);
}

}  // namespace se
