// Internal to the C ABI implementation: exception-to-status translation and allocation of
// memory handed to callers (malloc'd so that reason_free == free).
#pragma once
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "core/error.h"
#include "reason.h"
#include "reason/kernels/backend.h"

namespace reason::capi {

// guard() casts the engine's error codes to reason_status: they must stay equal, value by value.
#define REASON_SAME_CODE(e, s) static_assert(static_cast<int>(reason::ErrorCode::e) == static_cast<int>(s), #e " != " #s)
REASON_SAME_CODE(Ok, REASON_OK);
REASON_SAME_CODE(InvalidArgument, REASON_ERR_INVALID_ARGUMENT);
REASON_SAME_CODE(Io, REASON_ERR_IO);
REASON_SAME_CODE(Format, REASON_ERR_FORMAT);
REASON_SAME_CODE(Unsupported, REASON_ERR_UNSUPPORTED);
REASON_SAME_CODE(OutOfMemory, REASON_ERR_OUT_OF_MEMORY);
REASON_SAME_CODE(Backend, REASON_ERR_BACKEND);
REASON_SAME_CODE(Cancelled, REASON_ERR_CANCELLED);
REASON_SAME_CODE(Internal, REASON_ERR_INTERNAL);
#undef REASON_SAME_CODE

void set_last_error(std::string msg);

inline reason_status fail_with(reason_status s, std::string msg) {
  set_last_error(std::move(msg));
  return s;
}

// Runs f (which returns void) and converts any exception into a status + message.
template <typename F>
reason_status guard(const char* fn, F&& f) noexcept {
  try {
    f();
    return REASON_OK;
  } catch (const reason::Error& e) {
    return fail_with(static_cast<reason_status>(static_cast<int>(e.code())), std::string(fn) + ": " + e.what());
  } catch (const reason::kernels::BackendError& e) {
    return fail_with(REASON_ERR_BACKEND, std::string(fn) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return fail_with(REASON_ERR_OUT_OF_MEMORY, std::string(fn) + ": out of memory");
  } catch (const std::exception& e) {
    return fail_with(REASON_ERR_INTERNAL, std::string(fn) + ": " + e.what());
  } catch (...) {
    return fail_with(REASON_ERR_INTERNAL, std::string(fn) + ": unknown error");
  }
}

#define REASON_CHECK_ARG(cond, fn, msg) \
  if (!(cond)) return ::reason::capi::fail_with(REASON_ERR_INVALID_ARGUMENT, std::string(fn) + ": " + (msg))

// Element i of a caller's array of T laid out `stride` bytes apart (0: sizeof(T)), as this
// library's T: the bytes of the members both know are copied, members past a shorter stride keep
// T{}'s values. Throws InvalidArgument naming `what` for a stride below `min_stride` (the
// members every version has) or above 4096.
template <typename T>
T array_element(const T* base, size_t stride, size_t i, size_t min_stride, const char* what) {
  if (stride == 0) stride = sizeof(T);
  if (stride < min_stride || stride > 4096)
    reason::fail(reason::ErrorCode::InvalidArgument, "{} stride {} is not a struct size (at least {}, at most 4096)", what,
                 stride, min_stride);
  T out{};
  std::memcpy(&out, reinterpret_cast<const char*>(base) + i * stride, std::min(stride, sizeof(T)));
  return out;
}

// Copies a string into malloc'd memory the caller frees with reason_free.
inline char* dup_string(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

template <typename T>
T* dup_array(const T* src, size_t n) {
  T* p = static_cast<T*>(std::malloc(n ? n * sizeof(T) : 1));
  if (!p) throw std::bad_alloc();
  if (n) std::memcpy(p, src, n * sizeof(T));
  return p;
}

}  // namespace reason::capi
