// Bulk widening of bf16 to f32, and of f16 with F16C on the AVX2 / AVX-512 paths (the caller
// converts what is left, on the generic path everything, with dtype.h's f16_to_f32).
// Compiled once per ISA path (isa_vec.h says the rules).
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

size_t f16_to_f32(float* dst, const uint16_t* src, size_t n) {
  size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
#endif
  (void)dst, (void)src, (void)n;
  return i;
}

void bf16_to_f32(float* dst, const uint16_t* src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = widen_bf16(src[i]);
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
