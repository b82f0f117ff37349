// Training logs: a JSONL metrics file, TensorBoard event files, and the console progress line.
// (PNG plots of the curves are in train/plot.h.)
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace se {

// One JSON object per line, flushed after each, so a crash loses at most the line being written
// and `tail -f` shows progress. Appends by default (a resumed run continues its file). NaN and
// infinities are written as null (JSON has no literal for them).
class JsonlWriter {
 public:
  explicit JsonlWriter(const std::string& path, bool append = true);
  void write(const nlohmann::json& record);  // an object
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

// TensorBoard event files: TFRecord framing (u64 length, masked CRC32C of it, payload, masked
// CRC32C of the payload) around hand-encoded tensorflow.Event protobufs. The first event carries
// file_version "brain.Event:2"; scalars are Summary.Value{tag, simple_value}. Each event is
// flushed when written.
class TensorBoardWriter {
 public:
  // Creates `dir` and the file events.out.tfevents.<unix time>.<host>.<pid><suffix> in it.
  explicit TensorBoardWriter(const std::string& dir, const std::string& filename_suffix = "");
  // wall_time: seconds since the epoch; now when not given.
  void add_scalar(const std::string& tag, double value, int64_t step, std::optional<double> wall_time = {});
  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);
  std::string path_;
  std::ofstream out_;
};

namespace tensorboard {
uint32_t crc32c(const void* data, size_t size);  // CRC-32C (Castagnoli), as TFRecord uses
uint32_t masked_crc32c(const void* data, size_t size);
std::string frame_record(std::string_view payload);  // the TFRecord framing of one record
std::string encode_file_version_event(double wall_time);
std::string encode_scalar_event(const std::string& tag, float value, int64_t step, double wall_time);
}  // namespace tensorboard

// ---- console progress

struct ProgressStatus {
  std::string label = "train";
  int64_t iter = 0;   // iterations done
  int64_t total = 0;  // 0 when unknown
  double elapsed_s = 0.0;
  double it_per_s = 0.0;                                   // recent rate; 0 when unknown
  double loss = std::numeric_limits<double>::quiet_NaN();  // NaN: not shown
  double lr = std::numeric_limits<double>::quiet_NaN();
  int64_t memory_bytes = -1;  // < 0: not shown
};

// "1:02:03" or "02:03".
std::string format_duration(double seconds);
// "512 B", "12.0 KiB", "812 MiB", "1.20 GiB".
std::string format_bytes(int64_t bytes);
// terminal: one line of at most `width` characters with a bar, for redrawing after '\r':
//   train  37%|#######.............| 370/1000 [00:12<00:20, 30.1 it/s] loss 0.4321 lr 9.10e-03 mem 1.20 GiB
// otherwise a plain line for log files:
//   train 370/1000 (37%) 30.1 it/s elapsed 00:12 eta 00:20 loss 0.4321 lr 9.10e-03 mem 1.20 GiB
std::string format_progress(const ProgressStatus& status, bool terminal, int width = 100);

struct ProgressBarOptions {
  std::string label = "train";
  std::optional<bool> terminal;    // default: whether `out` is a terminal
  double redraw_interval_s = 0.1;  // terminal: redraw at most this often
  int64_t plain_every = 0;         // plain lines: every this many iterations (0: about 20 lines per run)
  int width = 0;                   // terminal width; 0: ask the terminal (COLUMNS, then 100)
  std::function<double()> clock;   // seconds; default the steady clock (tests pass a fake one)
};

// Draws the progress line on `out`: redrawn in place on a terminal, else a plain line every
// plain_every iterations and at the end. The rate is smoothed like tqdm's (exponential, 0.3).
class ProgressBar {
 public:
  ProgressBar(int64_t total, std::FILE* out = stdout, const ProgressBarOptions& options = {});
  ~ProgressBar() { close(); }
  // `iter` iterations are done; NaN loss/lr and negative memory are left out of the line.
  void update(int64_t iter, double loss, double lr, int64_t memory_bytes = -1);
  // Prints the last state if it is not on screen yet and ends the line. Idempotent.
  void close();
  bool terminal() const { return terminal_; }

 private:
  void emit(const ProgressStatus& status, bool final);

  std::FILE* out_;
  ProgressBarOptions options_;
  bool terminal_;
  int64_t total_;
  double start_s_ = 0.0, last_draw_s_ = -1.0, last_rate_s_ = 0.0;
  int64_t last_rate_iter_ = 0, last_plain_iter_ = 0;
  double rate_ = 0.0;
  ProgressStatus last_;
  size_t drawn_width_ = 0;  // length of the line on screen (terminal)
  bool closed_ = false;
};

}  // namespace se
