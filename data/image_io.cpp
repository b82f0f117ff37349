// Image and mask I/O. Colour images go through stb_image. Palette masks cannot (stb expands palettes
// to colours), so PNG masks are parsed here: chunks with CRC checks, IDAT inflated by stb's zlib
// decoder, scanlines unfiltered, 1/2/4/8-bit samples unpacked. The index-PNG writer is the mirror:
// our chunks and CRC-32 around stb_image_write's deflate.
#include "data/image_io.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/stb_codec.h"

namespace se {

std::string image_shape_str(const Image& image) {
  return detail::concat("(", image.width, " x ", image.height, " x ", image.channels, ")");
}

Image decode_image(const std::vector<uint8_t>& bytes, const std::string& name) {
  if (bytes.empty()) SE_THROW("read_image: '", name, "' is empty, expected a PNG, JPEG or BMP image");
  detail::StbImage decoded;
  std::string error;
  if (!detail::stb_decode(bytes.data(), bytes.size(), 3, &decoded, &error)) {
    SE_THROW("read_image: cannot decode '", name, "' (", error, "); expected a valid PNG, JPEG or BMP image");
  }
  Image image(decoded.width, decoded.height, 3);
  image.pixels = std::move(decoded.pixels);
  return image;
}

Image read_image(const std::string& path) {
  return decode_image(read_file(path), path);
}

// ---- PNG chunks

namespace {

constexpr std::array<uint8_t, 8> kPngSignature = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  return table;
}

// CRC-32 (ISO 3309, as PNG uses it) of the chunk type and data.
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0xFFFFFFFFu) {
  const auto& table = crc_table();
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
  return crc;
}

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void append_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

void append_chunk(std::vector<uint8_t>& out, const char type[4], const std::vector<uint8_t>& data) {
  append_be32(out, static_cast<uint32_t>(data.size()));
  size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  append_be32(out, crc32(out.data() + start, out.size() - start) ^ 0xFFFFFFFFu);
}

bool is_png(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= kPngSignature.size() && std::equal(kPngSignature.begin(), kPngSignature.end(), bytes.begin());
}

uint8_t paeth(int a, int b, int c) {
  int p = a + b - c;
  int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return static_cast<uint8_t>(a);
  return static_cast<uint8_t>(pb <= pc ? b : c);
}

// Decodes a grey or palette PNG into its sample values (grey levels or palette indices).
Image decode_png_mask(const std::vector<uint8_t>& bytes, const std::string& name) {
  const char* op = "read_mask: ";
  size_t pos = kPngSignature.size();
  uint32_t width = 0, height = 0;
  int bit_depth = 0, colour_type = -1;
  bool seen_header = false, seen_end = false;
  std::vector<uint8_t> idat;
  while (!seen_end) {
    if (pos + 12 > bytes.size()) SE_THROW(op, "'", name, "' is a truncated PNG (no IEND chunk)");
    uint32_t length = read_be32(&bytes[pos]);
    if (length > bytes.size() - pos - 12)
      SE_THROW(op, "'", name, "' is a truncated or corrupt PNG (chunk length ", length, ")");
    const uint8_t* type = &bytes[pos + 4];
    const uint8_t* data = type + 4;
    std::string type_str(reinterpret_cast<const char*>(type), 4);
    uint32_t stored_crc = read_be32(data + length);
    if ((crc32(type, length + 4) ^ 0xFFFFFFFFu) != stored_crc) {
      SE_THROW(op, "'", name, "' is a corrupt PNG: CRC mismatch in chunk '", type_str, "'");
    }
    if (type_str == "IHDR") {
      if (length != 13) SE_THROW(op, "'", name, "' is a corrupt PNG: IHDR of ", length, " bytes, expected 13");
      width = read_be32(data);
      height = read_be32(data + 4);
      bit_depth = data[8];
      colour_type = data[9];
      if (data[12] != 0) SE_THROW(op, "'", name, "': interlaced PNG masks are not supported; save it non-interlaced");
      seen_header = true;
    } else if (!seen_header) {
      SE_THROW(op, "'", name, "' is a corrupt PNG: first chunk is '", type_str, "', expected IHDR");
    } else if (type_str == "IDAT") {
      idat.insert(idat.end(), data, data + length);
    } else if (type_str == "IEND") {
      seen_end = true;
    }
    pos += 12 + static_cast<size_t>(length);
  }
  if (colour_type == 2 || colour_type == 6) {
    SE_THROW(op, "'", name, "' is an RGB", colour_type == 6 ? "A" : "", " PNG; a mask must be a grey or palette PNG ",
             "of class indices (convert colour masks with their colour -> class table first)");
  }
  if (colour_type != 0 && colour_type != 3) {
    SE_THROW(op, "'", name, "' is a PNG of colour type ", colour_type, " (grey + alpha); a mask must be a grey or ",
             "palette PNG of class indices");
  }
  if (bit_depth != 1 && bit_depth != 2 && bit_depth != 4 && bit_depth != 8) {
    SE_THROW(op, "'", name, "' has ", bit_depth, "-bit samples; masks must have bit depth 1, 2, 4 or 8");
  }
  if (width == 0 || height == 0 || width > (1u << 15) || height > (1u << 15)) {
    SE_THROW(op, "'", name, "' has size ", width, " x ", height, "; expected 1 to 32768 pixels per side");
  }
  size_t row_bytes = (static_cast<size_t>(width) * bit_depth + 7) / 8;
  size_t expected = static_cast<size_t>(height) * (row_bytes + 1);
  std::vector<uint8_t> raw;
  if (idat.empty() || !detail::stb_zlib_inflate(idat.data(), idat.size(), expected, &raw)) {
    SE_THROW(op, "'", name, "' is a corrupt PNG: its image data (IDAT) does not inflate");
  }
  if (raw.size() < expected) {
    SE_THROW(op, "'", name, "' is a corrupt PNG: ", raw.size(), " bytes of image data, expected ", expected);
  }
  // Unfilter in place: each scanline is a filter byte then row_bytes bytes; bpp = 1 for depth <= 8 grey/palette.
  std::vector<uint8_t> rows(static_cast<size_t>(height) * row_bytes);
  for (uint32_t y = 0; y < height; ++y) {
    const uint8_t* src = &raw[y * (row_bytes + 1)];
    uint8_t filter = src[0];
    ++src;
    uint8_t* dst = &rows[y * row_bytes];
    const uint8_t* up = y > 0 ? dst - row_bytes : nullptr;
    for (size_t i = 0; i < row_bytes; ++i) {
      int a = i > 0 ? dst[i - 1] : 0, b = up ? up[i] : 0, c = (up && i > 0) ? up[i - 1] : 0;
      int predictor = 0;
      switch (filter) {
        case 0: predictor = 0; break;
        case 1: predictor = a; break;
        case 2: predictor = b; break;
        case 3: predictor = (a + b) / 2; break;
        case 4: predictor = paeth(a, b, c); break;
        default: SE_THROW(op, "'", name, "' is a corrupt PNG: unknown filter type ", int{filter}, " on row ", y);
      }
      dst[i] = static_cast<uint8_t>(src[i] + predictor);
    }
  }
  Image mask(static_cast<int>(width), static_cast<int>(height), 1);
  int per_byte = 8 / bit_depth;
  uint8_t sample_mask = static_cast<uint8_t>((1u << bit_depth) - 1);
  for (uint32_t y = 0; y < height; ++y) {
    const uint8_t* row = &rows[y * row_bytes];
    for (uint32_t x = 0; x < width; ++x) {
      // Samples are packed from the most significant bits.
      int shift = 8 - bit_depth * (1 + static_cast<int>(x % per_byte));
      mask.at(static_cast<int>(y), static_cast<int>(x)) =
          static_cast<uint8_t>((row[x / per_byte] >> shift) & sample_mask);
    }
  }
  return mask;
}

}  // namespace

Image decode_mask(const std::vector<uint8_t>& bytes, const std::string& name) {
  if (bytes.empty()) SE_THROW("read_mask: '", name, "' is empty, expected a grey or palette PNG");
  if (is_png(bytes)) return decode_png_mask(bytes, name);
  int w = 0, h = 0, c = 0;
  if (!detail::stb_info(bytes.data(), bytes.size(), &w, &h, &c)) {
    SE_THROW("read_mask: '", name, "' is not a PNG, JPEG or BMP image (or is corrupt)");
  }
  if (c != 1) {
    SE_THROW("read_mask: '", name, "' has ", c, " channels; a mask must be a 1-channel image of class indices");
  }
  detail::StbImage decoded;
  std::string error;
  if (!detail::stb_decode(bytes.data(), bytes.size(), 1, &decoded, &error)) {
    SE_THROW("read_mask: cannot decode '", name, "' (", error, ")");
  }
  Image mask(decoded.width, decoded.height, 1);
  mask.pixels = std::move(decoded.pixels);
  return mask;
}

Image read_mask(const std::string& path) {
  return decode_mask(read_file(path), path);
}

namespace {

void check_writable_image(const Image& image, const char* op, const std::string& path) {
  SE_CHECK(image.channels == 1 || image.channels == 3, op, ": '", path, "': image ", image_shape_str(image),
           " must have 1 (grey) or 3 (RGB) channels");
  SE_CHECK(image.width > 0 && image.height > 0 && image.pixels.size() == image.index(image.height, 0), op, ": '", path,
           "': image ", image_shape_str(image), " is empty or its pixel buffer has ", image.pixels.size(), " bytes");
}

}  // namespace

void write_png(const std::string& path, const Image& image) {
  check_writable_image(image, "write_png", path);
  std::vector<uint8_t> png = detail::stb_encode_png(image.pixels.data(), image.width, image.height, image.channels);
  SE_CHECK(!png.empty(), "write_png: '", path, "': PNG encoding failed");
  write_file_atomic(path, png);
}

void write_jpeg(const std::string& path, const Image& image, int quality) {
  check_writable_image(image, "write_jpeg", path);
  SE_CHECK(quality >= 1 && quality <= 100, "write_jpeg: '", path, "': quality ", quality, ", expected 1 to 100");
  std::vector<uint8_t> jpeg =
      detail::stb_encode_jpeg(image.pixels.data(), image.width, image.height, image.channels, quality);
  SE_CHECK(!jpeg.empty(), "write_jpeg: '", path, "': JPEG encoding failed");
  write_file_atomic(path, jpeg);
}

std::vector<uint8_t> encode_index_png(const Image& mask, const std::vector<Rgb>& palette) {
  SE_CHECK(mask.channels == 1 && mask.width > 0 && mask.height > 0 && mask.pixels.size() == mask.index(mask.height, 0),
           "write_index_png: mask ", image_shape_str(mask), " must be a non-empty 1-channel image");
  SE_CHECK(!palette.empty() && palette.size() <= 256, "write_index_png: palette of ", palette.size(),
           " colours, expected 1 to 256");
  for (uint8_t v : mask.pixels) {
    SE_CHECK(v < palette.size(), "write_index_png: index ", int{v}, " has no palette entry (palette of ",
             palette.size(), " colours)");
  }
  std::vector<uint8_t> png(kPngSignature.begin(), kPngSignature.end());
  std::vector<uint8_t> header;
  append_be32(header, static_cast<uint32_t>(mask.width));
  append_be32(header, static_cast<uint32_t>(mask.height));
  header.insert(header.end(), {8, 3, 0, 0, 0});  // 8-bit, palette, deflate, adaptive filters, no interlace
  append_chunk(png, "IHDR", header);
  std::vector<uint8_t> plte;
  for (const Rgb& c : palette) plte.insert(plte.end(), c.begin(), c.end());
  append_chunk(png, "PLTE", plte);
  // Filter "Up" on every row but the first: masks are mostly runs that continue downwards.
  size_t w = static_cast<size_t>(mask.width);
  std::vector<uint8_t> filtered;
  filtered.reserve(static_cast<size_t>(mask.height) * (w + 1));
  for (int y = 0; y < mask.height; ++y) {
    const uint8_t* row = &mask.pixels[y * w];
    filtered.push_back(y == 0 ? 0 : 2);
    for (size_t x = 0; x < w; ++x) filtered.push_back(static_cast<uint8_t>(row[x] - (y == 0 ? 0 : *(row - w + x))));
  }
  std::vector<uint8_t> idat = detail::stb_zlib_deflate(filtered.data(), filtered.size());
  SE_CHECK(!idat.empty(), "write_index_png: deflate failed");
  append_chunk(png, "IDAT", idat);
  append_chunk(png, "IEND", {});
  return png;
}

void write_index_png(const std::string& path, const Image& mask, const std::vector<Rgb>& palette) {
  std::vector<uint8_t> png;
  try {
    png = encode_index_png(mask, palette);
  } catch (const Error& e) {
    SE_THROW("write_index_png: '", path, "': ", e.what());
  }
  write_file_atomic(path, png);
}

}  // namespace se
