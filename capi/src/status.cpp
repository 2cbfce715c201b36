// Thread-local last-error storage, status names, version queries and reason_free.
#include <cstdlib>
#include <string>

#include "capi_internal.h"
#include "reason.h"

namespace reason::capi {

static thread_local std::string t_last_error;

void set_last_error(std::string msg) { t_last_error = std::move(msg); }

}  // namespace reason::capi

extern "C" {

REASON_API const char* reason_last_error(void) { return reason::capi::t_last_error.c_str(); }

REASON_API const char* reason_status_name(reason_status s) {
  switch (s) {
    case REASON_OK: return "REASON_OK";
    case REASON_ERR_INVALID_ARGUMENT: return "REASON_ERR_INVALID_ARGUMENT";
    case REASON_ERR_IO: return "REASON_ERR_IO";
    case REASON_ERR_FORMAT: return "REASON_ERR_FORMAT";
    case REASON_ERR_UNSUPPORTED: return "REASON_ERR_UNSUPPORTED";
    case REASON_ERR_OUT_OF_MEMORY: return "REASON_ERR_OUT_OF_MEMORY";
    case REASON_ERR_BACKEND: return "REASON_ERR_BACKEND";
    case REASON_ERR_CANCELLED: return "REASON_ERR_CANCELLED";
    case REASON_ERR_INTERNAL: return "REASON_ERR_INTERNAL";
  }
  return "REASON_ERR_UNKNOWN";
}

REASON_API const char* reason_version(void) { return REASON_VERSION_STRING; }

REASON_API void reason_version_numbers(int* major, int* minor, int* patch) {
  if (major) *major = REASON_VERSION_MAJOR;
  if (minor) *minor = REASON_VERSION_MINOR;
  if (patch) *patch = REASON_VERSION_PATCH;
}

REASON_API void reason_free(void* ptr) { std::free(ptr); }

}  // extern "C"
