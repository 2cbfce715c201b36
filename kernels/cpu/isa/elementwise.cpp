// RMSNorm, rotary embedding (and its transpose), SwiGLU gate and residual add: threaded, vectorised loops.
// Compiled once per ISA path (isa_vec.h says the rules).
#include "../cpu_ops.h"
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

void rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* rstd) {
  const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    const float inv = 1.0f / sqrtf(sum_squares(xr, dim) / float(dim) + eps);
    if (rstd) rstd[r] = inv;
    for (int64_t i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * inv);
  }
}

// The rotation by angle sign * pos * inv_freq: sign +1 is rope, -1 its transpose (the gradient).
// Pair i is (i, i + half), or (2i, 2i + 1) when interleaved.
static void rope_rotate(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
                        const int32_t* pos, const float* inv_freq, float attn_factor, float sign, bool interleaved) {
  const int half = rot_dim / 2;
  const int step = interleaved ? 2 : 1, partner = interleaved ? 1 : half;
  const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (n_tokens > 1)
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* c = static_cast<float*>(thread_scratch(sizeof(float) * size_t(half) * 2, 0));
    float* s = c + half;
    for (int i = 0; i < half; ++i) {
      // float32 angle as transformers computes it (inv_freq @ position_ids in f32)
      const float ang = float(pos[t]) * inv_freq[i];
      c[i] = cosf(ang) * attn_factor;
      s[i] = sign * sinf(ang) * attn_factor;
    }
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + t * stride + int64_t(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        float* p = v + i * step;
        const float a = p[0], b = p[partner];
        p[0] = a * c[i] - b * s[i];
        p[partner] = b * c[i] + a * s[i];
      }
    }
  }
}

void rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
          const int32_t* pos, const float* inv_freq, float attn_factor, bool interleaved) {
  rope_rotate(x, n_tokens, n_heads, head_dim, rot_dim, stride, pos, inv_freq, attn_factor, 1.0f, interleaved);
}

void rope_bwd(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride, const int32_t* pos,
              const float* inv_freq, float attn_factor, bool interleaved) {
  rope_rotate(x, n_tokens, n_heads, head_dim, rot_dim, stride, pos, inv_freq, attn_factor, -1.0f, interleaved);
}

void silu_mul(float* out, const float* gate, const float* up, int64_t n) {
  const int nt = cpu_threads();
#if defined(__AVX2__) && defined(__FMA__)
  // 8 at a time with exp256 (relative error ~2e-7, as expf's 1 ulp): a decode step's 4864-wide
  // rows took 17 us each with the scalar expf.
  const int64_t n8 = n / 8 * 8;
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n8; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, exp256(_mm256_sub_ps(zero, g))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
  }
#else
  const int64_t n8 = 0;
#endif
#pragma omp parallel for num_threads(nt) schedule(static) if (n - n8 > 16384)
  for (int64_t i = n8; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

void add_inplace(float* y, const float* x, int64_t n) {
  const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
