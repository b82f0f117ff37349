// The only door to stb (stb_image, stb_image_write): decoding, PNG encoding and zlib, behind a small
// C++ interface so the rest of data/ never sees stb's globals or macros. Internal to data/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace se::detail {

struct StbImage {
  int width = 0, height = 0;
  int channels_in_file = 0;     // what the file holds (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA)
  std::vector<uint8_t> pixels;  // (H, W, channels requested) row-major
};

// Decodes PNG, JPEG or BMP bytes into `channels` channels (0: as in the file). Returns false and
// sets `error` (stb's reason) when the bytes are not a decodable image of those kinds.
bool stb_decode(const uint8_t* bytes, size_t size, int channels, StbImage* out, std::string* error);
// Size and channels of an image without decoding it; false when stb does not recognise it.
bool stb_info(const uint8_t* bytes, size_t size, int* width, int* height, int* channels);

// A PNG file of `channels` (1 or 3) channels from (H, W, C) pixels; stb picks the row filters.
std::vector<uint8_t> stb_encode_png(const uint8_t* pixels, int width, int height, int channels);
std::vector<uint8_t> stb_encode_jpeg(const uint8_t* pixels, int width, int height, int channels, int quality);

// zlib streams (with header and Adler-32), as PNG's IDAT needs them. stb_zlib_inflate returns false
// on a corrupt stream; `expected_size` is only a first guess of the output size.
bool stb_zlib_inflate(const uint8_t* data, size_t size, size_t expected_size, std::vector<uint8_t>* out);
std::vector<uint8_t> stb_zlib_deflate(const uint8_t* data, size_t size, int quality = 8);

}  // namespace se::detail
