#include "train/logging.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace se {

// ---- JSONL

JsonlWriter::JsonlWriter(const std::string& path, bool append) : path_(path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  out_.open(path, append ? std::ios::app : std::ios::trunc);
  SE_CHECK(out_.is_open(), "JsonlWriter: cannot open '", path, "' for writing",
           ec ? " (" + ec.message() + ")" : std::string());
}

void JsonlWriter::write(const nlohmann::json& record) {
  SE_CHECK(record.is_object(), "JsonlWriter: ", path_, ": a record must be a JSON object, got ", record.type_name());
  // Invalid UTF-8 in a string (e.g. a file name) is replaced rather than failing the run.
  out_ << record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  out_.flush();
  SE_CHECK(out_.good(), "JsonlWriter: writing to '", path_, "' failed");
}

// ---- TensorBoard

namespace tensorboard {

namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli polynomial
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

template <typename T>
void put_little_endian(std::string& out, T value) {
  static_assert(std::endian::native == std::endian::little, "TFRecord writing assumes a little-endian host");
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

// Protobuf field keys: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, static_cast<uint64_t>(field << 3 | wire_type));
}

void put_bytes_field(std::string& out, int field, std::string_view bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}

// tensorflow.Event fields 1 (wall_time, double) and 2 (step, int64).
std::string event_header(double wall_time, int64_t step) {
  std::string event;
  put_key(event, 1, 1);
  put_little_endian(event, wall_time);
  if (step != 0) {
    put_key(event, 2, 0);
    put_varint(event, static_cast<uint64_t>(step));
  }
  return event;
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) crc = kCrc32cTable[(crc ^ bytes[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

std::string frame_record(std::string_view payload) {
  std::string record;
  put_little_endian(record, static_cast<uint64_t>(payload.size()));
  put_little_endian(record, masked_crc32c(record.data(), 8));
  record.append(payload);
  put_little_endian(record, masked_crc32c(payload.data(), payload.size()));
  return record;
}

std::string encode_file_version_event(double wall_time) {
  std::string event = event_header(wall_time, 0);
  put_bytes_field(event, 3, "brain.Event:2");
  return event;
}

std::string encode_scalar_event(const std::string& tag, float value, int64_t step, double wall_time) {
  std::string summary_value;
  put_bytes_field(summary_value, 1, tag);  // Summary.Value.tag
  put_key(summary_value, 2, 5);            // Summary.Value.simple_value (float)
  put_little_endian(summary_value, value);
  std::string summary;
  put_bytes_field(summary, 1, summary_value);  // Summary.value (repeated)
  std::string event = event_header(wall_time, step);
  put_bytes_field(event, 5, summary);  // Event.summary
  return event;
}

}  // namespace tensorboard

namespace {

double unix_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& dir, const std::string& filename_suffix) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  SE_CHECK(!ec, "TensorBoardWriter: cannot create the directory '", dir, "': ", ec.message());
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  const double now = unix_time_now();
  path_ = (std::filesystem::path(dir) / ("events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) + "." +
                                         host + "." + std::to_string(getpid()) + filename_suffix))
              .string();
  out_.open(path_, std::ios::binary | std::ios::trunc);
  SE_CHECK(out_.is_open(), "TensorBoardWriter: cannot open '", path_, "' for writing");
  write_event(tensorboard::encode_file_version_event(now));
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step,
                                   std::optional<double> wall_time) {
  SE_CHECK(!tag.empty(), "TensorBoardWriter: add_scalar: empty tag");
  write_event(
      tensorboard::encode_scalar_event(tag, static_cast<float>(value), step, wall_time.value_or(unix_time_now())));
}

void TensorBoardWriter::write_event(const std::string& event) {
  const std::string record = tensorboard::frame_record(event);
  out_.write(record.data(), static_cast<std::streamsize>(record.size()));
  out_.flush();
  SE_CHECK(out_.good(), "TensorBoardWriter: writing to '", path_, "' failed");
}

// ---- progress

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t total = static_cast<int64_t>(std::llround(seconds));
  const int64_t h = total / 3600, m = total / 60 % 60, s = total % 60;
  char text[32];
  if (h > 0) {
    std::snprintf(text, sizeof(text), "%lld:%02lld:%02lld", static_cast<long long>(h), static_cast<long long>(m),
                  static_cast<long long>(s));
  } else {
    std::snprintf(text, sizeof(text), "%02lld:%02lld", static_cast<long long>(m), static_cast<long long>(s));
  }
  return text;
}

std::string format_bytes(int64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  int unit = 0;
  while (value >= 1024.0 && unit < 3) value /= 1024.0, ++unit;
  char text[32];
  if (value >= 100.0) {
    std::snprintf(text, sizeof(text), "%.0f %s", value, units[unit]);
  } else if (value >= 10.0) {
    std::snprintf(text, sizeof(text), "%.1f %s", value, units[unit]);
  } else {
    std::snprintf(text, sizeof(text), "%.2f %s", value, units[unit]);
  }
  return text;
}

namespace {

std::string format_rate(double it_per_s) {
  if (!(it_per_s > 0.0) || !std::isfinite(it_per_s)) return "? it/s";
  char text[32];
  if (it_per_s >= 1.0) {
    std::snprintf(text, sizeof(text), "%.1f it/s", it_per_s);
  } else {
    std::snprintf(text, sizeof(text), "%.2f s/it", 1.0 / it_per_s);
  }
  return text;
}

// " loss 0.4321 lr 9.10e-03 mem 1.20 GiB" for the values that are known.
std::string format_extras(const ProgressStatus& s) {
  std::string out;
  char text[48];
  if (!std::isnan(s.loss)) {
    std::snprintf(text, sizeof(text), " loss %.4f", s.loss);
    out += text;
  }
  if (!std::isnan(s.lr)) {
    std::snprintf(text, sizeof(text), " lr %.2e", s.lr);
    out += text;
  }
  if (s.memory_bytes >= 0) out += " mem " + format_bytes(s.memory_bytes);
  return out;
}

}  // namespace

std::string format_progress(const ProgressStatus& s, bool terminal, int width) {
  const bool known_total = s.total > 0;
  const double fraction =
      known_total ? std::clamp(static_cast<double>(s.iter) / static_cast<double>(s.total), 0.0, 1.0) : 0.0;
  const double eta = known_total && s.it_per_s > 0.0 ? static_cast<double>(s.total - s.iter) / s.it_per_s : NAN;
  const std::string count =
      known_total ? std::to_string(s.iter) + "/" + std::to_string(s.total) : std::to_string(s.iter);
  const int whole_percent = static_cast<int>(fraction * 100.0);
  char percent[8];
  std::snprintf(percent, sizeof(percent), "%3d%%", whole_percent);
  // Built with += only: GCC 12 warns falsely (-Wrestrict) about "literal" + std::string.
  if (!terminal) {
    std::string line = s.label;
    line += ' ';
    line += count;
    if (known_total) {
      line += " (";
      line += std::to_string(whole_percent);
      line += "%)";
    }
    line += ' ';
    line += format_rate(s.it_per_s);
    line += " elapsed ";
    line += format_duration(s.elapsed_s);
    if (known_total) {
      line += " eta ";
      line += format_duration(eta);
    }
    line += format_extras(s);
    return line;
  }
  std::string right(1, ' ');
  right += count;
  right += " [";
  right += format_duration(s.elapsed_s);
  if (known_total) {
    right += '<';
    right += format_duration(eta);
  }
  right += ", ";
  right += format_rate(s.it_per_s);
  right += ']';
  right += format_extras(s);
  std::string line = s.label;
  line += ' ';
  if (known_total) {
    line += percent;
    const int bar = width - static_cast<int>(line.size() + 2 + right.size());
    if (bar >= 5) {
      const int filled = static_cast<int>(fraction * bar);
      line += '|';
      line.append(static_cast<size_t>(filled), '#');
      line.append(static_cast<size_t>(bar - filled), '.');
      line += '|';
    }
    line += right;
  } else {
    line.pop_back();  // the label is followed by right's own space
    line += right;
  }
  // A line longer than the terminal wraps and can no longer be redrawn with '\r'.
  if (width > 0 && static_cast<int>(line.size()) > width) line.resize(static_cast<size_t>(width));
  return line;
}

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int terminal_width(std::FILE* out) {
  winsize size{};
  if (ioctl(fileno(out), TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  if (const char* columns = std::getenv("COLUMNS")) {
    const int w = std::atoi(columns);
    if (w > 0) return w;
  }
  return 100;
}

}  // namespace

ProgressBar::ProgressBar(int64_t total, std::FILE* out, const ProgressBarOptions& options)
    : out_(out), options_(options), total_(total) {
  SE_CHECK(out_ != nullptr, "ProgressBar: no output stream");
  terminal_ = options_.terminal.value_or(isatty(fileno(out_)) != 0);
  if (options_.width <= 0) options_.width = terminal_ ? terminal_width(out_) : 100;
  if (options_.plain_every <= 0) options_.plain_every = total_ > 0 ? std::max<int64_t>(1, total_ / 20) : 50;
  if (!options_.clock) options_.clock = steady_seconds;
  start_s_ = options_.clock();
  last_rate_s_ = start_s_;
  last_.label = options_.label;
  last_.total = total_;
}

void ProgressBar::update(int64_t iter, double loss, double lr, int64_t memory_bytes) {
  const double now = options_.clock();
  if (now > last_rate_s_ && iter > last_rate_iter_) {
    const double instant = static_cast<double>(iter - last_rate_iter_) / (now - last_rate_s_);
    rate_ = rate_ == 0.0 ? instant : 0.3 * instant + 0.7 * rate_;
    last_rate_s_ = now;
    last_rate_iter_ = iter;
  }
  last_.iter = iter;
  last_.elapsed_s = now - start_s_;
  last_.it_per_s = rate_;
  last_.loss = loss;
  last_.lr = lr;
  last_.memory_bytes = memory_bytes;
  const bool done = total_ > 0 && iter >= total_;
  if (terminal_) {
    if (done || last_draw_s_ < 0 || now - last_draw_s_ >= options_.redraw_interval_s) {
      emit(last_, false);
      last_draw_s_ = now;
    }
  } else if (done || iter - last_plain_iter_ >= options_.plain_every) {
    emit(last_, false);
  }
}

void ProgressBar::emit(const ProgressStatus& status, bool final) {
  const std::string line = format_progress(status, terminal_, options_.width);
  if (terminal_) {
    // Overwrite the previous line; pad in case the new one is shorter.
    const size_t pad = drawn_width_ > line.size() ? drawn_width_ - line.size() : 0;
    std::fprintf(out_, "\r%s%s%s", line.c_str(), std::string(pad, ' ').c_str(), final ? "\n" : "");
    drawn_width_ = line.size();
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
    last_plain_iter_ = status.iter;
  }
  std::fflush(out_);
}

void ProgressBar::close() {
  if (closed_) return;
  closed_ = true;
  if (terminal_) {
    if (drawn_width_ > 0) emit(last_, true);
  } else if (last_.iter != last_plain_iter_) {
    emit(last_, true);
  }
}

}  // namespace se
