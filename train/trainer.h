// The trainer: builds the model, data, loss, optimizer and schedule from a config and runs the
// iteration loop with evaluation, checkpoints, early stopping and logging.
//
//   Config config = Config::load("configs/unet.json");
//   Trainer trainer(config, {.out_dir = "runs/unet"});
//   TrainSummary summary = trainer.run();
//
// Config sections (every key is checked: an unknown one is an error suggesting the closest):
//   "model"      the registry's object (models/registry.h)
//   "data"       train/data_config.h; "train" and "val" splits ("test" optional, for `segengine eval`)
//   "loss"       train/losses.h (default: cross-entropy)
//   "optimizer"  train/optimizer.h make_optimizer;  "scheduler": train/scheduler.h make_scheduler
//   "inference"  train/inference.h: how evaluation runs the model (whole, slide, TTA)
//   "train"      TrainOptions below
//   "bench"      read by `segengine bench model`; "description": free text
//
// Iterations count optimizer steps; each takes `accumulate` batches. One run is a pure function of
// the config and seed on the CPU: the loader's batches depend on (seed, epoch, index), the global
// random generator (dropout) is seeded and checkpointed, the Siamese views depend on (seed,
// iteration), so a resumed run continues bit-identically.
//
// Data-parallel training (next step) plugs in through ParallelContext: the gradient hook runs where
// every micro-batch's gradients are ready and before clipping; only rank 0 logs and checkpoints.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/dtype.h"
#include "engine/device.h"
#include "models/model.h"
#include "train/grad_tools.h"

namespace se {

struct TrainOptions {
  int64_t max_iters = 0;         // the run's length in iterations, or
  int64_t max_epochs = 0;        // in epochs of the train loader (then the intervals count epochs)
  int64_t eval_interval = 0;     // evaluate every this many iterations/epochs (0: only at the end)
  int64_t log_interval = 10;     // JSONL/TensorBoard record every this many iterations
  int64_t checkpoint_interval = 0;  // checkpoint every this many iterations/epochs (0: at each evaluation)
  int64_t keep_checkpoints = 1;  // iteration checkpoints kept (the oldest are deleted); last and best stay
  int64_t accumulate = 1;        // batches per optimizer step (gradient accumulation)
  double clip_grad_norm = 0;     // max global gradient norm (0: no clipping)
  std::optional<DType> amp;      // "amp": forward and losses under autocast in bf16/f16 (engine/autocast.h)
  GradScalerOptions scaler;      // "loss_scaler": dynamic loss scaling, used with f16
  std::optional<EmaOptions> ema; // "ema": {"decay", "warmup"}; evaluation and best use the EMA weights
  double aux_weight = 0.4;       // weight of the auxiliary head's loss (FCN, PSPNet, DeepLab aux)
  int64_t early_stopping_patience = 0;  // evaluations without improvement before stopping (0: never)
  double early_stopping_min_delta = 0;  // mIoU improvement that counts
  uint64_t seed = 0;
  bool plots = true;             // PNG curves at the end
  bool tensorboard = true;
  // Also read from "train": "class_stats_samples" (0: all), how many training masks are counted for
  // class weights when the loss names a method (train/losses.h).
};

TrainOptions read_train_options(const Config& section);  // the "train" object

// Where gradients are reduced across processes; the single-process default does nothing.
struct ParallelContext {
  int rank = 0;
  int world_size = 1;
  std::function<void(const std::vector<Tensor>& params)> all_reduce_gradients;
};

// What the command line decides, not the config.
struct TrainerSetup {
  std::string out_dir = "runs/default";
  Device device = Device::cpu();
  std::string resume;     // a checkpoint to continue from ("" : start fresh)
  // A fresh run refuses an out_dir that already holds a run (its metrics.jsonl), so nothing written
  // is lost by accident; overwrite deletes that run's outputs first.
  bool overwrite = false;
  bool progress = true;   // the console progress bar
  std::FILE* console = stdout;
  ParallelContext parallel = {};
};

struct TrainSummary {
  int64_t iterations = 0;       // done in total (including before a resume)
  int64_t evaluations = 0;
  double best_miou = 0;         // NaN before any evaluation
  int64_t best_iteration = -1;
  double last_miou = 0;
  bool stopped_early = false;
  double seconds = 0;           // this process's training time
  std::string best_checkpoint;  // path ("" when none was written)
  std::string last_checkpoint;
};

class Trainer {
 public:
  // Builds everything and checks the whole config (finish()); resumes when setup.resume is set.
  Trainer(Config config, TrainerSetup setup);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  TrainSummary run();

  // Stops after `iterations` more steps (and a checkpoint), as if interrupted: for tests of resume.
  void stop_after(int64_t iterations);

  models::SegmentationModel& model();
  const TrainOptions& options() const;
  int64_t iteration() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace se
