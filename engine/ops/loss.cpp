// Losses. cross_entropy runs the fused kernels of kernels/loss.h: the forward writes per-pixel losses,
// per-pixel target weights and the log-sum-exp; the reductions are the engine's deterministic sums; the
// backward is one kernel pass from the saved log-sum-exp.
#include <algorithm>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/loss.h"

namespace se {
namespace {

// Validates logits (N, C, d1, ...) against target (N, d1, ...) and returns the kernels' view.
kernels::CrossEntropyDesc cross_entropy_desc(const Tensor& logits, const Tensor& target, const CrossEntropyParams& p) {
  const char* op = "cross_entropy";
  SE_CHECK(logits.defined() && target.defined(), op, ": undefined tensor");
  SE_CHECK(logits.dim() >= 2, op, ": logits must be (N, C) or (N, C, d1, ...), got ", shape_str(logits.shape()));
  SE_CHECK(target.dtype() == DType::i64, op, ": target must be i64, got ", dtype_name(target.dtype()));
  SE_CHECK(target.device() == logits.device(), op, ": target is on ", target.device().str(), ", logits on ",
           logits.device().str());
  Shape expected = {logits.size(0)};
  for (int64_t k = 2; k < logits.dim(); ++k) expected.push_back(logits.size(k));
  SE_CHECK(target.shape() == expected, op, ": target shape ", shape_str(target.shape()), " does not match logits ",
           shape_str(logits.shape()), " (expected ", shape_str(expected), ")");
  SE_CHECK(p.label_smoothing >= 0 && p.label_smoothing <= 1, op, ": label_smoothing must be in [0, 1], got ",
           p.label_smoothing);
  kernels::CrossEntropyDesc d;
  d.batch = logits.size(0);
  d.classes = logits.size(1);
  d.spatial = shape_numel(expected) / std::max<int64_t>(d.batch, 1);
  if (d.batch == 0) d.spatial = 0;
  d.ignore_index = p.ignore_index;
  d.label_smoothing = p.label_smoothing;
  if (p.weight.defined()) {
    SE_CHECK(p.weight.shape() == Shape{d.classes}, op, ": weight must be ", shape_str({d.classes}), ", got ",
             shape_str(p.weight.shape()));
    SE_CHECK(p.weight.dtype() == logits.dtype() && p.weight.device() == logits.device(), op,
             ": weight must have the logits' dtype and device (", dtype_name(logits.dtype()), ", ",
             logits.device().str(), ")");
  }
  return d;
}

Tensor cross_entropy_backward_of(const Tensor& grad, const Tensor& logits, const Tensor& lse, const Tensor& target,
                                 const Tensor& weight, const kernels::CrossEntropyDesc& d) {
  Tensor g = grad.contiguous();
  Tensor out = empty(logits.shape(), {logits.dtype(), logits.device()});
  const int64_t grad_stride = g.numel() == 1 ? 0 : 1;
  dispatch_floating(logits.dtype(), "cross_entropy backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(logits.device(), cross_entropy_backward<T>, out.data<T>(), g.data<T>(), grad_stride, logits.data<T>(),
                lse.data<kernels::loss_compute_t<T>>(), target.data<int64_t>(),
                weight.defined() ? weight.data<T>() : nullptr, d);
  });
  return out;
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyParams& params) {
  const kernels::CrossEntropyDesc d = cross_entropy_desc(logits, target, params);
  Tensor x = logits.contiguous(), t = target.contiguous();
  Tensor weight = params.weight.defined() ? params.weight.contiguous() : Tensor();
  const TensorOptions options{logits.dtype(), logits.device()};
  Tensor loss = empty(t.shape(), options), pixel_weight = empty(t.shape(), options);
  Tensor lse = empty(t.shape(), {logits.dtype() == DType::f64 ? DType::f64 : DType::f32, logits.device()});
  Tensor bad_target = full({1}, static_cast<double>(d.ignore_index), {DType::i64, logits.device()});
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(logits.device(), cross_entropy_forward<T>, loss.data<T>(), pixel_weight.data<T>(),
                lse.data<kernels::loss_compute_t<T>>(), bad_target.data<int64_t>(), x.data<T>(), t.data<int64_t>(),
                weight.defined() ? weight.data<T>() : nullptr, d);
  });
  // One read of the flag (a synchronising copy on CUDA).
  const int64_t bad = bad_target.to_vector<int64_t>()[0];
  SE_CHECK(bad == d.ignore_index, "cross_entropy: target value ", bad, " is out of range for ", d.classes,
           " classes (expected [0, ", d.classes, ") or ignore_index ", d.ignore_index, ")");

  Tensor out, denominator;
  {
    NoGradGuard no_grad;
    switch (params.reduction) {
      case Reduction::none: out = loss; break;
      case Reduction::sum: out = sum(loss); break;
      case Reduction::mean:
        denominator = sum(pixel_weight);
        out = div(sum(loss), denominator);
        break;
    }
  }
  if (autograd::needs_grad({logits})) {
    autograd::record(
        "cross_entropy", {logits}, {out},
        [saved_x = SavedTensor(x), saved_t = SavedTensor(t), lse, weight, denominator, d](const GradOutputs& g,
                                                                                          const NeedsGrad&) {
          Tensor grad = denominator.defined() ? div(g[0], denominator) : g[0];
          return GradInputs{cross_entropy_backward_of(grad, saved_x.unpack(), lse, saved_t.unpack(), weight, d)};
        });
  }
  return out;
}

}  // namespace se
