// `segengine bench kernels`, memory-bound cases (GB/s): elementwise, transposing copy, softmax, reductions,
// batch/layer/group norm, max/average/adaptive pooling, resize and dropout. Softmax, BatchNorm and pooling
// have cuDNN equivalents (adaptive pooling where its bins tile the input).
#include <optional>
#include <string>

#include "engine/dispatch.h"
#include "kernels/copy.h"
#include "kernels/dropout.h"
#include "kernels/elementwise.h"
#include "kernels/norm.h"
#include "kernels/pool.h"
#include "kernels/reduce.h"
#include "kernels/resize.h"
#include "kernels/softmax.h"
#include "tools/bench_kernel_cases.h"

namespace se::tools {

namespace {

using kernels::flat_layout;

// U-Net's first activation: 64 x 512 x 512.
void add_elementwise_cases(std::vector<Case>& cases, const Options& o) {
  const Device device = o.device;
  const double elem = static_cast<double>(dtype_size(o.dtype));
  const int64_t n = 64 * 512 * 512;
  const kernels::BinaryDesc add_desc{kernels::BinaryOp::add, o.dtype, flat_layout(n), flat_layout(n)};
  cases.push_back({"elementwise/add", "unet", "64x512x512", 0, 3 * elem * n, [=] {
                     Tensor a = random_tensor({n}, o), b = random_tensor({n}, o), out = empty({n}, {o.dtype, o.device});
                     return Run(
                         [=] { SE_DISPATCH(device, binary, out.data_ptr(), a.data_ptr(), b.data_ptr(), add_desc); });
                   }});
  for (auto [op, name] :
       {std::pair{kernels::UnaryOp::relu, "elementwise/relu"}, std::pair{kernels::UnaryOp::gelu, "elementwise/gelu"}}) {
    const kernels::UnaryDesc desc{op, o.dtype, flat_layout(n), {}};
    cases.push_back({name, "unet", "64x512x512", 0, 2 * elem * n, [=] {
                       Tensor a = random_tensor({n}, o), out = empty({n}, {o.dtype, o.device});
                       return Run([=] { SE_DISPATCH(device, unary, out.data_ptr(), a.data_ptr(), desc); });
                     }});
  }
}

// contiguous() of a transposed view: SegFormer-B0's stage-1 MLP features between image (128 x 128 x 128)
// and tokens (16384 x 128), which its Mix-FFN and decoder go through in both directions.
void add_copy_cases(std::vector<Case>& cases, const Options& o) {
  const Device device = o.device;
  const double elem = static_cast<double>(dtype_size(o.dtype));
  const int64_t channels = 128, pixels = 128 * 128;
  kernels::CopyDesc desc;
  desc.src_dtype = desc.dst_dtype = o.dtype;
  desc.dst.ndim = desc.src.ndim = 2;
  desc.dst.sizes[0] = desc.src.sizes[0] = pixels;  // dst (pixels, channels) from src (channels, pixels)
  desc.dst.sizes[1] = desc.src.sizes[1] = channels;
  desc.dst.strides[0] = channels;
  desc.dst.strides[1] = 1;
  desc.src.strides[0] = 1;
  desc.src.strides[1] = pixels;
  cases.push_back(
      {"copy/transpose", "segformer-b0", "128x128x128 image -> 16384x128 tokens", 0, 2 * elem * channels * pixels, [=] {
         Tensor x = random_tensor({channels, pixels}, o), y = empty({pixels, channels}, {o.dtype, o.device});
         return Run([=] { SE_DISPATCH(device, copy_strided, desc, x.data_ptr(), y.data_ptr()); });
       }});
}

// SegFormer-B0 stage-1 attention scores: 16384 queries x 256 keys, softmax over the keys. Sums over an
// activation: each channel's plane (a contiguous row), and across channels per pixel (a strided reduction,
// as batch-norm statistics of channels-last data need).
void add_softmax_and_reduce_cases(std::vector<Case>& cases, const Options& o) {
  const Device device = o.device;
  const double elem = static_cast<double>(dtype_size(o.dtype));
  const int64_t n = 64 * 512 * 512;
  dispatch_floating(o.dtype, "bench kernels", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const kernels::SoftmaxDesc softmax_desc{16384, 256, 1};
    const double scores_bytes = elem * 16384 * 256;
    cases.push_back({"softmax/forward", "segformer-b0", "16384x256 over 256", 0, 2 * scores_bytes, [=] {
                       Tensor scores = random_tensor({16384, 256}, o), probs = empty_like(scores);
                       return Prepared(Run([=] {
                                         SE_DISPATCH(device, softmax_forward<T>, probs.data<T>(), scores.data<T>(),
                                                     softmax_desc);
                                       }),
                                       {VendorOp::softmax_forward, softmax_desc, {scores}, {probs}});
                     }});
    // grad_y and y read, grad_x written.
    cases.push_back({"softmax/backward", "segformer-b0", "16384x256 over 256", 0, 3 * scores_bytes, [=] {
                       Tensor probs = empty({16384, 256}, {o.dtype, device});
                       SE_DISPATCH(device, softmax_forward<T>, probs.data<T>(),
                                   random_tensor({16384, 256}, o).data<T>(), softmax_desc);
                       Tensor grad_probs = random_tensor({16384, 256}, o), grad_scores = empty_like(probs);
                       return Prepared(Run([=] {
                                         SE_DISPATCH(device, softmax_backward<T>, grad_scores.data<T>(),
                                                     grad_probs.data<T>(), probs.data<T>(), softmax_desc);
                                       }),
                                       {VendorOp::softmax_backward, softmax_desc, {probs, grad_probs}, {grad_scores}});
                     }});
    // Over the classes of Cityscapes logits (Dice, OHEM and Lovasz losses): a strided softmax axis.
    const kernels::SoftmaxDesc classes_desc{1, 19, 512 * 512};
    const double logits_bytes = elem * 19 * 512 * 512;
    cases.push_back({"softmax/forward", "cityscapes", "19x512x512 over the classes", 0, 2 * logits_bytes, [=] {
                       Tensor logits = random_tensor({19, 512 * 512}, o), probs = empty_like(logits);
                       return Prepared(Run([=] {
                                         SE_DISPATCH(device, softmax_forward<T>, probs.data<T>(), logits.data<T>(),
                                                     classes_desc);
                                       }),
                                       {VendorOp::softmax_forward, classes_desc, {logits}, {probs}});
                     }});
    cases.push_back({"softmax/backward", "cityscapes", "19x512x512 over the classes", 0, 3 * logits_bytes, [=] {
                       Tensor probs = empty({19, 512 * 512}, {o.dtype, device});
                       SE_DISPATCH(device, softmax_forward<T>, probs.data<T>(),
                                   random_tensor({19, 512 * 512}, o).data<T>(), classes_desc);
                       Tensor grad_probs = random_tensor({19, 512 * 512}, o), grad_logits = empty_like(probs);
                       return Prepared(Run([=] {
                                         SE_DISPATCH(device, softmax_backward<T>, grad_logits.data<T>(),
                                                     grad_probs.data<T>(), probs.data<T>(), classes_desc);
                                       }),
                                       {VendorOp::softmax_backward, classes_desc, {probs, grad_probs}, {grad_logits}});
                     }});
    const kernels::ReduceDesc rows{64, 512 * 512, 1, 1};
    const kernels::ReduceDesc across{1, 64, 512 * 512, 1};
    cases.push_back({"reduce/sum_rows", "unet", "64 rows of 512x512", 0, elem * n, [=] {
                       Tensor a = random_tensor({n}, o), out = empty({64}, {o.dtype, o.device});
                       return Run([=] {
                         SE_DISPATCH(device, reduce<T>, kernels::ReduceOp::sum, out.data<T>(), a.data<T>(), rows);
                       });
                     }});
    cases.push_back({"reduce/sum_across", "unet", "64 channels per pixel of 512x512", 0, elem * n, [=] {
                       Tensor a = random_tensor({n}, o), out = empty({512 * 512}, {o.dtype, o.device});
                       return Run([=] {
                         SE_DISPATCH(device, reduce<T>, kernels::ReduceOp::sum, out.data<T>(), a.data<T>(), across);
                       });
                     }});
    // A Linear's bias gradient: the sum over every token of dy (SegFormer's decoder, stage 1 tokens).
    const int64_t tokens = 2 * 128 * 128, features = 256;
    const kernels::ReduceDesc bias_grad{1, tokens, features, 1};
    cases.push_back({"reduce/sum_tokens", "segformer-b0", "bias gradient: 32768 tokens x 256", 0,
                     elem * tokens * features, [=] {
                       Tensor a = random_tensor({tokens * features}, o), out = empty({features}, {o.dtype, o.device});
                       return Run([=] {
                         SE_DISPATCH(device, reduce<T>, kernels::ReduceOp::sum, out.data<T>(), a.data<T>(), bias_grad);
                       });
                     }});
  });
}

// BatchNorm2d on U-Net's widest activation and on ResNet-50's last stage at output stride 8 (2048 channels
// of short 64x64 planes). Training forward: the layer's three calls (statistics, finalize with the
// running-stat update, normalize), so x is read twice; eval forward: normalize with the running statistics;
// training backward: the per-channel reduction over dy and x, then the elementwise pass. The per-channel
// vectors are left out of the byte counts (under 0.1 % of the traffic).
struct BatchNormChannels {
  Tensor weight, bias, mean, var, invstd, running_mean, running_var;  // (C) each
};

void add_batch_norm_cases(std::vector<Case>& cases, const Options& o) {
  struct Layer {
    const char* model;
    int64_t channels, size;
  };
  const Device device = o.device;
  const double momentum = 0.1, eps = 1e-5;
  for (const Layer& layer : {Layer{"unet", 64, 512}, Layer{"resnet50-os8", 2048, 64}}) {
    const kernels::BatchNormDesc d{1, layer.channels, layer.size * layer.size};
    const BatchNormWork work{d, momentum, eps};
    const Shape x_shape{1, d.c, layer.size, layer.size};
    const std::string shape = dims_str({d.c, layer.size, layer.size});
    const double x_bytes = static_cast<double>(dtype_size(o.dtype)) * d.c * d.hw;
    dispatch_floating(o.dtype, "bench kernels", [&](auto tag) {
      using T = typename decltype(tag)::type;
      using P = kernels::norm_param_t<T>;
      auto channels = [=] {
        const TensorOptions options{companion_dtype<T>(), device};
        return BatchNormChannels{randn({d.c}, options), randn({d.c}, options), zeros({d.c}, options),
                                 ones({d.c}, options),  ones({d.c}, options),  zeros({d.c}, options),
                                 ones({d.c}, options)};
      };
      // The batch statistics of x into s.mean and s.invstd, updating the running statistics.
      auto train_statistics = [=](const Tensor& x, const BatchNormChannels& s) {
        SE_DISPATCH(device, batch_norm_stats<T>, s.mean.data<P>(), s.var.data<P>(), x.data<T>(), d);
        SE_DISPATCH(device, batch_norm_finalize<T>, s.invstd.data<P>(), s.running_mean.data<P>(),
                    s.running_var.data<P>(), s.mean.data<P>(), s.var.data<P>(), d.c, d.n * d.hw, momentum, eps);
      };
      auto normalize = [=](const Tensor& y, const Tensor& x, const BatchNormChannels& s) {
        SE_DISPATCH(device, batch_norm_elemt<T>, y.data<T>(), x.data<T>(), s.mean.data<P>(), s.invstd.data<P>(),
                    s.weight.data<P>(), s.bias.data<P>(), d);
      };
      // The fused pass the engine runs; x read, y written (the CPU reads each channel a second time from cache).
      cases.push_back({"batch_norm/forward", layer.model, shape + ", training", 0, 2 * x_bytes, [=] {
                         Tensor x = random_tensor(x_shape, o), y = empty_like(x);
                         const BatchNormChannels s = channels();
                         return Prepared(Run([=] {
                                           SE_DISPATCH(device, batch_norm_forward_training<T>, y.data<T>(),
                                                       s.mean.data<P>(), s.invstd.data<P>(), s.running_mean.data<P>(),
                                                       s.running_var.data<P>(), x.data<T>(), s.weight.data<P>(),
                                                       s.bias.data<P>(), d, momentum, eps);
                                         }),
                                         {VendorOp::batch_norm_forward_training,
                                          work,
                                          {x, s.weight, s.bias},
                                          {y, s.mean, s.invstd, s.running_mean, s.running_var}});
                       }});
      // The engine passes the running mean and 1 / sqrt(running var + eps) as mean and invstd.
      cases.push_back({"batch_norm/forward_eval", layer.model, shape + ", eval", 0, 2 * x_bytes, [=] {
                         Tensor x = random_tensor(x_shape, o), y = empty_like(x);
                         const BatchNormChannels s = channels();
                         // s.mean and s.var stand for the running statistics.
                         SE_DISPATCH(device, batch_norm_finalize<T>, s.invstd.data<P>(), nullptr, nullptr,
                                     s.mean.data<P>(), s.var.data<P>(), d.c, d.n * d.hw, momentum, eps);
                         return Prepared(
                             Run([=] { normalize(y, x, s); }),
                             {VendorOp::batch_norm_forward_inference, work, {x, s.weight, s.bias, s.mean, s.var}, {y}});
                       }});
      // The fused pass: dy and x read, dx written.
      cases.push_back({"batch_norm/backward", layer.model, shape + ", training", 0, 3 * x_bytes, [=] {
                         Tensor x = random_tensor(x_shape, o), dy = random_tensor(x_shape, o), dx = empty_like(x);
                         const BatchNormChannels s = channels();
                         train_statistics(x, s);
                         const TensorOptions options{companion_dtype<T>(), device};
                         Tensor sum_dy = empty({d.c}, options), sum_dy_xmu = empty({d.c}, options);
                         return Prepared(
                             Run([=] {
                               SE_DISPATCH(device, batch_norm_backward_training<T>, dx.data<T>(), sum_dy.data<P>(),
                                           sum_dy_xmu.data<P>(), dy.data<T>(), x.data<T>(), nullptr, s.mean.data<P>(),
                                           s.invstd.data<P>(), s.weight.data<P>(), d);
                             }),
                             {VendorOp::batch_norm_backward, work, {x, dy, s.weight, s.mean, s.invstd}, {dx, sum_dy}});
                       }});
      // With the ReLU fused (Conv-BN-ReLU): the same passes, relu(y) written; backward also reads the ReLU's y.
      kernels::BatchNormDesc relu_desc = d;
      relu_desc.relu = true;
      cases.push_back({"batch_norm_relu/forward", layer.model, shape + ", training", 0, 2 * x_bytes, [=] {
                         Tensor x = random_tensor(x_shape, o), y = empty_like(x);
                         const BatchNormChannels s = channels();
                         return Prepared(Run([=] {
                           SE_DISPATCH(device, batch_norm_forward_training<T>, y.data<T>(), s.mean.data<P>(),
                                       s.invstd.data<P>(), s.running_mean.data<P>(), s.running_var.data<P>(),
                                       x.data<T>(), s.weight.data<P>(), s.bias.data<P>(), relu_desc, momentum, eps);
                         }));
                       }});
      cases.push_back({"batch_norm_relu/backward", layer.model, shape + ", training", 0, 4 * x_bytes, [=] {
                         Tensor x = random_tensor(x_shape, o), dy = random_tensor(x_shape, o), dx = empty_like(x);
                         Tensor y = empty_like(x);
                         const BatchNormChannels s = channels();
                         SE_DISPATCH(device, batch_norm_forward_training<T>, y.data<T>(), s.mean.data<P>(),
                                     s.invstd.data<P>(), s.running_mean.data<P>(), s.running_var.data<P>(), x.data<T>(),
                                     s.weight.data<P>(), s.bias.data<P>(), relu_desc, momentum, eps);
                         const TensorOptions options{companion_dtype<T>(), device};
                         Tensor sum_dy = empty({d.c}, options), sum_dy_xmu = empty({d.c}, options);
                         return Prepared(Run([=] {
                           SE_DISPATCH(device, batch_norm_backward_training<T>, dx.data<T>(), sum_dy.data<P>(),
                                       sum_dy_xmu.data<P>(), dy.data<T>(), x.data<T>(), y.data<T>(), s.mean.data<P>(),
                                       s.invstd.data<P>(), s.weight.data<P>(), relu_desc);
                         }));
                       }});
    });
  }
}

// LayerNorm and GroupNorm share their signatures: forward(y, mean, invstd, x, weight, bias) and
// backward(dx, grad_weight, grad_bias, dy, x, mean, invstd, weight), with `stats` saved statistics
// (rows, or samples x groups) and `params` affine parameters (columns, or channels).
struct AffineNormShape {
  const char* family;  // "layer_norm" or "group_norm"
  const char* model;
  std::string shape;
  Shape x_shape;
  int64_t stats, params;
};

struct AffineNormTensors {
  Tensor x;             // the input's shape
  Tensor weight, bias;  // (params)
  Tensor mean, invstd;  // (stats)
};

template <typename T, typename Forward, typename Backward>
void add_affine_norm_cases(std::vector<Case>& cases, const Options& o, const AffineNormShape& s, Forward forward,
                           Backward backward) {
  using P = kernels::norm_param_t<T>;
  const Device device = o.device;
  const double x_bytes = static_cast<double>(dtype_size(o.dtype)) * static_cast<double>(shape_numel(s.x_shape));
  const double stats_bytes = static_cast<double>(sizeof(P)) * s.stats, param_bytes = sizeof(P) * s.params;
  auto tensors = [=] {
    const TensorOptions options{companion_dtype<T>(), device};
    return AffineNormTensors{random_tensor(s.x_shape, o), randn({s.params}, options), randn({s.params}, options),
                             empty({s.stats}, options), empty({s.stats}, options)};
  };
  // x read, y and the statistics written, weight and bias read.
  cases.push_back(
      {std::string(s.family) + "/forward", s.model, s.shape, 0, 2 * x_bytes + 2 * stats_bytes + 2 * param_bytes, [=] {
         const AffineNormTensors t = tensors();
         Tensor y = empty_like(t.x);
         return Run([=] {
           forward(y.data<T>(), t.mean.data<P>(), t.invstd.data<P>(), t.x.data<T>(), t.weight.data<P>(),
                   t.bias.data<P>());
         });
       }});
  // dy, x, the statistics and weight read; dx, grad_weight and grad_bias written.
  cases.push_back(
      {std::string(s.family) + "/backward", s.model, s.shape, 0, 3 * x_bytes + 2 * stats_bytes + 3 * param_bytes, [=] {
         const AffineNormTensors t = tensors();
         forward(empty_like(t.x).data<T>(), t.mean.data<P>(), t.invstd.data<P>(), t.x.data<T>(), t.weight.data<P>(),
                 t.bias.data<P>());
         Tensor dy = random_tensor(s.x_shape, o), dx = empty_like(t.x);
         Tensor grad_weight = empty_like(t.weight), grad_bias = empty_like(t.bias);
         return Run([=] {
           backward(dx.data<T>(), grad_weight.data<P>(), grad_bias.data<P>(), dy.data<T>(), t.x.data<T>(),
                    t.mean.data<P>(), t.invstd.data<P>(), t.weight.data<P>());
         });
       }});
}

// LayerNorm of SegFormer-B0's first and last stage (128x128 tokens of 32 channels, 16x16 tokens of 256).
// No model of the zoo uses GroupNorm: its case is ResNet-50's stage-1 activation with the usual 32 groups,
// as a GroupNorm backbone would normalize it.
void add_layer_and_group_norm_cases(std::vector<Case>& cases, const Options& o) {
  const Device device = o.device;
  const double eps = 1e-5;
  dispatch_floating(o.dtype, "bench kernels", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using P = kernels::norm_param_t<T>;
    for (auto [tokens, width, stage] :
         {std::tuple{int64_t{16384}, int64_t{32}, "stage 1"}, std::tuple{int64_t{256}, int64_t{256}, "stage 4"}}) {
      const kernels::LayerNormDesc d{tokens, width};
      const AffineNormShape s{"layer_norm",
                              "segformer-b0",
                              std::to_string(tokens) + " tokens x " + std::to_string(width) + " (" + stage + ")",
                              {tokens, width},
                              tokens,
                              width};
      add_affine_norm_cases<T>(
          cases, o, s,
          [=](T* y, P* mean, P* invstd, const T* x, const P* weight, const P* bias) {
            SE_DISPATCH(device, layer_norm_forward<T>, y, mean, invstd, x, weight, bias, d, eps);
          },
          [=](T* dx, P* grad_weight, P* grad_bias, const T* dy, const T* x, const P* mean, const P* invstd,
              const P* weight) {
            SE_DISPATCH(device, layer_norm_backward<T>, dx, grad_weight, grad_bias, dy, x, mean, invstd, weight, d);
          });
    }
    const kernels::GroupNormDesc d{1, 256, 128 * 128, 32};
    const AffineNormShape s{"group_norm", "resnet50-os8", "256x128x128, 32 groups", {1, 256, 128, 128}, 32, 256};
    add_affine_norm_cases<T>(
        cases, o, s,
        [=](T* y, P* mean, P* invstd, const T* x, const P* weight, const P* bias) {
          SE_DISPATCH(device, group_norm_forward<T>, y, mean, invstd, x, weight, bias, d, eps);
        },
        [=](T* dx, P* grad_weight, P* grad_bias, const T* dy, const T* x, const P* mean, const P* invstd,
            const P* weight) {
          SE_DISPATCH(device, group_norm_backward<T>, dx, grad_weight, grad_bias, dy, x, mean, invstd, weight, d);
        });
  });
}

// "64x256x256 -> 64x128x128"
std::string planes_str(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w) {
  return dims_str({planes, in_h, in_w}) + " -> " + dims_str({planes, out_h, out_w});
}

// Kernels of the form forward(y, x) and backward(grad_x, grad_y) over (planes, H, W): average pooling,
// adaptive average pooling and resize. Each direction reads its input once and writes its output once.
struct PlaneMapShape {
  std::string family;  // "avg_pool2d", "resize", ...
  const char* model;
  std::string forward, backward;  // the case names' direction parts
  std::string shape;
  int64_t planes, in_h, in_w, out_h, out_w;
  // Average pooling's descriptor (Pool2dDesc or AdaptivePool2dDesc): cuDNN's average pooling does the same.
  std::optional<VendorDesc> avg_pool = std::nullopt;
};

template <typename T, typename Forward, typename Backward>
void add_plane_map_cases(std::vector<Case>& cases, const Options& o, const PlaneMapShape& s, Forward forward,
                         Backward backward) {
  const double bytes =
      static_cast<double>(dtype_size(o.dtype)) * static_cast<double>(s.planes * (s.in_h * s.in_w + s.out_h * s.out_w));
  const Shape x_shape{1, s.planes, s.in_h, s.in_w}, y_shape{1, s.planes, s.out_h, s.out_w};
  const Device device = o.device;
  cases.push_back({s.family + "/" + s.forward, s.model, s.shape, 0, bytes, [=] {
                     Tensor x = random_tensor(x_shape, o), y = empty(y_shape, {o.dtype, device});
                     Prepared prepared(Run([=] { forward(y.data<T>(), x.data<T>()); }));
                     if (s.avg_pool) prepared.vendor = VendorWork{VendorOp::avg_pool2d_forward, *s.avg_pool, {x}, {y}};
                     return prepared;
                   }});
  cases.push_back({s.family + "/" + s.backward, s.model, s.shape, 0, bytes, [=] {
                     Tensor grad_y = random_tensor(y_shape, o), grad_x = empty(x_shape, {o.dtype, device});
                     Prepared prepared(Run([=] { backward(grad_x.data<T>(), grad_y.data<T>()); }));
                     if (s.avg_pool) {
                       prepared.vendor = VendorWork{VendorOp::avg_pool2d_backward, *s.avg_pool, {grad_y}, {grad_x}};
                     }
                     return prepared;
                   }});
}

// Max pooling of ResNet-50's stem (3x3, stride 2, pad 1 at 256x256) and U-Net's 2x2 down-sampling; average
// pooling on U-Net's shape in place of its max pool (no model of the zoo has one); PSPNet's pyramid pooling
// (bins 1, 2, 3 and 6) on the 2048 x 64 x 64 features of ResNet-50 at output stride 8.
void add_pool_cases(std::vector<Case>& cases, const Options& o) {
  struct Window {
    const char* model;
    int64_t channels, size, kernel, stride, pad;
  };
  auto pool_desc = [](const Window& w) {
    kernels::Pool2dDesc d;
    d.planes = w.channels;
    d.in_h = d.in_w = w.size;
    d.out_h = d.out_w = kernels::pool_output_size(w.size, w.kernel, w.stride, w.pad, 1, false);
    d.kernel_h = d.kernel_w = w.kernel;
    d.stride_h = d.stride_w = w.stride;
    d.pad_h = d.pad_w = w.pad;
    return d;
  };
  auto window_str = [](const kernels::Pool2dDesc& d) {
    return planes_str(d.planes, d.in_h, d.in_w, d.out_h, d.out_w) + ", k" + std::to_string(d.kernel_h) + " s" +
           std::to_string(d.stride_h) + " p" + std::to_string(d.pad_h);
  };
  const Device device = o.device;
  const double elem = static_cast<double>(dtype_size(o.dtype));
  dispatch_floating(o.dtype, "bench kernels", [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (const Window& w : {Window{"resnet50-os8", 64, 256, 3, 2, 1}, Window{"unet", 64, 512, 2, 2, 0}}) {
      const kernels::Pool2dDesc d = pool_desc(w);
      const Shape x_shape{1, d.planes, d.in_h, d.in_w}, y_shape{1, d.planes, d.out_h, d.out_w};
      // x read; y and the i64 argmax indices written (backward: grad_y and indices read, grad_x written).
      const double bytes =
          elem * static_cast<double>(shape_numel(x_shape)) + (elem + 8.0) * static_cast<double>(shape_numel(y_shape));
      cases.push_back({"max_pool2d/forward", w.model, window_str(d), 0, bytes, [=] {
                         Tensor x = random_tensor(x_shape, o), y = empty(y_shape, {o.dtype, device});
                         Tensor indices = empty(y_shape, {DType::i64, device});
                         return Prepared(Run([=] {
                                           SE_DISPATCH(device, max_pool2d_forward<T>, y.data<T>(),
                                                       indices.data<int64_t>(), x.data<T>(), d);
                                         }),
                                         {VendorOp::max_pool2d_forward, d, {x}, {y}});
                       }});
      cases.push_back({"max_pool2d/backward", w.model, window_str(d), 0, bytes, [=] {
                         Tensor x = random_tensor(x_shape, o), y = empty(y_shape, {o.dtype, device});
                         Tensor indices = empty(y_shape, {DType::i64, device});
                         SE_DISPATCH(device, max_pool2d_forward<T>, y.data<T>(), indices.data<int64_t>(), x.data<T>(),
                                     d);
                         Tensor grad_y = random_tensor(y_shape, o), grad_x = empty_like(x);
                         // cuDNN finds the maxima again from x and y instead of reading saved indices.
                         return Prepared(Run([=] {
                                           SE_DISPATCH(device, max_pool2d_backward<T>, grad_x.data<T>(),
                                                       grad_y.data<T>(), indices.data<int64_t>(), d);
                                         }),
                                         {VendorOp::max_pool2d_backward, d, {x, y, grad_y}, {grad_x}});
                       }});
    }
    const kernels::Pool2dDesc avg = pool_desc(Window{"unet", 64, 512, 2, 2, 0});
    add_plane_map_cases<T>(
        cases, o,
        {"avg_pool2d", "unet", "forward", "backward", window_str(avg), avg.planes, avg.in_h, avg.in_w, avg.out_h,
         avg.out_w, avg},
        [=](T* y, const T* x) { SE_DISPATCH(device, avg_pool2d_forward<T>, y, x, avg); },
        [=](T* grad_x, const T* grad_y) { SE_DISPATCH(device, avg_pool2d_backward<T>, grad_x, grad_y, avg); });
    for (int64_t bins : {1, 2, 3, 6}) {
      const kernels::AdaptivePool2dDesc d{2048, 64, 64, bins, bins};
      add_plane_map_cases<T>(
          cases, o,
          {"adaptive_avg_pool2d", "pspnet", "forward", "backward", planes_str(2048, 64, 64, bins, bins), 2048, 64, 64,
           bins, bins, d},
          [=](T* y, const T* x) { SE_DISPATCH(device, adaptive_avg_pool2d_forward<T>, y, x, d); },
          [=](T* grad_x, const T* grad_y) { SE_DISPATCH(device, adaptive_avg_pool2d_backward<T>, grad_x, grad_y, d); });
    }
  });
}

// Bilinear resize (align_corners false) of SegFormer-B0's stride-4 logits to 512x512, for Cityscapes' 19 and
// ADE20K's 150 classes (DeepLabV3+ upsamples the same way), and of its decoder's stage-4 features to
// stride 4; nearest on the Cityscapes logits for comparison.
void add_resize_cases(std::vector<Case>& cases, const Options& o) {
  struct Resize {
    const char* model;
    const char* what;
    int64_t planes, in, out;
    kernels::ResizeMode mode;
  };
  const Device device = o.device;
  dispatch_floating(o.dtype, "bench kernels", [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (const Resize& r : {Resize{"segformer-b0", "Cityscapes logits", 19, 128, 512, kernels::ResizeMode::bilinear},
                            Resize{"segformer-b0", "ADE20K logits", 150, 128, 512, kernels::ResizeMode::bilinear},
                            Resize{"segformer-b0", "decoder, stage 4", 256, 16, 128, kernels::ResizeMode::bilinear},
                            Resize{"cityscapes", "logits", 19, 128, 512, kernels::ResizeMode::nearest}}) {
      kernels::ResizeDesc d;
      d.planes = r.planes;
      d.in_h = d.in_w = r.in;
      d.out_h = d.out_w = r.out;
      d.mode = r.mode;
      const std::string mode = r.mode == kernels::ResizeMode::bilinear ? "bilinear" : "nearest";
      add_plane_map_cases<T>(
          cases, o,
          {"resize", r.model, mode + "_forward", mode + "_backward",
           planes_str(r.planes, r.in, r.in, r.out, r.out) + ", " + r.what, r.planes, r.in, r.in, r.out, r.out},
          [=](T* y, const T* x) { SE_DISPATCH(device, resize_forward<T>, y, x, d); },
          [=](T* grad_x, const T* grad_y) { SE_DISPATCH(device, resize_backward<T>, grad_x, grad_y, d); });
    }
  });
}

// SegFormer-B0's decoder dropout (p 0.1) on its fused 256 x 128 x 128 features: forward reads x and writes y
// and the byte mask, backward reads grad_y and the mask and writes grad_x.
void add_dropout_cases(std::vector<Case>& cases, const Options& o) {
  const Device device = o.device;
  const int64_t n = 256 * 128 * 128;
  kernels::DropoutDesc d;
  d.count = n;
  d.seed = 42;
  d.p = 0.1f;
  d.dtype = o.dtype;
  const double bytes = (2.0 * static_cast<double>(dtype_size(o.dtype)) + 1.0) * n;
  cases.push_back(
      {"dropout/forward", "segformer-b0", "256x128x128, p 0.1", 0, bytes, [=] {
         Tensor x = random_tensor({n}, o), y = empty_like(x), mask = empty({n}, {DType::u8, device});
         return Run([=] { SE_DISPATCH(device, dropout_forward, d, x.data_ptr(), y.data_ptr(), mask.data<uint8_t>()); });
       }});
  cases.push_back({"dropout/backward", "segformer-b0", "256x128x128, p 0.1", 0, bytes, [=] {
                     Tensor x = random_tensor({n}, o), y = empty_like(x), mask = empty({n}, {DType::u8, device});
                     SE_DISPATCH(device, dropout_forward, d, x.data_ptr(), y.data_ptr(), mask.data<uint8_t>());
                     Tensor grad_y = random_tensor({n}, o), grad_x = empty_like(x);
                     return Run([=] {
                       SE_DISPATCH(device, dropout_backward, d, grad_y.data_ptr(), mask.data<uint8_t>(),
                                   grad_x.data_ptr());
                     });
                   }});
}

}  // namespace

void add_memory_cases(std::vector<Case>& cases, const Options& o) {
  add_elementwise_cases(cases, o);
  add_copy_cases(cases, o);
  add_softmax_and_reduce_cases(cases, o);
  add_batch_norm_cases(cases, o);
  add_layer_and_group_norm_cases(cases, o);
  add_pool_cases(cases, o);
  add_resize_cases(cases, o);
  add_dropout_cases(cases, o);
}

}  // namespace se::tools
