#include "core/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace se {

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  SE_CHECK(!path_.empty(), "write: empty output path");
  std::string pattern = path_ + ".tmp-XXXXXX";
  const int fd = ::mkstemp(pattern.data());
  SE_CHECK(fd >= 0, path_, ": cannot create a temporary file beside it: ", std::strerror(errno));
  temp_path_ = pattern;
  // mkstemp creates 0600; give the file the permissions a plain create would (0666 less the umask).
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd, 0666 & ~mask);
  file_ = ::fdopen(fd, "wb");
  if (file_ == nullptr) {
    ::close(fd);
    ::unlink(temp_path_.c_str());
    SE_THROW(path_, ": cannot open the temporary file: ", std::strerror(errno));
  }
}

AtomicFileWriter::~AtomicFileWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    ::unlink(temp_path_.c_str());
  }
}

void AtomicFileWriter::write(const void* data, size_t bytes) {
  SE_CHECK(file_ != nullptr, path_, ": write after commit");
  if (bytes == 0) return;
  SE_CHECK(std::fwrite(data, 1, bytes, file_) == bytes, path_, ": write failed: ", std::strerror(errno));
}

void AtomicFileWriter::commit() {
  SE_CHECK(file_ != nullptr, path_, ": committed twice");
  std::FILE* file = file_;
  file_ = nullptr;
  const bool flushed = std::fflush(file) == 0 && ::fsync(::fileno(file)) == 0;
  const int saved_errno = errno;
  const bool closed = std::fclose(file) == 0;
  if (!flushed || !closed || std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const int err = flushed && closed ? errno : saved_errno;
    ::unlink(temp_path_.c_str());
    SE_THROW(path_, ": could not write the file: ", std::strerror(err));
  }
}

void write_file_atomic(const std::string& path, const void* data, size_t bytes) {
  AtomicFileWriter writer(path);
  writer.write(data, bytes);
  writer.commit();
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  SE_CHECK(std::filesystem::exists(path, ec), "read_file: '", path, "' does not exist");
  SE_CHECK(!std::filesystem::is_directory(path, ec), "read_file: '", path, "' is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  SE_CHECK(in.good(), "read_file: cannot open '", path, "': ", std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SE_CHECK(!in.bad(), "read_file: error while reading '", path, "'");
  return bytes;
}

}  // namespace se
