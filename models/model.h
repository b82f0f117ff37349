// The interface every segmentation model of the zoo implements, so the trainer, evaluation, the CLI
// and `segengine info` treat them alike.
#pragma once

#include <string>
#include <vector>

#include "nn/module.h"

namespace se::models {

struct SegmentationOutput {
  Tensor logits;      // (N, num_classes, H, W), at the input's resolution
  Tensor aux_logits;  // (N, num_classes, H, W) from an auxiliary head while training; else undefined
  // Encoder features at the levels a consistency loss compares (Siamese U-Net), coarsest last; empty
  // for models that do not expose them.
  std::vector<Tensor> features;
};

class SegmentationModel : public nn::Module {
 public:
  SegmentationModel(std::string type_name, int64_t num_classes) : nn::Module(std::move(type_name)), num_classes_(num_classes) {}
  // images (N, 3, H, W), normalised; H and W need not be multiples of the output stride.
  virtual SegmentationOutput forward(const Tensor& images) = 0;
  int64_t num_classes() const { return num_classes_; }

 private:
  int64_t num_classes_;
};

}  // namespace se::models
