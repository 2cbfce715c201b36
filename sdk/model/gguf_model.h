// A GGUF model file (llama.cpp's format) read as the Hugging Face directory it was converted
// from: config.json, generation_config.json and tokenizer files from its metadata, and its
// tensors under their Hugging Face names, dequantised (f16/bf16 kept as stored). Model::load
// uses this for a .gguf path; `reason convert` writes the files out.
//
// Architectures (general.architecture): llama (LlamaForCausalLM, or MixtralForCausalLM when it
// has experts), qwen2, qwen3, qwen2moe, qwen3moe, deepseek2 (DeepseekV3ForCausalLM: sigmoid
// gating; kv_b stored whole or split into k_b / v_b as newer llama.cpp writes it). The tensor
// layouts undone here are llama.cpp's convert_hf_to_gguf.py's: Llama's Q/K rows permuted for
// its rotary layout, experts stacked into one 3-D tensor per projection, Llama 3 rope scaling
// stored as rope_freqs.weight (recognised as rope_type llama3 or refused). A tensor the engine
// does not know for the architecture is refused by name (it would be math the engine skips),
// except DeepSeek's next-token-prediction layers, which are not loaded from GGUF.
//
// Everything here is immutable after construction: safe to share between threads.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "io/weight_source.h"
#include "model/config.h"
#include "tokenizer/gguf_vocab.h"

namespace reason {

class GgufFile;

struct GgufModel {
  std::shared_ptr<const GgufFile> file;
  nlohmann::json config;             // config.json (Hugging Face names and values)
  nlohmann::json generation_config;  // generation_config.json: general.sampling.* and the eos ids
  ModelConfig model_config;          // ModelConfig::from_json(config)
  std::shared_ptr<const WeightSource> weights;  // by Hugging Face tensor name
};

// Opens and validates `path`: metadata -> config (Unsupported naming the architecture or key the
// engine does not implement, Format for missing or inconsistent keys), tensors -> names.
GgufModel open_gguf_model(const std::string& path);
// The same from a file already parsed.
GgufModel gguf_model(std::shared_ptr<const GgufFile> file);

// Per-layer tensors whose name is all that differs between the formats: (GGUF suffix after
// "blk.N.", Hugging Face suffix after "model.layers.N."). Q/K (permuted for Llama), experts,
// routers and DeepSeek's k_b/v_b are mapped in code, both ways.
const std::vector<std::pair<std::string, std::string>>& gguf_layer_tensor_names();

// generation_config.json of a GGUF file alone (general.sampling.* keys), for callers that need
// no weights.
nlohmann::json gguf_generation_config(const GgufFile& f);

}  // namespace reason
