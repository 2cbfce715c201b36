// The engine's error type. sdk code throws reason::Error; the C ABI catches it at the
// boundary and turns it into a reason_status plus a thread-local message.
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace reason {

// Mirrors reason_status in capi/include/reason.h (same numeric values).
enum class ErrorCode : int {
  Ok = 0,
  InvalidArgument = 1,  // a caller passed something wrong (null, out of range, bad option)
  Io = 2,               // a file could not be opened/read/written
  Format = 3,           // a file is malformed (corrupt, truncated, hostile)
  Unsupported = 4,      // valid but not supported (unknown architecture, dtype)
  OutOfMemory = 5,
  Backend = 6,          // a compute backend failed
  Cancelled = 7,        // stopped by a callback
  Internal = 8,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

template <typename... Args>
[[noreturn]] inline void fail(ErrorCode code, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(code, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace reason
