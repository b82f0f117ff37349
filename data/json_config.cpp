#include "data/json_config.h"

#include <algorithm>

#include "core/error.h"

namespace se {

void check_config_keys(const nlohmann::json& config, const std::vector<std::string>& valid, const std::string& what) {
  SE_CHECK(config.is_object(), what, ": expected a JSON object, got ", config.dump());
  for (const auto& [key, value] : config.items()) {
    if (std::find(valid.begin(), valid.end(), key) != valid.end()) continue;
    std::string list;
    for (const std::string& v : valid) list += (list.empty() ? "" : ", ") + v;
    SE_THROW(what, ": unknown key '", key, "'; valid keys: ", list);
  }
}

void throw_config_type_error(const std::string& key, const nlohmann::json& value, const char* expected,
                             const std::string& what) {
  SE_THROW(what, ": key '", key, "' is ", value.dump(), ", expected ", expected);
}

void throw_missing_config_key(const std::string& key, const std::string& what) {
  SE_THROW(what, ": missing required key '", key, "'");
}

}  // namespace se
