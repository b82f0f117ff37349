// train/inference.h: whole and sliding-window inference against a line-by-line transcription of mmseg's
// slide_inference, exact equalities on models whose behaviour is known (a 1x1 convolution), TTA, batching,
// and the options' config parsing and error messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/config.h"
#include "engine/autograd.h"
#include "tests/engine/test_util.h"
#include "tests/train/segmentation_test_models.h"
#include "train/inference.h"

namespace se {
namespace {

using testing::expect_error;
using testing::integer_images;
using testing::PaddedConvModel;
using testing::PointwiseModel;
using testing::values_of;

InferenceOptions slide_options(int64_t crop, int64_t stride, int64_t batch_size = 8) {
  InferenceOptions options;
  options.mode = InferenceOptions::Mode::slide;
  options.crop_h = options.crop_w = crop;
  options.stride_h = options.stride_w = stride;
  options.batch_size = batch_size;
  return options;
}

// mmseg's EncoderDecoder.slide_inference, transcribed: every crop of all N images in one forward, the logits
// padded back to full size and summed, divided by the count of crops per pixel.
Tensor mmseg_slide_inference(models::SegmentationModel& model,
                             const Tensor& inputs,  // (N, 3, H, W)
                             int64_t h_crop, int64_t w_crop, int64_t h_stride, int64_t w_stride) {
  NoGradGuard no_grad;
  const int64_t batch_size = inputs.size(0), h_img = inputs.size(2), w_img = inputs.size(3);
  const int64_t h_grids = std::max<int64_t>(h_img - h_crop + h_stride - 1, 0) / h_stride + 1;
  const int64_t w_grids = std::max<int64_t>(w_img - w_crop + w_stride - 1, 0) / w_stride + 1;
  Tensor preds = zeros({batch_size, model.num_classes(), h_img, w_img});
  Tensor count_mat = zeros({batch_size, 1, h_img, w_img});
  for (int64_t h_idx = 0; h_idx < h_grids; ++h_idx) {
    for (int64_t w_idx = 0; w_idx < w_grids; ++w_idx) {
      int64_t y1 = h_idx * h_stride, x1 = w_idx * w_stride;
      const int64_t y2 = std::min(y1 + h_crop, h_img), x2 = std::min(x1 + w_crop, w_img);
      y1 = std::max<int64_t>(y2 - h_crop, 0);
      x1 = std::max<int64_t>(x2 - w_crop, 0);
      const Tensor crop_img = inputs.slice(2, y1, y2).slice(3, x1, x2).contiguous();
      const Tensor crop_seg_logit = model.forward(crop_img).logits;
      const std::vector<int64_t> pads{x1, w_img - x2, y1, h_img - y2};
      preds = add(preds, pad(crop_seg_logit, pads));
      count_mat = add(count_mat, pad(ones({batch_size, 1, y2 - y1, x2 - x1}), pads));
    }
  }
  return div(preds, count_mat);
}

void expect_near_all(const Tensor& actual, const Tensor& expected, double tolerance) {
  ASSERT_EQ(actual.shape(), expected.shape());
  const std::vector<float> a = values_of(actual), e = values_of(expected);
  for (size_t k = 0; k < a.size(); ++k) {
    ASSERT_NEAR(a[k], e[k], tolerance * (1 + std::abs(e[k]))) << "element " << k;
  }
}

void expect_equal_all(const Tensor& actual, const Tensor& expected) {
  ASSERT_EQ(actual.shape(), expected.shape());
  EXPECT_EQ(values_of(actual), values_of(expected));
}

Tensor forward_no_grad(models::SegmentationModel& model, const Tensor& images) {
  NoGradGuard no_grad;
  return model.forward(images).logits;
}

TEST(Inference, WholeIsOneForward) {
  PaddedConvModel model;
  const Tensor images = randn({2, 3, 20, 24});
  const Tensor scores = infer(model, images, {});
  expect_equal_all(scores, forward_no_grad(model, images));
  EXPECT_FALSE(scores.requires_grad());
}

TEST(Inference, WholeRunsBatchSizeImagesPerForward) {
  PaddedConvModel model;
  const Tensor images = randn({5, 3, 8, 6});
  InferenceOptions options;
  options.batch_size = 2;
  const Tensor scores = infer(model, images, options);
  ASSERT_EQ(model.input_shapes.size(), 3u);
  EXPECT_EQ(model.input_shapes[0], (Shape{2, 3, 8, 6}));
  EXPECT_EQ(model.input_shapes[2], (Shape{1, 3, 8, 6}));
  expect_near_all(scores, forward_no_grad(model, images), 1e-6);
}

TEST(Inference, SlideWithCropCoveringTheImageIsWhole) {
  PaddedConvModel model;
  const Tensor images = randn({2, 3, 20, 24});
  // One crop (not padded: mmseg crops are clipped to the image) per image: the whole image.
  expect_near_all(infer(model, images, slide_options(64, 48)), forward_no_grad(model, images), 1e-6);
  expect_near_all(infer(model, images, slide_options(24, 10)), forward_no_grad(model, images), 1e-6);
}

TEST(Inference, SlideOfAPointwiseModelIsWholeExactly) {
  PointwiseModel model;
  const Tensor images = integer_images({2, 3, 37, 53}, 1);
  expect_equal_all(infer(model, images, slide_options(16, 11)), forward_no_grad(model, images));
  expect_equal_all(infer(model, images, slide_options(16, 16)), forward_no_grad(model, images));
  expect_equal_all(infer(model, images, slide_options(5, 1)), forward_no_grad(model, images));
}

TEST(Inference, SlideMatchesMmsegOnOddSizes) {
  PaddedConvModel model;
  const Tensor images = randn({2, 3, 37, 53});
  const Tensor expected = mmseg_slide_inference(model, images, 16, 16, 11, 11);
  expect_near_all(infer(model, images, slide_options(16, 11)), expected, 1e-5);
  // Non-square crops and strides, and an image lower than its crop (one crop row of the full height).
  InferenceOptions options = slide_options(16, 11);
  options.crop_h = 48, options.stride_h = 30, options.crop_w = 13, options.stride_w = 7;
  expect_near_all(infer(model, images, options), mmseg_slide_inference(model, images, 48, 13, 30, 7), 1e-5);
}

TEST(Inference, SlideCropsLieOnMmsegsGrid) {
  // Pixel values are their coordinates: each crop's first pixel tells where the crop was taken.
  const int64_t height = 37, width = 53;
  std::vector<float> coordinates(3 * height * width, 0.f);
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      coordinates[static_cast<size_t>(y * width + x)] = static_cast<float>(y);
      coordinates[static_cast<size_t>(height * width + y * width + x)] = static_cast<float>(x);
    }
  }
  const Tensor images = from_vector(coordinates, {1, 3, height, width});
  struct Recorder : PaddedConvModel {
    std::vector<std::pair<int64_t, int64_t>> origins;
    models::SegmentationOutput forward(const Tensor& crops) override {
      const std::vector<float> v = values_of(crops.contiguous());
      const int64_t plane = crops.size(2) * crops.size(3);
      for (int64_t n = 0; n < crops.size(0); ++n) {
        origins.emplace_back(static_cast<int64_t>(v[static_cast<size_t>(n * 3 * plane)]),
                             static_cast<int64_t>(v[static_cast<size_t>(n * 3 * plane + plane)]));
      }
      return PaddedConvModel::forward(crops);
    }
  } model_recorder;
  infer(model_recorder, images, slide_options(16, 11, 3));
  // h_grids = (37 - 16 + 10) / 11 + 1 = 3: y1 = 0, 11, then 22 -> 21 (aligned to the bottom);
  // w_grids = (53 - 16 + 10) / 11 + 1 = 5: x1 = 0, 11, 22, 33, then 44 -> 37.
  std::vector<std::pair<int64_t, int64_t>> expected;
  for (int64_t y : {0, 11, 21}) {
    for (int64_t x : {0, 11, 22, 33, 37}) expected.emplace_back(y, x);
  }
  EXPECT_EQ(model_recorder.origins, expected);
  ASSERT_EQ(model_recorder.input_shapes.size(), 5u);  // 15 crops, 3 per forward
  for (const Shape& shape : model_recorder.input_shapes) EXPECT_EQ(shape, (Shape{3, 3, 16, 16}));
}

TEST(Inference, CropBatchingDoesNotChangeTheResult) {
  PaddedConvModel model;
  const Tensor images = randn({3, 3, 37, 53});
  const Tensor one_at_a_time = infer(model, images, slide_options(16, 11, 1));
  EXPECT_EQ(model.input_shapes.size(), 3u * 15u);
  expect_near_all(infer(model, images, slide_options(16, 11, 8)), one_at_a_time, 1e-6);
  expect_near_all(infer(model, images, slide_options(16, 11, 100)), one_at_a_time, 1e-6);
}

TEST(Inference, OnePassReturnsLogits) {
  PaddedConvModel model;
  const Tensor images = randn({1, 3, 12, 10});
  InferenceOptions options;
  ASSERT_FALSE(options.uses_tta());
  const std::vector<float> scores = values_of(infer(model, images, options));
  // Logits, not probabilities: some fall outside [0, 1].
  EXPECT_TRUE(std::any_of(scores.begin(), scores.end(), [](float v) { return v < 0 || v > 1; }));
}

TEST(Inference, FlipTtaOfAFlipEquivariantModelIsSoftmaxOfWhole) {
  PointwiseModel model;
  const Tensor images = randn({2, 3, 9, 14});
  InferenceOptions options;
  options.flip = true;
  ASSERT_TRUE(options.uses_tta());
  expect_near_all(infer(model, images, options), softmax(forward_no_grad(model, images), 1), 1e-6);
  options = slide_options(5, 3);
  options.flip = true;
  expect_near_all(infer(model, images, options), softmax(forward_no_grad(model, images), 1), 1e-6);
}

TEST(Inference, MultiScaleTtaAveragesProbabilitiesAtTheOriginalSize) {
  PaddedConvModel model;
  const Tensor images = randn({1, 3, 15, 21});
  InferenceOptions options;
  options.scales = {0.5, 1.0};
  options.flip = true;
  // By hand: 0.5 gives round(7.5) x round(10.5) = 8 x 11 (mmcv rounds half up).
  auto bilinear = [](const Tensor& x, int64_t h, int64_t w) {
    InterpolateParams params;
    params.size = std::array<int64_t, 2>{h, w};
    params.mode = InterpolateMode::bilinear;
    return interpolate(x, params);
  };
  auto flip = [](const Tensor& x) {
    return index_select(x, 3, arange(static_cast<double>(x.size(3) - 1), -1.0, -1.0, {DType::i64}));
  };
  const Tensor half = bilinear(images, 8, 11);
  const Tensor expected =
      div(add(add(softmax(bilinear(forward_no_grad(model, half), 15, 21), 1),
                  softmax(flip(bilinear(forward_no_grad(model, flip(half)), 15, 21)), 1)),
              add(softmax(forward_no_grad(model, images), 1), softmax(flip(forward_no_grad(model, flip(images))), 1))),
          4.0);
  const Tensor scores = infer(model, images, options);
  expect_near_all(scores, expected, 1e-5);
  expect_near_all(sum(scores, {1}), ones({1, 15, 21}), 1e-5);  // probabilities
}

TEST(Inference, OneScaleOtherThanOneReturnsResizedLogits) {
  PaddedConvModel model;
  const Tensor images = randn({1, 3, 16, 12});
  InferenceOptions options;
  options.scales = {2.0};
  ASSERT_FALSE(options.uses_tta());
  InterpolateParams up, down;
  up.size = std::array<int64_t, 2>{32, 24};
  down.size = std::array<int64_t, 2>{16, 12};
  up.mode = down.mode = InterpolateMode::bilinear;
  const Tensor expected = interpolate(forward_no_grad(model, interpolate(images, up)), down);
  expect_near_all(infer(model, images, options), expected, 1e-6);
}

// inference.amp: the forward runs in bf16 / f16, the scores come back in f32 and close to the f32 ones,
// for whole, slide and TTA alike.
TEST(Inference, MixedPrecisionReturnsF32ScoresCloseToF32) {
  PaddedConvModel model;
  const Tensor images = randn({2, 3, 19, 23});
  for (const DType low : {DType::bf16, DType::f16}) {
    for (InferenceOptions options : {InferenceOptions{}, slide_options(8, 5, 4)}) {
      for (const bool flip : {false, true}) {
        options.flip = flip;
        const Tensor reference = infer(model, images, options);
        options.amp = low;
        const Tensor scores = infer(model, images, options);
        EXPECT_EQ(scores.dtype(), DType::f32);
        // 27 products of O(1) values rounded to 8 (bf16) or 11 (f16) significant bits.
        expect_near_all(scores, reference, low == DType::bf16 ? 0.1 : 0.02);
        options.amp.reset();
      }
    }
  }
}

TEST(Inference, OptionsFromConfig) {
  const Config config = Config::parse(R"({"test": {"mode": "slide", "crop_size": [64, 32], "stride": 24,
                                                  "scales": [0.75, 1.0, 1.25], "flip": true, "batch_size": 3,
                                                  "amp": "bf16"}})");
  const InferenceOptions options = InferenceOptions::from_config(config.sub("test"));
  EXPECT_EQ(options.mode, InferenceOptions::Mode::slide);
  EXPECT_EQ(options.crop_h, 64);
  EXPECT_EQ(options.crop_w, 32);
  EXPECT_EQ(options.stride_h, 24);
  EXPECT_EQ(options.stride_w, 24);
  EXPECT_EQ(options.scales, (std::vector<double>{0.75, 1.0, 1.25}));
  EXPECT_TRUE(options.flip);
  EXPECT_EQ(options.batch_size, 3);
  EXPECT_EQ(options.amp, DType::bf16);
  config.finish();  // every key was read

  const InferenceOptions defaults = InferenceOptions::from_config(Config::parse("{}"));
  EXPECT_EQ(defaults.mode, InferenceOptions::Mode::whole);
  EXPECT_EQ(defaults.scales, std::vector<double>{1.0});
  EXPECT_FALSE(defaults.flip);
  EXPECT_FALSE(defaults.amp.has_value());
}

TEST(Inference, BadOptionsNameTheKeyAndValue) {
  auto from = [](const std::string& text) {
    return [text] { InferenceOptions::from_config(Config::parse(text).sub("inference")); };
  };
  expect_error(from(R"({"inference": {"mode": "sliding"}})"),
               "inference.mode is \"sliding\"; valid modes are \"whole\" and \"slide\"");
  expect_error(from(R"({"inference": {"mode": "slide", "crop_size": [0, 8]}})"),
               "inference.crop_size must be positive, got [0, 8]");
  expect_error(from(R"({"inference": {"mode": "slide", "stride": [0, 8]}})"), "stride must be positive, got [0, 8]");
  expect_error(from(R"({"inference": {"mode": "slide", "crop_size": 8, "stride": 9}})"),
               "would leave pixels that no crop covers");
  expect_error(from(R"({"inference": {"crop_size": [1, 2, 3]}})"), "inference.crop_size must be [h, w] or one integer");
  expect_error(from(R"({"inference": {"scales": [1.0, -0.5]}})"), "every scale must be a positive number, got -0.5");
  expect_error(from(R"({"inference": {"scales": []}})"), "scales must list at least one factor");
  expect_error(from(R"({"inference": {"batch_size": 0}})"), "batch_size must be at least 1, got 0");
  expect_error(from(R"({"inference": {"amp": "fp8"}})"), "inference.amp is \"fp8\", expected \"off\", \"bf16\" or \"f16\"");

  const Config typo = Config::parse(R"({"mode": "whole", "fllip": true})");
  InferenceOptions::from_config(typo);
  expect_error([&] { typo.finish(); }, "fllip");

  PointwiseModel model;
  expect_error([&] { infer(model, randn({1, 1, 4, 4}), {}); }, "infer: images must be a non-empty (N, 3, H, W) batch");
}

}  // namespace
}  // namespace se
