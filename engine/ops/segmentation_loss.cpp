// Segmentation losses over (N, C, d1, ...) logits and i64 targets (declared in engine/ops.h, which names the
// reference implementation each one follows). focal_loss runs fused kernels (kernels/loss.h) like
// cross_entropy: per-pixel losses, a valid mask and the log-sum-exp forward, one elementwise pass backward.
// ohem_cross_entropy, dice_loss and lovasz_softmax are compositions of differentiable ops (softmax, gather,
// sort, cumsum, reductions) whose non-differentiable parts (pixel selection, one-hot targets, the Lovasz
// gradient weights) run without autograd.
#include <cmath>
#include <limits>

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/loss.h"

namespace se {
namespace {

struct SegShape {
  int64_t n = 0, classes = 0, spatial = 0;  // logits viewed as (N, C, S)
};

SegShape check_inputs(const Tensor& logits, const Tensor& target, const char* op, bool allow_half) {
  SE_CHECK(logits.defined() && target.defined(), op, ": undefined tensor");
  SE_CHECK(logits.dim() >= 2, op, ": logits must be (N, C, d1, ...), got ", shape_str(logits.shape()));
  const DType dt = logits.dtype();
  const bool half = dt == DType::f16 || dt == DType::bf16;
  SE_CHECK(dt == DType::f32 || dt == DType::f64 || (allow_half && half), op, ": logits dtype ", dtype_name(dt),
           " is not supported (expected f32 or f64", allow_half ? ", f16 or bf16)" : ")");
  SE_CHECK(target.dtype() == DType::i64, op, ": target must be i64, got ", dtype_name(target.dtype()));
  SE_CHECK(target.device() == logits.device(), op, ": target is on ", target.device().str(), ", logits on ",
           logits.device().str());
  Shape expected = {logits.size(0)};
  for (int64_t k = 2; k < logits.dim(); ++k) expected.push_back(logits.size(k));
  SE_CHECK(target.shape() == expected, op, ": target shape ", shape_str(target.shape()), " does not match logits ",
           shape_str(logits.shape()), " (expected ", shape_str(expected), ")");
  SegShape s;
  s.n = logits.size(0);
  s.classes = logits.size(1);
  s.spatial = s.n == 0 ? 0 : shape_numel(expected) / s.n;
  return s;
}

void check_class_weights(const Tensor& w, const Tensor& logits, int64_t classes, const char* op, const char* name) {
  if (!w.defined()) return;
  SE_CHECK(w.shape() == Shape{classes}, op, ": ", name, " must be ", shape_str({classes}), ", got ",
           shape_str(w.shape()));
  SE_CHECK(w.dtype() == logits.dtype() && w.device() == logits.device(), op, ": ", name,
           " must have the logits' dtype and device (", dtype_name(logits.dtype()), ", ", logits.device().str(), ")");
}

// Throws when a target value is neither in [0, classes) nor ignore_index (one synchronising read).
void check_target_values(const Tensor& target, int64_t classes, std::optional<int64_t> ignore_index, const char* op) {
  NoGradGuard no_grad;
  Tensor bad = add(lt(target, 0.0).to(DType::f32), ge(target, static_cast<double>(classes)).to(DType::f32));
  if (ignore_index) bad = mul(bad, ne(target, static_cast<double>(*ignore_index)).to(DType::f32));
  if (target.numel() == 0 || sum(bad).item() == 0) return;
  const Tensor lowest = full_like(target, static_cast<double>(std::numeric_limits<int64_t>::min()));
  const auto value = static_cast<int64_t>(max(where(gt(bad, 0.0), target, lowest)).item());
  if (ignore_index) {
    SE_THROW(op, ": target value ", value, " is out of range for ", classes, " classes (expected [0, ", classes,
             ") or ignore_index ", *ignore_index, ")");
  }
  SE_THROW(op, ": target value ", value, " is out of range for ", classes, " classes (expected [0, ", classes, "))");
}

Tensor focal_backward_of(const Tensor& grad, const Tensor& logits, const Tensor& lse, const Tensor& target,
                         const Tensor& alpha, const kernels::FocalLossDesc& d) {
  const Tensor g = grad.contiguous();
  Tensor out = empty(logits.shape(), {logits.dtype(), logits.device()});
  const int64_t grad_stride = g.numel() == 1 ? 0 : 1;
  dispatch_floating(logits.dtype(), "focal_loss backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(logits.device(), focal_loss_backward<T>, out.data<T>(), g.data<T>(), grad_stride, logits.data<T>(),
                lse.data<kernels::loss_compute_t<T>>(), target.data<int64_t>(),
                alpha.defined() ? alpha.data<T>() : nullptr, d);
  });
  return out;
}

}  // namespace

Tensor focal_loss(const Tensor& logits_arg, const Tensor& target, const FocalLossParams& params_arg) {
  // Autocast (engine/autocast.h): computed in f32.
  const Tensor logits = autocast::to_f32(logits_arg);
  FocalLossParams params = params_arg;
  params.alpha = autocast::to_f32(params.alpha);
  const char* op = "focal_loss";
  const SegShape s = check_inputs(logits, target, op, true);
  SE_CHECK(params.gamma >= 0 && std::isfinite(params.gamma), op, ": gamma = ", params.gamma,
           " (expected a finite value >= 0)");
  check_class_weights(params.alpha, logits, s.classes, op, "alpha");
  kernels::FocalLossDesc d;
  d.batch = s.n;
  d.classes = s.classes;
  d.spatial = s.spatial;
  d.ignore_index = params.ignore_index;
  d.gamma = params.gamma;
  const Tensor x = logits.contiguous(), t = target.contiguous();
  const Tensor alpha = params.alpha.defined() ? params.alpha.contiguous() : Tensor();
  const TensorOptions options{logits.dtype(), logits.device()};
  Tensor loss = empty(t.shape(), options), valid = empty(t.shape(), options);
  Tensor lse = empty(t.shape(), {logits.dtype() == DType::f64 ? DType::f64 : DType::f32, logits.device()});
  Tensor bad_target = full({1}, static_cast<double>(d.ignore_index), {DType::i64, logits.device()});
  dispatch_floating(logits.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_DISPATCH(logits.device(), focal_loss_forward<T>, loss.data<T>(), valid.data<T>(),
                lse.data<kernels::loss_compute_t<T>>(), bad_target.data<int64_t>(), x.data<T>(), t.data<int64_t>(),
                alpha.defined() ? alpha.data<T>() : nullptr, d);
  });
  const int64_t bad = bad_target.to_vector<int64_t>()[0];
  SE_CHECK(bad == d.ignore_index, op, ": target value ", bad, " is out of range for ", d.classes,
           " classes (expected [0, ", d.classes, ") or ignore_index ", d.ignore_index, ")");

  Tensor out, denominator;
  {
    NoGradGuard no_grad;
    switch (params.reduction) {
      case Reduction::none: out = loss; break;
      case Reduction::sum: out = sum(loss); break;
      case Reduction::mean:  // no valid pixel: 0 / 1
        denominator = clamp(sum(valid), 1.0, std::nullopt);
        out = div(sum(loss), denominator);
        break;
    }
  }
  if (autograd::needs_grad({logits})) {
    autograd::record(op, {logits}, {out},
                     [saved_x = SavedTensor(x), saved_t = SavedTensor(t), lse, alpha, denominator, d](
                         const GradOutputs& g, const NeedsGrad&) {
                       const Tensor grad = denominator.defined() ? div(g[0], denominator) : g[0];
                       return GradInputs{focal_backward_of(grad, saved_x.unpack(), lse, saved_t.unpack(), alpha, d)};
                     });
  }
  return out;
}

Tensor ohem_cross_entropy(const Tensor& logits_arg, const Tensor& target, const OhemCrossEntropyParams& params_arg) {
  // Autocast (engine/autocast.h): computed in f32.
  const Tensor logits = autocast::to_f32(logits_arg);
  OhemCrossEntropyParams params = params_arg;
  params.weight = autocast::to_f32(params.weight);
  const char* op = "ohem_cross_entropy";
  const SegShape s = check_inputs(logits, target, op, false);
  SE_CHECK(params.min_kept >= 0, op, ": min_kept = ", params.min_kept, " (expected >= 0)");
  check_class_weights(params.weight, logits, s.classes, op, "weight");
  CrossEntropyParams ce;
  ce.ignore_index = params.ignore_index;
  ce.weight = params.weight;
  ce.reduction = Reduction::none;
  const Tensor per_pixel = cross_entropy(logits, target, ce);  // (N, d1, ...); validates the targets
  Tensor kept;                                                 // (N, d1, ...): 1 for the pixels that count
  {
    NoGradGuard no_grad;
    const DType dt = logits.dtype();
    const Tensor valid = ne(target, static_cast<double>(params.ignore_index));
    const Tensor safe_target = where(valid, target, zeros_like(target));
    const Tensor p_y = gather(softmax(logits.detach(), 1), 1, safe_target.unsqueeze(1)).squeeze(1);
    // Ignored pixels sort last; the threshold index min(min_kept * N, valid - 1) is computed on the device.
    const Tensor sorted = sort(where(valid, p_y, full_like(p_y, INFINITY)).reshape({-1})).values;
    const Tensor valid_count = sum(valid.to(dt));
    const Tensor index = clamp(sub(valid_count, 1.0), 0.0, static_cast<double>(params.min_kept * s.n));
    const Tensor min_threshold = gather(sorted, 0, index.to(DType::i64).reshape({1}));  // (1)
    const Tensor threshold = clamp(min_threshold, params.thresh, std::nullopt);
    kept = mul(lt(p_y, threshold).to(dt), valid.to(dt));
  }
  return div(sum(mul(per_pixel, kept)), static_cast<double>(target.numel()));
}

Tensor dice_loss(const Tensor& logits_arg, const Tensor& target, const DiceLossParams& params) {
  // Autocast (engine/autocast.h): computed in f32.
  const Tensor logits = autocast::to_f32(logits_arg);
  const char* op = "dice_loss";
  const SegShape s = check_inputs(logits, target, op, false);
  check_target_values(target, s.classes, params.ignore_index, op);
  const DType dt = logits.dtype();
  Tensor probs = softmax(logits, 1).reshape({s.n, s.classes, s.spatial});  // (N, C, S)
  Tensor one_hot, mask;  // (N, C, S) target classes, (N, 1, S) non-ignored pixels
  {
    NoGradGuard no_grad;
    const Tensor t = target.reshape({s.n, 1, s.spatial});
    const Tensor class_ids = arange(static_cast<double>(s.classes), {DType::i64, logits.device()});
    one_hot = eq(t, class_ids.reshape({1, s.classes, 1})).to(dt);
    if (params.ignore_index) {
      mask = ne(t, static_cast<double>(*params.ignore_index)).to(dt);
      one_hot = mul(one_hot, mask);
    }
  }
  if (mask.defined()) probs = mul(probs, mask);
  const Tensor intersection = sum(mul(probs, one_hot), {0, 2});  // (C)
  const Tensor cardinality = sum(add(probs, one_hot), {0, 2});   // (C)
  const Tensor score =
      div(add(mul(intersection, 2.0), params.smooth), clamp(add(cardinality, params.smooth), params.eps, std::nullopt));
  const Tensor loss = params.log_loss ? neg(log(clamp(score, params.eps, std::nullopt))) : rsub(score, 1.0);
  Tensor present;
  {
    NoGradGuard no_grad;
    present = gt(sum(one_hot, {0, 2}), 0.0).to(dt);
  }
  return mean(mul(loss, present));
}

Tensor lovasz_softmax(const Tensor& logits_arg, const Tensor& target, std::optional<int64_t> ignore_index) {
  // Autocast (engine/autocast.h): computed in f32.
  const Tensor logits = autocast::to_f32(logits_arg);
  const char* op = "lovasz_softmax";
  const SegShape s = check_inputs(logits, target, op, false);
  check_target_values(target, s.classes, ignore_index, op);
  const DType dt = logits.dtype();
  const int64_t pixels = s.n * s.spatial, classes = s.classes;
  if (pixels == 0) return mul(sum(logits), 0.0);
  // (C, P): one row of probabilities per class over every pixel of the batch.
  const Tensor probs =
      softmax(logits, 1).reshape({s.n, classes, s.spatial}).permute({1, 0, 2}).reshape({classes, pixels});
  Tensor fg, valid;  // (C, P) foreground indicator, (1, P) non-ignored pixels
  {
    NoGradGuard no_grad;
    const Tensor t = target.reshape({1, pixels});
    fg = eq(t, arange(static_cast<double>(classes), {DType::i64, logits.device()}).reshape({classes, 1})).to(dt);
    if (ignore_index) {
      valid = ne(t, static_cast<double>(*ignore_index)).to(dt);
      fg = mul(fg, valid);
    }
  }
  // Ignored pixels get error 0 and foreground 0: they sort after every pixel with a positive error, so the
  // weights of those are the reference's (which drops them), and their own terms are 0.
  Tensor errors = abs(sub(fg, probs));
  if (ignore_index) errors = mul(errors, valid);
  const SortResult sorted = sort(errors, 1, true);
  Tensor weights, present;  // (C, P) the Lovasz gradient of the sorted errors, (C) classes present
  {
    NoGradGuard no_grad;
    const Tensor fg_sorted = gather(fg, 1, sorted.indices);
    const Tensor gts = sum(fg_sorted, {1}, true);  // (C, 1)
    const Tensor intersection = sub(gts, cumsum(fg_sorted, 1));
    const Tensor union_ = add(gts, cumsum(rsub(fg_sorted, 1.0), 1));
    const Tensor jaccard = rsub(div(intersection, union_), 1.0);
    weights =
        pixels == 1
            ? jaccard
            : cat({jaccard.narrow(1, 0, 1), sub(jaccard.narrow(1, 1, pixels - 1), jaccard.narrow(1, 0, pixels - 1))},
                  1);
    present = gt(gts.reshape({classes}), 0.0).to(dt);
  }
  const Tensor per_class = sum(mul(sorted.values, weights), {1});  // (C)
  Tensor count;
  {
    NoGradGuard no_grad;
    count = clamp(sum(present), 1.0, std::nullopt);
  }
  return div(sum(mul(per_class, present)), count);
}

}  // namespace se
