// Whole-image and sliding-window inference with scale / flip test-time augmentation (see inference.h).
#include "train/inference.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/ops.h"

namespace se {
namespace {

std::string key_path(const Config& section, const std::string& key) {
  return section.path().empty() ? key : section.path() + "." + key;
}

// A [h, w] pair or one number for both, e.g. "crop_size": 512 or [512, 1024].
std::array<int64_t, 2> read_pair(const Config& section, const std::string& key, std::array<int64_t, 2> fallback) {
  if (!section.has(key)) return fallback;
  const nlohmann::json value = section.get<nlohmann::json>(key);
  if (value.is_number_integer()) return {value.get<int64_t>(), value.get<int64_t>()};
  if (value.is_array() && value.size() == 2 && value[0].is_number_integer() && value[1].is_number_integer()) {
    return {value[0].get<int64_t>(), value[1].get<int64_t>()};
  }
  SE_THROW("inference options: ", key_path(section, key), " must be [h, w] or one integer, got ", value.dump());
}

// (N, C, H, W) -> the same with the width reversed.
Tensor flip_width(const Tensor& x) {
  const int64_t width = x.size(3);
  return index_select(x, 3, arange(static_cast<double>(width - 1), -1.0, -1.0, {DType::i64, x.device()}));
}

Tensor resize_bilinear(const Tensor& x,  // (N, C, H, W)
                       int64_t height, int64_t width) {
  if (x.size(2) == height && x.size(3) == width) return x;
  InterpolateParams params;
  params.size = std::array<int64_t, 2>{height, width};
  params.mode = InterpolateMode::bilinear;
  params.align_corners = false;
  return interpolate(x, params);
}

Tensor forward_logits(models::SegmentationModel& model,
                      const Tensor& images,  // (B, 3, h, w)
                      const InferenceOptions& options) {
  Tensor logits;
  if (options.amp) {
    AutocastGuard autocast(*options.amp);
    logits = model.forward(images).logits;
    if (logits.defined()) logits = logits.to(DType::f32);  // crops, scales and flips are combined in f32
  } else {
    logits = model.forward(images).logits;
  }
  SE_CHECK(logits.defined() && logits.dim() == 4 && logits.size(0) == images.size(0) &&
               logits.size(2) == images.size(2) && logits.size(3) == images.size(3),
           "infer: model ", model.type_name(), " returned logits of shape ",
           logits.defined() ? shape_str(logits.shape()) : std::string("(undefined)"), " for images of shape ",
           shape_str(images.shape()), " (expected (N, K, H, W) at the input's resolution)");
  return logits;
}

Tensor infer_whole(models::SegmentationModel& model,
                   const Tensor& images,  // (N, 3, H, W)
                   const InferenceOptions& options) {
  if (images.size(0) <= options.batch_size) return forward_logits(model, images, options);
  std::vector<Tensor> parts;
  for (const Tensor& chunk : split(images, options.batch_size, 0)) parts.push_back(forward_logits(model, chunk, options));
  return cat(parts, 0);
}

// One axis of mmseg's grid: the start of every crop, in grid order.
std::vector<int64_t> crop_starts(int64_t size, int64_t crop, int64_t stride) {
  const int64_t grids = std::max<int64_t>(size - crop + stride - 1, 0) / stride + 1;
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < grids; ++i) {
    const int64_t end = std::min(i * stride + crop, size);
    starts.push_back(std::max<int64_t>(end - crop, 0));
  }
  return starts;
}

Tensor infer_slide(models::SegmentationModel& model,
                   const Tensor& images,  // (N, 3, H, W)
                   const InferenceOptions& options) {
  const int64_t n = images.size(0), height = images.size(2), width = images.size(3);
  const int64_t crop_h = std::min(options.crop_h, height), crop_w = std::min(options.crop_w, width);
  const std::vector<int64_t> ys = crop_starts(height, options.crop_h, options.stride_h);
  const std::vector<int64_t> xs = crop_starts(width, options.crop_w, options.stride_w);

  struct Crop {
    int64_t image, y, x;
  };
  std::vector<Crop> crops;  // image-major, then grid order: each pixel sums its crops in mmseg's order
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t y : ys) {
      for (int64_t x : xs) crops.push_back({i, y, x});
    }
  }
  // How many crops cover each pixel: geometry only, the same for every image.
  std::vector<float> count(static_cast<size_t>(height * width), 0.f);
  for (int64_t y : ys) {
    for (int64_t x : xs) {
      for (int64_t r = y; r < y + crop_h; ++r) {
        for (int64_t c = x; c < x + crop_w; ++c) count[static_cast<size_t>(r * width + c)] += 1.f;
      }
    }
  }

  Tensor sums;  // (N, K, H, W), created once the first crop tells K and the dtype
  for (size_t first = 0; first < crops.size(); first += static_cast<size_t>(options.batch_size)) {
    const size_t last = std::min(crops.size(), first + static_cast<size_t>(options.batch_size));
    std::vector<Tensor> batch;
    for (size_t k = first; k < last; ++k) {
      batch.push_back(images.narrow(0, crops[k].image, 1).narrow(2, crops[k].y, crop_h).narrow(3, crops[k].x, crop_w));
    }
    const Tensor logits = forward_logits(model, batch.size() == 1 ? batch[0] : cat(batch, 0), options);
    if (!sums.defined()) sums = zeros({n, logits.size(1), height, width}, {logits.dtype(), logits.device()});
    for (size_t k = first; k < last; ++k) {
      Tensor window = sums.narrow(0, crops[k].image, 1).narrow(2, crops[k].y, crop_h).narrow(3, crops[k].x, crop_w);
      add_(window, logits.narrow(0, static_cast<int64_t>(k - first), 1));
    }
  }
  const Tensor counts = from_vector(count, {1, 1, height, width}, {sums.dtype(), sums.device()});
  return div(sums, counts);
}

// Logits at the images' own size for one scale (no flip).
Tensor infer_at_scale(models::SegmentationModel& model,
                      const Tensor& images,  // (N, 3, H, W)
                      double scale, const InferenceOptions& options) {
  const int64_t height = images.size(2), width = images.size(3);
  const auto scaled_size = [scale](int64_t size) {
    return std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(size) * scale + 0.5));
  };
  const Tensor scaled = resize_bilinear(images, scaled_size(height), scaled_size(width));
  const Tensor logits = options.mode == InferenceOptions::Mode::slide ? infer_slide(model, scaled, options)
                                                                      : infer_whole(model, scaled, options);
  return resize_bilinear(logits, height, width);
}

// `prefix` is put before field names: "" for a struct filled in code, "<section>." for a config.
void check_options(const InferenceOptions& o, const std::string& prefix) {
  const char* op = "inference options";
  SE_CHECK(o.batch_size >= 1, op, ": ", prefix, "batch_size must be at least 1, got ", o.batch_size);
  SE_CHECK(!o.amp || *o.amp == DType::bf16 || *o.amp == DType::f16, op, ": ", prefix, "amp must be bf16 or f16, got ",
           o.amp ? dtype_name(*o.amp) : "");
  SE_CHECK(!o.scales.empty(), op, ": ", prefix, "scales must list at least one factor (1.0 for none)");
  for (double scale : o.scales) {
    SE_CHECK(std::isfinite(scale) && scale > 0, op, ": ", prefix, "scales: every scale must be a positive number, got ",
             scale);
  }
  if (o.mode == InferenceOptions::Mode::slide) {
    SE_CHECK(o.crop_h > 0 && o.crop_w > 0, op, ": ", prefix, "crop_size must be positive, got [", o.crop_h, ", ",
             o.crop_w, "]");
    SE_CHECK(o.stride_h > 0 && o.stride_w > 0, op, ": ", prefix, "stride must be positive, got [", o.stride_h, ", ",
             o.stride_w, "]");
    SE_CHECK(o.stride_h <= o.crop_h && o.stride_w <= o.crop_w, op, ": ", prefix, "stride [", o.stride_h, ", ",
             o.stride_w, "] larger than ", prefix, "crop_size [", o.crop_h, ", ", o.crop_w,
             "] would leave pixels that no crop covers");
  }
}

}  // namespace

void InferenceOptions::validate() const {
  check_options(*this, "");
}

InferenceOptions InferenceOptions::from_config(const Config& section) {
  InferenceOptions options;
  const std::string mode = section.get<std::string>("mode", "whole");
  if (mode == "whole") {
    options.mode = Mode::whole;
  } else if (mode == "slide") {
    options.mode = Mode::slide;
  } else {
    SE_THROW("inference options: ", key_path(section, "mode"), " is \"", mode,
             "\"; valid modes are \"whole\" and \"slide\"");
  }
  const auto crop = read_pair(section, "crop_size", {options.crop_h, options.crop_w});
  const auto stride = read_pair(section, "stride", {options.stride_h, options.stride_w});
  options.crop_h = crop[0], options.crop_w = crop[1];
  options.stride_h = stride[0], options.stride_w = stride[1];
  options.scales = section.get<std::vector<double>>("scales", options.scales);
  options.flip = section.get<bool>("flip", options.flip);
  options.batch_size = section.get<int64_t>("batch_size", options.batch_size);
  options.amp = read_amp(section);
  check_options(options, section.path().empty() ? std::string() : section.path() + ".");
  return options;
}

std::optional<DType> read_amp(const Config& section) {
  const std::string amp = section.get<std::string>("amp", "off");
  if (amp == "bf16") return DType::bf16;
  if (amp == "f16") return DType::f16;
  SE_CHECK(amp == "off", "config: ", key_path(section, "amp"), " is \"", amp, "\", expected \"off\", \"bf16\" or \"f16\"");
  return std::nullopt;
}

Device model_device(const models::SegmentationModel& model, Device fallback) {
  const std::vector<Tensor> parameters = model.parameters();
  return parameters.empty() ? fallback : parameters.front().device();
}

Tensor infer(models::SegmentationModel& model, const Tensor& images, const InferenceOptions& options) {
  options.validate();
  SE_CHECK(images.defined() && images.dim() == 4 && images.size(1) == 3 && images.size(0) > 0,
           "infer: images must be "
           "a non-empty (N, 3, H, W) batch, got ",
           images.defined() ? shape_str(images.shape()) : "(undefined)");
  NoGradGuard no_grad;
  const Tensor inputs = images.to(model_device(model, images.device()));  // (N, 3, H, W)
  if (!options.uses_tta()) return infer_at_scale(model, inputs, options.scales[0], options);

  Tensor probability_sum;  // (N, K, H, W)
  for (double scale : options.scales) {
    std::vector<Tensor> passes{infer_at_scale(model, inputs, scale, options)};
    if (options.flip) passes.push_back(flip_width(infer_at_scale(model, flip_width(inputs), scale, options)));
    for (const Tensor& logits : passes) {
      Tensor probabilities = softmax(logits, 1);
      if (probability_sum.defined()) {
        add_(probability_sum, probabilities);
      } else {
        probability_sum = probabilities;
      }
    }
  }
  const double passes = static_cast<double>(options.scales.size() * (options.flip ? 2 : 1));
  return div(probability_sum, passes);
}

}  // namespace se
