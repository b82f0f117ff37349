// The Siamese U-Net, the project's model for generalising across domains. Two weight-sharing branches
// (literally one U-Net applied twice, so there is one set of parameters and the branches' gradients
// add) see two views of a scene: the image, and a domain-shifted view from make_view, a photometric
// perturbation that keeps geometry. The objective is the segmentation loss on both branches plus
// lambda times a consistency loss between the branches' encoder features at chosen levels (MSE or
// cosine distance), optionally plus kl_weight times a symmetric KL between their class softmaxes.
// Inference, forward(images), runs one branch: exactly a plain U-Net's cost.
//
// The branches run one after the other, so in training mode each view's BatchNorm layers normalise
// with that view's own batch statistics (and update the running statistics once per branch).
//
// Config (registered as "siamese_unet"): the U-Net's keys (models/unet.h), "ignore_index" (255), and
//   "consistency": {"weight": 0.1,        lambda
//                   "levels": [-1],       encoder levels compared: 0 = finest .. -1 = coarsest (depth + 1
//                                         levels; 5 with a ResNet backbone: stem, layer1..layer4)
//                   "loss": "mse",        "mse" or "cosine" (1 - cosine similarity over channels)
//                   "kl_weight": 0.0}     weight of the symmetric KL between the branches' predictions
//   "view": ViewRecipe's fields by name (see below).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/unet.h"

namespace se::models {

// The domain shift applied by make_view, in the order listed. Amounts are in the units of the
// (normalised) images; every random draw is per image (or per image and channel).
struct ViewRecipe {
  double channel_mix = 0.2;  // colour mixing matrix I + U(-m, m) per entry (m < 0.5: stays invertible)
  double brightness = 0.2;   // per-channel shift U(-b, b)
  double contrast = 0.3;     // scaling about the image mean by U(1 - c, 1 + c), c < 1
  double gamma = 0.3;        // per-channel gamma curve exp(U(-g, g)) over the channel's [min, max]
  double blur_sigma = 1.0;   // Gaussian blur, sigma U(0, s), radius ceil(2 s)
  double noise_std = 0.05;   // additive Gaussian noise, std U(0, n)
};

enum class ConsistencyLoss { mse, cosine };

struct SiameseOptions {
  UNetOptions unet;
  double consistency_weight = 0.1;  // lambda
  std::vector<int64_t> levels{-1};
  ConsistencyLoss consistency_loss = ConsistencyLoss::mse;
  double kl_weight = 0.0;
  int64_t ignore_index = 255;
  ViewRecipe view;
};

SiameseOptions read_siamese_options(const Config& config);  // the keys above, not finish()ing

struct SiameseOutput {
  SegmentationOutput a;  // branch A (the original view): logits and features at the consistency levels
  SegmentationOutput b;  // branch B (the shifted view)
};

struct SiameseLoss {
  Tensor total;                   // seg_a + seg_b + lambda * feature_consistency + kl_weight * prediction_consistency
  Tensor seg_a, seg_b;            // cross-entropy of each branch (0-d)
  Tensor feature_consistency;     // mean over the levels of the MSE or cosine distance (0-d)
  Tensor prediction_consistency;  // symmetric KL, mean over pixels (0-d); undefined when kl_weight == 0
};

class SiameseUNet : public UNet {
 public:
  explicit SiameseUNet(const SiameseOptions& options);
  // One branch: logits (N, K, H, W) and the encoder features at the consistency levels, finest first.
  SegmentationOutput forward(const Tensor& images) override;  // (N, C, H, W)
  // Both branches through the same weights.
  SiameseOutput forward_pair(const Tensor& view_a,   // (N, C, H, W)
                             const Tensor& view_b);  // (N, C, H, W)
  // The domain-shifted view of `images`, a function of (images, seed) only (the global random
  // generator is untouched); the same on every device up to rounding. Not differentiable.
  Tensor make_view(const Tensor& images, uint64_t seed) const;  // (N, C, H, W) -> (N, C, H, W)
  // The objective from both branches' outputs and the labels (N, H, W) i64, with cross-entropy
  // (ignore_index from the options) as each branch's segmentation loss.
  SiameseLoss loss(const SiameseOutput& output, const Tensor& target) const;
  // The same objective with the caller's segmentation loss (the trainer's configured CE/Dice/...
  // sum), applied to each branch's logits (N, K, H, W) and returning a 0-d tensor.
  SiameseLoss loss(const SiameseOutput& output, const std::function<Tensor(const Tensor& logits)>& segmentation_loss) const;
  // make_view, forward_pair and loss in one call: one training step's objective.
  SiameseLoss training_loss(const Tensor& images, const Tensor& target, uint64_t seed);

  const SiameseOptions& siamese_options() const { return siamese_; }
  const std::vector<int64_t>& levels() const { return levels_; }  // resolved: ascending, non-negative

 private:
  SegmentationOutput run_branch(const Tensor& images);
  SiameseOptions siamese_;
  std::vector<int64_t> levels_;
};

// The view generator on its own (SiameseUNet::make_view calls it): for data pipelines and tests.
Tensor make_domain_shifted_view(const Tensor& images,  // (N, C, H, W), floating
                                const ViewRecipe& recipe, uint64_t seed);
// 0.5 * (KL(p_a || p_b) + KL(p_b || p_a)) of the softmaxes over dim 1, summed over classes and
// averaged over the other dims; differentiable w.r.t. both.
Tensor symmetric_kl(const Tensor& logits_a,   // (N, K, H, W)
                    const Tensor& logits_b);  // (N, K, H, W)

}  // namespace se::models
