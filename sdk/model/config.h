// A model's architecture hyper-parameters, parsed from a Hugging Face config.json.
// Plain value type; immutable after parsing; safe to share.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace reason {

// Limits of what config.json may ask for, checked before anything is sized from it (Format
// errors naming the field). Real models are far below them (DeepSeek-V3: 61 layers, 128 heads,
// head dims <= 192, 163840 positions).
inline constexpr int64_t kMaxLayers = 4096;             // num_hidden_layers
inline constexpr int64_t kMaxHeads = 65536;             // num_attention_heads, num_key_value_heads
inline constexpr int64_t kMaxHeadDim = 65536;           // head_dim, qk_nope_head_dim, v_head_dim
inline constexpr int64_t kMaxPositions = int64_t(1) << 30;  // max_position_embeddings (int32 positions)
// Largest product of fields (a weight's elements, an activation or KV-cache row) accepted:
// vocab_size x hidden_size, num_attention_heads x head_dim x hidden_size, layers x experts, ...
inline constexpr int64_t kMaxConfigProduct = int64_t(1) << 40;

enum class Arch { Llama, Qwen2, Qwen3, Mixtral, Qwen2Moe, Qwen3Moe, DeepseekV3 };

// The gated MLP's activation (config.json hidden_act): act(gate) * up.
enum class Activation {
  Silu,      // "silu", "swish"
  Gelu,      // "gelu" (exact, erf)
  GeluTanh,  // "gelu_pytorch_tanh", "gelu_new", "gelu_fast" (tanh approximation)
};

struct RopeScaling {
  std::string type = "default";  // default | linear | llama3 | yarn
  float factor = 1.0f;
  float low_freq_factor = 1.0f;   // llama3
  float high_freq_factor = 4.0f;  // llama3
  int64_t original_max_position_embeddings = 0;
  // YaRN (DeepSeek-V3): ramp between beta_fast and beta_slow rotations; attention_factor
  // (multiplies cos/sin) from mscale/mscale_all_dim unless given; truncate the correction range.
  float beta_fast = 32.0f, beta_slow = 1.0f;
  float mscale = 0.0f, mscale_all_dim = 0.0f;
  std::optional<float> attention_factor;
  bool truncate = true;
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
  Activation hidden_act = Activation::Silu;

  // Per-head RMSNorm of q and k before RoPE (Qwen3).
  bool qk_norm = false;

  // Sliding-window attention: layer l attends to the last layer_window[l] keys (0: all).
  // Empty when no layer is windowed.
  std::vector<int64_t> layer_window;
  int64_t window_of(int64_t layer) const { return layer_window.empty() ? 0 : layer_window[size_t(layer)]; }

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

  // Routing: DeepSeek-V3 scores experts with a sigmoid plus a selection-only bias, within
  // n_group groups of which topk_group are kept; the others use a softmax over all experts.
  bool sigmoid_routing = false;
  int64_t n_group = 1, topk_group = 1;
  int64_t n_shared_experts = 0;  // DeepSeek: shared experts fused as one MLP of n * moe_intermediate_size

  // Multi-head Latent Attention (DeepSeek-V3).
  bool mla = false;
  int64_t q_lora_rank = 0;  // 0: plain q_proj
  int64_t kv_lora_rank = 0, qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  bool rope_interleave = true;  // rope dims stored as interleaved pairs (x0,x1),(x2,x3),...
  int64_t num_nextn_predict_layers = 0;  // MTP modules stored after the decoder layers

  // FP8 checkpoints: F8_E4M3 weights with <name>_scale_inv block scales.
  bool fp8 = false;
  int64_t fp8_block_rows = 128, fp8_block_cols = 128;

  bool is_moe_layer(int64_t layer) const;
  // Softmax scale of attention scores (1/sqrt(qk head dim), times YaRN's mscale^2 for MLA).
  float attention_scale() const;
  // Per token and layer values a KV cache stores: K and V rows, or for MLA the normalised
  // latent plus the shared roped key (kv_lora_rank + qk_rope_head_dim), with no V.
  int64_t kv_k_dim() const { return mla ? kv_lora_rank + qk_rope_head_dim : n_kv_heads * head_dim; }
  int64_t kv_v_dim() const { return mla ? 0 : n_kv_heads * head_dim; }

  // Parses and validates. `source` names the file in error messages. A top-level field that
  // the engine neither reads nor knows to be harmless (known_config_fields()) is refused with
  // Unsupported naming it, since it may change the math; allow_unknown_fields loads anyway
  // (LoadOptions::allow_unknown_config_fields, `--allow-unknown-config-fields`, or
  // REASON_ALLOW_UNKNOWN_CONFIG=1 in the environment).
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source, bool allow_unknown_fields = false);
};

}  // namespace reason
