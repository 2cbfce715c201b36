#include "model/quant_scheme.h"

#include "core/error.h"

namespace reason {

using kernels::DType;

const char* weight_quant_name(WeightQuant q) {
  switch (q) {
    case WeightQuant::AsStored: return "stored";
    case WeightQuant::None: return "none";
    case WeightQuant::Q8_0: return "q8_0";
    case WeightQuant::Q4_K_M: return "q4_k";
  }
  return "?";
}

WeightQuant parse_weight_quant(const std::string& w) {
  if (w == "stored") return WeightQuant::AsStored;
  if (w == "none") return WeightQuant::None;
  if (w == "q8_0") return WeightQuant::Q8_0;
  if (w == "q4_k" || w == "q4_k_m") return WeightQuant::Q4_K_M;
  fail(ErrorCode::InvalidArgument, "unknown weight quantisation '{}' (stored, none, q8_0 or q4_k)", w);
}

namespace {

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third in between.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// llama.cpp's fallbacks for rows that are not whole blocks of 256: Q4_K -> Q5_0, Q6_K -> Q8_0; then
// (rows not whole blocks of 32) the compute dtype, where llama.cpp writes F16.
DType fit(DType t, int64_t cols) {
  if (cols % kernels::dtype_block_elems(t) == 0) return t;
  const DType f = t == DType::Q4_K ? DType::Q5_0 : DType::Q8_0;
  return cols % kernels::dtype_block_elems(f) == 0 ? f : DType::F32;
}

}  // namespace

DType quant_type_for(WeightQuant q, TensorRole role, int64_t layer, int64_t n_layers, int64_t cols) {
  switch (q) {
    case WeightQuant::AsStored:
    case WeightQuant::None: return DType::F32;
    case WeightQuant::Q8_0: return fit(DType::Q8_0, cols);
    case WeightQuant::Q4_K_M:
      switch (role) {
        case TensorRole::Output: return fit(DType::Q6_K, cols);
        case TensorRole::AttnV:
        case TensorRole::FfnDown: return fit(use_more_bits(layer, n_layers) ? DType::Q6_K : DType::Q4_K, cols);
        case TensorRole::Embedding:
        case TensorRole::Other: return fit(DType::Q4_K, cols);
      }
  }
  return DType::F32;
}

}  // namespace reason
