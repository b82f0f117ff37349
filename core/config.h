// Configuration files: JSON with inheritance ("base"), command-line overrides and a typed reader that
// turns every key nobody read into an error.
//
//   Config cfg = Config::load("configs/unet.json");      // resolves "base" files
//   cfg.set("optimizer.lr=0.02");                         // --set, value parsed as JSON else a string
//   int64_t crop = cfg.get<int64_t>("crop_size", 512);    // typed, with a default
//   Config opt = cfg.sub("optimizer");                    // a view of a nested object
//   double lr = opt.get<double>("lr");                    // required: missing is an error
//   cfg.finish();  // any key that was never asked for is an error suggesting the closest valid key
//
// File rules: "base" is a path (or a list of paths, merged in order) relative to the file that names
// it; bases resolve recursively and are merged below the file: objects merge key by key, null removes
// the inherited key (e.g. "momentum": null when a base's SGD becomes AdamW), any other value replaces. Cycles are errors. Comments (// and /* */) are allowed.
//
// The schema is what the consumers ask for: every key read with get/sub/sub_list/raw/has (present or
// not) is a valid key at its level. --set may therefore create keys anywhere (a consumer may read a
// key the files leave out); a created key no consumer asks for is reported by finish() like a typo in
// a file, with "--set" as its origin. Setting a key under a value that is not an object is an error.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace se {

class Config {
 public:
  Config();  // an empty object

  // Reads `path` and its bases. Errors name the file (and line and column for malformed JSON).
  static Config load(const std::string& path);
  // From JSON text; `origin` names it in errors (e.g. "<string>"); "base" paths are relative to `dir`.
  static Config parse(std::string_view text, const std::string& origin = "<string>", const std::string& dir = ".");
  static Config from_json(const nlohmann::json& value, const std::string& origin = "<json>");

  // One override "a.b.c=value" (list elements as "a.b[2]"): the value is parsed as JSON, and taken
  // as a string when that fails. Objects merge into objects; other values replace. Only on the root.
  void set(std::string_view assignment);
  void set_all(const std::vector<std::string>& assignments);

  // ---- typed reads, relative to this view. T: bool, int64_t, int, double, float, std::string,
  // std::vector<int64_t>, std::vector<double>, std::vector<std::string>, nlohmann::json (taken
  // whole). A key with dots is a path: get<double>("optimizer.lr") == sub("optimizer").get<double>("lr").
  template <typename T> T get(std::string_view key) const;  // missing key: error
  template <typename T> T get(std::string_view key, const T& fallback) const;
  bool has(std::string_view key) const;  // also declares `key` valid
  // A view of the object under `key`; an empty object when the key is absent, so gets use defaults.
  Config sub(std::string_view key) const;
  // Views of the objects in the list under `key` (absent: empty list); paths read "key[i]".
  std::vector<Config> sub_list(std::string_view key) const;
  // Names of the keys of this view's object (for maps with free-form keys, e.g. class weights).
  std::vector<std::string> keys() const;

  // Every key present but never asked for is an error: its dotted path, the file it came from, the
  // closest valid key (edit distance) and the valid keys at its level. Call once, after all reads.
  void finish() const;

  const nlohmann::json& document() const;  // the merged document under this view (empty object when absent)
  std::string dump(int indent = 2) const;
  const std::string& path() const { return prefix_; }  // dotted path of this view ("" for the root)

 private:
  struct State;
  Config(std::shared_ptr<State> state, std::string prefix);
  const nlohmann::json* find(std::string_view key) const;  // nullptr when absent
  std::string full_key(std::string_view key) const;
  std::string origin_of(const std::string& full_key) const;
  void declare(std::string_view key, bool whole) const;

  std::shared_ptr<State> state_;
  std::string prefix_;
};

// Levenshtein distance (insert, delete, substitute): how "did you mean" suggestions are chosen.
size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace se
