#include "model/rope.h"

#include <cmath>

namespace reason {

RopeTable make_rope_table(const ModelConfig& c, int rot_dim) {
  RopeTable t;
  const int half = rot_dim / 2;
  t.inv_freq.resize(size_t(half));
  for (int i = 0; i < half; ++i) {
    // 1 / base^(2i/dim), with the exponent formed in float32 as torch does.
    const float expo = float(2 * i) / float(rot_dim);
    t.inv_freq[size_t(i)] = 1.0f / std::pow(c.rope_theta, expo);
  }
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "linear") {
    for (float& f : t.inv_freq) f /= s.factor;
  } else if (s.type == "llama3") {
    const float old_ctx = float(s.original_max_position_embeddings);
    const float low_wavelen = old_ctx / s.low_freq_factor;
    const float high_wavelen = old_ctx / s.high_freq_factor;
    for (float& f : t.inv_freq) {
      const float wavelen = 2.0f * float(M_PI) / f;
      float scaled = wavelen > low_wavelen ? f / s.factor : f;
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      if (medium) {
        const float smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        scaled = (1.0f - smooth) * scaled / s.factor + smooth * scaled;
      }
      f = scaled;
    }
  }
  return t;
}

}  // namespace reason
