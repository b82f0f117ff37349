// stb's implementation, compiled once here with the formats we read (PNG, JPEG, BMP). Built with
// warnings off (data/CMakeLists.txt): the code below ours is third-party.
#include "data/stb_codec.h"

#include <climits>
#include <cstdlib>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO  // we read files ourselves, so errors name them
#define STBI_MAX_DIMENSIONS (1 << 15)
#include <stb/stb_image.h>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>

namespace se::detail {

bool stb_decode(const uint8_t* bytes, size_t size, int channels, StbImage* out, std::string* error) {
  if (size > static_cast<size_t>(INT_MAX)) {
    *error = "file too large";
    return false;
  }
  int w = 0, h = 0, c = 0;
  stbi_uc* pixels = stbi_load_from_memory(bytes, static_cast<int>(size), &w, &h, &c, channels);
  if (pixels == nullptr) {
    const char* reason = stbi_failure_reason();
    *error = reason != nullptr ? reason : "unknown decoding error";
    return false;
  }
  int n = channels != 0 ? channels : c;
  out->width = w;
  out->height = h;
  out->channels_in_file = c;
  out->pixels.assign(pixels, pixels + static_cast<size_t>(w) * h * n);
  stbi_image_free(pixels);
  return true;
}

bool stb_info(const uint8_t* bytes, size_t size, int* width, int* height, int* channels) {
  if (size > static_cast<size_t>(INT_MAX)) return false;
  return stbi_info_from_memory(bytes, static_cast<int>(size), width, height, channels) != 0;
}

std::vector<uint8_t> stb_encode_png(const uint8_t* pixels, int width, int height, int channels) {
  int length = 0;
  unsigned char* png = stbi_write_png_to_mem(pixels, width * channels, width, height, channels, &length);
  if (png == nullptr) return {};
  std::vector<uint8_t> bytes(png, png + length);
  STBIW_FREE(png);
  return bytes;
}

std::vector<uint8_t> stb_encode_jpeg(const uint8_t* pixels, int width, int height, int channels, int quality) {
  std::vector<uint8_t> bytes;
  auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(context);
    out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  };
  if (stbi_write_jpg_to_func(append, &bytes, width, height, channels, pixels, quality) == 0) return {};
  return bytes;
}

bool stb_zlib_inflate(const uint8_t* data, size_t size, size_t expected_size, std::vector<uint8_t>* out) {
  if (size > static_cast<size_t>(INT_MAX) || expected_size > static_cast<size_t>(INT_MAX)) return false;
  int length = 0;
  char* inflated = stbi_zlib_decode_malloc_guesssize_headerflag(
      reinterpret_cast<const char*>(data), static_cast<int>(size), static_cast<int>(expected_size), &length, 1);
  if (inflated == nullptr) return false;
  out->assign(reinterpret_cast<uint8_t*>(inflated), reinterpret_cast<uint8_t*>(inflated) + length);
  STBI_FREE(inflated);
  return true;
}

std::vector<uint8_t> stb_zlib_deflate(const uint8_t* data, size_t size, int quality) {
  int length = 0;
  unsigned char* compressed =
      stbi_zlib_compress(const_cast<unsigned char*>(data), static_cast<int>(size), &length, quality);
  if (compressed == nullptr) return {};
  std::vector<uint8_t> bytes(compressed, compressed + length);
  STBIW_FREE(compressed);
  return bytes;
}

}  // namespace se::detail
