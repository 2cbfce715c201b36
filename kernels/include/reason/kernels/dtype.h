// Element types of tensors and their scalar conversions.
// Pure functions, no state: safe from any thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace reason::kernels {

// Storage types. Compute happens in f32 (or bf16 inputs with f32 accumulation).
enum class DType : uint8_t {
  F32 = 0,
  BF16 = 1,
  F16 = 2,
  F8_E4M3 = 3,  // storage only (DeepSeek-V3 FP8 checkpoints), dequantised before compute
};

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::F8_E4M3: return 1;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::F8_E4M3: return "f8_e4m3";
  }
  return "?";
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, NaN stays NaN (as torch does).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
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
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE half, round to nearest even.
inline uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t aexp = (u >> 23) & 0xffu;
  uint32_t man = u & 0x7fffffu;
  if (aexp == 0xff) return uint16_t(sign | 0x7c00u | (man ? 0x200u : 0));
  int32_t e = int32_t(aexp) - 127 + 15;
  if (e >= 31) return uint16_t(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return uint16_t(sign);
    man |= 0x800000u;
    uint32_t shift = uint32_t(14 - e);
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return uint16_t(sign | half);
  }
  uint32_t half = sign | (uint32_t(e) << 10) | (man >> 13);
  uint32_t rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return uint16_t(half);
}

// OCP FP8 E4M3 (fn: no infinities, 0x7f/0xff are NaN), as torch.float8_e4m3fn.
inline float f8e4m3_to_f32(uint8_t v) {
  uint32_t sign = uint32_t(v & 0x80u) << 24;
  uint32_t exp = (v >> 3) & 0xfu;
  uint32_t man = v & 0x7u;
  if (exp == 0xf && man == 0x7) {
    uint32_t u = sign | 0x7fc00000u;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  float f;
  if (exp == 0) {
    f = float(man) * (1.0f / 512.0f);  // 2^-6 * man/8
  } else {
    uint32_t u = ((exp + 127 - 7) << 23) | (man << 20);
    std::memcpy(&f, &u, 4);
  }
  return sign ? -f : f;
}

// Converts n elements of `src` (type t) to f32. Returns false for an unknown type.
bool convert_to_f32(float* dst, const void* src, DType t, size_t n);
// Converts n f32 elements to `t` (F32, BF16 or F16). Returns false otherwise.
bool convert_from_f32(void* dst, const float* src, DType t, size_t n);

}  // namespace reason::kernels
