// Host images of 8-bit channels: RGB images (3 channels) and class-index masks (1 channel, 255 the
// usual ignore index). Pixels are (H, W, C) row-major, as decoders and the transforms use them; the
// loader turns them into (N, C, H, W) tensors.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace se {

struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;  // (H, W, C)

  Image() = default;
  Image(int width, int height, int channels, uint8_t fill = 0)
      : width(width),
        height(height),
        channels(channels),
        pixels(static_cast<size_t>(width) * height * channels, fill) {}

  bool empty() const { return pixels.empty(); }
  size_t index(int y, int x, int c = 0) const { return (static_cast<size_t>(y) * width + x) * channels + c; }
  uint8_t& at(int y, int x, int c = 0) { return pixels[index(y, x, c)]; }
  uint8_t at(int y, int x, int c = 0) const { return pixels[index(y, x, c)]; }
  friend bool operator==(const Image&, const Image&) = default;
};

using Rgb = std::array<uint8_t, 3>;

// "(W x H x C)" for messages.
std::string image_shape_str(const Image& image);

}  // namespace se
