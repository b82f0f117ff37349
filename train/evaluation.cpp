// Evaluation over a loader and its reports (see evaluation.h).
#include "train/evaluation.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <utility>

#include "core/atomic_file.h"
#include "core/error.h"
#include "data/image_io.h"
#include "engine/autograd.h"
#include "train/plot.h"

namespace se {
namespace {

std::vector<std::string> checked_class_names(const std::vector<std::string>& names, int64_t num_classes,
                                             const char* op) {
  if (names.empty()) {
    std::vector<std::string> generated;
    for (int64_t c = 0; c < num_classes; ++c) generated.push_back("class " + std::to_string(c));
    return generated;
  }
  SE_CHECK(static_cast<int64_t>(names.size()) == num_classes, op, ": ", names.size(), " class names for ", num_classes,
           " classes");
  return names;
}

void check_result(const EvaluationResult& result, const char* op) {
  SE_CHECK(result.num_classes > 0 &&
               static_cast<int64_t>(result.confusion.size()) == result.num_classes * result.num_classes,
           op, ": the confusion matrix has ", result.confusion.size(), " entries for ", result.num_classes,
           " classes (expected ", result.num_classes * result.num_classes, ")");
}

// Restores the train/eval mode of every module of a model, since a model may mix them (e.g. frozen
// BatchNorm layers kept in eval while the rest trains). Modules come parent first, so setting each
// one's own mode in order (train() is recursive) leaves every module as it was.
class ModeRestorer {
 public:
  explicit ModeRestorer(models::SegmentationModel& model) {
    for (auto& [name, module] : model.named_modules()) modes_.emplace_back(module, module->is_training());
  }
  ~ModeRestorer() {
    for (auto& [module, training] : modes_) module->train(training);
  }
  ModeRestorer(const ModeRestorer&) = delete;
  ModeRestorer& operator=(const ModeRestorer&) = delete;

 private:
  std::vector<std::pair<nn::Module*, bool>> modes_;
};

// "12.34" for a fraction 0.1234, "nan" when undefined.
std::string percent(double fraction) {
  if (std::isnan(fraction)) return "nan";
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", 100.0 * fraction);
  return text;
}

// A prettytable-like box: the first row is the header; column 0 left-aligned when left_first, the rest right.
std::string format_box(const std::vector<std::vector<std::string>>& rows, bool left_first) {
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::ostringstream out;
  std::string rule = "+";
  for (size_t w : widths) rule += std::string(w + 2, '-') + "+";
  out << rule << "\n";
  for (size_t r = 0; r < rows.size(); ++r) {
    out << "|";
    for (size_t c = 0; c < rows[r].size(); ++c) {
      const std::string& cell = rows[r][c];
      const std::string fill(widths[c] - cell.size(), ' ');
      out << " " << (c == 0 && left_first ? cell + fill : fill + cell) << " |";
    }
    out << "\n";
    if (r == 0) out << rule << "\n";
  }
  out << rule << "\n";
  return out.str();
}

nlohmann::json number_or_null(double value) {
  return std::isnan(value) ? nlohmann::json(nullptr) : nlohmann::json(value);
}

// RFC 4180: fields with a comma, quote or line break are quoted, quotes doubled.
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

// matplotlib's viridis at 9 evenly spaced stops, interpolated linearly in between.
Rgb viridis(double t) {
  static constexpr std::array<Rgb, 9> kStops = {{{68, 1, 84},
                                                 {72, 40, 120},
                                                 {62, 73, 137},
                                                 {49, 104, 142},
                                                 {38, 130, 142},
                                                 {31, 158, 137},
                                                 {53, 183, 121},
                                                 {110, 206, 88},
                                                 {253, 231, 37}}};
  const double position = std::clamp(t, 0.0, 1.0) * (kStops.size() - 1);
  const size_t low = std::min(static_cast<size_t>(position), kStops.size() - 2);
  const double frac = position - static_cast<double>(low);
  Rgb color;
  for (size_t c = 0; c < 3; ++c) {
    color[c] = static_cast<uint8_t>(std::lround(kStops[low][c] * (1 - frac) + kStops[low + 1][c] * frac));
  }
  return color;
}

void fill_rect(RgbImage& image, int x0, int y0, int width, int height, Rgb color) {
  for (int y = y0; y < y0 + height; ++y) {
    for (int x = x0; x < x0 + width; ++x) image.set(x, y, color);
  }
}

}  // namespace

EvaluationResult make_evaluation_result(std::vector<int64_t> confusion, int64_t num_classes, int64_t images,
                                        double seconds) {
  EvaluationResult result;
  result.num_classes = num_classes;
  result.confusion = std::move(confusion);
  check_result(result, "make_evaluation_result");
  result.metrics = segmentation_metrics(result.confusion, num_classes);
  result.images = images;
  result.seconds = seconds;
  return result;
}

EvaluationResult evaluate(models::SegmentationModel& model, DataLoader& loader, const InferenceOptions& options,
                          int64_t ignore_index, const std::function<void(int64_t done, int64_t total)>& progress) {
  options.validate();
  const int64_t num_classes = model.num_classes();
  SE_CHECK(num_classes > 0, "evaluate: model ", model.type_name(), " has ", num_classes, " classes");
  const Device device = model_device(model, loader.options().device);
  const auto started = std::chrono::steady_clock::now();

  // The pass starts at batch 0 of the loader's epoch and the loader goes back there afterwards (also on
  // error), so repeated evaluations see the same batches.
  const LoaderState start{loader.state().epoch, 0};
  struct LoaderRewinder {
    DataLoader& loader;
    LoaderState start;
    ~LoaderRewinder() { loader.restore(start); }
  };
  if (!(loader.state() == start)) loader.restore(start);
  LoaderRewinder rewinder{loader, start};
  ModeRestorer mode_restorer(model);
  model.eval();
  NoGradGuard no_grad;

  Tensor confusion = zeros({num_classes, num_classes}, {DType::i64, device});  // (K, K)
  int64_t images = 0;
  const int64_t total = loader.batches_per_epoch();
  for (int64_t done = 0; done < total; ++done) {
    const std::optional<Batch> batch = loader.next();
    SE_CHECK(batch.has_value(), "evaluate: the loader ended after ", done, " of its ", total, " batches");
    const Tensor scores = infer(model, batch->images, options);  // (N, K, H, W)
    confusion_matrix_update(confusion, scores, batch->masks.to(device), ignore_index);
    images += batch->images.size(0);
    if (progress) progress(done + 1, total);
  }
  std::vector<int64_t> counts = confusion.to_vector<int64_t>();  // synchronises: the time below is complete
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return make_evaluation_result(std::move(counts), num_classes, images, seconds);
}

std::string format_evaluation_table(const EvaluationResult& result, const std::vector<std::string>& class_names) {
  check_result(result, "format_evaluation_table");
  const std::vector<std::string> names =
      checked_class_names(class_names, result.num_classes, "format_evaluation_table");
  const SegmentationMetrics& m = result.metrics;
  std::vector<std::vector<std::string>> per_class{{"Class", "IoU", "Acc", "Dice"}};
  for (size_t c = 0; c < names.size(); ++c) {
    per_class.push_back({names[c], percent(m.iou.at(c)), percent(m.accuracy.at(c)), percent(m.dice.at(c))});
  }
  const std::vector<std::vector<std::string>> summary{
      {"aAcc", "mIoU", "mAcc", "mDice", "fwIoU"},
      {percent(m.pixel_accuracy), percent(m.mean_iou), percent(m.mean_accuracy), percent(m.mean_dice),
       percent(m.frequency_weighted_iou)}};
  std::ostringstream out;
  out << "per class results (%):\n" << format_box(per_class, true) << "summary (%):\n" << format_box(summary, false);
  char footer[96];
  std::snprintf(footer, sizeof footer, "%lld images in %.2f s\n", static_cast<long long>(result.images),
                result.seconds);
  out << footer;
  return out.str();
}

nlohmann::json evaluation_to_json(const EvaluationResult& result, const std::vector<std::string>& class_names) {
  check_result(result, "evaluation_to_json");
  const std::vector<std::string> names = checked_class_names(class_names, result.num_classes, "evaluation_to_json");
  const SegmentationMetrics& m = result.metrics;
  nlohmann::json per_class = nlohmann::json::array();
  for (size_t c = 0; c < names.size(); ++c) {
    per_class.push_back({{"class", names[c]},
                         {"IoU", number_or_null(m.iou.at(c))},
                         {"Acc", number_or_null(m.accuracy.at(c))},
                         {"Dice", number_or_null(m.dice.at(c))}});
  }
  nlohmann::json confusion = nlohmann::json::array();
  const size_t k = static_cast<size_t>(result.num_classes);
  for (size_t row = 0; row < k; ++row) {
    confusion.push_back(std::vector<int64_t>(result.confusion.begin() + static_cast<std::ptrdiff_t>(row * k),
                                             result.confusion.begin() + static_cast<std::ptrdiff_t>((row + 1) * k)));
  }
  return {{"num_classes", result.num_classes},
          {"images", result.images},
          {"seconds", result.seconds},
          {"aAcc", number_or_null(m.pixel_accuracy)},
          {"mIoU", number_or_null(m.mean_iou)},
          {"mAcc", number_or_null(m.mean_accuracy)},
          {"mDice", number_or_null(m.mean_dice)},
          {"fwIoU", number_or_null(m.frequency_weighted_iou)},
          {"per_class", per_class},
          {"confusion", confusion}};
}

void write_confusion_csv(const std::string& path, const EvaluationResult& result,
                         const std::vector<std::string>& class_names) {
  check_result(result, "write_confusion_csv");
  const std::vector<std::string> names = checked_class_names(class_names, result.num_classes, "write_confusion_csv");
  std::ostringstream csv;
  csv << "ground_truth\\prediction";
  for (const std::string& name : names) csv << "," << csv_field(name);
  csv << "\n";
  const size_t k = names.size();
  for (size_t row = 0; row < k; ++row) {
    csv << csv_field(names[row]);
    for (size_t col = 0; col < k; ++col) csv << "," << result.confusion[row * k + col];
    csv << "\n";
  }
  write_file_atomic(path, csv.str());
}

HeatmapGeometry confusion_heatmap_size(int64_t num_classes, bool with_palette) {
  SE_CHECK(num_classes > 0, "confusion_heatmap_size: ", num_classes, " classes");
  HeatmapGeometry g;
  g.cell = static_cast<int>(std::clamp<int64_t>((480 + num_classes / 2) / num_classes, 4, 48));
  g.strip = with_palette ? std::max(4, g.cell / 3) : 0;
  const int margin = with_palette ? g.strip + 2 : 0;  // the strip, then a 2-pixel white gap
  g.width = g.height = margin + static_cast<int>(num_classes) * g.cell;
  return g;
}

void write_confusion_heatmap(const std::string& path, const EvaluationResult& result, const std::vector<Rgb>& palette) {
  check_result(result, "write_confusion_heatmap");
  const int64_t k = result.num_classes;
  SE_CHECK(palette.empty() || static_cast<int64_t>(palette.size()) >= k, "write_confusion_heatmap: '", path,
           "': the palette has ", palette.size(), " colours for ", k, " classes");
  const HeatmapGeometry g = confusion_heatmap_size(k, !palette.empty());
  const int margin = g.width - static_cast<int>(k) * g.cell;
  const Rgb kWhite{255, 255, 255}, kNoPixels{225, 225, 225}, kBlack{0, 0, 0};
  RgbImage image(g.width, g.height, kWhite);
  const bool labelled = g.cell >= 28;  // room for "100" in the 5x8 font with a margin
  for (int64_t row = 0; row < k; ++row) {
    int64_t row_total = 0;
    for (int64_t col = 0; col < k; ++col) row_total += result.confusion[static_cast<size_t>(row * k + col)];
    const int y = margin + static_cast<int>(row) * g.cell;
    if (!palette.empty()) {
      fill_rect(image, 0, y, g.strip, g.cell, palette[static_cast<size_t>(row)]);
      fill_rect(image, y, 0, g.cell, g.strip, palette[static_cast<size_t>(row)]);  // column `row`'s colour
    }
    for (int64_t col = 0; col < k; ++col) {
      const int x = margin + static_cast<int>(col) * g.cell;
      if (row_total == 0) {
        fill_rect(image, x, y, g.cell, g.cell, kNoPixels);
        continue;
      }
      const double share =
          static_cast<double>(result.confusion[static_cast<size_t>(row * k + col)]) / static_cast<double>(row_total);
      fill_rect(image, x, y, g.cell, g.cell, viridis(share));
      if (labelled) {
        const std::string text = std::to_string(std::lround(100 * share));
        draw_text(image, x + (g.cell - text_width(text)) / 2, y + (g.cell - kGlyphHeight) / 2, text,
                  share > 0.6 ? kBlack : kWhite);
      }
    }
  }
  write_png(path, image);
}

void write_prediction_pngs(const std::string& index_png_path, const std::string& overlay_png_path, const Image& image,
                           const Tensor& prediction, const std::vector<Rgb>& palette) {
  const char* op = "write_prediction_pngs";
  SE_CHECK(image.channels == 3 && !image.empty(), op, ": image ", image_shape_str(image), " is not RGB");
  SE_CHECK(prediction.defined() && prediction.dim() == 2 && prediction.dtype() == DType::i64 &&
               prediction.size(0) == image.height && prediction.size(1) == image.width,
           op, ": prediction must be (", image.height, ", ", image.width, ") i64 to match image ",
           image_shape_str(image), ", got ", prediction.defined() ? shape_str(prediction.shape()) : "(undefined)", " ",
           prediction.defined() ? std::string(dtype_name(prediction.dtype())) : std::string());
  SE_CHECK(!palette.empty() && palette.size() <= 256, op, ": the palette has ", palette.size(),
           " colours (expected 1 to 256: index PNGs are 8-bit)");
  const std::vector<int64_t> classes = prediction.to_vector<int64_t>();
  Image index(image.width, image.height, 1);
  Image overlay(image.width, image.height, 3);
  for (size_t p = 0; p < classes.size(); ++p) {
    const int64_t c = classes[p];
    SE_CHECK(c >= 0 && c < static_cast<int64_t>(palette.size()), op, ": predicted class ", c, " at pixel (",
             p / static_cast<size_t>(image.width), ", ", p % static_cast<size_t>(image.width),
             ") has no palette colour (", palette.size(), " colours)");
    index.pixels[p] = static_cast<uint8_t>(c);
    for (size_t ch = 0; ch < 3; ++ch) {  // alpha 0.5, rounded half up
      overlay.pixels[3 * p + ch] =
          static_cast<uint8_t>((image.pixels[3 * p + ch] + palette[static_cast<size_t>(c)][ch] + 1) / 2);
    }
  }
  write_index_png(index_png_path, index, palette);
  write_png(overlay_png_path, overlay);
}

}  // namespace se
