// Reading the JSON objects that configure datasets and transforms: unknown keys are errors that list
// the valid ones, and a value of the wrong type names its key and the expected type.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <type_traits>
#include <vector>

namespace se {

// Throws when `config` is not an object or has a key outside `valid`; `what` names the object in
// messages, e.g. "dataset 'synthetic'".
void check_config_keys(const nlohmann::json& config, const std::vector<std::string>& valid, const std::string& what);

[[noreturn]] void throw_config_type_error(const std::string& key, const nlohmann::json& value, const char* expected,
                                          const std::string& what);
[[noreturn]] void throw_missing_config_key(const std::string& key, const std::string& what);

template <typename T>
constexpr const char* config_type_name() {
  if constexpr (std::is_same_v<T, bool>)
    return "a boolean";
  else if constexpr (std::is_integral_v<T>)
    return "an integer";
  else if constexpr (std::is_floating_point_v<T>)
    return "a number";
  else if constexpr (std::is_same_v<T, std::string>)
    return "a string";
  else
    return "a list";
}

// config[key] as T; a present value of the wrong type is an error.
template <typename T>
T config_as(const nlohmann::json& value, const std::string& key, const std::string& what) {
  bool ok;
  if constexpr (std::is_same_v<T, bool>)
    ok = value.is_boolean();
  else if constexpr (std::is_integral_v<T>)
    ok = value.is_number_integer();
  else if constexpr (std::is_floating_point_v<T>)
    ok = value.is_number();
  else if constexpr (std::is_same_v<T, std::string>)
    ok = value.is_string();
  else
    ok = value.is_array();
  if (ok) {
    try {
      return value.template get<T>();
    } catch (const nlohmann::json::exception&) {
    }
  }
  throw_config_type_error(key, value, config_type_name<T>(), what);
}

// config[key] as T, or `fallback` when absent.
template <typename T>
T config_value(const nlohmann::json& config, const std::string& key, const T& fallback, const std::string& what) {
  auto it = config.find(key);
  return it == config.end() ? fallback : config_as<T>(*it, key, what);
}

// config[key] as T; absent is an error.
template <typename T>
T config_required(const nlohmann::json& config, const std::string& key, const std::string& what) {
  auto it = config.find(key);
  if (it == config.end()) throw_missing_config_key(key, what);
  return config_as<T>(*it, key, what);
}

}  // namespace se
