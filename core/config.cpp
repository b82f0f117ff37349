#include "core/config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace se {

using nlohmann::json;
namespace fs = std::filesystem;

// Where each key came from, keyed by dotted path ("optimizer.lr", "losses[0].type").
using Origins = std::map<std::string, std::string>;

struct Config::State {
  json root = json::object();
  Origins origins;
  // Keys asked for, by the dotted path of their parent ("" for the top level): the schema.
  std::map<std::string, std::set<std::string>> valid;
  // Paths read as one value (scalars, lists, raw objects): finish() does not look inside them.
  std::set<std::string> whole;
  std::string root_origin = "<empty config>";  // the file (or text) the document was loaded from
};

namespace {

std::string join_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

bool is_under(const std::string& path, const std::string& root) {
  if (path.size() < root.size() || path.compare(0, root.size(), root) != 0) return false;
  return path.size() == root.size() || path[root.size()] == '.' || path[root.size()] == '[';
}

// Records `origin` for every object key at or below `value` (at path `path`).
void record_origins(const json& value, const std::string& path, const std::string& origin, Origins& origins) {
  if (!path.empty()) origins[path] = origin;
  if (value.is_object()) {
    for (auto it = value.begin(); it != value.end(); ++it) {
      record_origins(it.value(), join_path(path, it.key()), origin, origins);
    }
  } else if (value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i) {
      record_origins(value[i], path + "[" + std::to_string(i) + "]", origin, origins);
    }
  }
}

void erase_origins_under(Origins& origins, const std::string& path) {
  for (auto it = origins.begin(); it != origins.end();) {
    it = is_under(it->first, path) ? origins.erase(it) : std::next(it);
  }
}

// Deep merge of `src` over `dst`: objects merge key by key, null deletes (JSON merge patch), anything
// else replaces.
void merge_into(json& dst, Origins& dst_origins, const json& src, const Origins& src_origins,
                const std::string& path) {
  for (auto it = src.begin(); it != src.end(); ++it) {
    const std::string child = join_path(path, it.key());
    if (it.value().is_null()) {
      dst.erase(it.key());
      erase_origins_under(dst_origins, child);
      continue;
    }
    auto existing = dst.find(it.key());
    if (existing != dst.end() && existing->is_object() && it.value().is_object()) {
      merge_into(*existing, dst_origins, it.value(), src_origins, child);
      auto own = src_origins.find(child);
      if (own != src_origins.end()) dst_origins[child] = own->second;
      continue;
    }
    dst[it.key()] = it.value();
    erase_origins_under(dst_origins, child);
    for (auto o = src_origins.lower_bound(child); o != src_origins.end() && o->first.compare(0, child.size(), child) == 0;
         ++o) {
      if (is_under(o->first, child)) dst_origins[o->first] = o->second;
    }
  }
}

std::string read_file_text(const std::string& path, const std::string& included_from) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (included_from.empty()) SE_THROW("config: cannot open '", path, "'");
    SE_THROW("config: cannot open '", path, "' (the base of '", included_from, "')");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// nlohmann's parse error message without its "[json.exception...] parse error at line L, column C: " prefix.
std::string parse_error_reason(const json::parse_error& e) {
  std::string what = e.what();
  auto pos = what.find(": ");
  auto at_line = what.find(" at line ");
  if (at_line != std::string::npos) pos = what.find(": ", at_line);
  return pos == std::string::npos ? what : what.substr(pos + 2);
}

json parse_json_text(std::string_view text, const std::string& origin) {
  try {
    return json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    // e.byte is the 1-based position of the character where parsing failed.
    const size_t end = std::min(text.size(), e.byte == 0 ? size_t{0} : e.byte - 1);
    size_t line = 1, column = 1;
    for (size_t i = 0; i < end; ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    SE_THROW("config: ", origin, ":", line, ":", column, ": malformed JSON: ", parse_error_reason(e));
  }
}

struct Loaded {
  json value;
  Origins origins;
};

Loaded resolve(json document, const std::string& origin, const fs::path& dir, std::vector<std::string>& stack);

Loaded load_file(const fs::path& path, const std::string& included_from, std::vector<std::string>& stack) {
  const std::string key = fs::weakly_canonical(path).string();
  if (std::find(stack.begin(), stack.end(), key) != stack.end()) {
    std::string chain;
    for (const std::string& s : stack) chain += s + " -> ";
    SE_THROW("config: 'base' cycle: ", chain, key);
  }
  const std::string origin = path.string();
  json document = parse_json_text(read_file_text(origin, included_from), origin);
  SE_CHECK(document.is_object(), "config: ", origin, ": the top level must be a JSON object, got ",
           document.type_name());
  stack.push_back(key);
  Loaded loaded = resolve(std::move(document), origin, path.parent_path(), stack);
  stack.pop_back();
  return loaded;
}

// Merges the bases named by document["base"] below the document itself.
Loaded resolve(json document, const std::string& origin, const fs::path& dir, std::vector<std::string>& stack) {
  std::vector<std::string> bases;
  if (auto it = document.find("base"); it != document.end()) {
    if (it->is_string()) {
      bases.push_back(it->get<std::string>());
    } else if (it->is_array() && std::all_of(it->begin(), it->end(), [](const json& b) { return b.is_string(); })) {
      for (const json& b : *it) bases.push_back(b.get<std::string>());
    } else {
      SE_THROW("config: ", origin, ": 'base' must be a path or a list of paths, got ", it->dump());
    }
    document.erase(it);
  }
  Loaded result{json::object(), {}};
  for (const std::string& base : bases) {
    Loaded loaded = load_file(dir / base, origin, stack);
    merge_into(result.value, result.origins, loaded.value, loaded.origins, "");
  }
  Origins own;
  record_origins(document, "", origin, own);
  merge_into(result.value, result.origins, document, own, "");
  return result;
}

// "a.b[2].c" -> {"a", "b", "[2]", "c"}: object keys, and list indices in brackets.
std::vector<std::string> split_key_path(std::string_view path, std::string_view context) {
  std::vector<std::string> parts;
  std::string current;
  auto flush = [&] {
    SE_CHECK(!current.empty(), "config: empty key in '", context, "'");
    parts.push_back(current);
    current.clear();
  };
  for (size_t i = 0; i < path.size(); ++i) {
    const char c = path[i];
    if (c == '.') {
      if (!parts.empty() && parts.back().front() == '[' && current.empty()) continue;  // "a[0].b"
      flush();
    } else if (c == '[') {
      flush();
      const size_t close = path.find(']', i);
      SE_CHECK(close != std::string_view::npos && close > i + 1, "config: unclosed '[' in '", context, "'");
      const std::string_view digits = path.substr(i + 1, close - i - 1);
      SE_CHECK(std::all_of(digits.begin(), digits.end(), [](char d) { return d >= '0' && d <= '9'; }),
               "config: list index '", digits, "' in '", context, "' is not a number");
      std::string index(1, '[');  // (not "[" + ...: GCC 12 warns falsely about that concatenation)
      index.append(digits);
      index.push_back(']');
      parts.push_back(std::move(index));
      i = close;
    } else {
      current += c;
    }
  }
  if (!current.empty() || parts.empty() || parts.back().front() != '[') flush();
  return parts;
}

std::string describe(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text + " (" + value.type_name() + ")";
}

// Conversions with the expected type spelled out for errors.
template <typename T> struct Reader;

template <> struct Reader<bool> {
  static constexpr const char* expected = "a boolean";
  static bool ok(const json& v) { return v.is_boolean(); }
  static bool read(const json& v) { return v.get<bool>(); }
};

bool is_integer(const json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return d == static_cast<double>(static_cast<int64_t>(d)) && std::abs(d) < 9.0e15;
}

template <> struct Reader<int64_t> {
  static constexpr const char* expected = "an integer";
  static bool ok(const json& v) { return is_integer(v); }
  static int64_t read(const json& v) {
    return v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(v.get<double>());
  }
};

template <> struct Reader<int> {
  static constexpr const char* expected = "a 32-bit integer";
  static bool ok(const json& v) {
    if (!is_integer(v)) return false;
    const int64_t i = Reader<int64_t>::read(v);
    return i >= INT32_MIN && i <= INT32_MAX;
  }
  static int read(const json& v) { return static_cast<int>(Reader<int64_t>::read(v)); }
};

template <> struct Reader<double> {
  static constexpr const char* expected = "a number";
  static bool ok(const json& v) { return v.is_number(); }
  static double read(const json& v) { return v.get<double>(); }
};

template <> struct Reader<float> {
  static constexpr const char* expected = "a number";
  static bool ok(const json& v) { return v.is_number(); }
  static float read(const json& v) { return static_cast<float>(v.get<double>()); }
};

template <> struct Reader<std::string> {
  static constexpr const char* expected = "a string";
  static bool ok(const json& v) { return v.is_string(); }
  static std::string read(const json& v) { return v.get<std::string>(); }
};

template <typename E> struct ListReader {
  static bool ok(const json& v) {
    return v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) { return Reader<E>::ok(e); });
  }
  static std::vector<E> read(const json& v) {
    std::vector<E> out;
    for (const json& e : v) out.push_back(Reader<E>::read(e));
    return out;
  }
};

template <> struct Reader<std::vector<int64_t>> : ListReader<int64_t> {
  static constexpr const char* expected = "a list of integers";
};
template <> struct Reader<std::vector<double>> : ListReader<double> {
  static constexpr const char* expected = "a list of numbers";
};
template <> struct Reader<std::vector<std::string>> : ListReader<std::string> {
  static constexpr const char* expected = "a list of strings";
};

template <> struct Reader<json> {
  static constexpr const char* expected = "a JSON value";
  static bool ok(const json&) { return true; }
  static json read(const json& v) { return v; }
};

}  // namespace

// ---- construction

Config::Config() : state_(std::make_shared<State>()) {}

Config::Config(std::shared_ptr<State> state, std::string prefix) : state_(std::move(state)), prefix_(std::move(prefix)) {}

Config Config::load(const std::string& path) {
  std::vector<std::string> stack;
  Loaded loaded = load_file(path, "", stack);
  Config config;
  config.state_->root = std::move(loaded.value);
  config.state_->origins = std::move(loaded.origins);
  config.state_->root_origin = path;
  return config;
}

Config Config::parse(std::string_view text, const std::string& origin, const std::string& dir) {
  json document = parse_json_text(text, origin);
  SE_CHECK(document.is_object(), "config: ", origin, ": the top level must be a JSON object, got ",
           document.type_name());
  std::vector<std::string> stack;
  Loaded loaded = resolve(std::move(document), origin, dir, stack);
  Config config;
  config.state_->root = std::move(loaded.value);
  config.state_->origins = std::move(loaded.origins);
  config.state_->root_origin = origin;
  return config;
}

Config Config::from_json(const json& value, const std::string& origin) {
  SE_CHECK(value.is_object(), "config: ", origin, ": the top level must be a JSON object, got ", value.type_name());
  Config config;
  config.state_->root = value;
  record_origins(value, "", origin, config.state_->origins);
  config.state_->root_origin = origin;
  return config;
}

// ---- overrides

void Config::set(std::string_view assignment) {
  SE_CHECK(prefix_.empty(), "config: set('", assignment, "') on the view '", prefix_, "' (only on the root)");
  const size_t eq = assignment.find('=');
  SE_CHECK(eq != std::string_view::npos && eq > 0, "config: override '", assignment,
           "' is not of the form key.path=value");
  const std::string_view key = assignment.substr(0, eq);
  const std::string_view text = assignment.substr(eq + 1);
  json value;
  try {
    value = json::parse(text.begin(), text.end());
  } catch (const json::parse_error&) {
    value = std::string(text);  // not JSON: a bare string such as unet or cuda:0
  }
  const std::vector<std::string> parts = split_key_path(key, assignment);
  const std::string origin = "--set " + std::string(assignment);

  json* node = &state_->root;
  std::string path;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    const bool last = i + 1 == parts.size();
    if (part.front() == '[') {
      const size_t index = std::stoull(part.substr(1, part.size() - 2));
      SE_CHECK(node->is_array(), "config: ", origin, ": '", path, "' is ", describe(*node), ", not a list");
      SE_CHECK(index < node->size(), "config: ", origin, ": index ", index, " is out of range for '", path,
               "' (", node->size(), " elements)");
      path += part;
      node = &(*node)[index];
    } else {
      SE_CHECK(node->is_object(), "config: ", origin, ": '", path, "' is ", describe(*node),
               ", not an object, so it has no key '", part, "'");
      path = join_path(path, part);
      if (!last && !node->contains(part)) (*node)[part] = json::object();
      node = &(*node)[part];
    }
    if (last) {
      if (node->is_object() && !node->empty() && !value.is_object()) {
        SE_THROW("config: ", origin, ": '", path, "' is an object; set its keys instead (e.g. ", path, ".",
                 node->begin().key(), "=...)");
      }
      if (node->is_object() && value.is_object()) {
        Origins own;
        record_origins(value, path, origin, own);
        merge_into(*node, state_->origins, value, own, path);
      } else {
        *node = value;
        erase_origins_under(state_->origins, path);
        record_origins(value, path, origin, state_->origins);
      }
      state_->origins[path] = origin;
    }
  }
}

void Config::set_all(const std::vector<std::string>& assignments) {
  for (const std::string& a : assignments) set(a);
}

// ---- reads

std::string Config::full_key(std::string_view key) const { return join_path(prefix_, key); }

const json* Config::find(std::string_view key) const {
  // Walk the view's path from the root: views stay valid however the document was built.
  const json* node = &state_->root;
  if (!prefix_.empty()) {
    for (const std::string& part : split_key_path(prefix_, prefix_)) {
      if (part.front() == '[') {
        const size_t index = std::stoull(part.substr(1, part.size() - 2));
        if (!node->is_array() || index >= node->size()) return nullptr;
        node = &(*node)[index];
      } else {
        if (!node->is_object()) return nullptr;
        auto it = node->find(part);
        if (it == node->end()) return nullptr;
        node = &*it;
      }
    }
  }
  if (key.empty()) return node;
  if (!node->is_object()) return nullptr;
  auto it = node->find(std::string(key));
  return it == node->end() ? nullptr : &*it;
}

void Config::declare(std::string_view key, bool whole) const {
  state_->valid[prefix_].insert(std::string(key));
  if (whole) state_->whole.insert(full_key(key));
}

std::string Config::origin_of(const std::string& path) const {
  std::string p = path;
  while (!p.empty()) {
    auto it = state_->origins.find(p);
    if (it != state_->origins.end()) return it->second;
    const size_t cut = p.find_last_of(".[");
    p = cut == std::string::npos ? "" : p.substr(0, cut);
  }
  return state_->root_origin;
}

namespace {

// "a.b.c" -> ("a.b", "c"), splitting the view path from the last key.
std::pair<std::string, std::string> split_last(std::string_view key) {
  const size_t dot = key.rfind('.');
  if (dot == std::string_view::npos) return {"", std::string(key)};
  return {std::string(key.substr(0, dot)), std::string(key.substr(dot + 1))};
}

}  // namespace

template <typename T>
T Config::get(std::string_view key) const {
  if (auto [parent, last] = split_last(key); !parent.empty()) return sub(parent).get<T>(last);
  declare(key, true);
  const json* value = find(key);
  if (value == nullptr) {
    SE_THROW("config: missing key '", full_key(key), "' (expected ", Reader<T>::expected, ") in ",
             origin_of(prefix_));
  }
  if (!Reader<T>::ok(*value)) {
    SE_THROW("config: key '", full_key(key), "' (", origin_of(full_key(key)), "): expected ", Reader<T>::expected,
             ", got ", describe(*value));
  }
  return Reader<T>::read(*value);
}

template <typename T>
T Config::get(std::string_view key, const T& fallback) const {
  if (auto [parent, last] = split_last(key); !parent.empty()) return sub(parent).get<T>(last, fallback);
  declare(key, true);
  if (find(key) == nullptr) return fallback;
  return get<T>(key);
}

#define SE_CONFIG_INSTANTIATE(T)                     \
  template T Config::get<T>(std::string_view) const; \
  template T Config::get<T>(std::string_view, const T&) const;
SE_CONFIG_INSTANTIATE(bool)
SE_CONFIG_INSTANTIATE(int64_t)
SE_CONFIG_INSTANTIATE(int)
SE_CONFIG_INSTANTIATE(double)
SE_CONFIG_INSTANTIATE(float)
SE_CONFIG_INSTANTIATE(std::string)
SE_CONFIG_INSTANTIATE(std::vector<int64_t>)
SE_CONFIG_INSTANTIATE(std::vector<double>)
SE_CONFIG_INSTANTIATE(std::vector<std::string>)
SE_CONFIG_INSTANTIATE(json)
#undef SE_CONFIG_INSTANTIATE

bool Config::has(std::string_view key) const {
  if (auto [parent, last] = split_last(key); !parent.empty()) return sub(parent).has(last);
  declare(key, false);
  return find(key) != nullptr;
}

Config Config::sub(std::string_view key) const {
  if (auto [parent, last] = split_last(key); !parent.empty()) return sub(parent).sub(last);
  declare(key, false);
  const json* value = find(key);
  SE_CHECK(value == nullptr || value->is_object(), "config: key '", full_key(key), "' (",
           origin_of(full_key(key)), "): expected an object, got ", describe(*value));
  return Config(state_, full_key(key));
}

std::vector<Config> Config::sub_list(std::string_view key) const {
  if (auto [parent, last] = split_last(key); !parent.empty()) return sub(parent).sub_list(last);
  declare(key, false);
  const json* value = find(key);
  if (value == nullptr) return {};
  const bool objects =
      value->is_array() && std::all_of(value->begin(), value->end(), [](const json& e) { return e.is_object(); });
  SE_CHECK(objects, "config: key '", full_key(key), "' (", origin_of(full_key(key)),
           "): expected a list of objects, got ", describe(*value));
  std::vector<Config> views;
  for (size_t i = 0; i < value->size(); ++i) views.push_back(Config(state_, full_key(key) + "[" + std::to_string(i) + "]"));
  return views;
}

std::vector<std::string> Config::keys() const {
  std::vector<std::string> names;
  const json* node = find("");
  if (node == nullptr || !node->is_object()) return names;
  for (auto it = node->begin(); it != node->end(); ++it) names.push_back(it.key());
  return names;
}

const json& Config::document() const {
  static const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json* node = find("");
  return node == nullptr ? empty : *node;
}

std::string Config::dump(int indent) const { return document().dump(indent); }

// ---- finish

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

void Config::finish() const {
  std::vector<std::string> problems;
  // Walks the document; `path` is the dotted path of `node`.
  auto check = [&](auto&& self, const nlohmann::json& node, const std::string& path) -> void {
    if (node.is_array()) {
      for (size_t i = 0; i < node.size(); ++i) self(self, node[i], path + "[" + std::to_string(i) + "]");
      return;
    }
    if (!node.is_object()) return;
    const auto valid_it = state_->valid.find(path);
    const std::set<std::string> none;
    const std::set<std::string>& valid = valid_it == state_->valid.end() ? none : valid_it->second;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const std::string child = join_path(path, it.key());
      if (valid.count(it.key()) != 0) {
        if (state_->whole.count(child) == 0) self(self, it.value(), child);
        continue;
      }
      std::string message = "unknown key '" + child + "' (" + origin_of(child) + ")";
      if (valid.empty()) {
        message += path.empty() ? ": no keys are read at the top level"
                                : ": nothing reads keys under '" + path + "'";
      } else {
        const std::string* best = nullptr;
        size_t best_distance = SIZE_MAX;
        for (const std::string& name : valid) {
          const size_t d = edit_distance(it.key(), name);
          if (d < best_distance) best_distance = d, best = &name;
        }
        if (best_distance <= std::max<size_t>(2, it.key().size() / 2)) {
          message += ": did you mean '" + join_path(path, *best) + "'?";
        } else {
          message += ".";
        }
        message += path.empty() ? " Valid top-level keys: " : " Valid keys in '" + path + "': ";
        bool first = true;
        for (const std::string& name : valid) {
          message += (first ? "" : ", ") + name;
          first = false;
        }
      }
      problems.push_back(message);
    }
  };
  const nlohmann::json* node = find("");
  if (node != nullptr) check(check, *node, prefix_);
  if (problems.empty()) return;
  std::string message = "config: ";
  for (size_t i = 0; i < problems.size(); ++i) message += (i == 0 ? "" : "; ") + problems[i];
  SE_THROW(message);
}

}  // namespace se
