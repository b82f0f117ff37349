// The trainer end to end on tiny models and synthetic data: what it writes, resume equality,
// gradient accumulation, EMA, early stopping and bad inputs.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "nn/safetensors.h"
#include "tests/data/data_test_util.h"
#include "tests/kernels/kernel_test_util.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace se {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;
using testing::TempDir;

// A tiny U-Net on 32x32 synthetic scenes: 16 training samples in batches of 4 (4 batches per epoch).
nlohmann::json tiny_config() {
  return nlohmann::json::parse(R"({
    "model": {"name": "unet", "num_classes": 6, "base_channels": 4, "depth": 2},
    "data": {
      "dataset": {"type": "synthetic", "image_size": 32},
      "train": {"dataset": {"size": 16}, "transforms": [{"type": "random_flip", "prob": 0.5}],
                "loader": {"batch_size": 4, "num_workers": 1, "drop_last": true}},
      "val": {"dataset": {"size": 6}, "loader": {"batch_size": 4, "num_workers": 0}}
    },
    "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
    "scheduler": {"policy": "poly", "power": 0.9, "warmup_iters": 2},
    "train": {"max_iters": 8, "eval_interval": 4, "log_interval": 2, "checkpoint_interval": 4, "seed": 3,
              "plots": true}
  })");
}

TrainerSetup quiet_setup(const std::string& out_dir, Device device = Device::cpu()) {
  TrainerSetup setup;
  setup.out_dir = out_dir;
  setup.device = device;
  setup.progress = false;
  static std::FILE* const null_console = std::fopen("/dev/null", "w");
  setup.console = null_console;
  return setup;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> records;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  return records;
}

// Every tensor of two checkpoints' model and optimizer parts, bit for bit.
void expect_same_training_state(const std::string& a_path, const std::string& b_path) {
  Checkpoint a = load_checkpoint(a_path), b = load_checkpoint(b_path);
  ASSERT_EQ(a.model.size(), b.model.size());
  for (size_t i = 0; i < a.model.size(); ++i) {
    ASSERT_EQ(a.model[i].first, b.model[i].first);
    const Tensor& x = a.model[i].second;
    const Tensor& y = b.model[i].second;
    ASSERT_EQ(x.nbytes(), y.nbytes());
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()), 0) << a.model[i].first << " differs";
  }
  ASSERT_EQ(a.optimizer.tensors.size(), b.optimizer.tensors.size());
  for (size_t i = 0; i < a.optimizer.tensors.size(); ++i) {
    const Tensor& x = a.optimizer.tensors[i].second;
    const Tensor& y = b.optimizer.tensors[i].second;
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()), 0) << a.optimizer.tensors[i].first << " differs";
  }
  EXPECT_EQ(a.trainer.at("random"), b.trainer.at("random"));
  EXPECT_EQ(a.trainer.at("loader"), b.trainer.at("loader"));
  EXPECT_EQ(a.trainer.at("scheduler"), b.trainer.at("scheduler"));
}

TEST(Trainer, RunsEvaluatesAndWritesItsOutputs) {
  TempDir dir;
  Trainer trainer(Config::from_json(tiny_config()), quiet_setup(dir / "run"));
  const TrainSummary summary = trainer.run();
  EXPECT_EQ(summary.iterations, 8);
  EXPECT_EQ(summary.evaluations, 2);
  EXPECT_FALSE(summary.stopped_early);
  EXPECT_TRUE(std::isfinite(summary.best_miou));
  EXPECT_GE(summary.best_miou, summary.last_miou);
  EXPECT_TRUE(summary.best_iteration == 4 || summary.best_iteration == 8);
  for (const char* file : {"config.json", "metrics.jsonl", "best.safetensors", "last.safetensors",
                           "checkpoints/iter_000008.safetensors", "plots/loss.png", "plots/miou.png"})
    EXPECT_TRUE(fs::exists(dir / ("run/" + std::string(file)))) << file;
  // keep_checkpoints 1: the iteration-4 checkpoint was replaced by the iteration-8 one.
  EXPECT_FALSE(fs::exists(dir / "run/checkpoints/iter_000004.safetensors"));
  EXPECT_FALSE(fs::is_empty(dir / "run/tensorboard"));

  const auto records = read_jsonl(dir / "run/metrics.jsonl");
  int train_records = 0, val_records = 0;
  for (const auto& r : records) {
    if (r.at("mode") == "train") {
      ++train_records;
      EXPECT_TRUE(r.contains("lr") && r.contains("loss") && r.contains("loss_ce") && r.contains("time_per_iter"));
    } else {
      ++val_records;
      EXPECT_EQ(r.at("mode"), "val");
      EXPECT_TRUE(r.contains("iter"));
    }
  }
  EXPECT_EQ(train_records, 4);  // log_interval 2 over 8 iterations
  EXPECT_EQ(val_records, 2);

  Checkpoint last = load_checkpoint(dir / "run/last.safetensors");
  EXPECT_EQ(last.trainer.at("iteration"), 8);
  EXPECT_EQ(last.trainer.at("loader").at("epoch"), 1);  // 8 batches = 2 epochs of 4: at the end of epoch 1
  EXPECT_EQ(last.trainer.at("config").at("model").at("name"), "unet");
  EXPECT_FALSE(last.ema.has_value());

  // A second fresh run into the same directory would mix or lose the first: refused unless asked.
  const auto log_size = fs::file_size(dir / "run/metrics.jsonl");
  expect_error([&] { Trainer(Config::from_json(tiny_config()), quiet_setup(dir / "run")); },
               "already holds a run");
  EXPECT_EQ(fs::file_size(dir / "run/metrics.jsonl"), log_size);
  TrainerSetup overwrite = quiet_setup(dir / "run");
  overwrite.overwrite = true;
  nlohmann::json shorter = tiny_config();
  shorter["train"]["max_iters"] = 2;
  shorter["train"]["eval_interval"] = 0;
  shorter["train"]["checkpoint_interval"] = 2;
  Trainer(Config::from_json(shorter), overwrite).run();
  EXPECT_FALSE(fs::exists(dir / "run/checkpoints/iter_000008.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "run/checkpoints/iter_000002.safetensors"));
  EXPECT_EQ(load_checkpoint(dir / "run/best.safetensors").trainer.at("iteration"), 2);
}

// 30 Adam steps on one repeated batch of 4, every iteration logged.
nlohmann::json repeated_batch_config() {
  nlohmann::json config = tiny_config();
  config["data"]["train"] = nlohmann::json::parse(
      R"({"dataset": {"size": 4}, "loader": {"batch_size": 4, "num_workers": 0, "shuffle": false}})");
  config["optimizer"] = {{"type", "adam"}, {"lr", 0.01}};
  config["train"] = {{"max_iters", 30}, {"log_interval", 1}, {"seed", 1}, {"plots", false}, {"tensorboard", false}};
  return config;
}

TEST(Trainer, LossDecreasesOnARepeatedBatch) {
  TempDir dir;
  const nlohmann::json config = repeated_batch_config();
  Trainer trainer(Config::from_json(config), quiet_setup(dir / "run"));
  trainer.run();
  const auto records = read_jsonl(dir / "run/metrics.jsonl");
  ASSERT_GE(records.size(), 30u);
  EXPECT_LT(records[29].at("loss").get<double>(), 0.7 * records[0].at("loss").get<double>());
}

// An interrupted run resumed from its checkpoint ends bit-identical to an uninterrupted one: weights,
// BatchNorm statistics, optimizer moments, scheduler, generator and loader position. The interruption
// falls mid-epoch (iteration 3 of 4 batches per epoch) and between evaluations.
void expect_resume_is_exact(nlohmann::json config) {
  TempDir dir;
  {
    Trainer full(Config::from_json(config), quiet_setup(dir / "full"));
    full.run();
  }
  {
    Trainer first(Config::from_json(config), quiet_setup(dir / "resumed"));
    first.stop_after(3);
    const TrainSummary part = first.run();
    EXPECT_EQ(part.iterations, 3);
  }
  TrainerSetup setup = quiet_setup(dir / "resumed");
  setup.resume = dir / "resumed/last.safetensors";
  Trainer second(Config::from_json(config), setup);
  EXPECT_EQ(second.iteration(), 3);
  const TrainSummary rest = second.run();
  EXPECT_EQ(rest.iterations, 8);
  EXPECT_EQ(rest.evaluations, 2);
  expect_same_training_state(dir / "full/last.safetensors", dir / "resumed/last.safetensors");
  expect_same_training_state(dir / "full/best.safetensors", dir / "resumed/best.safetensors");
  // The resumed log continues the interrupted one.
  EXPECT_EQ(read_jsonl(dir / "resumed/metrics.jsonl").size(), read_jsonl(dir / "full/metrics.jsonl").size());
}

TEST(Trainer, ResumeIsBitIdenticalOnTheCpu) { expect_resume_is_exact(tiny_config()); }

TEST(Trainer, ResumeIsBitIdenticalForTheSiameseUNetWithEmaAndAdamW) {
  nlohmann::json config = tiny_config();
  config["model"]["name"] = "siamese_unet";
  config["model"]["consistency"] = {{"weight", 0.5}, {"levels", {-1, 0}}, {"kl_weight", 0.1}};
  config["optimizer"] = {{"type", "adamw"}, {"lr", 0.003}};
  config["train"]["ema"] = {{"decay", 0.9}};
  config["train"]["clip_grad_norm"] = 1.0;
  expect_resume_is_exact(config);
}

// On the CPU every kernel sums in an order fixed by the shapes, not by the threads: a run on one thread
// and a run on several (at least 3, so that thread ranges split unevenly) end bit-identical. The models
// cover the convolutions' paths (shallow, chunked, dilated, transposed, depthwise), BatchNorm, resize,
// pooling (PSPNet's adaptive bins), attention, LayerNorm and the Siamese consistency losses.
void expect_same_run_on_one_and_several_threads(const nlohmann::json& model, const std::string& amp = "") {
  TempDir dir;
  nlohmann::json config = tiny_config();
  config["model"] = model;
  config["data"]["dataset"]["image_size"] = 64;  // enough rows that the threads split the convolutions' work
  config["train"]["max_iters"] = 2;
  config["train"]["eval_interval"] = 0;
  config["train"]["checkpoint_interval"] = 2;
  config["train"]["plots"] = false;
  if (!amp.empty()) config["train"]["amp"] = amp;
  const int threads = omp_get_max_threads(), several = std::max(threads, 3);
  for (const int run_threads : {1, several}) {
    omp_set_num_threads(run_threads);
    Trainer(Config::from_json(config), quiet_setup(dir / std::to_string(run_threads))).run();
  }
  omp_set_num_threads(threads);
  expect_same_training_state(dir / "1/last.safetensors", dir / (std::to_string(several) + "/last.safetensors"));
}

class TrainerThreads : public ::testing::TestWithParam<const char*> {};

TEST_P(TrainerThreads, RunIsBitIdenticalForAnyThreadCount) {
  expect_same_run_on_one_and_several_threads(nlohmann::json::parse(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(
    Models, TrainerThreads,
    ::testing::Values(R"({"name": "unet", "num_classes": 6, "base_channels": 8, "depth": 3})",
                      R"({"name": "segformer", "variant": "b0", "num_classes": 6})",
                      R"({"name": "deeplabv3plus", "backbone": "resnet18", "output_stride": 8, "num_classes": 6,
                          "aux_head": true})",
                      R"({"name": "pspnet", "backbone": "resnet18", "output_stride": 8, "num_classes": 6})",
                      R"({"name": "fcn", "backbone": "resnet18", "num_classes": 6})",
                      R"({"name": "siamese_unet", "num_classes": 6, "base_channels": 8, "depth": 3,
                          "consistency": {"weight": 0.5, "levels": [-1, 0], "kl_weight": 0.1}})"));

// Mixed precision too: the f16/bf16 operands, the f32 master weights and f16's loss scaling.
TEST(Trainer, MixedPrecisionRunIsBitIdenticalForAnyThreadCount) {
  const auto unet = nlohmann::json::parse(R"({"name": "unet", "num_classes": 6, "base_channels": 8, "depth": 3})");
  const auto segformer = nlohmann::json::parse(R"({"name": "segformer", "variant": "b0", "num_classes": 6})");
  expect_same_run_on_one_and_several_threads(unet, "bf16");
  expect_same_run_on_one_and_several_threads(segformer, "f16");
}

TEST(Trainer, SiameseRunLogsItsLossParts) {
  TempDir dir;
  nlohmann::json config = tiny_config();
  config["model"]["name"] = "siamese_unet";
  config["model"]["consistency"] = {{"kl_weight", 0.1}};
  config["train"]["max_iters"] = 2;
  config["train"]["eval_interval"] = 0;
  Trainer(Config::from_json(config), quiet_setup(dir / "run")).run();
  const auto records = read_jsonl(dir / "run/metrics.jsonl");
  ASSERT_FALSE(records.empty());
  for (const char* key : {"loss_seg_a", "loss_seg_b", "loss_consistency", "loss_kl"})
    EXPECT_TRUE(records.front().contains(key)) << key;
}

// Two micro-batches of 2 per step give the gradients of one batch of 4 (a model without BatchNorm,
// whose batch statistics would differ, and labels without ignored pixels).
TEST(Trainer, GradientAccumulationMatchesTheWholeBatch) {
  TempDir dir;
  nlohmann::json whole = tiny_config();
  whole["model"]["batch_norm"] = false;
  whole["data"]["train"]["transforms"] = nlohmann::json::array();
  whole["train"]["eval_interval"] = 0;
  whole["train"]["max_iters"] = 3;
  nlohmann::json accumulated = whole;
  accumulated["data"]["train"]["loader"]["batch_size"] = 2;
  accumulated["train"]["accumulate"] = 2;
  Trainer(Config::from_json(whole), quiet_setup(dir / "whole")).run();
  Trainer(Config::from_json(accumulated), quiet_setup(dir / "accumulated")).run();
  Checkpoint a = load_checkpoint(dir / "whole/last.safetensors");
  Checkpoint b = load_checkpoint(dir / "accumulated/last.safetensors");
  ASSERT_EQ(a.model.size(), b.model.size());
  for (size_t i = 0; i < a.model.size(); ++i) {
    const auto x = a.model[i].second.to_vector<double>();
    const auto y = b.model[i].second.to_vector<double>();
    for (size_t j = 0; j < x.size(); ++j) ASSERT_NEAR(x[j], y[j], 1e-5 * (1 + std::abs(x[j]))) << a.model[i].first;
  }
  EXPECT_EQ(a.trainer.at("loader").at("batch"), 3);
  EXPECT_EQ(b.trainer.at("loader").at("batch"), 6);
}

TEST(Trainer, EmaWeightsAreCheckpointedAndPreferredForEvaluation) {
  TempDir dir;
  nlohmann::json config = tiny_config();
  config["train"]["ema"] = {{"decay", 0.5}};
  Trainer(Config::from_json(config), quiet_setup(dir / "run")).run();
  Checkpoint best = load_checkpoint(dir / "run/best.safetensors");
  ASSERT_TRUE(best.ema.has_value());
  EXPECT_EQ(best.ema->meta.at("updates"), best.trainer.at("iteration"));

  Trainer probe(Config::from_json(config), quiet_setup(dir / "probe"));
  EXPECT_EQ(load_model_weights(probe.model(), dir / "run/best.safetensors"), "ema");
  EXPECT_EQ(load_model_weights(probe.model(), dir / "run/best.safetensors", WeightSource::model), "model");
}

TEST(Trainer, EarlyStoppingAfterPatienceEvaluationsWithoutImprovement) {
  TempDir dir;
  nlohmann::json config = tiny_config();
  config["optimizer"]["lr"] = 0.0;  // nothing changes, so the second evaluation cannot improve
  config["optimizer"]["momentum"] = 0.0;
  config["train"]["max_iters"] = 20;
  config["train"]["eval_interval"] = 2;
  config["train"]["early_stopping"] = {{"patience", 1}};
  Trainer trainer(Config::from_json(config), quiet_setup(dir / "run"));
  const TrainSummary summary = trainer.run();
  EXPECT_TRUE(summary.stopped_early);
  EXPECT_EQ(summary.iterations, 4);
  EXPECT_EQ(summary.evaluations, 2);
  EXPECT_EQ(summary.best_iteration, 2);
}

TEST(Trainer, AuxiliaryHeadLossIsWeightedIn) {
  TempDir dir;
  nlohmann::json config = tiny_config();
  config["model"] = {{"name", "fcn"}, {"backbone", "resnet18"}, {"num_classes", 6}, {"aux_head", true}};
  config["train"]["max_iters"] = 1;
  config["train"]["eval_interval"] = 0;
  config["train"]["log_interval"] = 1;
  config["train"]["aux_weight"] = 0.5;
  Trainer(Config::from_json(config), quiet_setup(dir / "run")).run();
  const auto record = read_jsonl(dir / "run/metrics.jsonl").front();
  EXPECT_NEAR(record.at("loss").get<double>(),
              record.at("loss_ce").get<double>() + 0.5 * record.at("loss_aux").get<double>(), 1e-5);
}

TEST(Trainer, ConfigErrorsNameTheKey) {
  TempDir dir;
  nlohmann::json typo = tiny_config();
  typo["train"]["eval_intervall"] = 3;
  expect_error([&] { Trainer(Config::from_json(typo), quiet_setup(dir / "a")); }, "eval_interval");
  nlohmann::json classes = tiny_config();
  classes["model"]["num_classes"] = 5;
  expect_error([&] { Trainer(Config::from_json(classes), quiet_setup(dir / "b")); },
               "model.num_classes is 5 but the dataset (synthetic) has 6 classes");
  nlohmann::json both = tiny_config();
  both["train"]["max_epochs"] = 2;
  expect_error([&] { Trainer(Config::from_json(both), quiet_setup(dir / "c")); }, "exactly one of max_iters");
  nlohmann::json no_val = tiny_config();
  no_val["data"].erase("val");
  expect_error([&] { Trainer(Config::from_json(no_val), quiet_setup(dir / "d")); }, "data.val is missing");
  nlohmann::json amp = tiny_config();
  amp["train"]["amp"] = "f8";
  expect_error([&] { Trainer(Config::from_json(amp), quiet_setup(dir / "e")); }, "train.amp is \"f8\"");
  EXPECT_FALSE(fs::exists(dir / "a"));  // nothing is written before the config is known good
}

TEST(Trainer, ResumeRejectsAForeignOrMismatchedCheckpoint) {
  TempDir dir;
  nlohmann::json config = tiny_config();
  config["train"]["max_iters"] = 2;
  config["train"]["eval_interval"] = 0;
  Trainer(Config::from_json(config), quiet_setup(dir / "run")).run();
  nn::save_safetensors(dir / "plain.safetensors", {{"w", zeros({2})}});
  TrainerSetup plain = quiet_setup(dir / "x");
  plain.resume = dir / "plain.safetensors";
  expect_error([&] { Trainer(Config::from_json(config), plain); }, "not a segengine training checkpoint");
  nlohmann::json wider = config;
  wider["model"]["base_channels"] = 8;
  TrainerSetup mismatch = quiet_setup(dir / "y");
  mismatch.resume = dir / "run/last.safetensors";
  expect_error([&] { Trainer(Config::from_json(wider), mismatch); }, "do not fit this config's model");
}

// A diverging run stops with a clear error at the first non-finite loss; the checkpoint written
// before it stays loadable.
TEST(Trainer, NonFiniteLossStopsTheRunAndKeepsEarlierCheckpoints) {
  TempDir dir;
  nlohmann::json config = tiny_config();
  config["model"]["batch_norm"] = false;
  config["optimizer"] = {{"type", "sgd"}, {"lr", 1e30}};
  config["scheduler"] = {{"policy", "poly"}};
  config["train"]["max_iters"] = 10;
  config["train"]["eval_interval"] = 1;
  config["train"]["checkpoint_interval"] = 1;
  expect_error([&] { Trainer(Config::from_json(config), quiet_setup(dir / "run")).run(); }, "training: the loss is");
  EXPECT_NO_THROW(load_checkpoint(dir / "run/checkpoints/iter_000001.safetensors"));
}

// train.amp: the forward pass in bf16 / f16 under autocast learns like f32, the checkpointed weights
// stay f32 (master weights), and f16 runs log the dynamic loss scale.
class TrainerAmp : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainerAmp, LearnsWithF32MasterWeights) {
  TempDir dir;
  nlohmann::json config = repeated_batch_config();
  config["train"]["amp"] = GetParam();
  Trainer trainer(Config::from_json(config), quiet_setup(dir / "run"));
  trainer.run();
  const auto records = read_jsonl(dir / "run/metrics.jsonl");
  ASSERT_GE(records.size(), 30u);
  EXPECT_LT(records[29].at("loss").get<double>(), 0.7 * records[0].at("loss").get<double>());
  EXPECT_EQ(records[0].contains("loss_scale"), GetParam() == "f16");
  for (const auto& [name, tensor] : load_checkpoint(dir / "run/last.safetensors").model) {
    if (is_floating(tensor.dtype())) {
      EXPECT_EQ(tensor.dtype(), DType::f32) << name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, TrainerAmp, ::testing::Values("bf16", "f16"));

TEST(Trainer, F16LossScaleBacksOffFromOverflowAndTrainingGoesOn) {
  TempDir dir;
  nlohmann::json config = tiny_config();
  // A scale of 2^24 overflows the f16 gradients (f16 tops out at 65504): the first steps are skipped and
  // the scale halves until they fit.
  config["train"]["amp"] = "f16";
  config["train"]["max_iters"] = 16;
  config["train"]["log_interval"] = 1;
  config["train"]["loss_scaler"] = {{"init_scale", 16777216.0}, {"growth_interval", 1000}};
  Trainer trainer(Config::from_json(config), quiet_setup(dir / "run"));
  const auto [weight_name, weight] = trainer.model().named_parameters().front();
  const Tensor first_weight = weight.detach().clone();
  const TrainSummary summary = trainer.run();
  EXPECT_EQ(summary.iterations, 16);
  const auto records = read_jsonl(dir / "run/metrics.jsonl");
  std::vector<double> scales;
  for (const auto& r : records) {
    if (r.contains("loss_scale")) scales.push_back(r.at("loss_scale").get<double>());
  }
  ASSERT_EQ(scales.size(), 16u);
  EXPECT_LT(scales.front(), 16777216.0);  // backed off after the first step
  EXPECT_EQ(scales[scales.size() - 1], scales[scales.size() - 2]);  // and then stepped without overflow
  Tensor last_weight;
  for (const auto& [name, tensor] : load_checkpoint(dir / "run/last.safetensors").model) {
    if (name == weight_name) last_weight = tensor;
  }
  ASSERT_TRUE(last_weight.defined()) << weight_name;
  EXPECT_GT(max(abs(sub(last_weight, first_weight))).item(), 0.0);  // steps were taken
  for (float v : last_weight.to_vector<float>()) ASSERT_TRUE(std::isfinite(v));
}

TEST(Trainer, ResumeIsBitIdenticalWithMixedPrecision) {
  nlohmann::json config = tiny_config();
  config["train"]["amp"] = "bf16";
  expect_resume_is_exact(config);
}

// Two iterations and an evaluation of `config` on the CPU and on cuda:0: the weights agree within
// rel_tol and so does the mIoU (within 0.02).
void expect_cuda_run_matches_cpu(nlohmann::json config, double rel_tol) {
  TempDir dir;
  config["train"]["max_iters"] = 2;
  config["train"]["eval_interval"] = 2;
  const TrainSummary cpu = Trainer(Config::from_json(config), quiet_setup(dir / "cpu")).run();
  const TrainSummary cuda = Trainer(Config::from_json(config), quiet_setup(dir / "cuda", Device::cuda(0))).run();
  EXPECT_EQ(cuda.iterations, 2);
  Checkpoint a = load_checkpoint(dir / "cpu/last.safetensors");
  Checkpoint b = load_checkpoint(dir / "cuda/last.safetensors");
  for (size_t i = 0; i < a.model.size(); ++i) {
    const auto x = a.model[i].second.to_vector<double>();
    const auto y = b.model[i].second.to_vector<double>();
    for (size_t j = 0; j < x.size(); ++j) ASSERT_NEAR(x[j], y[j], rel_tol * (1 + std::abs(x[j]))) << a.model[i].first;
  }
  EXPECT_NEAR(cpu.best_miou, cuda.best_miou, 0.02);
}

TEST(TrainerCuda, RunsOnTheDeviceAndMatchesTheCpuClosely) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  expect_cuda_run_matches_cpu(tiny_config(), 1e-3);
}

TEST(TrainerCuda, MixedPrecisionOnTheDeviceMatchesTheCpuClosely) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  nlohmann::json config = tiny_config();
  config["train"]["amp"] = "bf16";
  expect_cuda_run_matches_cpu(config, 2e-2);
}

// A GPU runs a kernel's blocks in no promised order, and no kernel of a training step lets that order into
// its bits (no floating-point atomics: a split backward weight adds its parts in order, resize's backward
// gathers), so a run on the device repeats bit for bit. The emulator runs the blocks ascending, shuffled
// (the threads of each block too) and descending, the first `orders` of those; a GPU takes its own order on
// every run.
void expect_same_cuda_run_in_any_block_order(const nlohmann::json& model, int orders, int batch_size) {
  TempDir dir;
  nlohmann::json config = tiny_config();
  config["model"] = model;
  config["data"]["train"]["loader"]["batch_size"] = batch_size;
  config["train"]["max_iters"] = 2;
  config["train"]["eval_interval"] = 0;
  config["train"]["checkpoint_interval"] = 2;
  config["train"]["plots"] = false;
  int run = 0;
  const std::vector<std::string> checkpoints = test::results_in_several_block_orders(
      [&] {
        const std::string out = dir / std::to_string(run++);
        Trainer(Config::from_json(config), quiet_setup(out, Device::cuda(0))).run();
        return out + "/last.safetensors";
      },
      orders);
  for (size_t order = 1; order < checkpoints.size(); ++order)
    expect_same_training_state(checkpoints[0], checkpoints[order]);
}

// U-Net: split backward weights (4 images of 32x32 against few weights), transposed convs, BatchNorm.
TEST(TrainerCuda, UNetRunIsBitIdenticalInAnyBlockOrder) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  expect_same_cuda_run_in_any_block_order(tiny_config()["model"], 3, 4);
}

// SegFormer: resize (the decoder's upsampling), attention, LayerNorm, depthwise convs. Two orders and two
// images a step: the emulator takes ~4 s a step of this model.
TEST(TrainerCuda, SegFormerRunIsBitIdenticalInAnyBlockOrder) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  expect_same_cuda_run_in_any_block_order(
      nlohmann::json::parse(R"({"name": "segformer", "variant": "b0", "num_classes": 6})"), 2, 2);
}

}  // namespace
}  // namespace se
