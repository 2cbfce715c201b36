// Bulk dtype conversions; widening runs the per-ISA loops (f16 uses F16C where the path has it).
#include "isa_ops.h"
#include "reason/kernels/dtype.h"
#include "reason/kernels/quant.h"

namespace reason::kernels {

bool convert_to_f32(float* dst, const void* src, DType t, size_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, n * 4);
      return true;
    case DType::BF16:
      cpu::isa_ops().bf16_to_f32(dst, static_cast<const uint16_t*>(src), n);
      return true;
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (size_t i = cpu::isa_ops().f16_to_f32(dst, s, n); i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return true;
    }
    case DType::F8_E4M3: {
      const uint8_t* s = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = f8e4m3_to_f32(s[i]);
      return true;
    }
    default:
      return dequantize_row(t, src, dst, int64_t(n));
  }
}

bool convert_from_f32(void* dst, const float* src, DType t, size_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, n * 4);
      return true;
    case DType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return true;
    }
    case DType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return true;
    }
    case DType::F8_E4M3:
      return false;
    default:
      return quantize_row(t, src, dst, int64_t(n));
  }
}

}  // namespace reason::kernels
