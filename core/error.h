// se::Error: the one exception type of the library. Messages name the place (file:line), the op and
// what was expected, e.g. "engine/ops.cpp:42: add: shapes (2, 3) and (4,) do not broadcast".
// Only tools/ catches it and turns it into an exit code.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace se {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {

template <typename... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

[[noreturn]] inline void throw_error(const char* file, int line, const std::string& message) {
  std::string where = file;
  // Report paths relative to the source tree: keep what follows the last top-level folder name.
  for (const char* root : {"/core/", "/kernels/", "/engine/", "/nn/", "/models/", "/data/", "/train/",
                           "/tools/", "/tests/", "/bench/"}) {
    auto pos = where.rfind(root);
    if (pos != std::string::npos) {
      where = where.substr(pos + 1);
      break;
    }
  }
  throw Error(where + ":" + std::to_string(line) + ": " + message);
}

}  // namespace detail
}  // namespace se

// SE_THROW("op: ", "what was wrong ", value): throws se::Error with file:line in front.
#define SE_THROW(...) ::se::detail::throw_error(__FILE__, __LINE__, ::se::detail::concat(__VA_ARGS__))

// SE_CHECK(cond, "op: ", "what was expected"): throws se::Error when cond is false.
#define SE_CHECK(cond, ...)                                                          \
  do {                                                                               \
    if (!(cond)) ::se::detail::throw_error(__FILE__, __LINE__, ::se::detail::concat(__VA_ARGS__)); \
  } while (0)
