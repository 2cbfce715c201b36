// Block-quantised rows to f32 for the prefill panels (matmul_dequantized): ggml's dequantisation
// (quant_blocks.inc, shared with the generic reference in quant_formats.cpp) compiled per ISA path,
// so its per-block loops vectorise. Values equal the reference's up to FMA contraction of d * q - m.
// Compiled once per ISA path (isa_vec.h says the rules).
#include <string.h>

#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

namespace {

inline float half(const uint8_t* p) { return fp16_at(p); }

#include "../quant_blocks.inc"

}  // namespace

bool dequantize_rows(DType t, const uint8_t* src, float* dst, int64_t n) {
  void (*block)(const uint8_t*, float*) = nullptr;
  int64_t be = 32;
  size_t bb = 0;
  switch (t) {
    case DType::Q8_0: block = q8_0; bb = 34; break;
    case DType::Q4_0: block = q4_0; bb = 18; break;
    case DType::Q4_1: block = q4_1; bb = 20; break;
    case DType::Q5_0: block = q5_0; bb = 22; break;
    case DType::Q5_1: block = q5_1; bb = 24; break;
    case DType::Q4_K: block = q4_k; bb = 144; be = 256; break;
    case DType::Q5_K: block = q5_k; bb = 176; be = 256; break;
    case DType::Q6_K: block = q6_k; bb = 210; be = 256; break;
    default: return false;
  }
  if (n % be) return false;
  for (int64_t k = 0; k < n / be; ++k) block(src + size_t(k) * bb, dst + k * be);
  return true;
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
