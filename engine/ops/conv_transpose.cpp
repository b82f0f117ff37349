// conv_transpose2d on the ConvTranspose2d kernels (kernels/conv.h), which run the Conv2d kernels on the
// mirror conv2d: forward = conv2d backward-data, grad_x = conv2d forward, grad_w = conv2d backward-weight with
// x and dy swapped. PyTorch also allows output_padding >= stride when it is < dilation; the kernels need
// output_padding < stride, so such x gets output_padding / stride zero rows (columns) appended first, which
// leaves y unchanged and whose gradient pad() drops again.
#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "engine/workspace.h"
#include "kernels/conv.h"

namespace se {
namespace {

void check_inputs(const Tensor& x,       // (N, C_in, H, W)
                  const Tensor& weight,  // (C_in, C_out / groups, KH, KW)
                  const Tensor& bias,    // (C_out) or undefined
                  const ConvTranspose2dParams& p) {
  const char* op = "conv_transpose2d";
  SE_CHECK(x.defined() && weight.defined(), op, ": x and weight must be defined tensors");
  SE_CHECK(x.dim() == 4, op, ": x has shape ", shape_str(x.shape()), ", expected 4-d (N, C_in, H, W)");
  SE_CHECK(weight.dim() == 4, op, ": weight has shape ", shape_str(weight.shape()),
           ", expected 4-d (C_in, C_out / groups, KH, KW)");
  const DType dt = x.dtype();
  SE_CHECK(dt == DType::f32 || dt == DType::f64 || dt == DType::f16 || dt == DType::bf16, op, ": dtype ", dt,
           " is not supported (expected f32, f64, f16 or bf16)");
  SE_CHECK(weight.dtype() == dt && weight.device() == x.device(), op, ": weight (", weight.dtype(), " on ",
           weight.device().str(), ") must have x's dtype and device (", dt, " on ", x.device().str(), ")");
  SE_CHECK(p.groups >= 1, op, ": groups = ", p.groups, " (expected >= 1)");
  SE_CHECK(x.size(1) == weight.size(0), op, ": x ", shape_str(x.shape()), " has ", x.size(1),
           " channels but weight ", shape_str(weight.shape()), " expects ", weight.size(0), " (weight.size(0) = C_in)");
  SE_CHECK(x.size(1) % p.groups == 0, op, ": groups = ", p.groups, " does not divide C_in = ", x.size(1));
  SE_CHECK(p.stride_h >= 1 && p.stride_w >= 1 && p.dilation_h >= 1 && p.dilation_w >= 1, op, ": stride (",
           p.stride_h, ", ", p.stride_w, ") and dilation (", p.dilation_h, ", ", p.dilation_w, ") must be >= 1");
  auto check_output_padding = [&](int64_t value, int64_t stride, int64_t dilation, const char* name) {
    SE_CHECK(value >= 0 && (value < stride || value < dilation), op, ": ", name, " = ", value,
             " (expected >= 0 and smaller than the stride ", stride, " or the dilation ", dilation, ")");
  };
  check_output_padding(p.output_padding_h, p.stride_h, p.dilation_h, "output_padding_h");
  check_output_padding(p.output_padding_w, p.stride_w, p.dilation_w, "output_padding_w");
  if (bias.defined()) {
    const int64_t c_out = weight.size(1) * p.groups;
    SE_CHECK(bias.dim() == 1 && bias.size(0) == c_out, op, ": bias has shape ", shape_str(bias.shape()),
             ", expected (", c_out, ") = (weight.size(1) * groups)");
    SE_CHECK(bias.dtype() == dt && bias.device() == x.device(), op, ": bias must have x's dtype and device");
  }
}

kernels::ConvTranspose2dDesc make_desc(const Tensor& x, const Tensor& weight, bool has_bias,
                                       const ConvTranspose2dParams& p) {
  kernels::ConvTranspose2dDesc d;
  d.n = x.size(0);
  d.c_in = x.size(1);
  d.h = x.size(2);
  d.w = x.size(3);
  d.c_out = weight.size(1) * p.groups;
  d.kernel_h = weight.size(2);
  d.kernel_w = weight.size(3);
  d.stride_h = p.stride_h;
  d.stride_w = p.stride_w;
  d.pad_h = p.pad_h;
  d.pad_w = p.pad_w;
  d.output_padding_h = p.output_padding_h;
  d.output_padding_w = p.output_padding_w;
  d.dilation_h = p.dilation_h;
  d.dilation_w = p.dilation_w;
  d.groups = p.groups;
  d.has_bias = has_bias;
  d.dtype = x.dtype();
  return d;
}

// The op once output_padding < stride.
Tensor conv_transpose2d_core(const Tensor& x, const Tensor& weight, const Tensor& bias,
                             const ConvTranspose2dParams& p) {
  const kernels::ConvTranspose2dDesc desc = make_desc(x, weight, bias.defined(), p);
  kernels::validate_conv_transpose2d(desc);
  const Tensor xc = x.detach().contiguous();                                 // (N, C_in, H, W)
  const Tensor wc = weight.detach().contiguous();                            // (C_in, C_out / groups, KH, KW)
  const Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();  // (C_out)
  Tensor y = empty({desc.n, desc.c_out, kernels::conv_transpose2d_output_h(desc),
                    kernels::conv_transpose2d_output_w(desc)},
                   {x.dtype(), x.device()});  // (N, C_out, OH, OW)
  if (desc.n > 0) {
    SE_DISPATCH(y.device(), conv_transpose2d_forward, desc, xc.data_ptr(), wc.data_ptr(),
                bc.defined() ? bc.data_ptr() : nullptr, y.data_ptr());
  }
  std::vector<Tensor> inputs = {x, weight};
  if (bias.defined()) inputs.push_back(bias);
  if (!autograd::needs_grad(inputs)) return y;

  const bool x_grad = x.requires_grad();
  const bool w_or_b_grad = weight.requires_grad() || (bias.defined() && bias.requires_grad());
  autograd::record(
      "conv_transpose2d", inputs, {y},
      [desc, saved_x = SavedTensor(w_or_b_grad ? xc : Tensor()), saved_w = SavedTensor(x_grad ? wc : Tensor())](
          const GradOutputs& g, const NeedsGrad& needs) {
        GradInputs grads(needs.size());
        const Tensor dy = g[0].contiguous();  // (N, C_out, OH, OW)
        const TensorOptions options{dy.dtype(), dy.device()};
        if (needs[0]) {
          const Tensor w = saved_w.unpack();
          grads[0] = empty({desc.n, desc.c_in, desc.h, desc.w}, options);
          if (desc.n > 0) {
            SE_DISPATCH(dy.device(), conv_transpose2d_backward_data, desc, dy.data_ptr(), w.data_ptr(),
                        grads[0].data_ptr());
          }
        }
        const bool bias_grad = needs.size() > 2 && needs[2];
        if (needs[1] || bias_grad) {
          const Tensor x = saved_x.unpack();
          const Tensor dw = empty({desc.c_in, desc.c_out / desc.groups, desc.kernel_h, desc.kernel_w}, options);
          const Tensor db = bias_grad ? empty({desc.c_out}, options) : Tensor();
          const Tensor workspace =
              kernel_workspace(kernels::conv_transpose2d_backward_weight_workspace_bytes(desc), dy.device());
          SE_DISPATCH(dy.device(), conv_transpose2d_backward_weight, desc, x.data_ptr(), dy.data_ptr(), dw.data_ptr(),
                      data_or_null(db), data_or_null(workspace));
          if (needs[1]) grads[1] = dw;
          if (bias_grad) grads[2] = db;
        }
        return grads;
      });
  return y;
}

}  // namespace

Tensor conv_transpose2d(const Tensor& x_arg, const Tensor& weight_arg, const Tensor& bias_arg,
                        const ConvTranspose2dParams& params) {
  // Autocast (engine/autocast.h): computed in f16/bf16.
  const Tensor x = autocast::to_low_precision(x_arg), weight = autocast::to_low_precision(weight_arg),
               bias = autocast::to_low_precision(bias_arg);
  check_inputs(x, weight, bias, params);
  ConvTranspose2dParams p = params;
  const int64_t extra_h = p.output_padding_h / p.stride_h, extra_w = p.output_padding_w / p.stride_w;
  p.output_padding_h %= p.stride_h;
  p.output_padding_w %= p.stride_w;
  if (extra_h == 0 && extra_w == 0) return conv_transpose2d_core(x, weight, bias, p);
  return conv_transpose2d_core(pad(x, {0, extra_w, 0, extra_h}), weight, bias, p);
}

}  // namespace se
