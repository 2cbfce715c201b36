// Internal to kernels/: the keep/drop decision of LoRA dropout (backend.h: dropout_scale), a
// counter-based hash of (seed, row, column) compiled for the host (CPU backend) and the device
// (CUDA backend), so both backends drop the same elements and a backward pass recomputes the
// forward's mask instead of storing it.
#pragma once
#include <stdint.h>

#include "host_device.h"

namespace reason::kernels {

// splitmix64's finaliser.
REASON_HD uint64_t dropout_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// True when element (row, col) is kept: a uniform draw in [0, 1) (24 bits) >= p.
REASON_HD bool dropout_keep(uint64_t seed, int64_t row, int64_t col, float p) {
  const uint64_t h = dropout_mix(dropout_mix(seed + 0x9e3779b97f4a7c15ULL * uint64_t(row + 1)) ^ uint64_t(col));
  return float(h >> 40) * (1.0f / 16777216.0f) >= p;
}

}  // namespace reason::kernels
