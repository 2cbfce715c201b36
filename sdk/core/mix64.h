// splitmix64's finaliser: a bijective 64-bit mix for deriving seeds from seeds and indices.
// Pure; thread-safe.
#pragma once
#include <cstdint>

namespace reason {

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace reason
