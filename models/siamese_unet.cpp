#include "models/siamese_unet.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "models/registry.h"

namespace se::models {

namespace {

// Independent streams for the parts of one view: splitmix64 of (seed, part).
uint64_t sub_seed(uint64_t seed, uint64_t part) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (part + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// U(-1, 1) of `shape` on x's device.
Tensor symmetric_uniform(const Shape& shape, uint64_t seed, const Tensor& like) {
  return sub(mul(rand_seeded(shape, seed, {like.dtype(), like.device()}), 2.0), 1.0);
}

// Gaussian blur with a per-image sigma: a separable depthwise conv over the N * C planes. Zero padding
// renormalised by the blurred ones, so borders keep their brightness.
Tensor gaussian_blur(const Tensor& x,      // (N, C, H, W)
                     const Tensor& sigma,  // (N), > 0
                     int64_t radius) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t taps = 2 * radius + 1;
  Tensor offsets = arange(double(-radius), double(radius + 1), 1.0, {x.dtype(), x.device()}).view({1, taps});
  Tensor two_var = mul(mul(sigma, sigma), 2.0).view({n, 1});
  Tensor kernel = exp(neg(div(mul(offsets, offsets), two_var)));  // (N, taps)
  kernel = div(kernel, sum(kernel, {1}, true));
  kernel = kernel.view({n, 1, taps}).expand({n, c, taps}).contiguous();  // per plane
  Tensor horizontal = kernel.view({n * c, 1, 1, taps}), vertical = kernel.view({n * c, 1, taps, 1});
  auto blur = [&](const Tensor& planes) {  // (1, N * C, H, W)
    Tensor y = conv2d(planes, horizontal, {}, {.pad_w = radius, .groups = n * c});
    return conv2d(y, vertical, {}, {.pad_h = radius, .groups = n * c});
  };
  Tensor planes = x.contiguous().view({1, n * c, h, w});
  Tensor coverage = blur(ones({1, n * c, h, w}, {x.dtype(), x.device()}));
  return div(blur(planes), coverage).view({n, c, h, w});
}

void check_recipe(const ViewRecipe& r) {
  SE_CHECK(r.channel_mix >= 0 && r.channel_mix < 0.5, "view.channel_mix = ", r.channel_mix, " (expected [0, 0.5))");
  SE_CHECK(r.brightness >= 0, "view.brightness = ", r.brightness, " (expected >= 0)");
  SE_CHECK(r.contrast >= 0 && r.contrast < 1, "view.contrast = ", r.contrast, " (expected [0, 1))");
  SE_CHECK(r.gamma >= 0, "view.gamma = ", r.gamma, " (expected >= 0)");
  SE_CHECK(r.blur_sigma >= 0 && r.blur_sigma <= 8, "view.blur_sigma = ", r.blur_sigma, " (expected [0, 8])");
  SE_CHECK(r.noise_std >= 0, "view.noise_std = ", r.noise_std, " (expected >= 0)");
}

}  // namespace

Tensor make_domain_shifted_view(const Tensor& images, const ViewRecipe& recipe, uint64_t seed) {
  SE_CHECK(images.defined() && images.dim() == 4 && is_floating(images.dtype()),
           "make_view: expected floating images (N, C, H, W), got ",
           images.defined() ? shape_str(images.shape()) : std::string("undefined"));
  check_recipe(recipe);
  NoGradGuard no_grad;  // a view is data for the model, not a function to differentiate
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  Tensor x = images.detach();
  // Colour: mix the channels of every pixel with a per-image matrix near the identity.
  if (recipe.channel_mix > 0) {
    std::vector<float> eye(static_cast<size_t>(c * c), 0.0f);
    for (int64_t i = 0; i < c; ++i) eye[static_cast<size_t>(i * c + i)] = 1.0f;
    Tensor mix = add(from_vector<float>(eye, {1, c, c}, {x.dtype(), x.device()}),
                     mul(symmetric_uniform({n, c, c}, sub_seed(seed, 0), x), recipe.channel_mix));
    x = bmm(mix, x.reshape({n, c, h * w})).view({n, c, h, w});
  }
  if (recipe.brightness > 0) x = add(x, mul(symmetric_uniform({n, c, 1, 1}, sub_seed(seed, 1), x), recipe.brightness));
  if (recipe.contrast > 0) {
    Tensor factor = add(mul(symmetric_uniform({n, 1, 1, 1}, sub_seed(seed, 2), x), recipe.contrast), 1.0);
    Tensor centre = mean(x, {1, 2, 3}, true);
    x = add(centre, mul(sub(x, centre), factor));
  }
  // Gamma: a monotone curve per channel over its own [min, max], so edges keep their place and sign.
  if (recipe.gamma > 0) {
    Tensor lo = min(x, {2, 3}, true), hi = max(x, {2, 3}, true);
    Tensor range = add(sub(hi, lo), 1e-6);
    Tensor exponent = exp(mul(symmetric_uniform({n, c, 1, 1}, sub_seed(seed, 3), x), recipe.gamma));
    Tensor t = clamp(div(sub(x, lo), range), 0.0, 1.0);
    x = add(lo, mul(pow(t, exponent.expand(t.shape())), range));
  }
  if (recipe.blur_sigma > 0) {
    const auto radius = static_cast<int64_t>(std::ceil(2.0 * recipe.blur_sigma));
    // sigma >= 0.05: below it the kernel is a delta anyway, and 0 would divide by zero.
    Tensor sigma = add(mul(rand_seeded({n}, sub_seed(seed, 4), {x.dtype(), x.device()}), recipe.blur_sigma), 0.05);
    x = gaussian_blur(x, sigma, radius);
  }
  if (recipe.noise_std > 0) {
    Tensor std_dev = mul(rand_seeded({n, 1, 1, 1}, sub_seed(seed, 5), {x.dtype(), x.device()}), recipe.noise_std);
    x = add(x, mul(randn_seeded(x.shape(), sub_seed(seed, 6), {x.dtype(), x.device()}), std_dev));
  }
  return x;
}

Tensor symmetric_kl(const Tensor& logits_a, const Tensor& logits_b) {
  SE_CHECK(logits_a.shape() == logits_b.shape() && logits_a.dim() >= 2, "symmetric_kl: logits ",
           shape_str(logits_a.shape()), " and ", shape_str(logits_b.shape()), " must have one shape (N, K, ...)");
  Tensor log_a = log_softmax(logits_a, 1), log_b = log_softmax(logits_b, 1);
  // KL(a||b) + KL(b||a) = sum_k (p_a - p_b) (log p_a - log p_b)
  Tensor per_pixel = sum(mul(sub(exp(log_a), exp(log_b)), sub(log_a, log_b)), {1});
  return mul(mean(per_pixel), 0.5);
}

SiameseOptions read_siamese_options(const Config& config) {
  SiameseOptions options;
  options.unet = read_unet_options(config);
  options.ignore_index = config.get<int64_t>("ignore_index", options.ignore_index);
  const Config consistency = config.sub("consistency");
  options.consistency_weight = consistency.get<double>("weight", options.consistency_weight);
  options.levels = consistency.get<std::vector<int64_t>>("levels", options.levels);
  const std::string kind = consistency.get<std::string>("loss", "mse");
  if (kind == "mse") {
    options.consistency_loss = ConsistencyLoss::mse;
  } else if (kind == "cosine") {
    options.consistency_loss = ConsistencyLoss::cosine;
  } else {
    SE_THROW("model ", consistency.path(), ".loss = '", kind, "' (expected 'mse' or 'cosine')");
  }
  options.kl_weight = consistency.get<double>("kl_weight", options.kl_weight);
  const Config view = config.sub("view");
  ViewRecipe& r = options.view;
  r.channel_mix = view.get<double>("channel_mix", r.channel_mix);
  r.brightness = view.get<double>("brightness", r.brightness);
  r.contrast = view.get<double>("contrast", r.contrast);
  r.gamma = view.get<double>("gamma", r.gamma);
  r.blur_sigma = view.get<double>("blur_sigma", r.blur_sigma);
  r.noise_std = view.get<double>("noise_std", r.noise_std);
  return options;
}

SiameseUNet::SiameseUNet(const SiameseOptions& options) : UNet(options.unet, "SiameseUNet"), siamese_(options) {
  check_recipe(options.view);
  SE_CHECK(options.consistency_weight >= 0 && options.kl_weight >= 0, "SiameseUNet: consistency weight ",
           options.consistency_weight, " and kl_weight ", options.kl_weight, " must be >= 0");
  const int64_t count = num_levels();
  SE_CHECK(!options.levels.empty(), "SiameseUNet: consistency.levels is empty (expected levels in [0, ", count - 1,
           "] or negative from the bottleneck)");
  for (int64_t level : options.levels) {
    SE_CHECK(level >= -count && level < count, "SiameseUNet: consistency level ", level, " is outside [", -count, ", ",
             count - 1, "] for an encoder of ", count, " levels");
    levels_.push_back(level < 0 ? level + count : level);
  }
  std::sort(levels_.begin(), levels_.end());
  levels_.erase(std::unique(levels_.begin(), levels_.end()), levels_.end());
}

SegmentationOutput SiameseUNet::run_branch(const Tensor& images) {
  std::vector<Tensor> features = encode(images);
  SegmentationOutput out{decode(features, {images.size(2), images.size(3)}), {}, {}};
  for (int64_t level : levels_) out.features.push_back(features[static_cast<size_t>(level)]);
  return out;
}

SegmentationOutput SiameseUNet::forward(const Tensor& images) {
  return run_branch(images);
}

SiameseOutput SiameseUNet::forward_pair(const Tensor& view_a, const Tensor& view_b) {
  SE_CHECK(view_a.defined() && view_b.defined() && view_a.shape() == view_b.shape(),
           "SiameseUNet::forward_pair: ", "the views must have one shape, got ",
           view_a.defined() ? shape_str(view_a.shape()) : "undefined", " and ",
           view_b.defined() ? shape_str(view_b.shape()) : "undefined");
  SegmentationOutput a = run_branch(view_a);
  return {std::move(a), run_branch(view_b)};
}

Tensor SiameseUNet::make_view(const Tensor& images, uint64_t seed) const {
  return make_domain_shifted_view(images, siamese_.view, seed);
}

SiameseLoss SiameseUNet::loss(const SiameseOutput& output, const Tensor& target) const {
  CrossEntropyParams ce;
  ce.ignore_index = siamese_.ignore_index;
  return loss(output, [&](const Tensor& logits) { return cross_entropy(logits, target, ce); });
}

SiameseLoss SiameseUNet::loss(const SiameseOutput& output,
                              const std::function<Tensor(const Tensor& logits)>& segmentation_loss) const {
  SE_CHECK(output.a.features.size() == levels_.size() && output.b.features.size() == levels_.size(),
           "SiameseUNet::loss: expected ", levels_.size(), " feature levels per branch (from forward_pair), got ",
           output.a.features.size(), " and ", output.b.features.size());
  SiameseLoss result;
  result.seg_a = segmentation_loss(output.a.logits);
  result.seg_b = segmentation_loss(output.b.logits);
  Tensor consistency;
  for (size_t i = 0; i < levels_.size(); ++i) {
    const Tensor& fa = output.a.features[i];
    const Tensor& fb = output.b.features[i];
    Tensor term = siamese_.consistency_loss == ConsistencyLoss::mse ? mse_loss(fa, fb) : cosine_distance(fa, fb);
    consistency = consistency.defined() ? add(consistency, term) : term;
  }
  result.feature_consistency = div(consistency, double(levels_.size()));
  result.total = add(add(result.seg_a, result.seg_b), result.feature_consistency, siamese_.consistency_weight);
  if (siamese_.kl_weight > 0) {
    result.prediction_consistency = symmetric_kl(output.a.logits, output.b.logits);
    result.total = add(result.total, result.prediction_consistency, siamese_.kl_weight);
  }
  return result;
}

SiameseLoss SiameseUNet::training_loss(const Tensor& images, const Tensor& target, uint64_t seed) {
  return loss(forward_pair(images, make_view(images, seed)), target);
}

SE_REGISTER_MODEL(siamese_unet,
                  "Siamese U-Net: two weight-sharing U-Net branches on an image and a domain-shifted view, with "
                  "feature (and prediction) consistency; U-Net keys plus ignore_index, consistency{weight, levels, "
                  "loss, kl_weight}, view{channel_mix, brightness, contrast, gamma, blur_sigma, noise_std}",
                  [](const Config& config) { return std::make_shared<SiameseUNet>(read_siamese_options(config)); });

}  // namespace se::models
