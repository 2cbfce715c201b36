// A model's architecture hyper-parameters, parsed from a Hugging Face config.json.
// Plain value type; immutable after parsing; safe to share.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace reason {

enum class Arch { Llama, Qwen2, Mixtral, Qwen2Moe, Qwen3Moe };

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

  // Per-head RMSNorm of q and k before RoPE (Qwen3).
  bool qk_norm = false;

  // Mixture of Experts (n_experts == 0: dense model).
  int64_t n_experts = 0;
  int64_t n_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;          // per routed expert
  int64_t shared_expert_intermediate_size = 0;  // 0: no shared expert
  bool shared_expert_gate = false;            // Qwen2-MoE: sigmoid(W x) scales the shared expert
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
  int64_t decoder_sparse_step = 1;            // Qwen2/3-MoE: layer l is MoE when (l+1) % step == 0
  std::vector<int64_t> mlp_only_layers;       // Qwen2/3-MoE: layers forced dense
  int64_t first_k_dense_replace = 0;          // DeepSeek: the first k layers are dense

  bool is_moe_layer(int64_t layer) const;

  // Parses and validates. `source` names the file in error messages.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
};

}  // namespace reason
