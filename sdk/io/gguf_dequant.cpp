// GGUF tensor data to f32: F32/F16/BF16 here, ggml's block formats by kernels/cpu/quant_formats.cpp
// (ggml's dequantize_row_* arithmetic, so results equal llama.cpp's and gguf-py's:
// tests/unit/test_gguf.cpp compares with gguf-py's dequantize on every type).
#include <cstring>

#include "core/error.h"
#include "io/gguf.h"
#include "reason/kernels/dtype.h"
#include "reason/kernels/quant.h"

namespace reason {

namespace {

float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return kernels::f16_to_f32(h);
}

}  // namespace

std::optional<kernels::DType> ggml_quant_dtype(uint32_t type) {
  switch (GgmlType(type)) {
    case GgmlType::Q8_0: return kernels::DType::Q8_0;
    case GgmlType::Q4_0: return kernels::DType::Q4_0;
    case GgmlType::Q4_1: return kernels::DType::Q4_1;
    case GgmlType::Q4_K: return kernels::DType::Q4_K;
    case GgmlType::Q5_K: return kernels::DType::Q5_K;
    case GgmlType::Q6_K: return kernels::DType::Q6_K;
    case GgmlType::Q5_0: return kernels::DType::Q5_0;
    case GgmlType::Q5_1: return kernels::DType::Q5_1;
    default: return std::nullopt;
  }
}

void ggml_dequantize(uint32_t type, const uint8_t* data, int64_t first, int64_t n, float* out) {
  const GgmlTypeInfo* ti = ggml_type_info(type);
  if (!ti) fail(ErrorCode::Unsupported, "ggml type {} cannot be dequantised", type);
  if (first < 0 || n < 0 || first % ti->block_elems || n % ti->block_elems)
    fail(ErrorCode::InvalidArgument, "ggml_dequantize: elements [{}, {}) are not whole {} blocks", first, first + n, ti->name);
  const uint8_t* b = data + (first / ti->block_elems) * int64_t(ti->block_bytes);
  switch (GgmlType(type)) {
    case GgmlType::F32: std::memcpy(out, b, size_t(n) * 4); return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = half(b + 2 * i);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, b + 2 * i, 2);
        out[i] = kernels::bf16_to_f32(h);
      }
      return;
    default:
      if (!kernels::dequantize_row(*ggml_quant_dtype(type), b, out, n))
        fail(ErrorCode::Internal, "ggml_dequantize: {} rows not dequantised", ti->name);
      return;
  }
}

}  // namespace reason
