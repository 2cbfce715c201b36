// A model's architecture hyper-parameters, parsed from a Hugging Face config.json.
// Plain value type; immutable after parsing; safe to share.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace reason {

enum class Arch { Llama, Qwen2 };

struct RopeScaling {
  std::string type = "default";  // default | linear | llama3 | dynamic (not supported)
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_position_embeddings = 0;
};

struct ModelConfig {
  std::string architecture;  // e.g. "Qwen2ForCausalLM"
  Arch arch = Arch::Llama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v (and o for Llama's attention_bias) biases
  bool o_bias = false;
  bool mlp_bias = false;
  std::vector<int32_t> eos_token_ids;
  std::optional<int32_t> bos_token_id;
  std::string torch_dtype;  // as stored, informational

  // Parses and validates. `source` names the file in error messages.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
};

}  // namespace reason
