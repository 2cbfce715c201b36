// Rotary position embedding frequencies, computed exactly as transformers' ROPE_INIT_FUNCTIONS
// (default, linear, llama3) in float32.
#pragma once
#include <vector>

#include "model/config.h"

namespace reason {

struct RopeTable {
  std::vector<float> inv_freq;  // [rot_dim / 2]
  float attn_factor = 1.0f;     // multiplies cos and sin
};

RopeTable make_rope_table(const ModelConfig& c, int rot_dim);

}  // namespace reason
