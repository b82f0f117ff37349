// train/evaluation.h: evaluate() against confusion matrices counted by hand and on the host, the loader and
// model state it leaves behind, the reports (table, JSON, CSV, heatmap PNG, prediction PNGs), and CUDA
// against CPU.
#include <gtest/gtest.h>

#include <unistd.h>
#include <cmath>
#include <filesystem>
#include <memory>

#include "data/image_io.h"
#include "data/synthetic.h"
#include "tests/engine/test_util.h"
#include "tests/train/segmentation_test_models.h"
#include "train/evaluation.h"

namespace se {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;
using testing::PaddedConvModel;
using testing::values_of;

constexpr int kIgnore = 255;

// Samples given as (prediction, ground truth) pairs: channel 0 of each image holds the class that
// ChannelZeroModel will predict there, the mask the ground truth.
class ListDataset : public Dataset {
 public:
  ListDataset(std::vector<Sample> samples, std::vector<std::string> class_names) : samples_(std::move(samples)) {
    info_.name = "list";
    info_.class_names = std::move(class_names);
    info_.palette = default_palette(info_.num_classes());
  }
  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }
  Sample get(int64_t index) const override { return samples_.at(static_cast<size_t>(index)); }

 private:
  std::vector<Sample> samples_;
};

Sample make_sample(int width, int height, const std::vector<int>& predicted, const std::vector<int>& truth,
                   const std::string& id) {
  Sample sample{Image(width, height, 3), Image(width, height, 1), id};
  for (size_t p = 0; p < predicted.size(); ++p) {
    sample.image.pixels[3 * p] = static_cast<uint8_t>(predicted[p]);
    sample.mask.pixels[p] = static_cast<uint8_t>(truth[p]);
  }
  return sample;
}

// Predicts the class written in channel 0 of the (unnormalised: mean 0, std 1) image: logit_k = -(x0 - k)^2.
// No parameters, so evaluate() runs it on the loader's device. Records its mode at each forward.
class ChannelZeroModel : public models::SegmentationModel {
 public:
  explicit ChannelZeroModel(int64_t classes) : SegmentationModel("ChannelZeroModel", classes) {}
  models::SegmentationOutput forward(const Tensor& images) override {
    modes_seen.push_back(is_training());
    const Tensor classes = arange(static_cast<double>(num_classes()), {DType::f32, images.device()});
    const Tensor distance = sub(images.narrow(1, 0, 1), classes.view({1, num_classes(), 1, 1}));
    return {neg(mul(distance, distance)), {}, {}};
  }
  std::vector<bool> modes_seen;
};

std::unique_ptr<DataLoader> make_loader(std::shared_ptr<const Dataset> dataset, int64_t batch_size, int workers,
                                        Device device = Device::cpu()) {
  Pipeline pipeline;
  pipeline.set_normalization({{0.f, 0.f, 0.f}, {1.f, 1.f, 1.f}});
  LoaderOptions options;
  options.batch_size = batch_size;
  options.shuffle = true;
  options.num_workers = workers;
  options.seed = 3;
  options.device = device;
  return std::make_unique<DataLoader>(std::move(dataset), pipeline, options);
}

// Five 4x5 samples with a mix of right, wrong and ignored pixels.
std::shared_ptr<ListDataset> mixed_dataset() {
  std::vector<Sample> samples;
  for (int i = 0; i < 5; ++i) {
    std::vector<int> predicted, truth;
    for (int y = 0; y < 4; ++y) {
      for (int x = 0; x < 5; ++x) {
        predicted.push_back((i + y + 2 * x) % 3);
        truth.push_back((x + y + i) % 5 == 0 ? kIgnore : (i * y + x) % 3);
      }
    }
    samples.push_back(make_sample(5, 4, predicted, truth, std::string("s") + std::to_string(i)));
  }
  return std::make_shared<ListDataset>(samples, std::vector<std::string>{"road", "car", "sky"});
}

// The confusion counted on the host, straight from the samples.
std::vector<int64_t> host_confusion(const Dataset& dataset, int64_t classes) {
  std::vector<int64_t> confusion(static_cast<size_t>(classes * classes), 0);
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const Sample s = dataset.get(i);
    for (size_t p = 0; p < s.mask.pixels.size(); ++p) {
      if (s.mask.pixels[p] == kIgnore) continue;
      ++confusion[static_cast<size_t>(s.mask.pixels[p] * classes + s.image.pixels[3 * p])];
    }
  }
  return confusion;
}

std::string temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / (std::string("se_eval_") + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

TEST(Evaluation, HandComputedConfusionAndMetrics) {
  // Predictions [0, 1, 1, 2] against ground truth [0, 1, 2, ignore].
  auto dataset =
      std::make_shared<ListDataset>(std::vector<Sample>{make_sample(2, 2, {0, 1, 1, 2}, {0, 1, 2, kIgnore}, "a")},
                                    std::vector<std::string>{"road", "car", "sky"});
  ChannelZeroModel model(3);
  auto loader = make_loader(dataset, 1, 0);
  const EvaluationResult r = evaluate(model, *loader, {}, kIgnore);
  EXPECT_EQ(r.num_classes, 3);
  EXPECT_EQ(r.confusion, (std::vector<int64_t>{1, 0, 0,  //
                                               0, 1, 0,  //
                                               0, 1, 0}));
  EXPECT_EQ(r.images, 1);
  // ground truth per class [1, 1, 1], predicted [1, 2, 0], true positives [1, 1, 0]
  EXPECT_EQ(r.metrics.pixel_accuracy, 2.0 / 3);
  EXPECT_EQ(r.metrics.accuracy, (std::vector<double>{1.0, 1.0, 0.0}));
  EXPECT_EQ(r.metrics.iou, (std::vector<double>{1.0, 0.5, 0.0}));
  EXPECT_EQ(r.metrics.dice, (std::vector<double>{1.0, 2.0 / 3, 0.0}));
  EXPECT_DOUBLE_EQ(r.metrics.mean_iou, 0.5);
  EXPECT_DOUBLE_EQ(r.metrics.mean_accuracy, 2.0 / 3);
  EXPECT_DOUBLE_EQ(r.metrics.mean_dice, 5.0 / 9);
  EXPECT_DOUBLE_EQ(r.metrics.frequency_weighted_iou, 0.5);
}

TEST(Evaluation, MatchesAHostCountWhateverTheBatchingAndIsRepeatable) {
  const auto dataset = mixed_dataset();
  const std::vector<int64_t> expected = host_confusion(*dataset, 3);
  ChannelZeroModel model(3);
  for (const auto& [batch_size, workers] : {std::pair{2, 2}, std::pair{3, 0}, std::pair{5, 1}, std::pair{8, 2}}) {
    auto loader = make_loader(dataset, batch_size, workers);
    std::vector<std::pair<int64_t, int64_t>> progress;
    const EvaluationResult first =
        evaluate(model, *loader, {}, kIgnore, [&](int64_t done, int64_t total) { progress.emplace_back(done, total); });
    EXPECT_EQ(first.confusion, expected) << "batch size " << batch_size;
    EXPECT_EQ(first.images, 5);
    const int64_t batches = (5 + batch_size - 1) / batch_size;
    ASSERT_EQ(static_cast<int64_t>(progress.size()), batches);
    EXPECT_EQ(progress.back(), (std::pair<int64_t, int64_t>{batches, batches}));
    // Again, and from the middle of an epoch: always one full pass from the start of the epoch.
    EXPECT_EQ(evaluate(model, *loader, {}, kIgnore).confusion, expected);
    loader->next();
    EXPECT_EQ(loader->state().batch, 1);
    const EvaluationResult again = evaluate(model, *loader, {}, kIgnore);
    EXPECT_EQ(again.confusion, expected);
    EXPECT_EQ(again.images, 5);
    EXPECT_EQ(loader->state(), (LoaderState{0, 0}));  // back at the start of its epoch
  }
}

TEST(Evaluation, SlideInferenceOfAPixelwiseModelGivesTheSameConfusion) {
  const auto dataset = mixed_dataset();
  ChannelZeroModel model(3);
  auto loader = make_loader(dataset, 2, 0);
  InferenceOptions options;
  options.mode = InferenceOptions::Mode::slide;
  options.crop_h = options.crop_w = 3;
  options.stride_h = options.stride_w = 2;
  options.batch_size = 5;
  options.flip = true;
  EXPECT_EQ(evaluate(model, *loader, options, kIgnore).confusion, host_confusion(*dataset, 3));
}

TEST(Evaluation, RunsInEvalModeAndRestoresTheModelsMode) {
  auto loader = make_loader(mixed_dataset(), 2, 0);
  ChannelZeroModel model(3);
  model.train();
  evaluate(model, *loader, {}, kIgnore);
  EXPECT_EQ(model.modes_seen, (std::vector<bool>{false, false, false}));
  EXPECT_TRUE(model.is_training());
  model.eval();
  evaluate(model, *loader, {}, kIgnore);
  EXPECT_FALSE(model.is_training());
}

TEST(Evaluation, AMaskValueThatIsNoClassIsAnErrorAndStateIsRestored) {
  auto dataset = std::make_shared<ListDataset>(std::vector<Sample>{make_sample(2, 1, {0, 1}, {0, 7}, "bad")},
                                               std::vector<std::string>{"road", "car", "sky"});
  auto loader = make_loader(dataset, 1, 0);
  ChannelZeroModel model(3);
  model.train();
  expect_error([&] { evaluate(model, *loader, {}, kIgnore); }, "7");
  EXPECT_TRUE(model.is_training());
  EXPECT_EQ(loader->state(), (LoaderState{0, 0}));
}

EvaluationResult three_class_result() {
  // Class 2 is in neither the ground truth nor the predictions: its IoU, Acc and Dice are undefined.
  return make_evaluation_result({3, 1, 0,  //
                                 0, 2, 0,  //
                                 0, 0, 0},
                                3, 2, 1.5);
}

TEST(EvaluationReport, TableHasClassesAndPercentages) {
  const std::string table = format_evaluation_table(three_class_result(), {"road", "car", "sky"});
  // road: IoU 3/4, Acc 3/4, Dice 6/7; car: IoU 2/3, Acc 1, Dice 4/5; aAcc 5/6, mIoU 17/24, fwIoU 2/3 * 3/4 + 1/3 * 2/3
  for (const char* expected :
       {"| Class |   IoU |", "| road  | 75.00 |  75.00 | 85.71 |", "| car   | 66.67 | 100.00 | 80.00 |",
        "| sky   |   nan |    nan |   nan |", "|  aAcc |  mIoU |  mAcc | mDice | fwIoU |",
        "| 83.33 | 70.83 | 87.50 | 82.86 | 72.22 |", "2 images in 1.50 s"}) {
    EXPECT_NE(table.find(expected), std::string::npos) << "missing '" << expected << "' in\n" << table;
  }
  EXPECT_NE(format_evaluation_table(three_class_result(), {}).find("| class 2 |"), std::string::npos);
  expect_error([] { format_evaluation_table(three_class_result(), {"road"}); }, "1 class names for 3 classes");
}

TEST(EvaluationReport, JsonHasFractionsAndNullForUndefined) {
  const nlohmann::json json = evaluation_to_json(three_class_result(), {"road", "car", "sky"});
  EXPECT_EQ(json["num_classes"], 3);
  EXPECT_EQ(json["images"], 2);
  EXPECT_DOUBLE_EQ(json["aAcc"].get<double>(), 5.0 / 6);
  EXPECT_DOUBLE_EQ(json["mIoU"].get<double>(), (0.75 + 2.0 / 3) / 2);
  EXPECT_EQ(json["per_class"][0]["class"], "road");
  EXPECT_DOUBLE_EQ(json["per_class"][1]["Acc"].get<double>(), 1.0);
  EXPECT_TRUE(json["per_class"][2]["IoU"].is_null());
  EXPECT_TRUE(json["per_class"][2]["Dice"].is_null());
  EXPECT_EQ(json["confusion"], nlohmann::json::parse("[[3, 1, 0], [0, 2, 0], [0, 0, 0]]"));
  // Undefined means (no pixels at all) are null too, and the whole document dumps as valid JSON.
  const nlohmann::json empty = evaluation_to_json(make_evaluation_result({0, 0, 0, 0}, 2), {});
  EXPECT_TRUE(empty["mIoU"].is_null());
  EXPECT_TRUE(empty["aAcc"].is_null());
  EXPECT_EQ(nlohmann::json::parse(empty.dump()), empty);
}

TEST(EvaluationReport, ConfusionCsvIsExact) {
  const std::string dir = temp_dir("csv");
  const std::string path = dir + "/confusion.csv";
  write_confusion_csv(path, make_evaluation_result({3, 1, 0, 2}, 2), {"road", "car, \"parked\""});
  const std::vector<uint8_t> bytes = read_file(path);
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()),
            "ground_truth\\prediction,road,\"car, \"\"parked\"\"\"\n"
            "road,3,1\n"
            "\"car, \"\"parked\"\"\",0,2\n");
  fs::remove_all(dir);
}

TEST(EvaluationReport, HeatmapDecodesWithCellsStripsAndColours) {
  const std::string dir = temp_dir("heatmap");
  const EvaluationResult result = make_evaluation_result({5, 0, 0,  //
                                                          1, 3, 0,  //
                                                          0, 0, 0},
                                                         3);
  const std::vector<Rgb> palette{Rgb{255, 0, 0}, Rgb{0, 255, 0}, Rgb{0, 0, 255}};
  write_confusion_heatmap(dir + "/with_palette.png", result, palette);
  const HeatmapGeometry g = confusion_heatmap_size(3, true);
  EXPECT_EQ(g.cell, 48);  // the largest cell: 3 classes are few
  const Image image = read_image(dir + "/with_palette.png");
  ASSERT_EQ(image.width, g.width);
  ASSERT_EQ(image.height, g.height);
  const int margin = g.width - 3 * g.cell;
  auto pixel = [&](int x, int y) { return Rgb{image.at(y, x, 0), image.at(y, x, 1), image.at(y, x, 2)}; };
  auto cell = [&](int row, int col) { return pixel(margin + col * g.cell + 1, margin + row * g.cell + 1); };
  EXPECT_EQ(cell(0, 0), (Rgb{253, 231, 37}));                // 100%: viridis' yellow end
  EXPECT_EQ(cell(0, 1), (Rgb{68, 1, 84}));                   // 0%: its dark end
  EXPECT_EQ(cell(2, 2), (Rgb{225, 225, 225}));               // no ground-truth pixels: grey
  EXPECT_EQ(pixel(1, margin + g.cell + 1), palette[1]);      // the rows' strip
  EXPECT_EQ(pixel(margin + 2 * g.cell + 1, 1), palette[2]);  // the columns' strip

  write_confusion_heatmap(dir + "/plain.png", make_evaluation_result(std::vector<int64_t>(150 * 150, 1), 150), {});
  const Image plain = read_image(dir + "/plain.png");
  EXPECT_EQ(plain.width, 150 * confusion_heatmap_size(150, false).cell);
  EXPECT_EQ(plain.height, plain.width);
  expect_error([&] { write_confusion_heatmap(dir + "/x.png", result, {Rgb{1, 2, 3}}); }, "1 colours for 3 classes");
  fs::remove_all(dir);
}

TEST(EvaluationReport, PredictionPngsDecodeBack) {
  const std::string dir = temp_dir("predict");
  Image image(3, 2, 3);
  for (size_t p = 0; p < image.pixels.size(); ++p) image.pixels[p] = static_cast<uint8_t>(37 * p % 256);
  const std::vector<int64_t> classes{0, 2, 1, 1, 0, 2};
  const Tensor prediction = from_vector(classes, {2, 3});
  const std::vector<Rgb> palette{Rgb{0, 0, 0}, Rgb{255, 0, 0}, Rgb{10, 200, 31}};
  write_prediction_pngs(dir + "/index.png", dir + "/overlay.png", image, prediction, palette);
  const Image mask = read_mask(dir + "/index.png");
  ASSERT_EQ(mask.width, 3);
  ASSERT_EQ(mask.height, 2);
  for (size_t p = 0; p < classes.size(); ++p) EXPECT_EQ(mask.pixels[p], classes[p]);
  const Image overlay = read_image(dir + "/overlay.png");
  ASSERT_EQ(overlay.pixels.size(), image.pixels.size());
  for (size_t p = 0; p < overlay.pixels.size(); ++p) {
    EXPECT_EQ(overlay.pixels[p], (image.pixels[p] + palette[static_cast<size_t>(classes[p / 3])][p % 3] + 1) / 2);
  }
  expect_error(
      [&] {
        write_prediction_pngs(dir + "/a.png", dir + "/b.png", image, from_vector<int64_t>({0, 3, 0, 0, 0, 0}, {2, 3}),
                              palette);
      },
      "predicted class 3 at pixel (0, 1) has no palette colour");
  expect_error(
      [&] {
        write_prediction_pngs(dir + "/a.png", dir + "/b.png", image, from_vector<int64_t>({0, 0, 0}, {1, 3}), palette);
      },
      "prediction must be (2, 3) i64");
  fs::remove_all(dir);
}

TEST(EvaluationCuda, SlideInferenceAndEvaluationMatchCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  SyntheticOptions synthetic;
  synthetic.split = "val";
  synthetic.size = 4;
  synthetic.image_size = 32;
  const auto dataset = std::make_shared<SyntheticDataset>(synthetic);
  PaddedConvModel cpu_model(dataset->num_classes()), cuda_model(dataset->num_classes());
  cuda_model.to(Device::cuda(0));
  InferenceOptions options;
  options.mode = InferenceOptions::Mode::slide;
  options.crop_h = options.crop_w = 24;
  options.stride_h = options.stride_w = 16;
  options.batch_size = 3;

  const Tensor images = randn({2, 3, 32, 32});
  const std::vector<float> cpu_scores = values_of(infer(cpu_model, images, options));
  const Tensor cuda_scores_tensor = infer(cuda_model, images, options);  // CPU images go to the model's device
  EXPECT_EQ(cuda_scores_tensor.device(), Device::cuda(0));
  const std::vector<float> cuda_scores = values_of(cuda_scores_tensor);
  ASSERT_EQ(cpu_scores.size(), cuda_scores.size());
  for (size_t k = 0; k < cpu_scores.size(); ++k)
    ASSERT_NEAR(cpu_scores[k], cuda_scores[k], 1e-4 * (1 + std::abs(cpu_scores[k])));

  auto cpu_loader = make_loader(dataset, 3, 0);
  auto cuda_loader = make_loader(dataset, 3, 0, Device::cuda(0));
  const EvaluationResult cpu = evaluate(cpu_model, *cpu_loader, options, dataset->info().ignore_index);
  const EvaluationResult cuda = evaluate(cuda_model, *cuda_loader, options, dataset->info().ignore_index);
  EXPECT_EQ(cuda.confusion, cpu.confusion);
  EXPECT_EQ(cuda.images, 4);
  int64_t pixels = 0;
  for (int64_t count : cpu.confusion) pixels += count;
  EXPECT_GT(pixels, 0);
}

}  // namespace
}  // namespace se
