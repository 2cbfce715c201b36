// expect_error(f, code, words): runs f, which must throw reason::Error with `code` and a message
// containing every one of `words` (the error names the field, file, line or request).
#pragma once
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "core/error.h"

namespace reason::test {

template <typename F>
void expect_error(F&& f, ErrorCode code, const std::vector<std::string>& words) {
  try {
    f();
    FAIL("no error was thrown");
  } catch (const Error& e) {
    INFO(e.what());
    CHECK(e.code() == code);
    for (const auto& w : words) CHECK_THAT(std::string(e.what()), Catch::Contains(w));
  }
}

}  // namespace reason::test
