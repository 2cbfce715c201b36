// Which block-quantised type (kernels/quant.h) each weight gets when a model is quantised, at load
// (`--quantize`, LoadOptions::quantize) or into a GGUF file (`reason quantize`): llama.cpp's choices
// for its Q8_0 and Q4_K_M file types (llama_tensor_get_type in llama-quant.cpp), so the same
// checkpoint gives the same file and the same quality.
// Pure functions: safe from any thread.
#pragma once
#include <cstdint>
#include <string>

#include "reason/kernels/dtype.h"

namespace reason {

// How matmul weights are held in memory.
enum class WeightQuant : uint8_t {
  AsStored = 0,  // quantised GGUF tensors (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) used as stored;
                 // everything else in the compute dtype
  None = 1,      // every weight in the compute dtype (quantised GGUF tensors dequantised): the exact
                 // path, required for training and for converting to safetensors
  Q8_0 = 2,      // float weights quantised to Q8_0 (llama.cpp's Q8_0 files)
  Q4_K_M = 3,    // float weights quantised as llama.cpp's Q4_K_M files: Q4_K, Q6_K for the LM head
                 // and for attn_v / ffn_down in the layers use_more_bits picks
};

// "stored", "none", "q8_0", "q4_k" (Q4_K_M; "q4_k_m" is accepted too). parse throws InvalidArgument
// naming the word and the choices.
const char* weight_quant_name(WeightQuant q);
WeightQuant parse_weight_quant(const std::string& word);

// What a weight is, for the choice of its type.
enum class TensorRole : uint8_t {
  Output,     // the LM head, or the embedding when tied to it (llama.cpp's output.weight)
  Embedding,  // the token embedding of an untied model
  AttnV,      // a value projection (attn_v)
  FfnDown,    // a down projection: dense MLP, each routed expert, shared experts (ffn_down*)
  Other,      // every other matmul weight (q, k, o, gate, up, MLA's projections but kv_b)
};

// The type of a [rows, cols] weight of `role` in layer `layer` of `n_layers` under scheme q (Q8_0 or
// Q4_K_M), or F32 when it stays unquantised: cols not a multiple of the type's block even after
// llama.cpp's fallbacks (Q4_K -> Q5_0, Q6_K -> Q8_0; llama.cpp then writes F16).
kernels::DType quant_type_for(WeightQuant q, TensorRole role, int64_t layer, int64_t n_layers, int64_t cols);

}  // namespace reason
