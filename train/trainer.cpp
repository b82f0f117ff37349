#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <filesystem>
#include <limits>

#include "core/atomic_file.h"
#include "core/error.h"
#include "engine/allocator.h"
#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "models/registry.h"
#include "models/siamese_unet.h"
#include "train/checkpoint.h"
#include "train/data_config.h"
#include "train/evaluation.h"
#include "train/inference.h"
#include "train/logging.h"
#include "train/losses.h"
#include "train/optimizer.h"
#include "train/plot.h"
#include "train/scheduler.h"

namespace se {
namespace fs = std::filesystem;

namespace {

// Memory the progress line and the log show: bytes held by live tensors on the training device.
int64_t memory_in_use(Device device) {
#ifdef SEGENGINE_HAS_CUDA
  if (device.is_cuda()) return static_cast<int64_t>(cuda_allocator(device.index).stats().allocated_bytes);
#endif
  (void)device;
  return static_cast<int64_t>(cpu_allocator_stats().allocated_bytes);
}

// A stream of view seeds that depends on (run seed, iteration, micro-batch) only: resumable.
uint64_t view_seed(uint64_t seed, int64_t iteration, int64_t micro) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(iteration) * 0xBF58476D1CE4E5B9ull +
               static_cast<uint64_t>(micro) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x * 0xD6E8FEB86659FD93ull;
}

nlohmann::json pairs_to_json(const std::vector<std::pair<double, double>>& points) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [x, y] : points) out.push_back({x, std::isfinite(y) ? nlohmann::json(y) : nlohmann::json(nullptr)});
  return out;
}

std::vector<std::pair<double, double>> pairs_from_json(const nlohmann::json& points) {
  std::vector<std::pair<double, double>> out;
  for (const auto& p : points)
    out.emplace_back(p.at(0).get<double>(), p.at(1).is_null() ? std::nan("") : p.at(1).get<double>());
  return out;
}

std::string format_double(double value, int precision) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", precision, value);
  return text;
}

}  // namespace

TrainOptions read_train_options(const Config& section) {
  TrainOptions o;
  o.max_iters = section.get<int64_t>("max_iters", 0);
  o.max_epochs = section.get<int64_t>("max_epochs", 0);
  SE_CHECK((o.max_iters > 0) != (o.max_epochs > 0), "config: train needs exactly one of max_iters and max_epochs ",
           "(a positive integer), got max_iters=", o.max_iters, " max_epochs=", o.max_epochs);
  o.eval_interval = section.get<int64_t>("eval_interval", 0);
  o.log_interval = section.get<int64_t>("log_interval", o.log_interval);
  o.checkpoint_interval = section.get<int64_t>("checkpoint_interval", 0);
  o.keep_checkpoints = section.get<int64_t>("keep_checkpoints", o.keep_checkpoints);
  o.accumulate = section.get<int64_t>("accumulate", o.accumulate);
  o.clip_grad_norm = section.get<double>("clip_grad_norm", 0.0);
  o.amp = read_amp(section);
  if (section.has("loss_scaler")) {
    const Config s = section.sub("loss_scaler");
    o.scaler.init_scale = s.get<double>("init_scale", o.scaler.init_scale);
    o.scaler.growth_factor = s.get<double>("growth_factor", o.scaler.growth_factor);
    o.scaler.backoff_factor = s.get<double>("backoff_factor", o.scaler.backoff_factor);
    o.scaler.growth_interval = s.get<int64_t>("growth_interval", o.scaler.growth_interval);
  }
  o.scaler.enabled = o.amp == DType::f16;
  if (section.has("ema")) {
    const Config e = section.sub("ema");
    EmaOptions ema;
    ema.decay = e.get<double>("decay", ema.decay);
    ema.warmup = e.get<bool>("warmup", ema.warmup);
    SE_CHECK(ema.decay > 0 && ema.decay < 1, "config: train.ema.decay must be in (0, 1), got ", ema.decay);
    o.ema = ema;
  }
  o.aux_weight = section.get<double>("aux_weight", o.aux_weight);
  if (section.has("early_stopping")) {
    const Config e = section.sub("early_stopping");
    o.early_stopping_patience = e.get<int64_t>("patience");
    o.early_stopping_min_delta = e.get<double>("min_delta", 0.0);
    SE_CHECK(o.early_stopping_patience > 0, "config: train.early_stopping.patience must be positive, got ",
             o.early_stopping_patience);
  }
  o.seed = static_cast<uint64_t>(section.get<int64_t>("seed", 0));
  o.plots = section.get<bool>("plots", o.plots);
  o.tensorboard = section.get<bool>("tensorboard", o.tensorboard);
  SE_CHECK(o.eval_interval >= 0, "config: train.eval_interval must be >= 0, got ", o.eval_interval);
  SE_CHECK(o.log_interval > 0, "config: train.log_interval must be positive, got ", o.log_interval);
  SE_CHECK(o.checkpoint_interval >= 0, "config: train.checkpoint_interval must be >= 0, got ", o.checkpoint_interval);
  SE_CHECK(o.keep_checkpoints >= 0, "config: train.keep_checkpoints must be >= 0, got ", o.keep_checkpoints);
  SE_CHECK(o.accumulate > 0, "config: train.accumulate must be positive, got ", o.accumulate);
  SE_CHECK(o.clip_grad_norm >= 0, "config: train.clip_grad_norm must be >= 0, got ", o.clip_grad_norm);
  SE_CHECK(o.aux_weight >= 0, "config: train.aux_weight must be >= 0, got ", o.aux_weight);
  return o;
}

struct Trainer::State {
  Config config;
  TrainerSetup setup;
  TrainOptions options;
  std::shared_ptr<models::SegmentationModel> model;
  models::SiameseUNet* siamese = nullptr;           // the model, when it is a Siamese U-Net
  std::shared_ptr<models::SegmentationModel> ema_model;  // evaluated with the EMA weights
  SplitData train_data, val_data;
  std::unique_ptr<DataLoader> train_loader, val_loader;
  std::unique_ptr<SegmentationLoss> loss;
  std::optional<Optimizer> optimizer;
  std::optional<LrScheduler> scheduler;
  GradScaler scaler;
  std::optional<ModelEma> ema;
  InferenceOptions inference;
  int64_t max_iters = 0;
  int64_t eval_every = 0, checkpoint_every = 0;  // in iterations (0: never on a period)
  int ignore_index = 255;

  // Progress, all of it checkpointed.
  int64_t iteration = 0;
  double best_miou = std::nan("");
  int64_t best_iteration = -1;
  int64_t evaluations = 0;
  int64_t evaluations_without_improvement = 0;
  TrainingCurves curves;
  std::deque<std::string> iteration_checkpoints;

  int64_t stop_after = -1;  // test hook: iterations left before an interruption
  std::unique_ptr<JsonlWriter> jsonl;
  std::unique_ptr<TensorBoardWriter> tensorboard;

  bool is_main() const { return setup.parallel.rank == 0; }
  std::string out(const std::string& name) const { return (fs::path(setup.out_dir) / name).string(); }

  struct StepLoss {
    Tensor total;
    std::vector<std::pair<std::string, Tensor>> parts;  // (name, unweighted 0-d value)
  };
  Batch next_batch();
  StepLoss compute_loss(const Batch& batch, int64_t micro);
  void train_iteration(ProgressBar* progress);
  EvaluationResult evaluate_now();
  void after_evaluation(const EvaluationResult& result);
  nlohmann::json trainer_state() const;
  void save_checkpoint_to(const std::string& path);
  void save_iteration_checkpoint();
  TrainSummary run();

  double last_miou = std::nan("");
  bool stopped_early = false;
  std::string best_checkpoint, last_checkpoint;
  std::chrono::steady_clock::time_point log_window_start = std::chrono::steady_clock::now();
  int64_t log_window_iters = 0;
  double log_window_loss = 0;
};

Trainer::Trainer(Config config, TrainerSetup setup) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.config = std::move(config);
  s.setup = std::move(setup);
  const Config& cfg = s.config;
  s.options = read_train_options(cfg.sub("train"));
  const TrainOptions& o = s.options;
  s.config.has("description");
  s.config.get<nlohmann::json>("bench", nlohmann::json::object());  // `segengine bench model`'s section

  // Data first: the model's class count must match the dataset's.
  const Config data = cfg.sub("data");
  s.train_data = read_split(data, "train", o.seed, /*training=*/true);
  s.val_data = read_split(data, "val", o.seed, /*training=*/false);
  if (data.has("test")) read_split(data, "test", o.seed, /*training=*/false);  // checked now, used by eval
  s.ignore_index = s.train_data.dataset->info().ignore_index;
  const int num_classes = s.train_data.dataset->num_classes();
  SE_CHECK(s.val_data.dataset->num_classes() == num_classes, "config: data.val has ",
           s.val_data.dataset->num_classes(), " classes but data.train has ", num_classes);

  manual_seed(o.seed);
  s.model = models::build_model(cfg.sub("model"));
  SE_CHECK(s.model->num_classes() == num_classes, "config: model.num_classes is ", s.model->num_classes(),
           " but the dataset (", s.train_data.dataset->info().name, ") has ", num_classes, " classes");
  s.siamese = dynamic_cast<models::SiameseUNet*>(s.model.get());
  s.model->to(s.setup.device);

  // Class-weight statistics are counted only when the loss names a method (counting decodes every
  // training mask, or train.class_stats_samples evenly spaced ones).
  std::optional<ClassPixelCounts> counts;
  const int64_t stats_samples = cfg.sub("train").get<int64_t>("class_stats_samples", 0);
  if (SegmentationLoss::needs_class_pixel_counts(cfg)) counts = count_class_pixels(*s.train_data.dataset, stats_samples);
  s.loss = std::make_unique<SegmentationLoss>(
      SegmentationLoss::from_config(cfg, num_classes, s.ignore_index, counts ? &*counts : nullptr));

  s.train_data.loader.device = s.setup.device;
  s.train_data.loader.rank = s.setup.parallel.rank;  // each rank trains on its shard of every epoch
  s.train_data.loader.world_size = s.setup.parallel.world_size;
  s.val_data.loader.device = s.setup.device;
  s.train_loader = std::make_unique<DataLoader>(s.train_data.dataset, s.train_data.pipeline, s.train_data.loader);
  s.val_loader = std::make_unique<DataLoader>(s.val_data.dataset, s.val_data.pipeline, s.val_data.loader);
  const int64_t batches = s.train_loader->batches_per_epoch();
  SE_CHECK(batches > 0, "config: data.train gives no batch per epoch (", s.train_data.dataset->size(),
           " samples, batch_size ", s.train_data.loader.batch_size, ", drop_last ", s.train_data.loader.drop_last, ")");
  const int64_t iters_per_epoch = std::max<int64_t>(1, batches / o.accumulate);
  s.max_iters = o.max_iters > 0 ? o.max_iters : o.max_epochs * iters_per_epoch;
  const int64_t unit = o.max_epochs > 0 ? iters_per_epoch : 1;
  s.eval_every = o.eval_interval * unit;
  s.checkpoint_every = o.checkpoint_interval > 0 ? o.checkpoint_interval * unit : s.eval_every;

  s.optimizer.emplace(make_optimizer(s.model->named_parameters(), cfg.sub("optimizer")));
  s.scheduler.emplace(make_scheduler(cfg.sub("scheduler"), s.optimizer->lr(), s.max_iters, iters_per_epoch));
  s.scaler = GradScaler(o.scaler);
  if (o.ema) {
    s.ema.emplace(s.model->state_dict(), *o.ema);
    s.ema_model = models::build_model(cfg.sub("model"));
    s.ema_model->to(s.setup.device);
  }
  s.inference = InferenceOptions::from_config(cfg.sub("inference"));
  cfg.finish();  // every key of every section has been read by now

  if (!s.setup.resume.empty()) {
    Checkpoint ckpt = load_checkpoint(s.setup.resume, s.setup.device);
    try {
      s.model->load_state_dict(ckpt.model, /*strict=*/true);
    } catch (const Error& e) {
      SE_THROW("--resume ", s.setup.resume, ": the model weights do not fit this config's model: ", e.what());
    }
    s.optimizer->load_state_dict(ckpt.optimizer);
    SE_CHECK(s.ema.has_value() == ckpt.ema.has_value(), "--resume ", s.setup.resume, ": the checkpoint ",
             ckpt.ema ? "has" : "has no", " EMA weights but this config's train.ema is ", s.ema ? "set" : "absent");
    if (s.ema) s.ema->load_state_dict(*ckpt.ema);
    const nlohmann::json& t = ckpt.trainer;
    try {
      s.iteration = t.at("iteration").get<int64_t>();
      s.scheduler->load_state_dict(t.at("scheduler"));
      s.scaler.load_state_dict(t.at("scaler"));
      set_random_state({t.at("random").at("seed").get<uint64_t>(), t.at("random").at("offset").get<uint64_t>()});
      s.train_loader->restore(LoaderState::from_json(t.at("loader")));
      s.best_miou = t.at("best_miou").is_null() ? std::nan("") : t.at("best_miou").get<double>();
      s.best_iteration = t.at("best_iteration").get<int64_t>();
      s.evaluations = t.at("evaluations").get<int64_t>();
      s.evaluations_without_improvement = t.at("evaluations_without_improvement").get<int64_t>();
      s.curves.train_loss = pairs_from_json(t.at("history").at("loss"));
      s.curves.miou = pairs_from_json(t.at("history").at("miou"));
      for (const auto& p : t.at("iteration_checkpoints")) s.iteration_checkpoints.push_back(p.get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      SE_THROW("--resume ", s.setup.resume, ": the trainer state is incomplete or malformed (", e.what(), ")");
    }
    SE_CHECK(s.iteration <= s.max_iters, "--resume ", s.setup.resume, ": the checkpoint is at iteration ", s.iteration,
             ", past this config's ", s.max_iters, " iterations");
  }

  if (s.is_main() && s.setup.resume.empty() && fs::exists(s.out("metrics.jsonl"))) {
    SE_CHECK(s.setup.overwrite, "training: ", s.setup.out_dir, " already holds a run (", s.out("metrics.jsonl"),
             "); continue it with --resume ", s.out("last.safetensors"), ", pick another --out, or pass --overwrite");
    // The previous run's outputs go, so that the new run's files are never mixed with them.
    for (const char* name : {"metrics.jsonl", "best.safetensors", "last.safetensors", "config.json"})
      fs::remove(s.out(name));
    for (const char* dir : {"checkpoints", "tensorboard", "plots"}) fs::remove_all(s.out(dir));
  }
  if (s.is_main()) {
    std::error_code error;
    fs::create_directories(s.out("checkpoints"), error);
    SE_CHECK(!error, "training: cannot create the output directory ", s.out("checkpoints"), " (", error.message(),
             "); pick another with --out");
    write_file_atomic(s.out("config.json"), s.config.dump(2) + "\n");
    // A fresh run starts a fresh log; a resumed one appends to it.
    s.jsonl = std::make_unique<JsonlWriter>(s.out("metrics.jsonl"), /*append=*/!s.setup.resume.empty());
    if (o.tensorboard) s.tensorboard = std::make_unique<TensorBoardWriter>(s.out("tensorboard"));
  }
}

Trainer::~Trainer() = default;

models::SegmentationModel& Trainer::model() { return *state_->model; }
const TrainOptions& Trainer::options() const { return state_->options; }
int64_t Trainer::iteration() const { return state_->iteration; }
void Trainer::stop_after(int64_t iterations) { state_->stop_after = iterations; }

// ---- the loop

Batch Trainer::State::next_batch() {
  std::optional<Batch> batch = train_loader->next();
  if (!batch) batch = train_loader->next();  // the end of an epoch: the next call starts the following one
  SE_CHECK(batch.has_value(), "training: the train loader gave no batch");
  return std::move(*batch);
}

Trainer::State::StepLoss Trainer::State::compute_loss(const Batch& batch, int64_t micro) {
  StepLoss step;
  auto segmentation_loss = [&](const Tensor& logits) { return (*loss)(logits, batch.masks); };
  // The second view is made on the device per batch (in f32, before autocast); its seed depends on
  // (seed, iteration, micro).
  const Tensor view =
      siamese ? siamese->make_view(batch.images, view_seed(options.seed, iteration, micro)) : Tensor();
  // Mixed precision: the forward pass and the losses run under autocast (convolutions, matmuls and
  // attention in bf16/f16, losses in f32); backward runs after the guard ends.
  std::optional<AutocastGuard> autocast;
  if (options.amp) autocast.emplace(*options.amp);
  if (siamese) {
    models::SiameseOutput pair = siamese->forward_pair(batch.images, view);
    models::SiameseLoss l = siamese->loss(pair, [&](const Tensor& logits) { return segmentation_loss(logits).total; });
    step.total = l.total;
    step.parts = {{"seg_a", l.seg_a}, {"seg_b", l.seg_b}, {"consistency", l.feature_consistency}};
    if (l.prediction_consistency.defined()) step.parts.emplace_back("kl", l.prediction_consistency);
    return step;
  }
  models::SegmentationOutput out = model->forward(batch.images);
  LossTerms terms = segmentation_loss(out.logits);
  step.total = terms.total;
  step.parts = terms.parts;
  if (out.aux_logits.defined() && options.aux_weight > 0) {
    LossTerms aux = segmentation_loss(out.aux_logits);
    step.total = add(step.total, aux.total, options.aux_weight);
    step.parts.emplace_back("aux", aux.total);
  }
  return step;
}

void Trainer::State::train_iteration(ProgressBar* progress) {
  model->train();
  const double lr = scheduler->apply(*optimizer);
  double loss_value = 0;
  // The loss parts are read from the device only when this iteration is logged (each read syncs).
  const bool logged = is_main() && ((iteration + 1) % options.log_interval == 0 || iteration + 1 == max_iters);
  std::vector<std::pair<std::string, double>> part_values;
  for (int64_t micro = 0; micro < options.accumulate; ++micro) {
    Batch batch = next_batch();
    StepLoss step = compute_loss(batch, micro);
    const double value = step.total.item();
    if (!std::isfinite(value) && !scaler.enabled()) {
      std::string parts;
      for (const auto& [name, t] : step.parts) parts += " " + name + "=" + std::to_string(t.item());
      SE_THROW("training: the loss is ", value, " at iteration ", iteration + 1, " (batch ", batch.batch, " of epoch ",
               batch.epoch, ";", parts, "); stopped before updating the weights, the checkpoints written so far are ",
               "intact. Lower optimizer.lr, set train.clip_grad_norm, or check the data");
    }
    Tensor scaled = options.accumulate > 1 ? div(step.total, static_cast<double>(options.accumulate)) : step.total;
    scaler.scale(scaled).backward();
    loss_value += value / static_cast<double>(options.accumulate);
    for (size_t i = 0; logged && i < step.parts.size(); ++i) {
      const double v = step.parts[i].second.item() / static_cast<double>(options.accumulate);
      if (micro == 0) part_values.emplace_back(step.parts[i].first, v);
      else part_values[i].second += v;
    }
  }
  // Every micro-batch's gradients are ready: where data-parallel training reduces them.
  if (setup.parallel.all_reduce_gradients) setup.parallel.all_reduce_gradients(optimizer->params());
  double grad_norm = std::nan("");
  if (options.clip_grad_norm > 0) {
    scaler.unscale_(*optimizer);  // clip the true gradients
    grad_norm = clip_grad_norm_(optimizer->params(), options.clip_grad_norm).item();
  }
  scaler.step(*optimizer);
  scaler.update();
  optimizer->zero_grad();
  if (ema) ema->update(model->state_dict());
  scheduler->step();
  ++iteration;

  log_window_loss += loss_value;
  ++log_window_iters;
  const int64_t memory = memory_in_use(setup.device);
  if (progress) progress->update(iteration, loss_value, lr, memory);
  if (logged) {
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - log_window_start).count();
    const double mean_loss = log_window_loss / static_cast<double>(log_window_iters);
    nlohmann::json record = {{"mode", "train"}, {"iter", iteration}, {"epoch", train_loader->state().epoch},
                             {"lr", lr}, {"loss", mean_loss}, {"time_per_iter", seconds / log_window_iters},
                             {"memory", memory}};
    for (const auto& [name, v] : part_values) record["loss_" + name] = v;
    if (std::isfinite(grad_norm)) record["grad_norm"] = grad_norm;
    if (scaler.enabled()) record["loss_scale"] = scaler.get_scale();
    jsonl->write(record);
    if (tensorboard) {
      tensorboard->add_scalar("train/loss", mean_loss, iteration);
      tensorboard->add_scalar("train/lr", lr, iteration);
      for (const auto& [name, v] : part_values) tensorboard->add_scalar("train/loss_" + name, v, iteration);
    }
    curves.train_loss.emplace_back(static_cast<double>(iteration), mean_loss);
    log_window_start = now;
    log_window_iters = 0;
    log_window_loss = 0;
  }
}

EvaluationResult Trainer::State::evaluate_now() {
  if (!ema) return evaluate(*model, *val_loader, inference, ignore_index);
  ema->copy_to(ema_model->state_dict());  // state_dict() aliases the live tensors
  return evaluate(*ema_model, *val_loader, inference, ignore_index);
}

void Trainer::State::after_evaluation(const EvaluationResult& result) {
  ++evaluations;
  const SegmentationMetrics& m = result.metrics;
  last_miou = m.mean_iou;
  const bool improved = std::isfinite(m.mean_iou) &&
                        (!std::isfinite(best_miou) || m.mean_iou > best_miou + options.early_stopping_min_delta);
  if (improved) {
    best_miou = m.mean_iou;
    best_iteration = iteration;
    evaluations_without_improvement = 0;
  } else {
    ++evaluations_without_improvement;
  }
  if (options.early_stopping_patience > 0 && evaluations_without_improvement >= options.early_stopping_patience)
    stopped_early = true;
  if (!is_main()) return;
  curves.miou.emplace_back(static_cast<double>(iteration), m.mean_iou);
  nlohmann::json record = evaluation_to_json(result, val_data.dataset->info().class_names);
  record["mode"] = "val";
  record["iter"] = iteration;
  jsonl->write(record);
  if (tensorboard) {
    tensorboard->add_scalar("val/mIoU", m.mean_iou, iteration);
    tensorboard->add_scalar("val/mAcc", m.mean_accuracy, iteration);
    tensorboard->add_scalar("val/aAcc", m.pixel_accuracy, iteration);
  }
  if (improved) {
    best_checkpoint = out("best.safetensors");
    save_checkpoint_to(best_checkpoint);
  }
  std::fprintf(setup.console, "%s[iter %lld/%lld] val mIoU %s  mAcc %s  aAcc %s  (best %s at iter %lld)%s\n",
               setup.progress ? "\n" : "", static_cast<long long>(iteration), static_cast<long long>(max_iters),
               format_double(100 * m.mean_iou, 2).c_str(), format_double(100 * m.mean_accuracy, 2).c_str(),
               format_double(100 * m.pixel_accuracy, 2).c_str(), format_double(100 * best_miou, 2).c_str(),
               static_cast<long long>(best_iteration), stopped_early ? "  early stop" : "");
  std::fflush(setup.console);
}

nlohmann::json Trainer::State::trainer_state() const {
  const RandomState random = random_state();
  nlohmann::json checkpoints = nlohmann::json::array();
  for (const auto& p : iteration_checkpoints) checkpoints.push_back(p);
  return {{"iteration", iteration},
          {"max_iters", max_iters},
          {"scheduler", scheduler->state_dict()},
          {"scaler", scaler.state_dict()},
          {"random", {{"seed", random.seed}, {"offset", random.offset}}},
          {"loader", train_loader->state().to_json()},
          {"best_miou", std::isfinite(best_miou) ? nlohmann::json(best_miou) : nlohmann::json(nullptr)},
          {"best_iteration", best_iteration},
          {"evaluations", evaluations},
          {"evaluations_without_improvement", evaluations_without_improvement},
          {"history", {{"loss", pairs_to_json(curves.train_loss)}, {"miou", pairs_to_json(curves.miou)}}},
          {"iteration_checkpoints", checkpoints},
          {"config", config.document()}};
}

void Trainer::State::save_checkpoint_to(const std::string& path) {
  Checkpoint ckpt;
  ckpt.model = model->state_dict();
  if (ema) ckpt.ema = ema->state_dict();
  ckpt.optimizer = optimizer->state_dict();
  ckpt.trainer = trainer_state();
  save_checkpoint(path, ckpt);
}

void Trainer::State::save_iteration_checkpoint() {
  char name[64];
  std::snprintf(name, sizeof(name), "iter_%06lld.safetensors", static_cast<long long>(iteration));
  const std::string path = (fs::path(out("checkpoints")) / name).string();
  iteration_checkpoints.push_back(path);
  while (static_cast<int64_t>(iteration_checkpoints.size()) > options.keep_checkpoints) {
    std::error_code ignored;  // an already deleted old checkpoint is not an error
    fs::remove(iteration_checkpoints.front(), ignored);
    iteration_checkpoints.pop_front();
  }
  save_checkpoint_to(path);
}

TrainSummary Trainer::State::run() {
  const auto start = std::chrono::steady_clock::now();
  if (is_main()) {
    std::fprintf(setup.console,
                 "training %s (%lld parameters) on %s: %lld train / %lld val samples (%s), %lld iterations of %lld x "
                 "%lld images, loss %s, output %s\n",
                 model->type_name().c_str(), static_cast<long long>(model->num_parameters()), setup.device.str().c_str(),
                 static_cast<long long>(train_data.dataset->size()), static_cast<long long>(val_data.dataset->size()),
                 train_data.dataset->info().name.c_str(), static_cast<long long>(max_iters),
                 static_cast<long long>(options.accumulate), static_cast<long long>(train_data.loader.batch_size),
                 loss->describe().c_str(), setup.out_dir.c_str());
    if (iteration > 0) std::fprintf(setup.console, "resumed from %s at iteration %lld\n", setup.resume.c_str(),
                                    static_cast<long long>(iteration));
    if (options.amp) {
      std::fprintf(setup.console, "mixed precision: %s autocast, f32 master weights%s\n",
                   std::string(dtype_name(*options.amp)).c_str(),
                   scaler.enabled() ? ", dynamic loss scaling" : "");
    }
    std::fflush(setup.console);
  }
  std::unique_ptr<ProgressBar> progress;
  if (setup.progress && is_main()) progress = std::make_unique<ProgressBar>(max_iters, setup.console);
  log_window_start = std::chrono::steady_clock::now();
  bool interrupted = false;
  while (iteration < max_iters && !stopped_early) {
    train_iteration(progress.get());
    const bool at_end = iteration == max_iters;
    if (at_end || (eval_every > 0 && iteration % eval_every == 0)) after_evaluation(evaluate_now());
    if (is_main() && options.keep_checkpoints > 0 && checkpoint_every > 0 && iteration % checkpoint_every == 0)
      save_iteration_checkpoint();
    if (stop_after > 0 && --stop_after == 0) {
      interrupted = true;
      break;
    }
  }
  if (progress) progress->close();
  TrainSummary summary;
  if (is_main()) {
    last_checkpoint = out("last.safetensors");
    save_checkpoint_to(last_checkpoint);
    if (options.plots && !interrupted) save_training_curves(out("plots"), curves);
  }
  summary.iterations = iteration;
  summary.evaluations = evaluations;
  summary.best_miou = best_miou;
  summary.best_iteration = best_iteration;
  summary.last_miou = last_miou;
  summary.stopped_early = stopped_early;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  summary.best_checkpoint = fs::exists(out("best.safetensors")) ? out("best.safetensors") : "";
  summary.last_checkpoint = last_checkpoint;
  return summary;
}

TrainSummary Trainer::run() { return state_->run(); }

}  // namespace se
