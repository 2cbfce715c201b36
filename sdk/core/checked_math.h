// Overflow-checked size arithmetic for parsing untrusted files. Every size computed from a
// file goes through these; they return false instead of wrapping.
#pragma once
#include <cstdint>

namespace reason {

inline bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
inline bool checked_add(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

}  // namespace reason
