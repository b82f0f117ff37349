// `segengine bench kernels`, the training-loop cases (GB/s): sort and cumsum (Lovasz-softmax), the fused
// cross-entropy and focal losses, the confusion-matrix metrics, and the multi-tensor optimizer steps.
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "engine/dispatch.h"
#include "kernels/loss.h"
#include "kernels/metrics.h"
#include "kernels/optim.h"
#include "kernels/sort.h"
#include "models/registry.h"
#include "tools/bench_kernel_cases.h"

namespace se::tools {

namespace {

// Cityscapes-sized logits: 19 classes at 512x512.
constexpr int64_t kClasses = 19, kPixels = 512 * 512;

// The sort and cumsum that Lovasz-softmax runs over 19 rows of every pixel's error, and OHEM's sort of a
// batch's pixels (f32 only).
void add_sort_and_cumsum_cases(std::vector<Case>& cases, const Options& o) {
  if (o.dtype != DType::f32) return;
  const Device device = o.device;
  for (bool descending : {false, true}) {
    const kernels::SortDesc d{kClasses, kPixels, descending, DType::f32};
    // Keys read; values and i64 indices written.
    cases.push_back(
        {descending ? "sort/descending" : "sort/ascending", "lovasz", "19 rows of 512x512", 0,
         static_cast<double>(kClasses * kPixels) * (2 * 4 + 8), [=] {
           Tensor x = random_tensor({kClasses, kPixels}, o), values = empty_like(x);
           Tensor indices = empty({kClasses, kPixels}, {DType::i64, device});
           Tensor workspace;
           if (device.is_cuda()) {
             workspace = empty({static_cast<int64_t>(kernels::sort_workspace_bytes(d))}, {DType::u8, device});
           }
           return Run([=] {
             SE_DISPATCH(device, sort, d, x.data_ptr(), values.data_ptr(), indices.data<int64_t>(),
                         workspace.defined() ? workspace.data_ptr() : nullptr);
           });
         }});
  }
  // OHEM's threshold: the probabilities of a batch's pixels (here 2 images of 512x1024) as one row.
  constexpr int64_t kOhemPixels = 2 * 512 * 1024;
  const kernels::SortDesc ohem{1, kOhemPixels, false, DType::f32};
  cases.push_back(
      {"sort/ascending", "ohem", "1 row of 2x512x1024", 0, static_cast<double>(kOhemPixels) * (2 * 4 + 8), [=] {
         Tensor x = random_tensor({1, kOhemPixels}, o), values = empty_like(x);
         Tensor indices = empty({1, kOhemPixels}, {DType::i64, device});
         Tensor workspace;
         if (device.is_cuda()) {
           workspace = empty({static_cast<int64_t>(kernels::sort_workspace_bytes(ohem))}, {DType::u8, device});
         }
         return Run([=] {
           SE_DISPATCH(device, sort, ohem, x.data_ptr(), values.data_ptr(), indices.data<int64_t>(),
                       workspace.defined() ? workspace.data_ptr() : nullptr);
         });
       }});
  const kernels::CumsumDesc d{kClasses, kPixels, 1, false, DType::f32};
  cases.push_back({"cumsum/rows", "lovasz", "19 rows of 512x512", 0, 2.0 * 4 * kClasses * kPixels, [=] {
                     Tensor x = random_tensor({kClasses, kPixels}, o), y = empty_like(x);
                     return Run([=] { SE_DISPATCH(device, cumsum, d, x.data_ptr(), y.data_ptr()); });
                   }});
}

// Cross-entropy and focal loss share their signatures:
//   forward(loss, per-pixel weight or valid mask, lse, bad_target, logits, target)
//   backward(grad_logits, grad_loss, logits, lse, target)
// (no class weights; the backward with one gradient for all pixels, as a mean reduction gives). Forward
// reads the logits and targets and writes the two per-pixel values and the log-sum-exp; backward reads the
// logits, log-sum-exp and targets and writes the gradient.
template <typename T, typename Forward, typename Backward>
void add_pixel_loss_cases(std::vector<Case>& cases, const Options& o, const std::string& family, Forward forward,
                          Backward backward) {
  using C = kernels::loss_compute_t<T>;
  const Device device = o.device;
  const double elem = static_cast<double>(dtype_size(o.dtype));
  const double logits_bytes = elem * kClasses * kPixels;
  const double target_bytes = 8.0 * kPixels, lse_bytes = static_cast<double>(sizeof(C)) * kPixels;
  cases.push_back({family + "/forward", "cityscapes", "19x512x512", 0,
                   logits_bytes + target_bytes + 2 * elem * kPixels + lse_bytes, [=] {
                     Tensor logits = random_tensor({1, kClasses, 512, 512}, o);
                     Tensor target = random_targets({1, 512, 512}, kClasses, o);
                     Tensor loss = empty({1, kPixels}, {o.dtype, device}), weight = empty_like(loss);
                     Tensor lse = empty({1, kPixels}, {companion_dtype<T>(), device});
                     // Every target is in range: the flag keeps the ignore index it starts with.
                     Tensor bad_target = full({1}, 255, {DType::i64, device});
                     return Run([=] {
                       forward(loss.data<T>(), weight.data<T>(), lse.data<C>(), bad_target.data<int64_t>(),
                               logits.data<T>(), target.data<int64_t>());
                     });
                   }});
  cases.push_back(
      {family + "/backward", "cityscapes", "19x512x512", 0, 2 * logits_bytes + lse_bytes + target_bytes, [=] {
         Tensor logits = random_tensor({1, kClasses, 512, 512}, o);
         Tensor target = random_targets({1, 512, 512}, kClasses, o);
         Tensor grad = empty_like(logits), one = ones({1}, {o.dtype, device});
         // The work does not depend on the saved log-sum-exp's values.
         Tensor lse = zeros({1, kPixels}, {companion_dtype<T>(), device});
         return Run(
             [=] { backward(grad.data<T>(), one.data<T>(), logits.data<T>(), lse.data<C>(), target.data<int64_t>()); });
       }});
}

// The losses on Cityscapes-sized logits, ignore index 255: softmax cross-entropy and the focal loss
// (gamma 2).
void add_loss_function_cases(std::vector<Case>& cases, const Options& o) {
  const Device device = o.device;
  dispatch_floating(o.dtype, "bench kernels", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = kernels::loss_compute_t<T>;
    kernels::CrossEntropyDesc ce;
    ce.classes = kClasses;
    ce.spatial = kPixels;
    ce.ignore_index = 255;
    add_pixel_loss_cases<T>(
        cases, o, "cross_entropy",
        [=](T* loss, T* weight, C* lse, int64_t* bad, const T* logits, const int64_t* target) {
          SE_DISPATCH(device, cross_entropy_forward<T>, loss, weight, lse, bad, logits, target, nullptr, ce);
        },
        [=](T* grad, const T* grad_loss, const T* logits, const C* lse, const int64_t* target) {
          SE_DISPATCH(device, cross_entropy_backward<T>, grad, grad_loss, 0, logits, lse, target, nullptr, ce);
        });
    kernels::FocalLossDesc focal;
    focal.classes = kClasses;
    focal.spatial = kPixels;
    focal.ignore_index = 255;
    focal.gamma = 2.0;
    add_pixel_loss_cases<T>(
        cases, o, "focal_loss",
        [=](T* loss, T* valid, C* lse, int64_t* bad, const T* logits, const int64_t* target) {
          SE_DISPATCH(device, focal_loss_forward<T>, loss, valid, lse, bad, logits, target, nullptr, focal);
        },
        [=](T* grad, const T* grad_loss, const T* logits, const C* lse, const int64_t* target) {
          SE_DISPATCH(device, focal_loss_backward<T>, grad, grad_loss, 0, logits, lse, target, nullptr, focal);
        });
  });
}

// The confusion matrix of an evaluation at 512x512: the argmax over the logits fused into the count, for
// Cityscapes' 19 classes and ADE20K's 150 (beyond the 110 whose counters fit one CUDA block's shared memory),
// and the count from given i64 predictions. Each reads its inputs once and reads and writes the matrix.
void add_metrics_cases(std::vector<Case>& cases, const Options& o) {
  const Device device = o.device;
  const double elem = static_cast<double>(dtype_size(o.dtype));
  dispatch_floating(o.dtype, "bench kernels", [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (auto [dataset, classes] : {std::pair{"cityscapes", kClasses}, std::pair{"ade20k", int64_t{150}}}) {
      const kernels::ConfusionDesc d{1, classes, kPixels, 255};
      cases.push_back({"metrics/argmax_confusion", dataset, dims_str({classes, 512, 512}) + " logits", 0,
                       elem * classes * kPixels + 8.0 * kPixels + 16.0 * classes * classes, [=] {
                         Tensor logits = random_tensor({1, classes, 512, 512}, o);
                         Tensor target = random_targets({1, 512, 512}, classes, o);
                         Tensor matrix = zeros({classes, classes}, {DType::i64, device});
                         Tensor bad_value = full({1}, 255, {DType::i64, device});
                         return Run([=] {
                           SE_DISPATCH(device, argmax_confusion_update<T>, matrix.data<int64_t>(),
                                       bad_value.data<int64_t>(), logits.data<T>(), target.data<int64_t>(), d);
                         });
                       }});
    }
  });
  const kernels::ConfusionDesc d{1, kClasses, kPixels, 255};
  cases.push_back({"metrics/confusion", "cityscapes", "512x512 predictions, 19 classes", 0,
                   16.0 * kPixels + 16.0 * kClasses * kClasses, [=] {
                     Tensor prediction = random_targets({1, 512, 512}, kClasses, o);
                     Tensor target = random_targets({1, 512, 512}, kClasses, o);
                     Tensor matrix = zeros({kClasses, kClasses}, {DType::i64, device});
                     Tensor bad_value = full({1}, 255, {DType::i64, device});
                     return Run([=] {
                       SE_DISPATCH(device, confusion_update, matrix.data<int64_t>(), bad_value.data<int64_t>(),
                                   prediction.data<int64_t>(), target.data<int64_t>(), d);
                     });
                   }});
}

// `lists` lists of f32 tensors with a model's parameter sizes (parameters, gradients, optimizer state), and
// the CUDA workspace for them. Lists 0 and 1 hold random normal values, the state lists start at zero.
// Held through a shared_ptr: `list` points into the pointer tables.
struct TensorLists {
  std::vector<int64_t> numels;
  std::vector<Tensor> tensors[kernels::kMaxListsPerStep];
  std::vector<float*> pointers[kernels::kMaxListsPerStep];
  kernels::MultiTensorList list;
  Tensor scalar;     // () f32: the sum of squares, or the found-inf flag
  Tensor workspace;  // (bytes), CUDA only

  TensorLists(const std::vector<int64_t>& sizes, int lists, Device device) : numels(sizes) {
    for (int l = 0; l < lists; ++l) {
      for (int64_t numel : numels) {
        const TensorOptions options{DType::f32, device};
        tensors[l].push_back(l < 2 ? randn({numel}, options) : zeros({numel}, options));
        pointers[l].push_back(tensors[l].back().data<float>());
      }
      list.lists[l] = pointers[l].data();
    }
    list.count = static_cast<int64_t>(numels.size());
    list.numels = numels.data();
    scalar = zeros({}, {DType::f32, device});
    if (device.is_cuda()) {
      workspace = empty({static_cast<int64_t>(kernels::multi_tensor_workspace_bytes(list))}, {DType::u8, device});
    }
  }
  TensorLists(const TensorLists&) = delete;
  TensorLists& operator=(const TensorLists&) = delete;
  void* workspace_or_null() const { return workspace.defined() ? workspace.data_ptr() : nullptr; }
};

// The sizes of a zoo model's parameter tensors (the model is built on the CPU once, only the sizes are kept).
std::vector<int64_t> parameter_numels(const std::string& model_json) {
  std::vector<int64_t> numels;
  for (const Tensor& p : models::build_model_from_json(model_json)->parameters()) numels.push_back(p.numel());
  return numels;
}

// The optimizer steps over the parameters of the classic U-Net (base width 64) and SegFormer-B0, both with
// 19 classes: SGD with momentum 0.9 and AdamW (each one multi-tensor call), the global gradient norm's sum
// of squares, and the loss-scaling unscale-and-check (with scale 1, so repeats leave the gradients as they
// are; the work is the same for any scale). Always f32: the master weights of mixed precision.
void add_optimizer_cases(std::vector<Case>& cases, const Options& o) {
  const Device device = o.device;
  kernels::SgdDesc sgd;
  sgd.lr = 0.01f;
  sgd.momentum = 0.9f;
  sgd.weight_decay = 5e-4f;
  kernels::AdamDesc adamw;
  adamw.lr = 6e-5f;
  adamw.weight_decay = 0.01f;
  struct Step {
    const char* name;
    int lists;    // tensor lists read
    int written;  // of them written back
    std::function<void(const TensorLists&)> run;
  };
  const Step steps[] = {
      {"optim/sgd_momentum", 3, 2,
       [=](const TensorLists& t) { SE_DISPATCH(device, sgd_step, sgd, t.list, t.workspace_or_null()); }},
      {"optim/adamw", 4, 3,
       [=](const TensorLists& t) { SE_DISPATCH(device, adam_step, adamw, t.list, t.workspace_or_null()); }},
      {"optim/sum_of_squares", 1, 0,
       [=](const TensorLists& t) {
         SE_DISPATCH(device, sum_of_squares, t.list, t.scalar.data<float>(), t.workspace_or_null());
       }},
      {"optim/unscale_and_check", 1, 1,
       [=](const TensorLists& t) {
         SE_DISPATCH(device, unscale_and_check, t.list, 1.0f, t.scalar.data<float>(), t.workspace_or_null());
       }},
  };
  struct Model {
    const char* name;
    const char* json;
  };
  for (const Model& m : {Model{"unet", R"({"name": "unet", "num_classes": 19, "base_channels": 64, "depth": 4})"},
                         Model{"segformer-b0", R"({"name": "segformer", "variant": "b0", "num_classes": 19})"}}) {
    std::vector<int64_t> numels;
    std::string shape;
    double list_bytes = 0;  // one list of f32 tensors
    for (const Step& step : steps) {
      // Building the U-Net takes most of a second: only for the cases the filter selects by kernel and
      // model name (their shape text, the parameter count, needs the model built).
      if (!o.selects(step.name, m.name, "")) continue;
      if (numels.empty()) {
        numels = parameter_numels(m.json);
        int64_t total = 0;
        for (int64_t n : numels) total += n;
        char text[96];
        std::snprintf(text, sizeof(text), "%.2f M parameters in %zu tensors, f32", static_cast<double>(total) * 1e-6,
                      numels.size());
        shape = text;
        list_bytes = 4.0 * static_cast<double>(total);
      }
      cases.push_back({step.name, m.name, shape, 0, (step.lists + step.written) * list_bytes,
                       [=, lists = step.lists, run = step.run] {
                         auto tensors = std::make_shared<const TensorLists>(numels, lists, device);
                         return Run([=] { run(*tensors); });
                       }});
    }
  }
}

}  // namespace

void add_loss_cases(std::vector<Case>& cases, const Options& o) {
  add_sort_and_cumsum_cases(cases, o);
  add_loss_function_cases(cases, o);
  add_metrics_cases(cases, o);
  add_optimizer_cases(cases, o);
}

}  // namespace se::tools
