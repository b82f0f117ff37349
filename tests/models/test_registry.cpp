#include <gtest/gtest.h>

#include "engine/ops.h"
#include "models/registry.h"
#include "nn/layers.h"
#include "tests/engine/test_util.h"

namespace se::models {
namespace {

using testing::error_of;

// A one-layer model registered the way every model family registers itself.
class Pointwise : public SegmentationModel {
 public:
  Pointwise(int64_t num_classes, int64_t in_channels) : SegmentationModel("Pointwise", num_classes) {
    classifier = register_module("classifier", std::make_shared<nn::Conv2d>(in_channels, num_classes, 1));
  }
  SegmentationOutput forward(const Tensor& images) override { return {classifier->forward(images), {}, {}}; }
  std::shared_ptr<nn::Conv2d> classifier;
};

SE_REGISTER_MODEL(test_pointwise, "1x1 conv classifier (test only)", [](const Config& cfg) {
  return std::make_shared<Pointwise>(cfg.get<int64_t>("num_classes"), cfg.get<int64_t>("in_channels", 3));
});

TEST(Registry, BuildsRegisteredModelsFromJson) {
  auto model = build_model_from_json(R"({"name": "test_pointwise", "num_classes": 4})");
  EXPECT_EQ(model->num_classes(), 4);
  EXPECT_EQ(model->forward(zeros({1, 3, 5, 5})).logits.shape(), (Shape{1, 4, 5, 5}));
  bool listed = false;
  for (const auto& entry : registered_models()) listed |= entry.name == "test_pointwise";
  EXPECT_TRUE(listed);
}

TEST(Registry, UnknownNamesAndKeysAreErrorsListingTheValidOnes) {
  const std::string name_error = error_of([] { build_model_from_json(R"({"name": "test_pointwize", "num_classes": 4})"); });
  EXPECT_NE(name_error.find("unknown name 'test_pointwize' (did you mean 'test_pointwise'?)"), std::string::npos)
      << name_error;
  EXPECT_NE(name_error.find("registered models: "), std::string::npos);
  const std::string key_error =
      error_of([] { build_model_from_json(R"({"name": "test_pointwise", "num_classes": 4, "in_chanels": 3})"); });
  EXPECT_NE(key_error.find("in_chanels"), std::string::npos) << key_error;
  EXPECT_NE(key_error.find("in_channels"), std::string::npos) << key_error;
  EXPECT_NE(error_of([] { build_model_from_json(R"({"name": "test_pointwise"})"); }).find("num_classes"),
            std::string::npos);
}

}  // namespace
}  // namespace se::models
