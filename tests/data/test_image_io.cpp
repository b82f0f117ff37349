// Image and mask I/O: round trips, palette indices, low bit depths, every scanline filter, and the
// errors for missing, corrupt and wrong-kind files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/image_io.h"
#include "data/stb_codec.h"
#include "tests/data/data_test_util.h"

namespace se {
namespace {

using testing::expect_error;
using testing::pattern_image;
using testing::TempDir;

// An independent PNG encoder for fixtures the library never writes: any bit depth, grey or palette,
// the filter of each row chosen by the test. Deflate comes from stb; everything else is written here.
uint32_t test_crc(const std::vector<uint8_t>& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t b : bytes) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return crc ^ 0xFFFFFFFFu;
}

void put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

void chunk(std::vector<uint8_t>& png, const std::string& type, const std::vector<uint8_t>& data) {
  put32(png, static_cast<uint32_t>(data.size()));
  std::vector<uint8_t> body(type.begin(), type.end());
  body.insert(body.end(), data.begin(), data.end());
  png.insert(png.end(), body.begin(), body.end());
  put32(png, test_crc(body));
}

std::vector<uint8_t> make_png(int width, int height, int bit_depth, int colour_type, const std::vector<Rgb>& palette,
                              const std::vector<uint8_t>& samples, const std::vector<int>& filters, int channels = 1) {
  size_t row_bytes = (static_cast<size_t>(width) * channels * bit_depth + 7) / 8;
  std::vector<uint8_t> rows(row_bytes * height, 0);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width * channels; ++x) {
      size_t bit = static_cast<size_t>(x) * bit_depth;
      rows[y * row_bytes + bit / 8] |=
          static_cast<uint8_t>(samples[y * width * channels + x] << (8 - bit_depth - bit % 8));
    }
  int bpp = std::max(1, channels * bit_depth / 8);
  std::vector<uint8_t> raw;
  for (int y = 0; y < height; ++y) {
    int f = filters[y % filters.size()];
    raw.push_back(static_cast<uint8_t>(f));
    for (size_t i = 0; i < row_bytes; ++i) {
      int a = i >= static_cast<size_t>(bpp) ? rows[y * row_bytes + i - bpp] : 0;
      int b = y > 0 ? rows[(y - 1) * row_bytes + i] : 0;
      int c = (y > 0 && i >= static_cast<size_t>(bpp)) ? rows[(y - 1) * row_bytes + i - bpp] : 0;
      int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
      int pred[5] = {0, a, b, (a + b) / 2, (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c)};
      // An invalid filter type (a test of the decoder's error) gets the samples unfiltered.
      raw.push_back(static_cast<uint8_t>(rows[y * row_bytes + i] - (f >= 0 && f < 5 ? pred[f] : 0)));
    }
  }
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> ihdr;
  put32(ihdr, width);
  put32(ihdr, height);
  ihdr.insert(ihdr.end(), {static_cast<uint8_t>(bit_depth), static_cast<uint8_t>(colour_type), 0, 0, 0});
  chunk(png, "IHDR", ihdr);
  if (!palette.empty()) {
    std::vector<uint8_t> plte;
    for (const Rgb& c : palette) plte.insert(plte.end(), c.begin(), c.end());
    chunk(png, "PLTE", plte);
  }
  // Two IDAT chunks: the decoder must concatenate them.
  std::vector<uint8_t> z = detail::stb_zlib_deflate(raw.data(), raw.size());
  size_t half = z.size() / 2;
  chunk(png, "IDAT", std::vector<uint8_t>(z.begin(), z.begin() + half));
  chunk(png, "IDAT", std::vector<uint8_t>(z.begin() + half, z.end()));
  chunk(png, "IEND", {});
  return png;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<Rgb> grey_palette(int n) {
  std::vector<Rgb> palette;
  for (int i = 0; i < n; ++i) palette.push_back({static_cast<uint8_t>(255 - i), static_cast<uint8_t>(i * 3), 77});
  return palette;
}

TEST(ImageIo, RgbPngRoundTrip) {
  TempDir dir;
  Image image = pattern_image(13, 7, 3);
  write_png(dir / "a.png", image);
  EXPECT_EQ(read_image(dir / "a.png"), image);
}

TEST(ImageIo, GreyPngReadsAsRgbImageAndAsMask) {
  TempDir dir;
  Image grey = pattern_image(9, 5, 1);
  write_png(dir / "g.png", grey);
  EXPECT_EQ(read_mask(dir / "g.png"), grey);  // stb's writer picks its own row filters
  Image rgb = read_image(dir / "g.png");
  ASSERT_EQ(rgb.channels, 3);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 9; ++x)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(rgb.at(y, x, c), grey.at(y, x));
}

TEST(ImageIo, JpegAndBmpDecode) {
  TempDir dir;
  Image flat(16, 8, 3);
  for (size_t i = 0; i < flat.pixels.size(); i += 3)
    flat.pixels[i] = 200, flat.pixels[i + 1] = 40, flat.pixels[i + 2] = 90;
  write_jpeg(dir / "a.jpg", flat, 95);
  Image jpeg = read_image(dir / "a.jpg");
  ASSERT_EQ(jpeg.width, 16);
  ASSERT_EQ(jpeg.height, 8);
  for (size_t i = 0; i < flat.pixels.size(); ++i) EXPECT_NEAR(jpeg.pixels[i], flat.pixels[i], 4) << i;

  // A 24-bit BMP written by hand (bottom-up rows of BGR, padded to 4 bytes).
  Image image = pattern_image(3, 2, 3);
  std::vector<uint8_t> bmp = {'B', 'M'};
  auto put_le = [&](uint32_t v, int n) {
    for (int k = 0; k < n; ++k) bmp.push_back(static_cast<uint8_t>(v >> (8 * k)));
  };
  int stride = 12;
  put_le(54 + stride * 2, 4), put_le(0, 4), put_le(54, 4);
  put_le(40, 4), put_le(3, 4), put_le(2, 4), put_le(1, 2), put_le(24, 2), put_le(0, 4), put_le(stride * 2, 4);
  put_le(2835, 4), put_le(2835, 4), put_le(0, 4), put_le(0, 4);
  for (int y = 1; y >= 0; --y) {
    for (int x = 0; x < 3; ++x)
      for (int c = 2; c >= 0; --c) bmp.push_back(image.at(y, x, c));
    put_le(0, 3);
  }
  write_bytes(dir / "a.bmp", bmp);
  EXPECT_EQ(read_image(dir / "a.bmp"), image);
}

TEST(ImageIo, IndexPngGivesIndicesAndIndependentDecoderSeesPaletteColours) {
  TempDir dir;
  Image mask(11, 6, 1);
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 11; ++x) mask.at(y, x) = static_cast<uint8_t>(x < 5 ? (y + x) % 4 : 255 * (y % 2));
  std::vector<Rgb> palette = grey_palette(256);
  write_index_png(dir / "m.png", mask, palette);
  EXPECT_EQ(read_mask(dir / "m.png"), mask);
  Image colours = read_image(dir / "m.png");  // stb expands the palette
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 11; ++x)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(colours.at(y, x, c), palette[mask.at(y, x)][c]);
}

TEST(ImageIo, PaletteAndGreyMasksOfEveryBitDepthAndFilter) {
  for (int colour_type : {0, 3}) {
    for (int depth : {1, 2, 4, 8}) {
      int w = 13, h = 10;  // odd width: the last byte of a row is partly padding
      std::vector<uint8_t> samples(w * h);
      for (int i = 0; i < w * h; ++i) samples[i] = static_cast<uint8_t>((i * 37 + i / w) % (1 << depth));
      std::vector<Rgb> palette = colour_type == 3 ? grey_palette(1 << depth) : std::vector<Rgb>{};
      std::vector<uint8_t> png = make_png(w, h, depth, colour_type, palette, samples, {0, 1, 2, 3, 4});
      Image mask = decode_mask(png, "fixture.png");
      ASSERT_EQ(mask.width, w);
      ASSERT_EQ(mask.height, h);
      ASSERT_EQ(mask.channels, 1);
      EXPECT_EQ(mask.pixels, samples) << "colour type " << colour_type << ", depth " << depth;
    }
  }
}

TEST(ImageIo, MissingFileIsNamed) {
  expect_error([] { read_image("/nonexistent/dir/a.png"); }, "'/nonexistent/dir/a.png' does not exist");
  expect_error([] { read_mask("/nonexistent/m.png"); }, "'/nonexistent/m.png' does not exist");
}

TEST(ImageIo, CorruptFilesAreNamed) {
  TempDir dir;
  // A JPEG header followed by garbage.
  std::vector<uint8_t> jpeg = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0};
  for (int i = 0; i < 200; ++i) jpeg.push_back(static_cast<uint8_t>(i * 31));
  write_bytes(dir / "bad.jpg", jpeg);
  expect_error([&] { read_image(dir / "bad.jpg"); }, detail::concat("cannot decode '", dir / "bad.jpg", "'"));
  write_bytes(dir / "empty.png", {});
  expect_error([&] { read_image(dir / "empty.png"); }, "is empty");
  write_bytes(dir / "text.png", {'h', 'e', 'l', 'l', 'o'});
  expect_error([&] { read_mask(dir / "text.png"); },
               detail::concat("'", dir / "text.png", "' is not a PNG, JPEG or BMP"));

  std::vector<uint8_t> good = make_png(4, 4, 8, 3, grey_palette(4), std::vector<uint8_t>(16, 1), {0});
  std::vector<uint8_t> flipped = good;
  flipped[good.size() - 20] ^= 0x40;  // inside the last IDAT: CRC mismatch
  expect_error([&] { decode_mask(flipped, "flip.png"); }, "'flip.png' is a corrupt PNG: CRC mismatch in chunk 'IDAT'");
  std::vector<uint8_t> truncated(good.begin(), good.begin() + 40);
  expect_error([&] { decode_mask(truncated, "cut.png"); }, "'cut.png' is a truncated");
  expect_error([&] { decode_mask(make_png(4, 4, 8, 0, {}, std::vector<uint8_t>(16, 1), {7}), "f.png"); },
               "'f.png' is a corrupt PNG: unknown filter type 7 on row 0");
}

TEST(ImageIo, WrongKindOfMaskIsAnError) {
  TempDir dir;
  write_png(dir / "rgb.png", pattern_image(4, 4, 3));
  expect_error([&] { read_mask(dir / "rgb.png"); },
               detail::concat("'", dir / "rgb.png", "' is an RGB PNG; a mask must be"));
  write_jpeg(dir / "rgb.jpg", pattern_image(8, 8, 3));
  expect_error([&] { read_mask(dir / "rgb.jpg"); }, "has 3 channels; a mask must be a 1-channel image");
  std::vector<uint8_t> samples(16 * 2, 3);
  expect_error([&] { decode_mask(make_png(4, 4, 8, 4, {}, samples, {0}, 2), "ga.png"); },
               "'ga.png' is a PNG of colour type 4");
}

TEST(ImageIo, WritesAreAtomicAndErrorsKeepTheOldFile) {
  TempDir dir;
  Image first = pattern_image(5, 5, 3);
  write_png(dir / "x.png", first);
  expect_error([&] { write_index_png(dir / "x.png", pattern_image(5, 5, 1), grey_palette(4)); },
               "has no palette entry");
  expect_error([&] { write_png(dir / "x.png", Image(5, 5, 2)); }, "must have 1 (grey) or 3 (RGB) channels");
  EXPECT_EQ(read_image(dir / "x.png"), first);
  expect_error([&] { write_png(dir / "missing-dir/y.png", first); }, "cannot create");
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    EXPECT_EQ(entry.path().filename(), "x.png") << "temporary file left behind";
}

}  // namespace
}  // namespace se
