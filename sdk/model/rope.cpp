#include "model/rope.h"

#include <algorithm>
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
  } else if (s.type == "yarn") {
    // transformers' _compute_yarn_parameters, in float32 where it uses float32.
    const double base = c.rope_theta, dim = rot_dim;
    const double orig = double(s.original_max_position_embeddings);
    auto correction_dim = [&](double rotations) {
      return dim * std::log(orig / (rotations * 2.0 * M_PI)) / (2.0 * std::log(base));
    };
    double low = correction_dim(s.beta_fast), high = correction_dim(s.beta_slow);
    if (s.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, dim - 1);
    float lo = float(low), hi = float(high);
    if (lo == hi) hi += 0.001f;
    for (int i = 0; i < half; ++i) {
      const float pos_freq = std::pow(c.rope_theta, float(2 * i) / float(rot_dim));
      const float extrapolation = 1.0f / pos_freq;
      const float interpolation = 1.0f / (s.factor * pos_freq);
      const float ramp = std::clamp((float(i) - lo) / (hi - lo), 0.0f, 1.0f);
      const float extra_factor = 1.0f - ramp;
      t.inv_freq[size_t(i)] = interpolation * (1.0f - extra_factor) + extrapolation * extra_factor;
    }
    auto get_mscale = [](double scale, double m) { return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    if (s.attention_factor) {
      t.attn_factor = *s.attention_factor;
    } else if (s.mscale != 0.0f && s.mscale_all_dim != 0.0f) {
      t.attn_factor = float(get_mscale(s.factor, s.mscale) / get_mscale(s.factor, s.mscale_all_dim));
    } else {
      t.attn_factor = float(get_mscale(s.factor, 1.0));
    }
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
