// Helpers shared by the engine tests.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "core/error.h"

namespace se::testing {

// The message of the se::Error that `f` throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Expects `f` to throw se::Error whose message contains `message`.
inline void expect_error(const std::function<void()>& f, const std::string& message) {
  std::string actual = error_of(f);
  EXPECT_NE(actual.find(message), std::string::npos) << "expected an se::Error containing '" << message
                                                     << "', got: " << actual;
}

}  // namespace se::testing
