#include "model/config.h"

#include <algorithm>
#include <set>
#include <cmath>

#include "core/checked_math.h"
#include "core/error.h"

namespace reason {

namespace {

using nlohmann::json;

int64_t get_int(const json& j, const char* key, const std::string& src, std::optional<int64_t> dflt = std::nullopt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (dflt) return *dflt;
    fail(ErrorCode::Format, "{}: missing required field '{}'", src, key);
  }
  if (!it->is_number_integer()) fail(ErrorCode::Format, "{}: field '{}' must be an integer", src, key);
  int64_t v = it->get<int64_t>();
  if (v < 0 || v > (int64_t(1) << 40)) fail(ErrorCode::Format, "{}: field '{}' = {} is out of range", src, key, v);
  return v;
}

// A finite float. `parent` prefixes the field name in messages ("rope_scaling.factor").
// JSON has no NaN or infinity literal, but 1e999 parses as infinity and 1e39 overflows float.
float get_float(const json& j, const char* key, const std::string& src, float dflt, const char* parent = nullptr) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  const std::string name = parent ? fmt::format("{}.{}", parent, key) : std::string(key);
  if (!it->is_number()) fail(ErrorCode::Format, "{}: field '{}' must be a number", src, name);
  const double d = it->get<double>();
  const float v = float(d);
  if (!std::isfinite(d) || !std::isfinite(v))
    fail(ErrorCode::Format, "{}: field '{}' = {} is not a finite float", src, name, it->dump());
  return v;
}

bool get_bool(const json& j, const char* key, const std::string& src, bool dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) fail(ErrorCode::Format, "{}: field '{}' must be true or false", src, key);
  return it->get<bool>();
}

void require_positive(int64_t v, const char* key, const std::string& src) {
  if (v <= 0) fail(ErrorCode::Format, "{}: field '{}' must be positive (got {})", src, key, v);
}

void require_at_most(int64_t v, int64_t max, const char* key, const std::string& src) {
  if (v > max) fail(ErrorCode::Format, "{}: field '{}' = {} is more than the {} supported", src, key, v, max);
}

// The product of config fields that sizes a weight, an activation row or a cache row, with
// overflow-checked arithmetic: a Format error naming the fields when it overflows or passes
// kMaxConfigProduct elements.
struct Factor {
  int64_t value;
  const char* name;
};
int64_t checked_product(std::initializer_list<Factor> fs, const std::string& src) {
  uint64_t p = 1;
  bool ok = true;
  std::string names, values;
  for (const Factor& f : fs) {
    ok = ok && f.value >= 0 && checked_mul(p, uint64_t(f.value), &p) && p <= uint64_t(kMaxConfigProduct);
    names += fmt::format("{}{}", names.empty() ? "" : " x ", f.name);
    values += fmt::format("{}{}", values.empty() ? "" : " x ", f.value);
  }
  if (!ok)
    fail(ErrorCode::Format, "{}: {} ({}) overflows: more than {} elements", src, names, values, kMaxConfigProduct);
  return int64_t(p);
}

// Every size the loader, the forward pass and the KV cache derive from the config.
void check_products(const ModelConfig& c, const std::string& src) {
  const int64_t d = c.hidden_size;
  checked_product({{c.vocab_size, "vocab_size"}, {d, "hidden_size"}}, src);
  checked_product({{c.intermediate_size, "intermediate_size"}, {d, "hidden_size"}}, src);
  checked_product({{c.n_layers, "num_hidden_layers"}, {d, "hidden_size"}}, src);
  if (c.mla) {
    const int64_t qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
    checked_product({{c.n_heads, "num_attention_heads"}, {qk, "qk_nope_head_dim + qk_rope_head_dim"}, {d, "hidden_size"}}, src);
    if (c.q_lora_rank > 0) {
      checked_product({{c.q_lora_rank, "q_lora_rank"}, {d, "hidden_size"}}, src);
      checked_product({{c.n_heads, "num_attention_heads"}, {qk, "qk_nope_head_dim + qk_rope_head_dim"},
                       {c.q_lora_rank, "q_lora_rank"}}, src);
    }
    checked_product({{c.kv_lora_rank + c.qk_rope_head_dim, "kv_lora_rank + qk_rope_head_dim"}, {d, "hidden_size"}}, src);
    checked_product({{c.n_heads, "num_attention_heads"}, {c.qk_nope_head_dim + c.v_head_dim, "qk_nope_head_dim + v_head_dim"},
                     {c.kv_lora_rank, "kv_lora_rank"}}, src);
    checked_product({{c.n_heads, "num_attention_heads"}, {c.v_head_dim, "v_head_dim"}, {d, "hidden_size"}}, src);
  } else {
    checked_product({{c.n_heads, "num_attention_heads"}, {c.head_dim, "head_dim"}, {d, "hidden_size"}}, src);
    checked_product({{c.n_kv_heads, "num_key_value_heads"}, {c.head_dim, "head_dim"}, {d, "hidden_size"}}, src);
  }
  checked_product({{c.n_layers, "num_hidden_layers"}, {c.kv_k_dim() + c.kv_v_dim(), "the KV cache row"}}, src);
  if (c.n_experts > 0) {
    checked_product({{c.n_layers, "num_hidden_layers"}, {c.n_experts, "experts"}}, src);
    checked_product({{c.n_experts, "experts"}, {c.moe_intermediate_size, "moe_intermediate_size"}, {d, "hidden_size"}}, src);
    checked_product({{c.n_shared_experts, "n_shared_experts"}, {c.moe_intermediate_size, "moe_intermediate_size"},
                     {d, "hidden_size"}}, src);
    checked_product({{c.shared_expert_intermediate_size, "shared_expert_intermediate_size"}, {d, "hidden_size"}}, src);
  }
}

// Fields that change the math and that the engine does not implement are refused by name, never
// ignored (a model that loads must compute what transformers computes).
// Top-level config.json fields of the supported families that the engine reads (or checks).
const std::set<std::string, std::less<>>& read_fields() {
  static const std::set<std::string, std::less<>> f = {
      "architectures", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
      "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
      "rope_parameters", "tie_word_embeddings", "attention_bias", "qkv_bias", "mlp_bias", "eos_token_id", "bos_token_id",
      "torch_dtype", "dtype", "hidden_act", "hidden_activation", "sliding_window", "use_sliding_window",
      "max_window_layers", "layer_types", "attn_logit_softcapping", "final_logit_softcapping", "partial_rotary_factor",
      // MoE
      "num_experts", "num_local_experts", "n_routed_experts", "num_experts_per_tok", "moe_intermediate_size",
      "shared_expert_intermediate_size", "norm_topk_prob", "routed_scaling_factor", "decoder_sparse_step",
      "mlp_only_layers", "first_k_dense_replace", "n_group", "topk_group", "n_shared_experts", "scoring_func",
      // MLA, MTP, FP8
      "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "rope_interleave",
      "num_nextn_predict_layers", "quantization_config",
      // checked below to hold the value the engine implements
      "attention_dropout", "router_jitter_noise", "moe_layer_freq", "topk_method", "is_encoder_decoder", "qk_head_dim",
      "use_mrope", "rope_interleaved"};
  return f;
}

// Fields that do not change inference or the engine's training math: bookkeeping, training-only
// coefficients the engine takes from its own config, and transformers' generic PretrainedConfig
// and (v4) generation attributes.
const std::set<std::string, std::less<>>& harmless_fields() {
  static const std::set<std::string, std::less<>> f = {
      "model_type", "transformers_version", "_name_or_path", "name_or_path", "auto_map", "initializer_range",
      "use_cache", "pad_token_id", "pretraining_tp", "output_router_logits", "router_aux_loss_coef", "aux_loss_alpha",
      "seq_aux", "ep_size", "_attn_implementation", "attn_implementation", "use_flash_attn", "return_dict",
      "output_hidden_states", "output_attentions", "use_return_dict", "torchscript", "tie_encoder_decoder", "is_decoder",
      "add_cross_attention", "pruned_heads", "id2label", "label2id", "problem_type", "tokenizer_class", "prefix",
      "sep_token_id", "decoder_start_token_id", "task_specific_params", "finetuning_task", "chunk_size_feed_forward",
      "tf_legacy_loss", "use_bfloat16", "cross_attention_hidden_size", "max_length", "min_length", "do_sample",
      "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
      "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
      "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id",
      "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
      // seen in published configs: SmolLM2's, transformers.js's export settings
      "is_llama_config", "transformers.js_config", "_from_model_config"};
  return f;
}

// Refuses what the engine does not understand (unless allowed), and the read-but-fixed fields
// whose value it does not implement.
void check_known_fields(const json& j, const std::string& src, bool allow_unknown) {
  for (const auto& [k, v] : j.items())
    if (!allow_unknown && !read_fields().count(k) && !harmless_fields().count(k))
      fail(ErrorCode::Unsupported,
           "{}: field '{}' is not one the engine understands (it may change the model's math); set "
           "REASON_ALLOW_UNKNOWN_CONFIG=1 or pass --allow-unknown-config-fields to load it anyway",
           src, k);
  auto zero = [&](const char* key) {
    if (auto it = j.find(key); it != j.end() && !it->is_null() && !(it->is_number() && it->get<double>() == 0.0))
      fail(ErrorCode::Unsupported, "{}: {} = {} is not supported (the engine implements 0)", src, key, it->dump());
  };
  zero("attention_dropout");
  zero("router_jitter_noise");
  if (auto it = j.find("moe_layer_freq"); it != j.end() && !it->is_null() && !(it->is_number_integer() && it->get<int64_t>() == 1))
    fail(ErrorCode::Unsupported, "{}: moe_layer_freq = {} is not supported (1: every layer after first_k_dense_replace)", src, it->dump());
  if (auto it = j.find("topk_method"); it != j.end() && !it->is_null() && !(it->is_string() && it->get<std::string>() == "noaux_tc"))
    fail(ErrorCode::Unsupported, "{}: topk_method {} is not supported (noaux_tc)", src, it->dump());
  // Qwen2-VL's multimodal rotary and an interleaved rotary layout for Llama-family weights (both
  // false in the Qwen2.5 / R1-Distill and SmolLM2 configs that carry them).
  for (const char* key : {"use_mrope", "rope_interleaved"})
    if (auto it = j.find(key); it != j.end() && !it->is_null() && !(it->is_boolean() && !it->get<bool>()))
      fail(ErrorCode::Unsupported, "{}: {} = {} is not supported", src, key, it->dump());
  if (auto it = j.find("is_encoder_decoder"); it != j.end() && it->is_boolean() && it->get<bool>())
    fail(ErrorCode::Unsupported, "{}: encoder-decoder models are not supported", src);
}

// Sliding-window attention, as transformers 5 decides it per layer: Mixtral's sliding_window on
// every layer; Qwen3-MoE's use_sliding_window on every layer; Qwen2 / Qwen3 / Qwen2-MoE's
// layer_types ("sliding_attention" layers), or when absent their defaults (Qwen2/3: layers >=
// max_window_layers; Qwen2-MoE: even layers below max_window_layers), windowed only when
// use_sliding_window is true. Sets c.layer_window (empty: no layer is windowed).
void read_sliding_window(const json& j, ModelConfig& c, const std::string& src) {
  const int64_t L = c.n_layers;
  auto window_field = [&]() {
    const int64_t w = get_int(j, "sliding_window", src);
    require_positive(w, "sliding_window", src);
    return w;
  };
  std::vector<std::string> types;
  if (auto it = j.find("layer_types"); it != j.end() && !it->is_null()) {
    if (!it->is_array() || int64_t(it->size()) != L)
      fail(ErrorCode::Format, "{}: 'layer_types' must be an array of num_hidden_layers ({}) strings", src, L);
    for (size_t i = 0; i < it->size(); ++i) {
      const json& t = (*it)[i];
      if (!t.is_string() || (t.get<std::string>() != "full_attention" && t.get<std::string>() != "sliding_attention"))
        fail(ErrorCode::Unsupported, "{}: layer_types[{}] is {} (full_attention or sliding_attention)", src, i, t.dump());
      types.push_back(t.get<std::string>());
    }
  }
  const bool qwen = c.arch == Arch::Qwen2 || c.arch == Arch::Qwen3 || c.arch == Arch::Qwen2Moe || c.arch == Arch::Qwen3Moe;
  const bool any_sliding = std::find(types.begin(), types.end(), "sliding_attention") != types.end();
  if (c.arch == Arch::Mixtral) {
    if (auto it = j.find("sliding_window"); it != j.end() && !it->is_null()) c.layer_window.assign(size_t(L), window_field());
  } else if (c.arch == Arch::Qwen3Moe) {
    if (get_bool(j, "use_sliding_window", src, false)) c.layer_window.assign(size_t(L), window_field());
  } else if (qwen && get_bool(j, "use_sliding_window", src, false)) {
    const int64_t w = window_field(), max_window = get_int(j, "max_window_layers", src, 28);
    c.layer_window.assign(size_t(L), 0);
    for (int64_t i = 0; i < L; ++i) {
      const bool sliding = !types.empty() ? types[size_t(i)] == "sliding_attention"
                           : c.arch == Arch::Qwen2Moe ? (i + 1) % 2 != 0 && i < max_window
                                                      : i >= max_window;
      if (sliding) c.layer_window[size_t(i)] = w;
    }
    if (std::all_of(c.layer_window.begin(), c.layer_window.end(), [](int64_t v) { return v == 0; })) c.layer_window.clear();
    return;
  }
  if (any_sliding)
    fail(ErrorCode::Unsupported, "{}: layer_types marks sliding_attention layers but {} (sliding windows: Mixtral, and the "
         "Qwen families with use_sliding_window)", src, qwen ? "use_sliding_window is false" : "the architecture has no sliding window");
}

// hidden_act (or Gemma-style hidden_activation), as transformers' ACT2FN names them.
Activation read_activation(const json& j, const std::string& src) {
  Activation out = Activation::Silu;
  for (const char* key : {"hidden_act", "hidden_activation"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_string()) fail(ErrorCode::Format, "{}: '{}' must be a string", src, key);
    const std::string act = it->get<std::string>();
    if (act == "silu" || act == "swish") out = Activation::Silu;
    else if (act == "gelu") out = Activation::Gelu;
    else if (act == "gelu_pytorch_tanh" || act == "gelu_new" || act == "gelu_fast") out = Activation::GeluTanh;
    else
      fail(ErrorCode::Unsupported,
           "{}: {} \"{}\" is not supported (silu, swish, gelu, gelu_pytorch_tanh, gelu_new, gelu_fast)", src, key, act);
  }
  return out;
}

void check_math_fields(const json& j, const std::string& src) {
  for (const char* key : {"attn_logit_softcapping", "final_logit_softcapping"}) {
    auto it = j.find(key);
    if (it != j.end() && !it->is_null()) fail(ErrorCode::Unsupported, "{}: {} is not supported", src, key);
  }
  if (auto it = j.find("partial_rotary_factor"); it != j.end() && !it->is_null() &&
                                                  !(it->is_number() && it->get<double>() == 1.0))
    fail(ErrorCode::Unsupported, "{}: partial_rotary_factor {} is not supported (rotary on the whole head)", src, it->dump());
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& src, bool allow_unknown_fields) {
  if (!j.is_object()) fail(ErrorCode::Format, "{}: not a JSON object", src);
  check_known_fields(j, src, allow_unknown_fields);
  ModelConfig c;
  auto archs = j.find("architectures");
  if (archs == j.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string())
    fail(ErrorCode::Format, "{}: missing 'architectures' (e.g. [\"Qwen2ForCausalLM\"])", src);
  c.architecture = (*archs)[0].get<std::string>();
  if (c.architecture == "LlamaForCausalLM") {
    c.arch = Arch::Llama;
  } else if (c.architecture == "Qwen2ForCausalLM") {
    c.arch = Arch::Qwen2;
  } else if (c.architecture == "MixtralForCausalLM") {
    c.arch = Arch::Mixtral;
  } else if (c.architecture == "Qwen2MoeForCausalLM") {
    c.arch = Arch::Qwen2Moe;
  } else if (c.architecture == "Qwen3ForCausalLM") {
    c.arch = Arch::Qwen3;
  } else if (c.architecture == "Qwen3MoeForCausalLM") {
    c.arch = Arch::Qwen3Moe;
  } else if (c.architecture == "DeepseekV3ForCausalLM") {
    c.arch = Arch::DeepseekV3;
  } else {
    fail(ErrorCode::Unsupported,
         "{}: unsupported architecture '{}' (supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
         "MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, DeepseekV3ForCausalLM)",
         src, c.architecture);
  }
  c.vocab_size = get_int(j, "vocab_size", src);
  c.hidden_size = get_int(j, "hidden_size", src);
  c.intermediate_size = get_int(j, "intermediate_size", src);
  c.n_layers = get_int(j, "num_hidden_layers", src);
  c.n_heads = get_int(j, "num_attention_heads", src);
  c.n_kv_heads = get_int(j, "num_key_value_heads", src, c.n_heads);
  for (auto [v, k] : {std::pair{c.vocab_size, "vocab_size"}, {c.hidden_size, "hidden_size"},
                      {c.intermediate_size, "intermediate_size"}, {c.n_layers, "num_hidden_layers"},
                      {c.n_heads, "num_attention_heads"}, {c.n_kv_heads, "num_key_value_heads"}})
    require_positive(v, k, src);
  require_at_most(c.n_layers, kMaxLayers, "num_hidden_layers", src);
  require_at_most(c.n_heads, kMaxHeads, "num_attention_heads", src);
  require_at_most(c.n_kv_heads, kMaxHeads, "num_key_value_heads", src);
  if (c.vocab_size > (int64_t(1) << 31) - 1) fail(ErrorCode::Format, "{}: vocab_size {} does not fit int32 token ids", src, c.vocab_size);
  if (c.n_heads % c.n_kv_heads)
    fail(ErrorCode::Format, "{}: num_attention_heads ({}) is not a multiple of num_key_value_heads ({})", src, c.n_heads,
         c.n_kv_heads);
  if (c.arch == Arch::DeepseekV3) {
    c.mla = true;
    c.q_lora_rank = get_int(j, "q_lora_rank", src, 0);
    c.kv_lora_rank = get_int(j, "kv_lora_rank", src);
    c.qk_nope_head_dim = get_int(j, "qk_nope_head_dim", src);
    c.qk_rope_head_dim = get_int(j, "qk_rope_head_dim", src);
    c.v_head_dim = get_int(j, "v_head_dim", src);
    for (auto [v, k] : {std::pair{c.kv_lora_rank, "kv_lora_rank"}, {c.qk_nope_head_dim, "qk_nope_head_dim"},
                        {c.qk_rope_head_dim, "qk_rope_head_dim"}, {c.v_head_dim, "v_head_dim"}})
      require_positive(v, k, src);
    if (c.qk_rope_head_dim % 2) fail(ErrorCode::Format, "{}: qk_rope_head_dim must be even", src);
    c.rope_interleave = get_bool(j, "rope_interleave", src, true);
    c.n_kv_heads = c.n_heads;  // MLA: every head has its own key/value expanded from the latent
    c.head_dim = c.qk_rope_head_dim;  // the rotary dimension (transformers' head_dim for DeepSeek)
    c.num_nextn_predict_layers = get_int(j, "num_nextn_predict_layers", src, 0);
    if (auto q = j.find("quantization_config"); q != j.end() && !q->is_null()) {
      if (!q->is_object() || !q->contains("quant_method") || !(*q)["quant_method"].is_string() ||
          (*q)["quant_method"].get<std::string>() != "fp8")
        fail(ErrorCode::Unsupported, "{}: only quantization_config.quant_method \"fp8\" is supported", src);
      c.fp8 = true;
      if (auto b = q->find("weight_block_size"); b != q->end()) {
        if (!b->is_array() || b->size() != 2 || !(*b)[0].is_number_integer() || !(*b)[1].is_number_integer() ||
            (*b)[0].get<int64_t>() <= 0 || (*b)[1].get<int64_t>() <= 0 || (*b)[0].get<int64_t>() > 65536 ||
            (*b)[1].get<int64_t>() > 65536)
          fail(ErrorCode::Format, "{}: quantization_config.weight_block_size must be two positive integers", src);
        c.fp8_block_rows = (*b)[0].get<int64_t>();
        c.fp8_block_cols = (*b)[1].get<int64_t>();
      }
    }
  } else if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = get_int(j, "head_dim", src);
  } else {
    if (c.hidden_size % c.n_heads)
      fail(ErrorCode::Format, "{}: hidden_size ({}) is not a multiple of num_attention_heads ({})", src, c.hidden_size,
           c.n_heads);
    c.head_dim = c.hidden_size / c.n_heads;
  }
  require_positive(c.head_dim, "head_dim", src);
  require_at_most(c.head_dim, kMaxHeadDim, "head_dim", src);
  if (c.mla)
    for (auto [v, k] : {std::pair{c.qk_nope_head_dim, "qk_nope_head_dim"}, {c.v_head_dim, "v_head_dim"}})
      require_at_most(v, kMaxHeadDim, k, src);
  if (c.head_dim % 2) fail(ErrorCode::Format, "{}: head_dim {} must be even for rotary embeddings", src, c.head_dim);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", src, 4096);
  require_positive(c.max_position_embeddings, "max_position_embeddings", src);
  require_at_most(c.max_position_embeddings, kMaxPositions, "max_position_embeddings", src);
  c.rms_norm_eps = get_float(j, "rms_norm_eps", src, 1e-6f);
  if (!(c.rms_norm_eps >= 0)) fail(ErrorCode::Format, "{}: field 'rms_norm_eps' must be >= 0 (got {})", src, c.rms_norm_eps);
  c.rope_theta = get_float(j, "rope_theta", src, 10000.0f);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", src, false);
  if (c.arch == Arch::Qwen2 || c.arch == Arch::Qwen2Moe) {
    c.attention_bias = get_bool(j, "qkv_bias", src, true);  // q/k/v biases (Qwen2-MoE's qkv_bias), never an o bias
  } else if (c.arch == Arch::Qwen3 || c.arch == Arch::Qwen3Moe) {
    c.attention_bias = get_bool(j, "attention_bias", src, false);  // q/k/v and o
    c.o_bias = c.attention_bias;
    c.qk_norm = true;
  } else if (c.arch == Arch::Mixtral) {
  } else {
    c.attention_bias = get_bool(j, "attention_bias", src, false);
    c.o_bias = c.attention_bias;
    c.mlp_bias = get_bool(j, "mlp_bias", src, false);
  }
  // RoPE settings: transformers v4 writes a top-level rope_theta plus an optional
  // rope_scaling object; v5 writes one rope_parameters object holding rope_theta and the
  // scaling fields. Both are accepted.
  const json* rs = nullptr;
  const char* rs_name = "rope_scaling";
  if (auto rp = j.find("rope_parameters"); rp != j.end() && !rp->is_null()) {
    if (!rp->is_object()) fail(ErrorCode::Format, "{}: 'rope_parameters' must be an object", src);
    c.rope_theta = get_float(*rp, "rope_theta", src, c.rope_theta, "rope_parameters");
    rs = &*rp;
    rs_name = "rope_parameters";
  } else if (auto sc = j.find("rope_scaling"); sc != j.end() && !sc->is_null()) {
    if (!sc->is_object()) fail(ErrorCode::Format, "{}: 'rope_scaling' must be an object", src);
    rs = &*sc;
  }
  if (!(c.rope_theta > 0)) fail(ErrorCode::Format, "{}: rope_theta must be positive", src);
  if (rs) {
    std::string type = "default";
    if (rs->contains("rope_type") && (*rs)["rope_type"].is_string())
      type = (*rs)["rope_type"].get<std::string>();
    else if (rs->contains("type") && (*rs)["type"].is_string())
      type = (*rs)["type"].get<std::string>();
    c.rope_scaling.type = type;
    c.rope_scaling.factor = get_float(*rs, "factor", src, 1.0f, rs_name);
    if (type == "llama3") {
      c.rope_scaling.low_freq_factor = get_float(*rs, "low_freq_factor", src, 1.0f, rs_name);
      c.rope_scaling.high_freq_factor = get_float(*rs, "high_freq_factor", src, 4.0f, rs_name);
      c.rope_scaling.original_max_position_embeddings = get_int(*rs, "original_max_position_embeddings", src);
      require_positive(c.rope_scaling.original_max_position_embeddings, "rope_scaling.original_max_position_embeddings", src);
      if (!(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor))
        fail(ErrorCode::Format, "{}: rope_scaling high_freq_factor must exceed low_freq_factor", src);
    } else if (type == "yarn") {
      c.rope_scaling.original_max_position_embeddings =
          get_int(*rs, "original_max_position_embeddings", src, c.max_position_embeddings);
      require_positive(c.rope_scaling.original_max_position_embeddings, "rope_scaling.original_max_position_embeddings", src);
      c.rope_scaling.beta_fast = get_float(*rs, "beta_fast", src, 32.0f, rs_name);
      c.rope_scaling.beta_slow = get_float(*rs, "beta_slow", src, 1.0f, rs_name);
      c.rope_scaling.mscale = get_float(*rs, "mscale", src, 0.0f, rs_name);
      c.rope_scaling.mscale_all_dim = get_float(*rs, "mscale_all_dim", src, 0.0f, rs_name);
      if (rs->contains("attention_factor") && !(*rs)["attention_factor"].is_null())
        c.rope_scaling.attention_factor = get_float(*rs, "attention_factor", src, 1.0f, rs_name);
      c.rope_scaling.truncate = get_bool(*rs, "truncate", src, true);
    } else if (type == "linear" || type == "default") {
    } else {
      fail(ErrorCode::Unsupported, "{}: rope type '{}' is not supported (default, linear, llama3, yarn)", src, type);
    }
    if (!(c.rope_scaling.factor > 0)) fail(ErrorCode::Format, "{}: rope_scaling factor must be positive", src);
  }
  check_math_fields(j, src);
  c.hidden_act = read_activation(j, src);
  read_sliding_window(j, c, src);
  if (c.arch == Arch::DeepseekV3) {
    c.attention_bias = get_bool(j, "attention_bias", src, false);
    c.n_experts = get_int(j, "n_routed_experts", src, 0);
    c.moe_intermediate_size = get_int(j, "moe_intermediate_size", src, 0);
    c.n_shared_experts = get_int(j, "n_shared_experts", src, 0);
    c.first_k_dense_replace = get_int(j, "first_k_dense_replace", src, 0);
    c.n_group = get_int(j, "n_group", src, 1);
    c.topk_group = get_int(j, "topk_group", src, 1);
    c.norm_topk_prob = get_bool(j, "norm_topk_prob", src, true);
    c.routed_scaling_factor = get_float(j, "routed_scaling_factor", src, 1.0f);
    c.sigmoid_routing = true;
    if (j.contains("scoring_func") && j["scoring_func"].is_string() && j["scoring_func"].get<std::string>() != "sigmoid")
      fail(ErrorCode::Unsupported, "{}: scoring_func '{}' is not supported for DeepseekV3 (sigmoid)", src,
           j["scoring_func"].get<std::string>());
    if (c.n_experts > 0) {
      c.n_experts_per_tok = get_int(j, "num_experts_per_tok", src);
      require_positive(c.n_experts_per_tok, "num_experts_per_tok", src);
      require_positive(c.moe_intermediate_size, "moe_intermediate_size", src);
      require_positive(c.n_group, "n_group", src);
      require_positive(c.topk_group, "topk_group", src);
      if (c.n_experts > 4096) fail(ErrorCode::Format, "{}: {} experts is more than the 4096 supported", src, c.n_experts);
      if (c.n_experts_per_tok > c.n_experts)
        fail(ErrorCode::Format, "{}: num_experts_per_tok ({}) is larger than n_routed_experts ({})", src,
             c.n_experts_per_tok, c.n_experts);
      if (c.n_experts % c.n_group)
        fail(ErrorCode::Format, "{}: n_routed_experts ({}) is not a multiple of n_group ({})", src, c.n_experts, c.n_group);
      if (c.topk_group > c.n_group)
        fail(ErrorCode::Format, "{}: topk_group ({}) is larger than n_group ({})", src, c.topk_group, c.n_group);
      if (c.n_experts_per_tok > c.topk_group * (c.n_experts / c.n_group))
        fail(ErrorCode::Format, "{}: num_experts_per_tok ({}) exceeds the experts of the kept groups ({} x {})", src,
             c.n_experts_per_tok, c.topk_group, c.n_experts / c.n_group);
    }
  }
  if (c.arch == Arch::Mixtral || c.arch == Arch::Qwen2Moe || c.arch == Arch::Qwen3Moe) {
    if (c.arch == Arch::Mixtral) {
      c.n_experts = get_int(j, "num_local_experts", src);
      c.moe_intermediate_size = c.intermediate_size;
      c.norm_topk_prob = true;  // Mixtral always renormalises the top-k weights
    } else {
      // transformers 4 writes num_experts, transformers 5 num_local_experts
      c.n_experts = get_int(j, j.contains("num_experts") ? "num_experts" : "num_local_experts", src);
      c.moe_intermediate_size = get_int(j, "moe_intermediate_size", src);
      c.norm_topk_prob = get_bool(j, "norm_topk_prob", src, c.arch == Arch::Qwen3Moe);
      c.decoder_sparse_step = get_int(j, "decoder_sparse_step", src, 1);
      if (auto it = j.find("mlp_only_layers"); it != j.end() && !it->is_null()) {
        if (!it->is_array()) fail(ErrorCode::Format, "{}: 'mlp_only_layers' must be an array", src);
        for (const auto& v : *it) {
          if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= c.n_layers)
            fail(ErrorCode::Format, "{}: 'mlp_only_layers' has an entry outside [0, {})", src, c.n_layers);
          c.mlp_only_layers.push_back(v.get<int64_t>());
        }
      }
      if (c.arch == Arch::Qwen2Moe) {
        c.shared_expert_intermediate_size = get_int(j, "shared_expert_intermediate_size", src, 0);
        c.shared_expert_gate = c.shared_expert_intermediate_size > 0;
      }
    }
    c.n_experts_per_tok = get_int(j, "num_experts_per_tok", src);
    require_positive(c.n_experts, "num_experts", src);
    require_positive(c.n_experts_per_tok, "num_experts_per_tok", src);
    require_positive(c.moe_intermediate_size, "moe_intermediate_size", src);
    require_positive(c.decoder_sparse_step, "decoder_sparse_step", src);
    if (c.n_experts > 4096) fail(ErrorCode::Format, "{}: {} experts is more than the 4096 supported", src, c.n_experts);
    if (c.n_experts_per_tok > c.n_experts)
      fail(ErrorCode::Format, "{}: num_experts_per_tok ({}) is larger than the number of experts ({})", src,
           c.n_experts_per_tok, c.n_experts);
  }
  auto read_ids = [&](const char* key) {
    std::vector<int32_t> ids;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return ids;
    auto add = [&](const json& v) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= c.vocab_size)
        fail(ErrorCode::Format, "{}: '{}' has an id outside the vocabulary", src, key);
      ids.push_back(int32_t(v.get<int64_t>()));
    };
    if (it->is_array())
      for (auto& v : *it) add(v);
    else
      add(*it);
    return ids;
  };
  c.eos_token_ids = read_ids("eos_token_id");
  if (auto b = read_ids("bos_token_id"); !b.empty()) c.bos_token_id = b[0];
  for (const char* k : {"torch_dtype", "dtype"})
    if (j.contains(k) && j[k].is_string()) c.torch_dtype = j[k].get<std::string>();
  check_products(c, src);
  return c;
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
  if (n_experts == 0 || layer < first_k_dense_replace) return false;
  for (int64_t l : mlp_only_layers)
    if (l == layer) return false;
  return (layer + 1) % decoder_sparse_step == 0;
}

float ModelConfig::attention_scale() const {
  const int64_t qk = mla ? qk_nope_head_dim + qk_rope_head_dim : head_dim;
  float scale = 1.0f / std::sqrt(float(qk));
  if (mla && rope_scaling.type != "default" && rope_scaling.mscale_all_dim != 0.0f && rope_scaling.factor > 1.0f) {
    const float m = 0.1f * rope_scaling.mscale_all_dim * std::log(rope_scaling.factor) + 1.0f;
    scale *= m * m;
  }
  return scale;
}

}  // namespace reason
