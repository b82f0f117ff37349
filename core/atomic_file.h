// Writing files so that a crash or an error never leaves a half-written file in place of a good one:
// the bytes go to a temporary file in the same directory, which commit() flushes and renames over the
// target (atomic on POSIX file systems). Without commit() the temporary file is removed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace se {

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);  // throws se::Error naming the path when it cannot create
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t bytes);
  void write(const std::string& text) { write(text.data(), text.size()); }
  void commit();  // flush, fsync, rename over the target
  const std::string& path() const { return path_; }

 private:
  std::string path_, temp_path_;
  std::FILE* file_ = nullptr;
};

// Writes a whole file atomically.
void write_file_atomic(const std::string& path, const void* data, size_t bytes);
inline void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}
inline void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}
// Reads a whole file; errors name the path and the reason (missing, a directory, unreadable).
std::vector<uint8_t> read_file(const std::string& path);

}  // namespace se
