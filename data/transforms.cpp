#include "data/transforms.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "data/image_ops.h"
#include "data/json_config.h"

namespace se {

namespace {

// mmcv.rescale_size: the largest scale factor that fits the long side into max(scale) and the short
// side into min(scale).
Size2 rescale_size(int width, int height, Size2 scale) {
  double long_edge = std::max(scale.width, scale.height), short_edge = std::min(scale.width, scale.height);
  double factor = std::min(long_edge / std::max(width, height), short_edge / std::min(width, height));
  return {std::max(1, static_cast<int>(width * factor + 0.5)), std::max(1, static_cast<int>(height * factor + 0.5))};
}

void resize_sample(Sample& sample, Size2 scale, bool keep_ratio, bool resize_mask) {
  Size2 target = keep_ratio ? rescale_size(sample.image.width, sample.image.height, scale) : scale;
  sample.image = resize_bilinear(sample.image, target.width, target.height);
  if (resize_mask) sample.mask = resize_nearest(sample.mask, target.width, target.height);
}

// mmcv convert: x * alpha + beta, clipped to [0, 255], truncated to u8 (numpy astype).
uint8_t convert(uint8_t v, float alpha, float beta) {
  float x = std::clamp(static_cast<float>(v) * alpha + beta, 0.f, 255.f);
  return static_cast<uint8_t>(x);
}

}  // namespace

void Resize::apply(Sample& sample, Rng&) const {
  resize_sample(sample, scale, keep_ratio, resize_mask);
}

void RandomResize::apply(Sample& sample, Rng& rng) const {
  float ratio = rng.uniform(ratio_min, ratio_max);
  Size2 target{std::max(1, static_cast<int>(scale.width * ratio)), std::max(1, static_cast<int>(scale.height * ratio))};
  resize_sample(sample, target, keep_ratio, true);
}

void RandomCrop::apply(Sample& sample, Rng& rng) const {
  int w = std::min(size.width, sample.image.width), h = std::min(size.height, sample.image.height);
  auto draw = [&] {
    int x = static_cast<int>(rng.uniform_int(0, sample.image.width - w));
    int y = static_cast<int>(rng.uniform_int(0, sample.image.height - h));
    return std::pair{x, y};
  };
  auto [x, y] = draw();
  if (cat_max_ratio < 1.f) {
    for (int attempt = 0; attempt < 10; ++attempt) {
      std::array<int64_t, 256> counts{};
      for (int r = 0; r < h; ++r)
        for (int c = 0; c < w; ++c) ++counts[sample.mask.at(y + r, x + c)];
      if (ignore_index >= 0 && ignore_index < 256) counts[ignore_index] = 0;
      int64_t total = 0, largest = 0, present = 0;
      for (int64_t n : counts) total += n, largest = std::max(largest, n), present += n > 0;
      if (present > 1 && static_cast<double>(largest) / static_cast<double>(total) < cat_max_ratio) break;
      std::tie(x, y) = draw();
    }
  }
  sample.image = crop(sample.image, x, y, w, h);
  sample.mask = crop(sample.mask, x, y, w, h);
}

void Pad::apply(Sample& sample, Rng&) const {
  sample.image = pad_to(sample.image, size.width, size.height, pad_value);
  sample.mask = pad_to(sample.mask, size.width, size.height, mask_pad_value);
}

void RandomFlip::apply(Sample& sample, Rng& rng) const {
  if (!rng.bernoulli(prob)) return;
  sample.image = flip_horizontal(sample.image);
  sample.mask = flip_horizontal(sample.mask);
}

void PhotoMetricDistortion::apply(Sample& sample, Rng& rng) const {
  Image& img = sample.image;
  SE_CHECK(img.channels == 3, "photometric_distortion: image of '", sample.id, "' is ", image_shape_str(img),
           ", expected RGB");
  auto contrast = [&] {
    if (!rng.uniform_int(0, 1)) return;
    float alpha = rng.uniform(contrast_min, contrast_max);
    for (uint8_t& v : img.pixels) v = convert(v, alpha, 0.f);
  };
  if (rng.uniform_int(0, 1)) {
    float beta = rng.uniform(static_cast<float>(-brightness_delta), static_cast<float>(brightness_delta));
    for (uint8_t& v : img.pixels) v = convert(v, 1.f, beta);
  }
  bool contrast_first = rng.uniform_int(0, 1) == 1;
  if (contrast_first) contrast();
  if (rng.uniform_int(0, 1)) {
    float alpha = rng.uniform(saturation_min, saturation_max);
    rgb_to_hsv(img);
    for (size_t i = 1; i < img.pixels.size(); i += 3) img.pixels[i] = convert(img.pixels[i], alpha, 0.f);
    hsv_to_rgb(img);
  }
  if (rng.uniform_int(0, 1)) {
    int delta = static_cast<int>(rng.uniform_int(-hue_delta, hue_delta - 1));  // numpy randint(-d, d)
    rgb_to_hsv(img);
    for (size_t i = 0; i < img.pixels.size(); i += 3)
      img.pixels[i] = static_cast<uint8_t>(((img.pixels[i] + delta) % 180 + 180) % 180);
    hsv_to_rgb(img);
  }
  if (!contrast_first) contrast();
}

void GaussianBlur::apply(Sample& sample, Rng& rng) const {
  if (!rng.bernoulli(prob)) return;
  sample.image = gaussian_blur(sample.image, rng.uniform(sigma_min, sigma_max));
}

void RandomRotate::apply(Sample& sample, Rng& rng) const {
  if (!rng.bernoulli(prob)) return;
  float angle = rng.uniform(-degree, degree);
  sample.image = rotate(sample.image, angle, false, pad_value);
  sample.mask = rotate(sample.mask, angle, true, mask_pad_value);
}

void normalize_chw(const Image& image, const Normalization& n, float* out) {
  SE_CHECK(image.channels == 3, "normalize: image ", image_shape_str(image), " must have 3 channels");
  size_t plane = static_cast<size_t>(image.width) * image.height;
  for (int c = 0; c < 3; ++c) {
    float scale = 1.f / n.std[c], shift = n.mean[c];
    float* dst = out + c * plane;
    for (size_t p = 0; p < plane; ++p) dst[p] = (image.pixels[3 * p + c] - shift) * scale;
  }
}

Pipeline& Pipeline::add(std::shared_ptr<const Transform> transform) {
  transforms_.push_back(std::move(transform));
  return *this;
}

void Pipeline::apply(Sample& sample, uint64_t seed, int64_t epoch, int64_t index) const {
  Rng rng(seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index));
  for (const auto& t : transforms_) t->apply(sample, rng);
}

// ---- JSON

namespace {

Size2 size_value(const nlohmann::json& step, const std::string& key, const std::string& what) {
  auto it = step.find(key);
  if (it == step.end()) throw_missing_config_key(key, what);
  if (it->is_number_integer()) return {it->get<int>(), it->get<int>()};
  auto v = config_as<std::vector<int>>(*it, key, what);
  SE_CHECK(v.size() == 2 && v[0] > 0 && v[1] > 0, what, ": key '", key, "' is ", it->dump(),
           ", expected a positive size or [width, height]");
  return {v[0], v[1]};
}

std::pair<float, float> range_value(const nlohmann::json& step, const std::string& key,
                                    std::pair<float, float> fallback, const std::string& what) {
  auto it = step.find(key);
  if (it == step.end()) return fallback;
  auto v = config_as<std::vector<float>>(*it, key, what);
  SE_CHECK(v.size() == 2 && v[0] <= v[1], what, ": key '", key, "' is ", it->dump(), ", expected [low, high]");
  return {v[0], v[1]};
}

float prob_value(const nlohmann::json& step, float fallback, const std::string& what) {
  float p = config_value<float>(step, "prob", fallback, what);
  SE_CHECK(p >= 0.f && p <= 1.f, what, ": key 'prob' is ", p, ", expected a probability in [0, 1]");
  return p;
}

std::array<float, 3> triple(const nlohmann::json& step, const std::string& key, std::array<float, 3> fallback,
                            const std::string& what) {
  auto it = step.find(key);
  if (it == step.end()) return fallback;
  auto v = config_as<std::vector<float>>(*it, key, what);
  SE_CHECK(v.size() == 3, what, ": key '", key, "' is ", it->dump(), ", expected 3 numbers (R, G, B)");
  return {v[0], v[1], v[2]};
}

uint8_t byte_value(const nlohmann::json& step, const std::string& key, int fallback, const std::string& what) {
  int v = config_value<int>(step, key, fallback, what);
  SE_CHECK(v >= 0 && v <= 255, what, ": key '", key, "' is ", v, ", expected 0 to 255");
  return static_cast<uint8_t>(v);
}

}  // namespace

Pipeline Pipeline::from_json(const nlohmann::json& steps, int ignore_index) {
  SE_CHECK(steps.is_array(), "transforms: expected a JSON list of steps, got ", steps.dump());
  const std::vector<std::string> types = {"resize",        "random_resize", "random_crop",
                                          "pad",           "random_flip",   "photometric_distortion",
                                          "gaussian_blur", "random_rotate", "normalize"};
  Pipeline pipeline;
  for (size_t i = 0; i < steps.size(); ++i) {
    const nlohmann::json& step = steps[i];
    SE_CHECK(step.is_object(), "transforms: step ", i, " is ", step.dump(), ", expected an object with a \"type\"");
    std::string type = config_required<std::string>(step, "type", "transforms: step " + std::to_string(i));
    std::string what = "transform '" + type + "'";
    if (type == "resize") {
      check_config_keys(step, {"type", "scale", "keep_ratio", "resize_mask"}, what);
      auto t = std::make_shared<Resize>();
      t->scale = size_value(step, "scale", what);
      t->keep_ratio = config_value<bool>(step, "keep_ratio", t->keep_ratio, what);
      t->resize_mask = config_value<bool>(step, "resize_mask", t->resize_mask, what);
      pipeline.add(t);
    } else if (type == "random_resize") {
      check_config_keys(step, {"type", "scale", "ratio_range", "keep_ratio"}, what);
      auto t = std::make_shared<RandomResize>();
      t->scale = size_value(step, "scale", what);
      std::tie(t->ratio_min, t->ratio_max) = range_value(step, "ratio_range", {t->ratio_min, t->ratio_max}, what);
      SE_CHECK(t->ratio_min > 0.f, what, ": ratio_range must be positive");
      t->keep_ratio = config_value<bool>(step, "keep_ratio", t->keep_ratio, what);
      pipeline.add(t);
    } else if (type == "random_crop") {
      check_config_keys(step, {"type", "size", "cat_max_ratio"}, what);
      auto t = std::make_shared<RandomCrop>();
      t->size = size_value(step, "size", what);
      t->cat_max_ratio = config_value<float>(step, "cat_max_ratio", t->cat_max_ratio, what);
      t->ignore_index = ignore_index;
      pipeline.add(t);
    } else if (type == "pad") {
      check_config_keys(step, {"type", "size", "pad_value", "mask_pad_value"}, what);
      auto t = std::make_shared<Pad>();
      t->size = size_value(step, "size", what);
      t->pad_value = byte_value(step, "pad_value", t->pad_value, what);
      t->mask_pad_value = byte_value(step, "mask_pad_value", ignore_index, what);
      pipeline.add(t);
    } else if (type == "random_flip") {
      check_config_keys(step, {"type", "prob"}, what);
      auto t = std::make_shared<RandomFlip>();
      t->prob = prob_value(step, t->prob, what);
      pipeline.add(t);
    } else if (type == "photometric_distortion") {
      check_config_keys(step, {"type", "brightness_delta", "contrast_range", "saturation_range", "hue_delta"}, what);
      auto t = std::make_shared<PhotoMetricDistortion>();
      t->brightness_delta = config_value<int>(step, "brightness_delta", t->brightness_delta, what);
      std::tie(t->contrast_min, t->contrast_max) =
          range_value(step, "contrast_range", {t->contrast_min, t->contrast_max}, what);
      std::tie(t->saturation_min, t->saturation_max) =
          range_value(step, "saturation_range", {t->saturation_min, t->saturation_max}, what);
      t->hue_delta = config_value<int>(step, "hue_delta", t->hue_delta, what);
      SE_CHECK(t->hue_delta >= 1 && t->hue_delta <= 180 && t->brightness_delta >= 0, what,
               ": hue_delta must be in [1, 180] and brightness_delta >= 0");
      pipeline.add(t);
    } else if (type == "gaussian_blur") {
      check_config_keys(step, {"type", "prob", "sigma_range"}, what);
      auto t = std::make_shared<GaussianBlur>();
      t->prob = prob_value(step, t->prob, what);
      std::tie(t->sigma_min, t->sigma_max) = range_value(step, "sigma_range", {t->sigma_min, t->sigma_max}, what);
      pipeline.add(t);
    } else if (type == "random_rotate") {
      check_config_keys(step, {"type", "prob", "degree", "pad_value", "mask_pad_value"}, what);
      auto t = std::make_shared<RandomRotate>();
      t->prob = prob_value(step, t->prob, what);
      t->degree = config_value<float>(step, "degree", t->degree, what);
      t->pad_value = byte_value(step, "pad_value", t->pad_value, what);
      t->mask_pad_value = byte_value(step, "mask_pad_value", ignore_index, what);
      pipeline.add(t);
    } else if (type == "normalize") {
      check_config_keys(step, {"type", "mean", "std"}, what);
      SE_CHECK(i + 1 == steps.size(), what, ": must be the last step (it turns the image into floats)");
      Normalization n;
      n.mean = triple(step, "mean", n.mean, what);
      n.std = triple(step, "std", n.std, what);
      for (float s : n.std) SE_CHECK(s > 0.f, what, ": std values must be positive");
      pipeline.set_normalization(n);
    } else {
      std::string list;
      for (const std::string& t : types) list += (list.empty() ? "" : ", ") + t;
      SE_THROW("transforms: step ", i, " has unknown type '", type, "'; types: ", list);
    }
  }
  return pipeline;
}

}  // namespace se
