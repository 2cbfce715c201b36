// Bulk widening of f16 (F16C on the AVX2 / AVX-512 paths) and bf16 to f32.
// Compiled once per ISA path (isa_vec.h says the rules).
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

static inline float f16_scalar(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((man & 0x400u) == 0) {
        man <<= 1;
        --exp;
      }
      man &= 0x3ffu;
      u = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  union {
    uint32_t u;
    float f;
  } v;
  v.u = u;
  return v.f;
}

void f16_to_f32(float* dst, const uint16_t* src, size_t n) {
  size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
  for (; i < n; ++i) dst[i] = f16_scalar(src[i]);
}

void bf16_to_f32(float* dst, const uint16_t* src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = widen_bf16(src[i]);
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
