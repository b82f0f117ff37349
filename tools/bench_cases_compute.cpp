// `segengine bench kernels`, compute-bound cases (GFLOP/s): conv2d and conv_transpose2d forward and backward,
// GEMM, and attention, fused and along the unfused reference path. Convolutions have cuDNN equivalents
// (the transposed one on its mirror conv2d) and GEMM cuBLAS's; attention has none here.
#include <cmath>
#include <cstdio>

#include "engine/dispatch.h"
#include "engine/workspace.h"
#include "kernels/attention.h"
#include "kernels/conv.h"
#include "kernels/gemm.h"
#include "kernels/softmax.h"
#include "tools/bench_kernel_cases.h"

namespace se::tools {

namespace {

struct ConvLayer {
  const char* model;
  int64_t c_in, size, c_out, kernel, stride, pad, dilation, groups;
  int64_t batch = 1;
};

// Layer shapes at a 512x512 input, batch 1, and the demo's training batch.
const std::vector<ConvLayer>& conv_layers() {
  static const std::vector<ConvLayer> layers = {
      {"unet", 3, 512, 64, 3, 1, 1, 1, 1},           {"unet", 64, 512, 64, 3, 1, 1, 1, 1},
      {"unet", 128, 256, 128, 3, 1, 1, 1, 1},        {"unet", 256, 128, 256, 3, 1, 1, 1, 1},
      {"unet", 512, 64, 512, 3, 1, 1, 1, 1},         {"unet", 512, 32, 1024, 3, 1, 1, 1, 1},
      // The demo's U-Net (configs/unet.json, base width 16): its full-resolution layers, the up path's
      // first conv reading the skip and up-sampled features side by side.
      {"unet-16", 16, 512, 16, 3, 1, 1, 1, 1},       {"unet-16", 32, 512, 16, 3, 1, 1, 1, 1},
      {"unet-16", 32, 256, 32, 3, 1, 1, 1, 1},
      // ... and as `make demo` trains it: 8 images of 64x64, maps down to 4x4 (the CPU's implicit GEMM
      // on small planes, several images per task).
      {"unet-demo", 16, 64, 16, 3, 1, 1, 1, 1, 8},   {"unet-demo", 32, 64, 16, 3, 1, 1, 1, 1, 8},
      {"unet-demo", 256, 8, 128, 3, 1, 1, 1, 1, 8},  {"unet-demo", 128, 4, 256, 3, 1, 1, 1, 1, 8},
      {"resnet50-os8", 3, 512, 64, 7, 2, 3, 1, 1},   {"resnet50-os8", 256, 128, 64, 1, 1, 0, 1, 1},
      {"resnet50-os8", 64, 128, 64, 3, 1, 1, 1, 1},  {"resnet50-os8", 256, 64, 256, 3, 1, 2, 2, 1},
      {"resnet50-os8", 512, 64, 512, 3, 1, 4, 4, 1}, {"resnet50-os8", 2048, 64, 256, 3, 1, 12, 12, 1},
      {"segformer-b0", 3, 512, 32, 7, 4, 3, 1, 1},   {"segformer-b0", 128, 128, 128, 3, 1, 1, 1, 128},
      {"segformer-b0", 1024, 128, 256, 1, 1, 0, 1, 1},  // the decoder's linear_fuse
  };
  return layers;
}

// The three passes of one layer in one layout.
void add_conv_layer_cases(std::vector<Case>& cases, const Options& o, const ConvLayer& layer,
                          kernels::Conv2dLayout layout) {
  kernels::Conv2dDesc d;
  d.n = layer.batch;
  d.c_in = layer.c_in;
  d.h = d.w = layer.size;
  d.c_out = layer.c_out;
  d.kernel_h = d.kernel_w = layer.kernel;
  d.stride_h = d.stride_w = layer.stride;
  d.pad_h = d.pad_w = layer.pad;
  d.dilation_h = d.dilation_w = layer.dilation;
  d.groups = layer.groups;
  d.has_bias = true;
  d.dtype = o.dtype;
  d.layout = layout;
  kernels::validate_conv2d(d);
  const bool nhwc = layout == kernels::Conv2dLayout::nhwc;
  if (nhwc && !o.device.is_cuda() && !kernels::cpu::conv2d_runs_nhwc_natively(d)) return;
  const std::string family = nhwc ? "conv2d_nhwc/" : "conv2d/";
  char shape[160];
  std::snprintf(shape, sizeof(shape), "%lldx%lldx%lld -> %lld, k%lld s%lld p%lld d%lld g%lld%s",
                static_cast<long long>(d.c_in), static_cast<long long>(d.h), static_cast<long long>(d.w),
                static_cast<long long>(d.c_out), static_cast<long long>(d.kernel_h), static_cast<long long>(d.stride_h),
                static_cast<long long>(d.pad_h), static_cast<long long>(d.dilation_h),
                static_cast<long long>(d.groups), d.n > 1 ? (", batch " + std::to_string(d.n)).c_str() : "");
  const double flops = kernels::conv2d_flops(d);
  const double elem = static_cast<double>(dtype_size(o.dtype));
  const double bytes = elem * static_cast<double>(kernels::conv2d_x_elements(d) + kernels::conv2d_w_elements(d) +
                                                  kernels::conv2d_y_elements(d));
  const Device device = o.device;
  const int64_t oh = kernels::conv2d_output_h(d), ow = kernels::conv2d_output_w(d), cg = d.c_in / d.groups;
  auto x = [=] { return random_tensor(nhwc ? Shape{d.n, d.h, d.w, d.c_in} : Shape{d.n, d.c_in, d.h, d.w}, o); };
  auto w = [=] {
    return random_tensor(nhwc ? Shape{d.c_out, d.kernel_h, d.kernel_w, cg} : Shape{d.c_out, cg, d.kernel_h, d.kernel_w},
                         o);
  };
  auto y = [=] { return random_tensor(nhwc ? Shape{d.n, oh, ow, d.c_out} : Shape{d.n, d.c_out, oh, ow}, o); };
  cases.push_back({family + "forward", layer.model, shape, flops, bytes, [=] {
                     Tensor tx = x(), tw = w(), tb = random_tensor({d.c_out}, o), ty = y();
                     return Prepared(Run([=] {
                                       SE_DISPATCH(device, conv2d_forward, d, tx.data_ptr(), tw.data_ptr(),
                                                   tb.data_ptr(), ty.data_ptr());
                                     }),
                                     {VendorOp::conv2d_forward, d, {tx, tw, tb}, {ty}});
                   }});
  cases.push_back(
      {family + "backward_data", layer.model, shape, flops, bytes, [=] {
         Tensor tdy = y(), tw = w(), tdx = x();
         return Prepared(
             Run([=] { SE_DISPATCH(device, conv2d_backward_data, d, tdy.data_ptr(), tw.data_ptr(), tdx.data_ptr()); }),
             {VendorOp::conv2d_backward_data, d, {tdy, tw}, {tdx}});
       }});
  cases.push_back({family + "backward_weight", layer.model, shape, flops, bytes, [=] {
                     Tensor tx = x(), tdy = y(), tdw = w(), tdb = random_tensor({d.c_out}, o);
                     Tensor tws = kernel_workspace(kernels::conv2d_backward_weight_workspace_bytes(d), device);
                     return Prepared(Run([=] {
                                       SE_DISPATCH(device, conv2d_backward_weight, d, tx.data_ptr(), tdy.data_ptr(),
                                                   tdw.data_ptr(), tdb.data_ptr(), data_or_null(tws));
                                     }),
                                     {VendorOp::conv2d_backward_weight, d, {tx, tdy}, {tdw, tdb}});
                   }});
}

// Each layer in NCHW ("conv2d/...") and channels-last ("conv2d_nhwc/...": on a GPU CUDA's implicit GEMM
// over NHWC; on the CPU only the layers it runs natively, its depthwise ones, the others being permuted
// copies around its NCHW kernels).
void add_conv_cases(std::vector<Case>& cases, const Options& o) {
  for (const kernels::Conv2dLayout layout : {kernels::Conv2dLayout::nchw, kernels::Conv2dLayout::nhwc}) {
    for (const ConvLayer& layer : conv_layers()) add_conv_layer_cases(cases, o, layer, layout);
  }
}

// C (m, n) = alpha * op(A) op(B) on dense row-major matrices: op(A) is (m, k), op(B) is (k, n).
kernels::GemmDesc gemm_desc(int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b, double alpha, DType dtype) {
  kernels::GemmDesc d;
  d.m = m;
  d.n = n;
  d.k = k;
  d.trans_a = trans_a;
  d.trans_b = trans_b;
  d.lda = trans_a ? m : k;
  d.ldb = trans_b ? k : n;
  d.ldc = n;
  d.alpha = static_cast<float>(alpha);
  d.dtype = dtype;
  return d;
}

void add_gemm_cases(std::vector<Case>& cases, const Options& o) {
  struct GemmShape {
    const char* model;
    const char* what;
    int64_t m, n, k;
    bool trans_a = false, trans_b = false;
  };
  const GemmShape shapes[] = {
      {"segformer-b0", "mix-ffn fc1 (128x128 tokens)", 16384, 128, 32},
      {"segformer-b0", "decoder linear fuse", 16384, 256, 1024},
      {"segformer-b0", "attention q k^T (stage 1)", 16384, 256, 32},
      // Linear layers as the engine calls them: y = x W^T, dx = dy W, dW = dy^T x over the tokens.
      {"segformer-b0", "stage-1 Linear 32 -> 32, y = x W^T", 16384, 32, 32, false, true},
      {"segformer-b0", "mix-ffn fc2 128 -> 32, y = x W^T", 16384, 32, 128, false, true},
      {"segformer-b0", "mix-ffn fc1 dx = dy W", 16384, 32, 128},
      {"segformer-b0", "stage-1 Linear dW = dy^T x", 32, 32, 16384, true, false},
      {"segformer-b0", "mix-ffn fc1 dW = dy^T x", 128, 32, 16384, true, false},
      {"resnet50-os8", "1x1 conv 1024->256 at 64x64 as GEMM", 256, 4096, 1024},
      {"square", "1024^3", 1024, 1024, 1024},
  };
  for (const GemmShape& s : shapes) {
    const kernels::GemmDesc d = gemm_desc(s.m, s.n, s.k, s.trans_a, s.trans_b, 1.0, o.dtype);
    const double elem = static_cast<double>(dtype_size(o.dtype));
    const Device device = o.device;
    const Shape a_shape = s.trans_a ? Shape{s.k, s.m} : Shape{s.m, s.k};
    const Shape b_shape = s.trans_b ? Shape{s.n, s.k} : Shape{s.k, s.n};
    cases.push_back(
        {std::string("gemm/") + (s.trans_a ? "t" : "n") + (s.trans_b ? "t" : "n"), s.model,
         std::string(s.what) + ": " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k),
         2.0 * s.m * s.n * s.k, elem * static_cast<double>(s.m * s.k + s.k * s.n + s.m * s.n), [=] {
           Tensor a = random_tensor(a_shape, o), b = random_tensor(b_shape, o);
           Tensor c = empty({s.m, s.n}, {o.dtype, o.device});
           return Prepared(Run([=] { SE_DISPATCH(device, gemm, d, a.data_ptr(), b.data_ptr(), c.data_ptr()); }),
                           {VendorOp::gemm, d, {a, b}, {c}});
         }});
  }
}

// U-Net's transposed-conv upsampling (k2 s2, C -> C / 2) at 512x512 input.
void add_conv_transpose_cases(std::vector<Case>& cases, const Options& o) {
  for (int64_t size : {32, 64, 128, 256}) {
    kernels::ConvTranspose2dDesc d;
    d.c_in = 64 * 512 / size;
    d.c_out = d.c_in / 2;
    d.h = d.w = size;
    d.kernel_h = d.kernel_w = d.stride_h = d.stride_w = 2;
    d.has_bias = true;
    d.dtype = o.dtype;
    kernels::validate_conv_transpose2d(d);
    const std::string shape = std::to_string(d.c_in) + "x" + std::to_string(size) + "x" + std::to_string(size) +
                              " -> " + std::to_string(d.c_out) + "x" + std::to_string(2 * size) + "x" +
                              std::to_string(2 * size) + ", k2 s2";
    const double flops = 2.0 * static_cast<double>(kernels::conv_transpose2d_x_elements(d) * d.c_out * 4);
    const double bytes =
        static_cast<double>(dtype_size(o.dtype)) *
        static_cast<double>(kernels::conv_transpose2d_x_elements(d) + kernels::conv_transpose2d_w_elements(d) +
                            kernels::conv_transpose2d_y_elements(d));
    const Device device = o.device;
    auto x = [=] { return random_tensor({1, d.c_in, d.h, d.w}, o); };
    auto w = [=] { return random_tensor({d.c_in, d.c_out, 2, 2}, o); };
    auto y = [=] { return random_tensor({1, d.c_out, 2 * d.h, 2 * d.w}, o); };
    cases.push_back({"conv_transpose2d/forward", "unet", shape, flops, bytes, [=] {
                       Tensor tx = x(), tw = w(), tb = random_tensor({d.c_out}, o), ty = y();
                       return Prepared(Run([=] {
                                         SE_DISPATCH(device, conv_transpose2d_forward, d, tx.data_ptr(), tw.data_ptr(),
                                                     tb.data_ptr(), ty.data_ptr());
                                       }),
                                       {VendorOp::conv_transpose2d_forward, d, {tx, tw, tb}, {ty}});
                     }});
    cases.push_back({"conv_transpose2d/backward_data", "unet", shape, flops, bytes, [=] {
                       Tensor tdy = y(), tw = w(), tdx = x();
                       return Prepared(Run([=] {
                                         SE_DISPATCH(device, conv_transpose2d_backward_data, d, tdy.data_ptr(),
                                                     tw.data_ptr(), tdx.data_ptr());
                                       }),
                                       {VendorOp::conv_transpose2d_backward_data, d, {tdy, tw}, {tdx}});
                     }});
    cases.push_back({"conv_transpose2d/backward_weight", "unet", shape, flops, bytes, [=] {
                       Tensor tx = x(), tdy = y(), tdw = w(), tdb = random_tensor({d.c_out}, o);
                       Tensor tws =
                           kernel_workspace(kernels::conv_transpose2d_backward_weight_workspace_bytes(d), device);
                       return Prepared(Run([=] {
                                         SE_DISPATCH(device, conv_transpose2d_backward_weight, d, tx.data_ptr(),
                                                     tdy.data_ptr(), tdw.data_ptr(), tdb.data_ptr(), data_or_null(tws));
                                       }),
                                       {VendorOp::conv_transpose2d_backward_weight, d, {tx, tdy}, {tdw, tdb}});
                     }});
  }
}

// SegFormer-B0's stage-1 efficient self-attention, the shape of bench/bench_attention.cpp: 128x128 = 16384
// queries, keys spatially reduced by 8 to 16x16 = 256, one head of dim 32. The fused kernels against the
// unfused path of the engine's attention_reference (GEMM, softmax, GEMM on the same kernels), which holds
// the 16384 x 256 scores and probabilities. FLOPs are the matrix products each path executes, as in
// bench_attention: the fused backward recomputes q k^T and grad_out v^T, in both of its passes on CUDA
// (7 products in all), once in its single pass on the CPU (5).
struct AttentionInputs {
  Tensor q, k, v;  // (1, 1, lq, dim), (1, 1, lk, dim), (1, 1, lk, dim)
};

void add_attention_cases(std::vector<Case>& cases, const Options& o) {
  const int64_t lq = 16384, lk = 256, dim = 32;
  const kernels::AttentionDesc d{1, 1, lq, lk, dim, 1.0 / std::sqrt(static_cast<double>(dim))};
  const std::string shape = "16384 queries, 256 keys, 1 head, dim 32";
  const double product = 2.0 * lq * lk * dim;  // FLOPs of one lq x lk x dim matrix product
  const double elem = static_cast<double>(dtype_size(o.dtype));
  const double q_bytes = elem * lq * dim, kv_bytes = elem * lk * dim, scores_bytes = elem * lq * lk;
  const Device device = o.device;
  dispatch_floating(o.dtype, "bench kernels", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = kernels::attention_acc_t<T>;
    const double lse_bytes = static_cast<double>(sizeof(Acc)) * lq;
    const DType dtype = o.dtype;
    auto inputs = [=] {
      return AttentionInputs{random_tensor({1, 1, lq, dim}, o), random_tensor({1, 1, lk, dim}, o),
                             random_tensor({1, 1, lk, dim}, o)};
    };
    // The reference forward: scores (lq, lk) = q k^T * scale, probs = softmax(scores), out = probs v.
    auto reference_forward = [=](const AttentionInputs& x, const Tensor& scores, const Tensor& probs,
                                 const Tensor& out) {
      SE_DISPATCH(device, gemm, gemm_desc(lq, lk, dim, false, true, d.scale, dtype), x.q.data_ptr(), x.k.data_ptr(),
                  scores.data_ptr());
      SE_DISPATCH(device, softmax_forward<T>, probs.data<T>(), scores.data<T>(), kernels::SoftmaxDesc{lq, lk, 1});
      SE_DISPATCH(device, gemm, gemm_desc(lq, dim, lk, false, false, 1.0, dtype), probs.data_ptr(), x.v.data_ptr(),
                  out.data_ptr());
    };
    // q, k, v read, out and lse written.
    cases.push_back(
        {"attention/forward", "segformer-b0", shape, 2 * product, 2 * q_bytes + 2 * kv_bytes + lse_bytes, [=] {
           const AttentionInputs x = inputs();
           Tensor out = empty_like(x.q), lse = empty({1, 1, lq}, {companion_dtype<T>(), device});
           return Run([=] {
             SE_DISPATCH(device, attention_forward<T>, out.data<T>(), lse.data<Acc>(), x.q.data<T>(), x.k.data<T>(),
                         x.v.data<T>(), d);
           });
         }});
    // Each GEMM reads its operands and writes its product; softmax reads the scores and writes probs.
    cases.push_back({"attention/forward_reference", "segformer-b0", shape, 2 * product,
                     2 * q_bytes + 2 * kv_bytes + 4 * scores_bytes, [=] {
                       const AttentionInputs x = inputs();
                       Tensor scores = empty({lq, lk}, {dtype, device}), probs = empty_like(scores);
                       Tensor out = empty_like(x.q);
                       return Run([=] { reference_forward(x, scores, probs, out); });
                     }});
    // grad_out, q, k, v, out and lse read; grad_q, grad_k, grad_v written.
    const double backward_products = o.device.is_cuda() ? 7 : 5;
    cases.push_back({"attention/backward", "segformer-b0", shape, backward_products * product,
                     4 * q_bytes + 4 * kv_bytes + lse_bytes, [=] {
                       const AttentionInputs x = inputs();
                       Tensor out = empty_like(x.q), lse = empty({1, 1, lq}, {companion_dtype<T>(), device});
                       SE_DISPATCH(device, attention_forward<T>, out.data<T>(), lse.data<Acc>(), x.q.data<T>(),
                                   x.k.data<T>(), x.v.data<T>(), d);
                       Tensor grad_out = random_tensor({1, 1, lq, dim}, o);
                       Tensor grad_q = empty_like(x.q), grad_k = empty_like(x.k), grad_v = empty_like(x.v);
                       return Run([=] {
                         SE_DISPATCH(device, attention_backward<T>, grad_q.data<T>(), grad_k.data<T>(),
                                     grad_v.data<T>(), grad_out.data<T>(), x.q.data<T>(), x.k.data<T>(), x.v.data<T>(),
                                     out.data<T>(), lse.data<Acc>(), d);
                       });
                     }});
    // From the saved probabilities: grad_v = probs^T grad_out, grad_probs = grad_out v^T, softmax backward,
    // grad_q = grad_scores k * scale, grad_k = grad_scores^T q * scale. Four GEMMs reading their operands
    // and writing their products, and the softmax backward reading two lq x lk matrices and writing one.
    cases.push_back({"attention/backward_reference", "segformer-b0", shape, 4 * product,
                     4 * q_bytes + 4 * kv_bytes + 7 * scores_bytes, [=] {
                       const AttentionInputs x = inputs();
                       Tensor scores = empty({lq, lk}, {dtype, device}), probs = empty_like(scores);
                       reference_forward(x, scores, probs, empty_like(x.q));
                       Tensor grad_out = random_tensor({1, 1, lq, dim}, o);
                       Tensor grad_probs = empty_like(scores), grad_scores = empty_like(scores);
                       Tensor grad_q = empty_like(x.q), grad_k = empty_like(x.k), grad_v = empty_like(x.v);
                       return Run([=] {
                         SE_DISPATCH(device, gemm, gemm_desc(lk, dim, lq, true, false, 1.0, dtype), probs.data_ptr(),
                                     grad_out.data_ptr(), grad_v.data_ptr());
                         SE_DISPATCH(device, gemm, gemm_desc(lq, lk, dim, false, true, 1.0, dtype), grad_out.data_ptr(),
                                     x.v.data_ptr(), grad_probs.data_ptr());
                         SE_DISPATCH(device, softmax_backward<T>, grad_scores.data<T>(), grad_probs.data<T>(),
                                     probs.data<T>(), kernels::SoftmaxDesc{lq, lk, 1});
                         SE_DISPATCH(device, gemm, gemm_desc(lq, dim, lk, false, false, d.scale, dtype),
                                     grad_scores.data_ptr(), x.k.data_ptr(), grad_q.data_ptr());
                         SE_DISPATCH(device, gemm, gemm_desc(lk, dim, lq, true, false, d.scale, dtype),
                                     grad_scores.data_ptr(), x.q.data_ptr(), grad_k.data_ptr());
                       });
                     }});
  });
}

}  // namespace

void add_compute_cases(std::vector<Case>& cases, const Options& o) {
  add_conv_cases(cases, o);
  add_conv_transpose_cases(cases, o);
  add_gemm_cases(cases, o);
  add_attention_cases(cases, o);
}

}  // namespace se::tools
