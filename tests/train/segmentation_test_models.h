// Tiny SegmentationModels with known behaviour for the inference and evaluation tests.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "engine/ops.h"
#include "models/model.h"

namespace se::testing {

// Logits = a 1x1 convolution: translation- and flip-equivariant, no padding, so sliding-window and flip
// inference must reproduce whole-image inference. Integer weights keep every sum of crops exact.
class PointwiseModel : public models::SegmentationModel {
 public:
  PointwiseModel() : SegmentationModel("PointwiseModel", 4) {
    weight = register_parameter("weight", from_vector<float>({1, -2, 0, 3, 1, -1, -1, 2, 2, 0, -3, 1}, {4, 3, 1, 1}));
    bias = register_parameter("bias", from_vector<float>({1, 0, -2, 3}, {4}));
  }
  models::SegmentationOutput forward(const Tensor& images) override { return {conv2d(images, weight, bias), {}, {}}; }
  Tensor weight;  // (4, 3, 1, 1)
  Tensor bias;    // (4)
};

// A 3x3 zero-padded convolution: its border pixels see the padding, so crops differ from the whole image.
// Records the shape of every forward's input.
class PaddedConvModel : public models::SegmentationModel {
 public:
  explicit PaddedConvModel(int64_t classes = 5) : SegmentationModel("PaddedConvModel", classes) {
    manual_seed(7);
    weight = register_parameter("weight", mul(randn({classes, 3, 3, 3}), 0.3));
    bias = register_parameter("bias", randn({classes}));
  }
  models::SegmentationOutput forward(const Tensor& images) override {
    input_shapes.push_back(images.shape());
    Conv2dParams params;
    params.pad_h = params.pad_w = 1;
    return {conv2d(images, weight, bias, params), {}, {}};
  }
  Tensor weight;  // (K, 3, 3, 3)
  Tensor bias;    // (K)
  std::vector<Shape> input_shapes;
};

// Images of small integers (exact in f32 through a PointwiseModel and the crop averages).
inline Tensor integer_images(const Shape& shape, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_int_distribution<int> value(-4, 4);
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  for (float& v : values) v = static_cast<float>(value(generator));
  return from_vector(values, shape);
}

inline std::vector<float> values_of(const Tensor& x) {
  return x.to(Device::cpu()).to_vector<float>();
}

}  // namespace se::testing
