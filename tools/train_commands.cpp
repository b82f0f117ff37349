#include "tools/train_commands.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <future>
#include <iostream>
#include <map>
#include <string>

#include "core/atomic_file.h"
#include "core/config.h"
#include "core/error.h"
#include "data/image_io.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "train/checkpoint.h"
#include "train/data_config.h"
#include "train/evaluation.h"
#include "train/inference.h"
#include "train/trainer.h"
#include "tools/model_config.h"

namespace se::tools {
namespace fs = std::filesystem;
namespace {

constexpr const char* kTrainUsage =
    "usage: segengine train CONFIG [--set key=value ...] [--resume CKPT] [--device cpu|cuda[:N]] [--out DIR]\n"
    "                      [--overwrite] [--no-progress]";
constexpr const char* kEvalUsage =
    "usage: segengine eval CONFIG --checkpoint CKPT [--split val|test|train] [--mode whole|slide] [--tta]\n"
    "                     [--weights auto|model|ema] [--set key=value ...] [--device cpu|cuda[:N]] [--out DIR]";
constexpr const char* kPredictUsage =
    "usage: segengine predict CONFIG --checkpoint CKPT INPUT... --out DIR [--mode whole|slide] [--tta]\n"
    "                        [--weights auto|model|ema] [--set key=value ...] [--device cpu|cuda[:N]]";

// The options the three commands share, and their positional arguments.
struct CommandLine {
  std::string config_path;
  std::vector<std::string> sets;
  std::vector<std::string> positional;  // after CONFIG
  std::map<std::string, std::string> values;
  std::vector<std::string> flags;
  bool flag(const std::string& name) const { return std::count(flags.begin(), flags.end(), name) > 0; }
  std::string value(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
};

CommandLine parse(const char* command, const std::vector<std::string_view>& args,
                  const std::vector<std::string>& value_options, const std::vector<std::string>& flag_options,
                  const char* usage) {
  CommandLine line;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string arg(args[i]);
    const bool is_value = std::count(value_options.begin(), value_options.end(), arg) > 0;
    if (arg == "--set" || is_value) {
      SE_CHECK(i + 1 < args.size(), command, ": ", arg, " needs a value\n", usage);
      std::string value(args[++i]);
      if (arg == "--set") line.sets.push_back(value);
      else line.values[arg] = value;
    } else if (std::count(flag_options.begin(), flag_options.end(), arg) > 0) {
      line.flags.push_back(arg);
    } else if (arg.starts_with("--")) {
      SE_THROW(command, ": unknown option '", arg, "'\n", usage);
    } else if (line.config_path.empty()) {
      line.config_path = arg;
    } else {
      line.positional.push_back(arg);
    }
  }
  SE_CHECK(!line.config_path.empty(), command, ": a CONFIG file is required\n", usage);
  return line;
}

Config load_config(const CommandLine& line) {
  Config config = Config::load(line.config_path);
  config.set_all(line.sets);
  return config;
}

Device parse_device(const CommandLine& line, const char* command) {
  Device device = Device::parse(line.value("--device", "cpu"));
  check_device(device, command);
  return device;
}

WeightSource parse_weights(const CommandLine& line, const char* command) {
  const std::string text = line.value("--weights", "auto");
  if (text == "auto") return WeightSource::automatic;
  if (text == "model") return WeightSource::model;
  if (text == "ema") return WeightSource::ema;
  SE_THROW(command, ": --weights '", text, "' (expected auto, model or ema)");
}

std::string config_stem(const std::string& path) { return fs::path(path).stem().string(); }

// The model and the inference options of a config, each judged on its own keys (the other sections
// belong to the trainer, which eval and predict do not build).
struct InferenceSetup {
  std::shared_ptr<models::SegmentationModel> model;
  InferenceOptions inference;
};

InferenceSetup build_for_inference(const Config& root, const CommandLine& line, const char* command, Device device) {
  InferenceSetup setup;
  setup.model = build_configured_model(root, line.config_path, command).model;
  Config inference_config = Config::from_json(root.sub("inference").document(), line.config_path + ": inference");
  setup.inference = InferenceOptions::from_config(inference_config);
  inference_config.finish();
  const std::string mode = line.value("--mode");
  if (mode == "whole") setup.inference.mode = InferenceOptions::Mode::whole;
  else if (mode == "slide") setup.inference.mode = InferenceOptions::Mode::slide;
  else SE_CHECK(mode.empty(), command, ": --mode '", mode, "' (expected whole or slide)");
  if (line.flag("--tta")) {
    setup.inference.flip = true;
    if (setup.inference.scales.size() <= 1) setup.inference.scales = {0.75, 1.0, 1.25};
  }
  setup.model->to(device);
  const std::string checkpoint = line.value("--checkpoint");
  SE_CHECK(!checkpoint.empty(), command, ": --checkpoint CKPT is required");
  const std::string used = load_model_weights(*setup.model, checkpoint, parse_weights(line, command));
  std::fprintf(stderr, "%s: %s weights from %s\n", command, used.c_str(), checkpoint.c_str());
  setup.model->eval();
  return setup;
}

}  // namespace

int train_command(const std::vector<std::string_view>& args) {
  const CommandLine line =
      parse("train", args, {"--resume", "--device", "--out"}, {"--no-progress", "--overwrite"}, kTrainUsage);
  SE_CHECK(line.positional.empty(), "train: unexpected argument '", line.positional.front(), "'\n", kTrainUsage);
  TrainerSetup setup;
  setup.device = parse_device(line, "train");
  setup.out_dir = line.value("--out", "runs/" + config_stem(line.config_path));
  setup.resume = line.value("--resume");
  setup.progress = !line.flag("--no-progress");
  setup.overwrite = line.flag("--overwrite");
  Trainer trainer(load_config(line), setup);
  const TrainSummary summary = trainer.run();
  std::printf("done: %lld iterations in %.1f s%s; best val mIoU %.2f%% at iteration %lld\n",
              static_cast<long long>(summary.iterations), summary.seconds,
              summary.stopped_early ? " (stopped early)" : "", 100 * summary.best_miou,
              static_cast<long long>(summary.best_iteration));
  std::printf("checkpoints: %s (best), %s (last); logs: %s\n", summary.best_checkpoint.c_str(),
              summary.last_checkpoint.c_str(), (fs::path(setup.out_dir) / "metrics.jsonl").string().c_str());
  return 0;
}

int eval_command(const std::vector<std::string_view>& args) {
  const CommandLine line = parse("eval", args, {"--checkpoint", "--split", "--mode", "--weights", "--device", "--out"},
                                 {"--tta", "--no-progress"}, kEvalUsage);
  SE_CHECK(line.positional.empty(), "eval: unexpected argument '", line.positional.front(), "'\n", kEvalUsage);
  const Config root = load_config(line);
  const Device device = parse_device(line, "eval");
  InferenceSetup setup = build_for_inference(root, line, "eval", device);
  const std::string split = line.value("--split", "val");
  const uint64_t seed = static_cast<uint64_t>(root.sub("train").get<int64_t>("seed", 0));
  SplitData data = read_split(root.sub("data"), split, seed, /*training=*/false);
  SE_CHECK(data.dataset->num_classes() == setup.model->num_classes(), "eval: the model has ",
           setup.model->num_classes(), " classes but data.", split, " has ", data.dataset->num_classes());
  data.loader.device = device;
  DataLoader loader(data.dataset, data.pipeline, data.loader);
  const DatasetInfo& info = data.dataset->info();
  const bool show_progress = !line.flag("--no-progress");
  EvaluationResult result = evaluate(*setup.model, loader, setup.inference, info.ignore_index,
                                     [&](int64_t done, int64_t total) {
                                       if (show_progress)
                                         std::fprintf(stderr, "\reval %s: %lld/%lld batches", split.c_str(),
                                                      static_cast<long long>(done), static_cast<long long>(total));
                                     });
  if (show_progress) std::fprintf(stderr, "\n");
  std::printf("%s split '%s' of %s (%lld images, %s mode%s), %.1f s\n", line.value("--checkpoint").c_str(),
              split.c_str(), info.name.c_str(), static_cast<long long>(result.images),
              setup.inference.mode == InferenceOptions::Mode::slide ? "slide" : "whole",
              setup.inference.flip || setup.inference.scales.size() > 1 ? " + TTA" : "", result.seconds);
  std::printf("%s", format_evaluation_table(result, info.class_names).c_str());

  const std::string out_dir =
      line.value("--out", (fs::path(line.value("--checkpoint")).parent_path() / ("eval_" + split)).string());
  fs::create_directories(out_dir);
  nlohmann::json report = evaluation_to_json(result, info.class_names);
  report["checkpoint"] = line.value("--checkpoint");
  report["split"] = split;
  report["dataset"] = data.dataset_config;
  write_file_atomic((fs::path(out_dir) / "metrics.json").string(), report.dump(2) + "\n");
  write_confusion_csv((fs::path(out_dir) / "confusion.csv").string(), result, info.class_names);
  write_confusion_heatmap((fs::path(out_dir) / "confusion.png").string(), result, info.palette);
  std::printf("wrote %s/{metrics.json, confusion.csv, confusion.png}\n", out_dir.c_str());
  return 0;
}

namespace {

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

// Files as given, and the image files of directories (sorted), in order.
std::vector<fs::path> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<fs::path> files;
  for (const auto& input : inputs) {
    const fs::path path(input);
    SE_CHECK(fs::exists(path), "predict: input ", input, " does not exist");
    if (!fs::is_directory(path)) {
      files.push_back(path);
      continue;
    }
    std::vector<fs::path> found;
    for (const auto& entry : fs::directory_iterator(path))
      if (entry.is_regular_file() && is_image_file(entry.path())) found.push_back(entry.path());
    SE_CHECK(!found.empty(), "predict: directory ", input, " has no .png, .jpg, .jpeg or .bmp file");
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

struct PredictionInput {
  fs::path path;
  Image original;  // as decoded, for the overlay and the output size
  Tensor image;    // (1, 3, h, w) f32 on the CPU, after the validation transforms and normalisation
};

PredictionInput prepare_prediction_input(const fs::path& path, const Pipeline& pipeline) {
  Sample sample;
  sample.image = read_image(path.string());
  sample.mask = Image(sample.image.width, sample.image.height, 1, 0);
  sample.id = path.stem().string();
  PredictionInput input{path, sample.image, Tensor()};
  pipeline.apply(sample, 0, 0, 0);
  std::vector<float> chw(static_cast<size_t>(3) * sample.image.height * sample.image.width);
  normalize_chw(sample.image, pipeline.normalization(), chw.data());
  input.image = from_vector(chw, {1, 3, sample.image.height, sample.image.width});
  return input;
}

// Writes <out>/<stem>_mask.png and _overlay.png from one image's scores, resized to its original size.
void write_prediction(const PredictionInput& input, Tensor scores,  // (1, K, h, w)
                      const std::string& out_dir, const std::vector<Rgb>& palette) {
  if (scores.size(2) != input.original.height || scores.size(3) != input.original.width) {
    InterpolateParams resize;
    resize.size = std::array<int64_t, 2>{input.original.height, input.original.width};
    resize.mode = InterpolateMode::bilinear;
    scores = interpolate(scores, resize);
  }
  const Tensor prediction = argmax(scores, 1).squeeze(0).to(Device::cpu());  // (H, W) i64
  const fs::path stem = fs::path(out_dir) / input.path.stem();
  write_prediction_pngs(stem.string() + "_mask.png", stem.string() + "_overlay.png", input.original, prediction,
                        palette);
  std::printf("%s -> %s_mask.png, %s_overlay.png\n", input.path.string().c_str(), stem.string().c_str(),
              stem.string().c_str());
}

}  // namespace

int predict_command(const std::vector<std::string_view>& args) {
  const CommandLine line =
      parse("predict", args, {"--checkpoint", "--mode", "--weights", "--device", "--out"}, {"--tta"}, kPredictUsage);
  SE_CHECK(!line.positional.empty(), "predict: at least one INPUT image or directory is required\n", kPredictUsage);
  const std::string out_dir = line.value("--out");
  SE_CHECK(!out_dir.empty(), "predict: --out DIR is required\n", kPredictUsage);
  const std::vector<fs::path> inputs = expand_inputs(line.positional);
  const Config root = load_config(line);
  const Device device = parse_device(line, "predict");
  InferenceSetup setup = build_for_inference(root, line, "predict", device);

  // Class colours and the validation transforms (resizing, normalisation) come from data.val; a
  // config whose dataset is not on this machine still predicts, with the default palette.
  std::vector<Rgb> palette = default_palette(static_cast<int>(setup.model->num_classes()));
  Pipeline pipeline;
  try {
    SplitData val = read_split(root.sub("data"), "val", 0, /*training=*/false);
    if (val.dataset->num_classes() == setup.model->num_classes()) palette = val.dataset->info().palette;
    pipeline = val.pipeline;
  } catch (const Error& e) {
    std::fprintf(stderr, "predict: data.val unavailable (%s); default palette, no resizing\n", e.what());
  }

  fs::create_directories(out_dir);
  NoGradGuard no_grad;
  // Images are decoded and transformed one step ahead on a second thread while the model runs, and
  // consecutive images of one transformed size are inferred together, inference.batch_size at a time.
  auto prepare = [&](const fs::path& input) { return prepare_prediction_input(input, pipeline); };
  std::vector<PredictionInput> group;
  auto flush = [&] {
    if (group.empty()) return;
    std::vector<Tensor> images;
    for (const PredictionInput& p : group) images.push_back(p.image);
    const Tensor batch = (images.size() == 1 ? images[0] : cat(images, 0)).to(device);
    const Tensor scores = infer(*setup.model, batch, setup.inference);  // (B, K, h, w)
    for (size_t i = 0; i < group.size(); ++i) {
      write_prediction(group[i], scores.narrow(0, static_cast<int64_t>(i), 1), out_dir, palette);
    }
    group.clear();
  };
  std::future<PredictionInput> next = std::async(std::launch::async, prepare, inputs.front());
  for (size_t k = 0; k < inputs.size(); ++k) {
    PredictionInput current;
    try {
      current = next.get();  // rethrows a decode error naming the file
    } catch (...) {
      flush();  // the images before the bad one still get their outputs
      throw;
    }
    if (k + 1 < inputs.size()) next = std::async(std::launch::async, prepare, inputs[k + 1]);
    const bool same_size = group.empty() || group.front().image.shape() == current.image.shape();
    if (!same_size || static_cast<int64_t>(group.size()) >= setup.inference.batch_size) flush();
    group.push_back(std::move(current));
  }
  flush();
  return 0;
}

}  // namespace se::tools
