// Helpers shared by the data tests: a temporary directory, and error expectations from the engine tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "data/dataset.h"
#include "data/image.h"
#include "data/image_io.h"
#include "tests/engine/test_util.h"

namespace se::testing {

// A fresh directory under $TMPDIR, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "segengine-data-XXXXXX").string();
    char* made = ::mkdtemp(pattern.data());
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// An image whose pixels are a fixed function of (x, y, c), so tests can predict every value.
inline Image pattern_image(int width, int height, int channels, int salt = 0) {
  Image image(width, height, channels);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < channels; ++c)
        image.at(y, x, c) = static_cast<uint8_t>((x * 7 + y * 13 + c * 29 + salt) & 0xFF);
  return image;
}

// Files of a fake dataset tree (parent folders created): a pattern image (JPEG for a .jpg path, else
// PNG), a mask (grey or palette PNG) and a text file such as a split list.
inline void put_image(const std::string& path, int width = 4, int height = 2) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  if (path.ends_with(".jpg"))
    write_jpeg(path, pattern_image(width, height, 3));
  else
    write_png(path, pattern_image(width, height, 3));
}

inline void put_mask(const std::string& path, const Image& mask, bool palette = false) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  if (palette)
    write_index_png(path, mask, default_palette(256));
  else
    write_png(path, mask);
}

inline void put_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

}  // namespace se::testing
