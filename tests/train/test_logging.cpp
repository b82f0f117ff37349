#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/engine/test_util.h"
#include "train/logging.h"

namespace se {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("se_logging_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(Jsonl, OneFlushedObjectPerLineAppending) {
  const fs::path dir = fresh_dir("jsonl");
  const std::string path = (dir / "sub" / "metrics.jsonl").string();
  {
    JsonlWriter writer(path, false);
    writer.write({{"iter", 1}, {"loss", 0.5}});
    // Flushed: readable before the writer goes away.
    ASSERT_EQ(read_lines(path).size(), 1u);
    writer.write({{"iter", 2}, {"loss", std::nan("")}, {"split", "val"}});
    expect_error([&] { writer.write(nlohmann::json::array({1, 2})); }, "a record must be a JSON object, got array");
  }
  JsonlWriter again(path);  // a resumed run appends
  again.write({{"iter", 3}});
  const std::vector<std::string> lines = read_lines(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(nlohmann::json::parse(lines[0]).at("loss"), 0.5);
  EXPECT_TRUE(nlohmann::json::parse(lines[1]).at("loss").is_null());  // NaN
  EXPECT_EQ(nlohmann::json::parse(lines[2]).at("iter"), 3);
  std::ofstream(dir / "file") << "x";
  expect_error([&] { JsonlWriter((dir / "file" / "m.jsonl").string()); }, "cannot open");
  fs::remove_all(dir);
}

TEST(TensorBoard, Crc32cKnownVectors) {
  // RFC 3720 (iSCSI) test vectors and the classic check value.
  EXPECT_EQ(tensorboard::crc32c("123456789", 9), 0xE3069283u);
  const std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF);
  EXPECT_EQ(tensorboard::crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(tensorboard::crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  std::vector<uint8_t> ascending(32);
  for (size_t i = 0; i < 32; ++i) ascending[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(tensorboard::crc32c(ascending.data(), ascending.size()), 0x46DD794Eu);
}

// A minimal reader of what the writer produces: TFRecords, and the Event/Summary fields we use.
struct DecodedEvent {
  double wall_time = 0.0;
  int64_t step = 0;
  std::string file_version;
  std::vector<std::pair<std::string, float>> values;
};

uint32_t masked(const std::string& bytes) {
  const uint32_t crc = tensorboard::crc32c(bytes.data(), bytes.size());
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

template <typename T>
T load(const std::string& data, size_t pos) {
  T value;
  std::memcpy(&value, data.data() + pos, sizeof(T));
  return value;
}

uint64_t read_varint(const std::string& data, size_t& pos) {
  uint64_t value = 0;
  for (int shift = 0;; shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(data.at(pos++));
    value |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if (!(byte & 0x80)) return value;
  }
}

// Calls f(field, wire_type, pos) for each field of a message; f consumes the payload.
void for_each_field(const std::string& message, const std::function<void(int, int, size_t&)>& f) {
  size_t pos = 0;
  while (pos < message.size()) {
    const uint64_t key = read_varint(message, pos);
    f(static_cast<int>(key >> 3), static_cast<int>(key & 7), pos);
  }
}

std::string read_bytes_field(const std::string& message, size_t& pos) {
  const uint64_t length = read_varint(message, pos);
  std::string out = message.substr(pos, length);
  pos += length;
  return out;
}

DecodedEvent decode_event(const std::string& payload) {
  DecodedEvent event;
  for_each_field(payload, [&](int field, int wire, size_t& pos) {
    if (field == 1 && wire == 1) {
      event.wall_time = load<double>(payload, pos);
      pos += 8;
    } else if (field == 2 && wire == 0) {
      event.step = static_cast<int64_t>(read_varint(payload, pos));
    } else if (field == 3 && wire == 2) {
      event.file_version = read_bytes_field(payload, pos);
    } else if (field == 5 && wire == 2) {
      const std::string summary = read_bytes_field(payload, pos);
      for_each_field(summary, [&](int f, int w, size_t& p) {
        ASSERT_TRUE(f == 1 && w == 2) << "Summary field " << f;
        const std::string value = read_bytes_field(summary, p);
        std::pair<std::string, float> tv;
        for_each_field(value, [&](int vf, int vw, size_t& vp) {
          if (vf == 1 && vw == 2) {
            tv.first = read_bytes_field(value, vp);
          } else {
            ASSERT_TRUE(vf == 2 && vw == 5) << "Summary.Value field " << vf;
            tv.second = load<float>(value, vp);
            vp += 4;
          }
        });
        event.values.push_back(tv);
      });
    } else {
      FAIL() << "unexpected Event field " << field << " wire type " << wire;
    }
  });
  return event;
}

// Splits a TFRecord file into payloads, checking both CRCs of every record.
std::vector<std::string> read_records(const std::string& data) {
  std::vector<std::string> payloads;
  size_t pos = 0;
  while (pos < data.size()) {
    EXPECT_LE(pos + 12, data.size());
    const uint64_t length = load<uint64_t>(data, pos);
    EXPECT_EQ(load<uint32_t>(data, pos + 8), masked(data.substr(pos, 8))) << "length CRC of record at " << pos;
    const std::string payload = data.substr(pos + 12, length);
    EXPECT_EQ(load<uint32_t>(data, pos + 12 + length), masked(payload)) << "data CRC of record at " << pos;
    payloads.push_back(payload);
    pos += 12 + length + 4;
  }
  return payloads;
}

TEST(TensorBoard, EventFileDecodesWithValidCrcs) {
  const fs::path dir = fresh_dir("tb");
  std::string path;
  {
    TensorBoardWriter writer((dir / "tb").string(), ".train");
    path = writer.path();
    writer.add_scalar("train/loss", 0.75, 10, 1700000000.5);
    writer.add_scalar("train/lr", 1e-3, 10, 1700000000.5);
    writer.add_scalar("val/mIoU", 0.4321, 123456789012, 1700000001.25);
  }
  EXPECT_NE(fs::path(path).filename().string().find("events.out.tfevents."), std::string::npos);
  EXPECT_EQ(fs::path(path).extension(), ".train");
  const std::vector<std::string> records = read_records(read_bytes(path));
  ASSERT_EQ(records.size(), 4u);
  const DecodedEvent first = decode_event(records[0]);
  EXPECT_EQ(first.file_version, "brain.Event:2");
  EXPECT_GT(first.wall_time, 1.6e9);  // now, in seconds since the epoch
  const DecodedEvent loss = decode_event(records[1]);
  EXPECT_DOUBLE_EQ(loss.wall_time, 1700000000.5);
  EXPECT_EQ(loss.step, 10);
  ASSERT_EQ(loss.values.size(), 1u);
  EXPECT_EQ(loss.values[0].first, "train/loss");
  EXPECT_EQ(loss.values[0].second, 0.75f);
  EXPECT_EQ(decode_event(records[2]).values[0].second, 1e-3f);
  const DecodedEvent miou = decode_event(records[3]);
  EXPECT_EQ(miou.step, 123456789012);
  EXPECT_EQ(miou.values[0].first, "val/mIoU");
  EXPECT_EQ(miou.values[0].second, 0.4321f);
  fs::remove_all(dir);
}

TEST(TensorBoard, CorruptionIsDetectedByTheCrcs) {
  // The reader above really checks: flipping one payload byte breaks the data CRC.
  std::string record = tensorboard::frame_record(tensorboard::encode_scalar_event("a", 1.0f, 1, 0.0));
  EXPECT_EQ(load<uint32_t>(record, 8), tensorboard::masked_crc32c(record.data(), 8));
  record[14] ^= 0x01;
  const std::string payload = record.substr(12, record.size() - 16);
  EXPECT_NE(load<uint32_t>(record, record.size() - 4), masked(payload));
}

// ---- progress

TEST(Progress, Durations) {
  EXPECT_EQ(format_duration(0), "00:00");
  EXPECT_EQ(format_duration(65.4), "01:05");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(NAN), "?");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(12 * 1024), "12.0 KiB");
  EXPECT_EQ(format_bytes(812ll << 20), "812 MiB");
  EXPECT_EQ(format_bytes(static_cast<int64_t>(1.2 * (1ll << 30))), "1.20 GiB");
}

ProgressStatus example_status() {
  ProgressStatus s;
  s.iter = 370;
  s.total = 1000;
  s.elapsed_s = 12.0;
  s.it_per_s = 31.5;  // 630 left: 20 s
  s.loss = 0.43214;
  s.lr = 9.1e-3;
  s.memory_bytes = static_cast<int64_t>(1.2 * (1ll << 30));
  return s;
}

TEST(Progress, PlainLine) {
  EXPECT_EQ(format_progress(example_status(), false),
            "train 370/1000 (37%) 31.5 it/s elapsed 00:12 eta 00:20 loss 0.4321 lr 9.10e-03 mem 1.20 GiB");
  ProgressStatus slow;
  slow.iter = 3;
  slow.it_per_s = 0.25;
  EXPECT_EQ(format_progress(slow, false), "train 3 4.00 s/it elapsed 00:00");  // no total, no loss
}

TEST(Progress, TerminalLineFillsTheWidth) {
  const std::string line = format_progress(example_status(), true, 120);
  EXPECT_EQ(line.size(), 120u);
  EXPECT_EQ(line.rfind("train  37%|", 0), 0u) << line;
  const std::string tail = "| 370/1000 [00:12<00:20, 31.5 it/s] loss 0.4321 lr 9.10e-03 mem 1.20 GiB";
  ASSERT_GE(line.size(), tail.size());
  EXPECT_EQ(line.substr(line.size() - tail.size()), tail);
  const size_t bar = line.size() - tail.size() - std::string("train  37%|").size();
  const size_t filled = static_cast<size_t>(std::count(line.begin(), line.end(), '#'));
  EXPECT_EQ(filled, static_cast<size_t>(0.37 * static_cast<double>(bar)));
  EXPECT_EQ(static_cast<size_t>(std::count(line.begin(), line.end(), '.')),
            bar - filled + 4);  // + the decimal points of 31.5, 0.4321, 9.10e-03, 1.20
  // Too narrow for a bar: no bar, and never longer than the terminal.
  const std::string narrow = format_progress(example_status(), true, 60);
  EXPECT_EQ(narrow.size(), 60u);
  EXPECT_EQ(narrow.find('#'), std::string::npos);
  EXPECT_EQ(narrow.rfind("train  37% 370/1000 [00:12<00:20", 0), 0u) << narrow;
}

std::string run_bar(bool terminal, double seconds_per_iter, int64_t total) {
  std::FILE* file = std::tmpfile();
  double now = 100.0;
  {
    ProgressBar bar(total, file,
                    {.label = "train",
                     .terminal = terminal,
                     .redraw_interval_s = 0.1,
                     .plain_every = 25,
                     .width = 90,
                     .clock = [&] { return now; }});
    for (int64_t i = 1; i <= total; ++i) {
      now += seconds_per_iter;
      bar.update(i, 1.0 / static_cast<double>(i), 0.01);
    }
    bar.close();
    bar.close();  // idempotent
  }
  std::rewind(file);
  std::string out;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), file)) > 0;) out.append(buffer, n);
  std::fclose(file);
  return out;
}

TEST(Progress, PlainLinesWhenNotATerminal) {
  const std::string out = run_bar(false, 0.5, 100);
  EXPECT_EQ(out.find('\r'), std::string::npos);
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u) << out;  // every 25 iterations, the last one included once
  EXPECT_EQ(lines[0].rfind("train 25/100 (25%) 2.0 it/s elapsed 00:13 eta 00:38 loss 0.0400 lr 1.00e-02", 0), 0u)
      << lines[0];
  EXPECT_EQ(lines[3].rfind("train 100/100 (100%) 2.0 it/s elapsed 00:50 eta 00:00", 0), 0u) << lines[3];
}

TEST(Progress, RedrawsInPlaceOnATerminal) {
  const std::string out = run_bar(true, 0.01, 100);  // 1 s in all, redrawn at most every 0.1 s
  const size_t redraws = static_cast<size_t>(std::count(out.begin(), out.end(), '\r'));
  EXPECT_GE(redraws, 9u);
  EXPECT_LE(redraws, 13u);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);  // only close() ends the line
  EXPECT_EQ(out.back(), '\n');
  EXPECT_NE(out.rfind("100/100 [00:01<00:00, 100.0 it/s]"), std::string::npos) << out.substr(out.rfind('\r'));
}

}  // namespace
}  // namespace se
