// scaled_dot_product_attention on the fused kernels of kernels/attention.h, and attention_reference
// built from matmul and softmax. The fused op saves q, k, v, its output and the per-row log-sum-exp;
// the backward recomputes the probabilities from them.
#include <cmath>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/attention.h"

namespace se {
namespace {

void check_attention_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const char* op) {
  SE_CHECK(q.defined() && k.defined() && v.defined(), op, ": input tensor is undefined");
  SE_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": expects 4-d q, k, v (B, H, L, D), got ",
           shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  SE_CHECK(k.shape() == v.shape() && q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3), op,
           ": shapes q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()),
           " do not match (expected (B, H, Lq, D), (B, H, Lk, D), (B, H, Lk, D))");
  SE_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), op, ": q, k, v have different dtypes (", q.dtype(), ", ",
           k.dtype(), ", ", v.dtype(), ")");
  SE_CHECK(q.device() == k.device() && q.device() == v.device(), op, ": q, k, v are on different devices (",
           q.device().str(), ", ", k.device().str(), ", ", v.device().str(), ")");
}

double scale_or_default(std::optional<double> scale, int64_t d) {
  return scale ? *scale : 1.0 / std::sqrt(static_cast<double>(d));
}

kernels::AttentionDesc attention_desc(const Tensor& q, const Tensor& k, double scale) {
  kernels::AttentionDesc d;
  d.batch = q.size(0);
  d.heads = q.size(1);
  d.lq = q.size(2);
  d.lk = k.size(2);
  d.d = q.size(3);
  d.scale = scale;
  kernels::validate_attention(d);
  return d;
}

DType lse_dtype(DType dtype) {
  return dtype == DType::f64 ? DType::f64 : DType::f32;
}

GradInputs attention_backward_of(const Tensor& grad, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& out, const Tensor& lse, const kernels::AttentionDesc& d) {
  Tensor g = grad.contiguous();
  Tensor gq = empty(q.shape(), {q.dtype(), q.device()});
  Tensor gk = empty(k.shape(), {k.dtype(), k.device()});
  Tensor gv = empty(v.shape(), {v.dtype(), v.device()});
  dispatch_floating(q.dtype(), "scaled_dot_product_attention backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = kernels::attention_acc_t<T>;
    SE_DISPATCH(q.device(), attention_backward<T>, gq.data<T>(), gk.data<T>(), gv.data<T>(), g.data<T>(), q.data<T>(),
                k.data<T>(), v.data<T>(), out.data<T>(), lse.data<A>(), d);
  });
  return GradInputs{gq, gk, gv};
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q_arg, const Tensor& k_arg, const Tensor& v_arg,
                                    std::optional<double> scale) {
  // Autocast (engine/autocast.h): computed in f16/bf16.
  const Tensor q = autocast::to_low_precision(q_arg), k = autocast::to_low_precision(k_arg),
               v = autocast::to_low_precision(v_arg);
  const char* op = "scaled_dot_product_attention";
  check_attention_inputs(q, k, v, op);
  const kernels::AttentionDesc d = attention_desc(q, k, scale_or_default(scale, q.size(3)));
  Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  Tensor out = empty(q.shape(), {q.dtype(), q.device()});
  Tensor lse = empty({d.batch, d.heads, d.lq}, {lse_dtype(q.dtype()), q.device()});
  dispatch_floating(q.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = kernels::attention_acc_t<T>;
    SE_DISPATCH(q.device(), attention_forward<T>, out.data<T>(), lse.data<A>(), qc.data<T>(), kc.data<T>(),
                vc.data<T>(), d);
  });
  if (autograd::needs_grad({q, k, v})) {
    autograd::record(op, {q, k, v}, {out},
                     [sq = SavedTensor(qc), sk = SavedTensor(kc), sv = SavedTensor(vc), so = SavedTensor(out),
                      slse = SavedTensor(lse), d](const GradOutputs& g, const NeedsGrad&) {
                       return attention_backward_of(g[0], sq.unpack(), sk.unpack(), sv.unpack(), so.unpack(),
                                                    slse.unpack(), d);
                     });
  }
  return out;
}

Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, std::optional<double> scale) {
  check_attention_inputs(q, k, v, "attention_reference");
  const double s = scale_or_default(scale, q.size(3));
  return matmul(softmax(mul(matmul(q, k.transpose(2, 3)), s), -1), v);
}

}  // namespace se
