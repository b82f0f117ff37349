// Reading and writing images and masks. Every error names the file and what was wrong with it
// (missing, unreadable, corrupt, wrong kind of image).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/atomic_file.h"  // read_file, write_file_atomic
#include "data/image.h"

namespace se {

// An RGB image (3 channels) from a PNG, JPEG or BMP file; grey and palette files are expanded to
// RGB, alpha is dropped.
Image read_image(const std::string& path);
Image decode_image(const std::vector<uint8_t>& bytes, const std::string& name);  // name: for messages

// A mask of class indices (1 channel). Grey PNGs (bit depth 1, 2, 4, 8) give their values; palette
// PNGs give the palette indices, not the colours (VOC, CamVid style); grey BMP/JPEG give their values.
// A colour (RGB) mask is an error: its colours would first need a colour -> class table.
Image read_mask(const std::string& path);
Image decode_mask(const std::vector<uint8_t>& bytes, const std::string& name);

// PNG writers; each writes a temporary file beside `path` and renames it into place, so a reader
// never sees half a file and an existing file survives a failed write.
void write_png(const std::string& path, const Image& image);                     // 1 channel grey or 3 channels RGB
void write_jpeg(const std::string& path, const Image& image, int quality = 90);  // 1 or 3 channels
// A palette PNG whose pixel values are `mask`'s indices; every index must have a palette entry.
void write_index_png(const std::string& path, const Image& mask, const std::vector<Rgb>& palette);
std::vector<uint8_t> encode_index_png(const Image& mask, const std::vector<Rgb>& palette);


}  // namespace se
