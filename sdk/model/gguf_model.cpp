// GGUF metadata -> config.json / generation_config.json, and GGUF tensors -> Hugging Face
// tensor names (see gguf_model.h).
#include "model/gguf_model.h"

#include <cmath>
#include <cstring>
#include <map>
#include <numbers>
#include <regex>

#include "core/error.h"
#include "io/gguf.h"

namespace reason {

namespace {

using json = nlohmann::json;

// Typed access to "<arch>.<key>" metadata.
struct Meta {
  const GgufFile& f;
  std::string arch;
  std::string key(std::string_view k) const { return arch + "." + std::string(k); }
  bool has(std::string_view k) const { return f.find(key(k)) != nullptr; }
  int64_t u(std::string_view k) const {
    const GgufValue* v = f.find(key(k));
    if (v && v->type == GgufType::Array)
      fail(ErrorCode::Unsupported, "{}: GGUF: {} is an array (per-layer values are not supported)", f.source(), key(k));
    const uint64_t x = f.get_uint(key(k));
    if (x > uint64_t(INT64_MAX)) fail(ErrorCode::Format, "{}: GGUF: {} = {} is too large", f.source(), key(k), x);
    return int64_t(x);
  }
  int64_t u(std::string_view k, int64_t dflt) const { return has(k) ? u(k) : dflt; }
  double flt(std::string_view k, double dflt) const { return has(k) ? f.get_float(key(k)) : dflt; }
};

const GgufFile::Tensor& need_tensor(const GgufFile& f, const std::string& name) {
  const GgufFile::Tensor* t = f.find_tensor(name);
  if (!t) fail(ErrorCode::Format, "{}: GGUF: no tensor '{}'", f.source(), name);
  return *t;
}

// f32 values of a whole tensor.
std::vector<float> dequantize_all(const GgufFile::Tensor& t) {
  std::vector<float> v(size_t(t.numel));
  ggml_dequantize(t.type, t.data, 0, t.numel, v.data());
  return v;
}

// Llama 3 rope scaling, which llama.cpp's converter stores only as rope_freqs.weight (one factor
// per rotary frequency): recognised when the factors equal those of rope_type llama3 with
// low_freq_factor 1, high_freq_factor 4 and a power-of-two original context, else refused.
json llama3_rope_from_factors(const GgufFile& f, int64_t rot_dim, double theta) {
  const auto& t = need_tensor(f, "rope_freqs.weight");
  if (t.numel != rot_dim / 2)
    fail(ErrorCode::Format, "{}: GGUF: rope_freqs.weight has {} values, expected {} (rotary dim / 2)", f.source(),
         t.numel, rot_dim / 2);
  const std::vector<float> got = dequantize_all(t);
  const double factor = *std::max_element(got.begin(), got.end());
  for (int64_t orig = 1; orig <= (int64_t(1) << 24); orig *= 2) {
    const double low = 1.0, high = 4.0, low_wl = double(orig) / low, high_wl = double(orig) / high;
    bool ok = true;
    for (int64_t i = 0; i < rot_dim / 2 && ok; ++i) {
      const double freq = 1.0 / std::pow(theta, double(2 * i) / double(rot_dim));
      const double wl = 2 * std::numbers::pi / freq;
      double want;
      if (wl < high_wl) want = 1;
      else if (wl > low_wl) want = factor;
      else {
        const double smooth = (double(orig) / wl - low) / (high - low);
        want = 1 / ((1 - smooth) / factor + smooth);
      }
      ok = std::fabs(want - got[size_t(i)]) <= 1e-4 * std::max(1.0, want);
    }
    if (ok)
      return {{"rope_type", "llama3"}, {"rope_theta", theta}, {"factor", factor}, {"low_freq_factor", low},
              {"high_freq_factor", high}, {"original_max_position_embeddings", orig}};
  }
  fail(ErrorCode::Unsupported,
       "{}: GGUF: rope_freqs.weight holds rotary frequency factors that are not Llama 3's (rope_type llama3 with "
       "low_freq_factor 1, high_freq_factor 4): not supported",
       f.source());
}

// rope_parameters of config.json from {arch}.rope.* (and rope_freqs.weight).
json rope_parameters(const Meta& m, int64_t rot_dim) {
  const double theta = m.flt("rope.freq_base", 10000.0);
  json rp = {{"rope_type", "default"}, {"rope_theta", theta}};
  std::string type = m.has("rope.scaling.type") ? m.f.get_string(m.key("rope.scaling.type")) : "none";
  if (type == "none" && m.has("rope.scale_linear")) type = "linear";
  if (type == "linear") {
    const double factor = m.has("rope.scaling.factor") ? m.flt("rope.scaling.factor", 1) : m.flt("rope.scale_linear", 1);
    rp = {{"rope_type", "linear"}, {"rope_theta", theta}, {"factor", factor}};
  } else if (type == "yarn") {
    const double mscale = m.flt("rope.scaling.yarn_log_multiplier", 0.0) / 0.1;
    rp = {{"rope_type", "yarn"},
          {"rope_theta", theta},
          {"factor", m.flt("rope.scaling.factor", 1)},
          {"original_max_position_embeddings", m.u("rope.scaling.original_context_length")},
          {"beta_fast", m.flt("rope.scaling.yarn_beta_fast", 32.0)},
          {"beta_slow", m.flt("rope.scaling.yarn_beta_slow", 1.0)},
          {"mscale", mscale},
          {"mscale_all_dim", mscale}};
  } else if (type != "none") {
    fail(ErrorCode::Unsupported, "{}: GGUF: {} \"{}\" is not supported (none, linear, yarn)", m.f.source(),
         m.key("rope.scaling.type"), type);
  }
  if (m.f.find_tensor("rope_freqs.weight")) {
    if (type != "none")
      fail(ErrorCode::Unsupported, "{}: GGUF: rope_freqs.weight together with rope scaling \"{}\" is not supported",
           m.f.source(), type);
    rp = llama3_rope_from_factors(m.f, rot_dim, theta);
  }
  return rp;
}

// The token ids generation stops at: eos, and eot / eom where the file names them.
json eos_ids(const GgufFile& f) {
  json ids = json::array();
  for (const char* k : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
    if (f.find(k)) {
      const uint64_t id = f.get_uint(k);
      if (std::find(ids.begin(), ids.end(), json(id)) == ids.end()) ids.push_back(id);
    }
  return ids;
}

int64_t vocab_rows(const GgufFile& f) {
  const auto& emb = need_tensor(f, "token_embd.weight");
  if (emb.dims.size() != 2) fail(ErrorCode::Format, "{}: GGUF: token_embd.weight must be 2-D", f.source());
  return emb.dims[1];
}

json hf_config(const GgufFile& f) {
  const std::string& arch = f.get_string("general.architecture");
  const Meta m{f, arch};
  const bool has_experts = m.u("expert_count", 0) > 0;
  json c;
  std::string hf_arch, model_type;
  if (arch == "llama") {
    hf_arch = has_experts ? "MixtralForCausalLM" : "LlamaForCausalLM";
    model_type = has_experts ? "mixtral" : "llama";
  } else if (arch == "qwen2") {
    hf_arch = "Qwen2ForCausalLM", model_type = "qwen2";
  } else if (arch == "qwen3") {
    hf_arch = "Qwen3ForCausalLM", model_type = "qwen3";
  } else if (arch == "qwen2moe") {
    hf_arch = "Qwen2MoeForCausalLM", model_type = "qwen2_moe";
  } else if (arch == "qwen3moe") {
    hf_arch = "Qwen3MoeForCausalLM", model_type = "qwen3_moe";
  } else if (arch == "deepseek2") {
    hf_arch = "DeepseekV3ForCausalLM", model_type = "deepseek_v3";
  } else {
    fail(ErrorCode::Unsupported,
         "{}: GGUF: architecture \"{}\" is not supported (llama, qwen2, qwen3, qwen2moe, qwen3moe, deepseek2)",
         f.source(), arch);
  }
  c["architectures"] = {hf_arch};
  c["model_type"] = model_type;
  c["hidden_act"] = "silu";
  c["vocab_size"] = vocab_rows(f);
  c["hidden_size"] = m.u("embedding_length");
  c["num_hidden_layers"] = m.u("block_count");
  c["num_attention_heads"] = m.u("attention.head_count");
  c["num_key_value_heads"] = m.u("attention.head_count_kv", m.u("attention.head_count"));
  c["max_position_embeddings"] = m.u("context_length", 4096);
  c["rms_norm_eps"] = m.flt("attention.layer_norm_rms_epsilon", 1e-6);
  c["tie_word_embeddings"] = f.find_tensor("output.weight") == nullptr;
  // The float type the file stores its matmul weights in (the token embedding's), as
  // convert_hf_to_gguf.py keeps the checkpoint's; quantised files dequantise to f32.
  {
    const GgufFile::Tensor* e = f.find_tensor("token_embd.weight");
    const uint32_t t = e ? e->type : uint32_t(GgmlType::F32);
    c["torch_dtype"] = t == uint32_t(GgmlType::BF16) ? "bfloat16" : t == uint32_t(GgmlType::F16) ? "float16" : "float32";
  }
  c["eos_token_id"] = eos_ids(f);
  if (f.find("tokenizer.ggml.bos_token_id")) c["bos_token_id"] = f.get_uint("tokenizer.ggml.bos_token_id");
  if (f.find("tokenizer.ggml.padding_token_id")) c["pad_token_id"] = f.get_uint("tokenizer.ggml.padding_token_id");
  if (m.has("attention.sliding_window"))
    fail(ErrorCode::Unsupported, "{}: GGUF: {} is set: sliding-window attention is not supported", f.source(),
         m.key("attention.sliding_window"));
  const int64_t heads = m.u("attention.head_count"), d = m.u("embedding_length");
  if (heads <= 0) fail(ErrorCode::Format, "{}: GGUF: {} must be positive", f.source(), m.key("attention.head_count"));

  if (arch == "deepseek2") {
    if (m.u("expert_gating_func", 1) != 2)
      fail(ErrorCode::Unsupported,
           "{}: GGUF: deepseek2 with softmax expert gating (DeepSeek-V2) is not supported; DeepSeek-V3/R1 use sigmoid "
           "({}.expert_gating_func = 2)",
           f.source(), arch);
    const int64_t rope = m.u("rope.dimension_count");
    const bool mla_keys = m.has("attention.key_length_mla");  // newer llama.cpp: MQA-absorbed layout
    const int64_t qk = mla_keys ? m.u("attention.key_length_mla") : m.u("attention.key_length");
    const int64_t vd = mla_keys ? m.u("attention.value_length_mla") : m.u("attention.value_length");
    if (qk <= rope) fail(ErrorCode::Format, "{}: GGUF: key length {} must exceed the rotary dim {}", f.source(), qk, rope);
    c["q_lora_rank"] = m.u("attention.q_lora_rank", 0);
    c["kv_lora_rank"] = m.u("attention.kv_lora_rank");
    c["qk_rope_head_dim"] = rope;
    c["qk_nope_head_dim"] = qk - rope;
    c["v_head_dim"] = vd;
    c["head_dim"] = rope;
    c["num_key_value_heads"] = heads;
    c["intermediate_size"] = m.u("feed_forward_length");
    c["n_routed_experts"] = m.u("expert_count", 0);
    c["num_experts_per_tok"] = m.u("expert_used_count", 0);
    c["moe_intermediate_size"] = m.u("expert_feed_forward_length", 0);
    c["n_shared_experts"] = m.u("expert_shared_count", 0);
    c["first_k_dense_replace"] = m.u("leading_dense_block_count", 0);
    c["routed_scaling_factor"] = m.flt("expert_weights_scale", 1.0);
    c["norm_topk_prob"] = m.has("expert_weights_norm") ? f.get_bool(m.key("expert_weights_norm")) : true;
    c["n_group"] = m.u("expert_group_count", 1);
    c["topk_group"] = m.u("expert_group_used_count", 1);
    c["scoring_func"] = "sigmoid";
    c["topk_method"] = "noaux_tc";
    c["rope_interleave"] = true;
    c["num_nextn_predict_layers"] = 0;  // not loaded from GGUF
    c["attention_bias"] = false;
    c["rope_parameters"] = rope_parameters(m, rope);
    return c;
  }
  const int64_t head_dim = m.u("attention.key_length", d / heads);
  if (m.u("attention.value_length", head_dim) != head_dim)
    fail(ErrorCode::Unsupported, "{}: GGUF: value length {} differs from key length {}: not supported", f.source(),
         m.u("attention.value_length"), head_dim);
  if (m.u("rope.dimension_count", head_dim) != head_dim)
    fail(ErrorCode::Unsupported, "{}: GGUF: {} = {} is less than the head dim {} (partial rotary): not supported",
         f.source(), m.key("rope.dimension_count"), m.u("rope.dimension_count"), head_dim);
  c["head_dim"] = head_dim;
  c["rope_parameters"] = rope_parameters(m, head_dim);
  c["intermediate_size"] = m.u("feed_forward_length", m.u("expert_feed_forward_length", 0));
  const bool q_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  if (arch == "llama" || arch == "qwen3" || arch == "qwen3moe") {
    const bool o_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;
    if (q_bias != o_bias)
      fail(ErrorCode::Unsupported, "{}: GGUF: q/k/v biases without an output bias (or the reverse) are not supported for {}",
           f.source(), arch);
    c["attention_bias"] = q_bias;
  }
  if (arch == "llama") c["mlp_bias"] = f.find_tensor("blk.0.ffn_up.bias") != nullptr;
  if (has_experts) {
    const std::string nexp = arch == "llama" ? "num_local_experts" : "num_experts";
    c[nexp] = m.u("expert_count");
    c["num_experts_per_tok"] = m.u("expert_used_count");
    if (arch == "llama") {
      c["intermediate_size"] = m.u("expert_feed_forward_length", m.u("feed_forward_length", 0));
    } else {
      c["moe_intermediate_size"] = m.u("expert_feed_forward_length");
      // llama.cpp renormalises the top-k weights of qwen3moe and not of qwen2moe, unless told
      c["norm_topk_prob"] = m.has("expert_weights_norm") ? f.get_bool(m.key("expert_weights_norm")) : arch == "qwen3moe";
      if (arch == "qwen2moe") {
        int64_t shared = m.u("expert_shared_feed_forward_length", 0);
        if (shared == 0 && f.find_tensor("blk.0.ffn_up_shexp.weight"))
          shared = need_tensor(f, "blk.0.ffn_up_shexp.weight").dims.back();
        c["shared_expert_intermediate_size"] = shared;
      }
      if (c["intermediate_size"].get<int64_t>() == 0) c["intermediate_size"] = c["moe_intermediate_size"];
    }
  }
  return c;
}

// ---- tensors ----

// How one Hugging Face tensor is made from GGUF tensors.
struct Recipe {
  enum Kind { Plain, Permute, Expert, KvB } kind = Plain;
  const GgufFile::Tensor* a = nullptr;
  const GgufFile::Tensor* b = nullptr;  // KvB: v_b (a is k_b)
  int64_t arg = 0;                      // Permute: heads; Expert: index
  Shape shape;                          // Hugging Face shape
};

Shape hf_shape(const GgufFile::Tensor& t) { return Shape(t.dims.rbegin(), t.dims.rend()); }

class GgufWeights final : public WeightSource {
 public:
  GgufWeights(std::shared_ptr<const GgufFile> f, const std::string& arch, const ModelConfig& c);
  bool has(const std::string& name) const override { return recipes_.count(name) != 0; }
  Tensor get(const std::string& name) const override;
  Tensor get_quantized(const std::string& name) const override;
  void release(const std::string& name) const override;
  const std::vector<std::string>& names() const override { return names_; }
  const std::string& source() const override { return f_->source(); }

 private:
  void map_layer_tensor(const GgufFile::Tensor& t, int64_t layer, const std::string& suffix);
  // Recipe::Permute: GGUF row (h, j, p) of src holds Hugging Face row (h, p, j) of dst (heads x
  // rows/head/2 x 2; rows of row_bytes, f32 or whole quantised blocks). Format error when the rows
  // are not a multiple of 2 x heads.
  void unpermute_rows(const GgufFile::Tensor& a, const Recipe& r, const uint8_t* src, uint8_t* dst, size_t row_bytes) const;
  void add(const std::string& hf, Recipe r) {
    if (!recipes_.emplace(hf, std::move(r)).second)
      fail(ErrorCode::Format, "{}: GGUF: two tensors give '{}'", f_->source(), hf);
  }
  std::shared_ptr<const GgufFile> f_;
  std::string arch_;
  const ModelConfig cfg_;
  std::map<std::string, Recipe> recipes_;
  std::vector<std::string> names_;
  std::map<int64_t, std::pair<const GgufFile::Tensor*, const GgufFile::Tensor*>> kb_vb_;  // layer -> k_b, v_b
};

GgufWeights::GgufWeights(std::shared_ptr<const GgufFile> f, const std::string& arch, const ModelConfig& c)
    : f_(std::move(f)), arch_(arch), cfg_(c) {
  static const std::regex blk(R"(blk\.(\d{1,9})\.(.+))");
  for (const GgufFile::Tensor& t : f_->tensors()) {
    std::smatch mt;
    if (t.name == "token_embd.weight") add("model.embed_tokens.weight", {Recipe::Plain, &t, nullptr, 0, hf_shape(t)});
    else if (t.name == "output_norm.weight") add("model.norm.weight", {Recipe::Plain, &t, nullptr, 0, hf_shape(t)});
    else if (t.name == "output.weight") add("lm_head.weight", {Recipe::Plain, &t, nullptr, 0, hf_shape(t)});
    else if (t.name == "rope_freqs.weight") continue;  // read into the config (rope_parameters)
    else if (std::regex_match(t.name, mt, blk)) map_layer_tensor(t, std::stoll(mt[1].str()), mt[2].str());
    else fail(ErrorCode::Unsupported, "{}: GGUF: tensor '{}' is not one the engine knows for architecture {}", f_->source(), t.name, arch_);
  }
  for (const auto& [layer, kv] : kb_vb_) {
    if (!kv.first || !kv.second)
      fail(ErrorCode::Format, "{}: GGUF: layer {} has only one of attn_k_b / attn_v_b", f_->source(), layer);
    const std::string name = fmt::format("model.layers.{}.self_attn.kv_b_proj.weight", layer);
    const auto& kb = *kv.first;  // [H, kv_lora, nope] (numpy order)
    const auto& vb = *kv.second;  // [H, v_head_dim, kv_lora]
    if (kb.dims.size() != 3 || vb.dims.size() != 3 || kb.dims[2] != vb.dims[2] || kb.dims[1] != vb.dims[0])
      fail(ErrorCode::Format, "{}: GGUF: attn_k_b / attn_v_b of layer {} have inconsistent shapes", f_->source(), layer);
    add(name, {Recipe::KvB, &kb, &vb, 0, {kb.dims[2] * (kb.dims[0] + vb.dims[1]), kb.dims[1]}});
  }
  for (const auto& [name, r] : recipes_) names_.push_back(name);
}

void GgufWeights::map_layer_tensor(const GgufFile::Tensor& t, int64_t layer, const std::string& suffix) {
  const std::string p = fmt::format("model.layers.{}.", layer);
  const bool moe_arch = arch_ == "qwen2moe" || arch_ == "qwen3moe" || arch_ == "deepseek2" || cfg_.arch == Arch::Mixtral;
  if (layer >= cfg_.n_layers) {
    if (arch_ == "deepseek2" && suffix.rfind("nextn.", 0) == 0) return;
    if (arch_ == "deepseek2" && layer < cfg_.n_layers + 8) return;  // next-token-prediction blocks: not loaded
    fail(ErrorCode::Format, "{}: GGUF: tensor '{}' is past the {} layers", f_->source(), t.name, cfg_.n_layers);
  }
  for (const auto& [gguf_suffix, hf_suffix] : gguf_layer_tensor_names())
    if (suffix == gguf_suffix) {
      add(p + hf_suffix, {Recipe::Plain, &t, nullptr, 0, hf_shape(t)});
      return;
    }
  if (suffix == "attn_q.weight" || suffix == "attn_q.bias" || suffix == "attn_k.weight" || suffix == "attn_k.bias") {
    const bool q = suffix[5] == 'q';
    const std::string hf = p + (q ? "self_attn.q_proj." : "self_attn.k_proj.") + suffix.substr(suffix.find('.') + 1);
    if (arch_ == "llama")  // convert_hf_to_gguf.py permutes Llama's Q/K rows for ggml's rotary layout
      add(hf, {Recipe::Permute, &t, nullptr, q ? cfg_.n_heads : cfg_.n_kv_heads, hf_shape(t)});
    else
      add(hf, {Recipe::Plain, &t, nullptr, 0, hf_shape(t)});
    return;
  }
  if (suffix == "attn_k_b.weight") { kb_vb_[layer].first = &t; return; }
  if (suffix == "attn_v_b.weight") { kb_vb_[layer].second = &t; return; }
  if (moe_arch) {
    const bool mixtral = cfg_.arch == Arch::Mixtral, ds = arch_ == "deepseek2";
    const std::string block = p + (mixtral ? "block_sparse_moe." : "mlp.");
    if (suffix == "ffn_gate_inp.weight") {
      add(block + "gate.weight", {Recipe::Plain, &t, nullptr, 0, hf_shape(t)});
      return;
    }
    if (ds && suffix == "exp_probs_b.bias") {
      add(block + "gate.e_score_correction_bias", {Recipe::Plain, &t, nullptr, 0, hf_shape(t)});
      return;
    }
    if (arch_ == "qwen2moe" && suffix == "ffn_gate_inp_shexp.weight") {
      add(block + "shared_expert_gate.weight", {Recipe::Plain, &t, nullptr, 0, {1, t.numel}});
      return;
    }
    for (const char* w : {"gate", "up", "down"}) {
      const std::string proj = std::string(w) + "_proj";
      if (suffix == fmt::format("ffn_{}_shexp.weight", w) && !mixtral) {
        add(block + (ds ? "shared_experts." : "shared_expert.") + proj + ".weight", {Recipe::Plain, &t, nullptr, 0, hf_shape(t)});
        return;
      }
      if (suffix == fmt::format("ffn_{}_exps.weight", w)) {
        if (t.dims.size() != 3)
          fail(ErrorCode::Format, "{}: GGUF: expert tensor '{}' must be 3-D (experts stacked)", f_->source(), t.name);
        const char* mx = w[0] == 'g' ? "w1" : w[0] == 'u' ? "w3" : "w2";
        for (int64_t e = 0; e < t.dims[2]; ++e)
          add(block + "experts." + std::to_string(e) + "." + (mixtral ? mx : proj) + ".weight",
              {Recipe::Expert, &t, nullptr, e, {t.dims[1], t.dims[0]}});
        return;
      }
    }
  }
  fail(ErrorCode::Unsupported, "{}: GGUF: tensor '{}' is not one the engine knows for architecture {}", f_->source(),
       t.name, arch_);
}

Tensor GgufWeights::get(const std::string& name) const {
  auto it = recipes_.find(name);
  if (it == recipes_.end()) fail(ErrorCode::Format, "{}: no tensor named '{}' in the model's weights", f_->source(), name);
  const Recipe& r = it->second;
  const GgufFile::Tensor& a = *r.a;
  Tensor out = Tensor::empty(DType::F32, r.shape);
  float* dst = out.data<float>();
  if (r.kind == Recipe::Plain) {
    ggml_dequantize(a.type, a.data, 0, a.numel, dst);
  } else if (r.kind == Recipe::Expert) {
    const int64_t n = out.numel();
    ggml_dequantize(a.type, a.data, r.arg * n, n, dst);
  } else if (r.kind == Recipe::Permute) {
    const std::vector<float> src = dequantize_all(a);
    unpermute_rows(a, r, reinterpret_cast<const uint8_t*>(src.data()), reinterpret_cast<uint8_t*>(dst),
                   size_t(out.numel() / r.shape[0]) * sizeof(float));
  } else {  // KvB: per head, W_UK = k_b[h]^T ([nope, kv_lora]) then W_UV = v_b[h] ([v, kv_lora])
    const GgufFile::Tensor& b = *r.b;
    const int64_t nope = a.dims[0], lr = a.dims[1], heads = a.dims[2], vd = b.dims[1];
    const std::vector<float> kb = dequantize_all(a), vb = dequantize_all(b);
    for (int64_t h = 0; h < heads; ++h) {
      float* o = dst + h * (nope + vd) * lr;
      for (int64_t i = 0; i < nope; ++i)
        for (int64_t j = 0; j < lr; ++j) o[i * lr + j] = kb[size_t((h * lr + j) * nope + i)];
      std::memcpy(o + nope * lr, vb.data() + h * vd * lr, size_t(vd * lr) * sizeof(float));
    }
  }
  if (a.type == uint32_t(GgmlType::F16)) return out.to(DType::F16);
  if (a.type == uint32_t(GgmlType::BF16)) return out.to(DType::BF16);
  return out;
}

void GgufWeights::unpermute_rows(const GgufFile::Tensor& a, const Recipe& r, const uint8_t* src, uint8_t* dst,
                                 size_t row_bytes) const {
  const int64_t rows = r.shape[0], heads = r.arg;
  if (heads <= 0 || rows % (2 * heads))
    fail(ErrorCode::Format, "{}: GGUF: tensor '{}' has {} rows, not a multiple of 2 x {} heads", f_->source(), a.name,
         rows, heads);
  const int64_t half = rows / heads / 2;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t pr = 0; pr < 2; ++pr)
      for (int64_t j = 0; j < half; ++j)
        std::memcpy(dst + size_t((h * 2 + pr) * half + j) * row_bytes, src + size_t((h * half + j) * 2 + pr) * row_bytes,
                    row_bytes);
}

// Quantised tensors as stored: a view of the mapped file (one tensor, or one expert's slice of a
// stacked one), or Llama's Q/K rows put back in Hugging Face order (whole rows of blocks move).
Tensor GgufWeights::get_quantized(const std::string& name) const {
  auto it = recipes_.find(name);
  if (it == recipes_.end()) return get(name);
  const Recipe& r = it->second;
  const GgufFile::Tensor& a = *r.a;
  const std::optional<DType> q = ggml_quant_dtype(a.type);
  if (!q || r.shape.size() != 2 || r.kind == Recipe::KvB) return get(name);
  const int64_t rows = r.shape[0];
  const size_t row_bytes = kernels::dtype_nbytes(*q, r.shape[1]);
  const std::shared_ptr<const void> owner(f_, f_.get());
  if (r.kind == Recipe::Plain) return Tensor::view(*q, r.shape, a.data, owner);
  if (r.kind == Recipe::Expert) return Tensor::view(*q, r.shape, a.data + size_t(r.arg * rows) * row_bytes, owner);
  Tensor out = Tensor::empty(*q, r.shape);
  unpermute_rows(a, r, a.data, out.data<uint8_t>(), row_bytes);
  return out;
}

void GgufWeights::release(const std::string& name) const {
  auto it = recipes_.find(name);
  if (it == recipes_.end()) return;
  const Recipe& r = it->second;
  const std::optional<DType> q = ggml_quant_dtype(r.a->type);
  if (r.kind != Recipe::Plain && r.kind != Recipe::Expert) return;
  // the tensor's (or the expert's) bytes: whole blocks for a quantised type, else a whole number
  // of bytes per element (f32 / f16 / bf16)
  int64_t n = 1;
  for (int64_t d : r.shape) n *= d;
  const size_t bytes = q ? (r.shape.size() == 2 ? size_t(r.shape[0]) * kernels::dtype_nbytes(*q, r.shape[1]) : 0)
                         : size_t(r.a->nbytes / uint64_t(std::max<int64_t>(1, r.a->numel))) * size_t(n);
  if (bytes == 0) return;
  f_->release_pages(r.a->data + (r.kind == Recipe::Expert ? size_t(r.arg) * bytes : 0), bytes);
}

}  // namespace

const std::vector<std::pair<std::string, std::string>>& gguf_layer_tensor_names() {
  static const std::vector<std::pair<std::string, std::string>> names = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"attn_output.bias", "self_attn.o_proj.bias"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_q_norm.weight", "self_attn.q_norm.weight"},
      {"attn_k_norm.weight", "self_attn.k_norm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
      {"ffn_gate.bias", "mlp.gate_proj.bias"},
      {"ffn_up.bias", "mlp.up_proj.bias"},
      {"ffn_down.bias", "mlp.down_proj.bias"},
      // DeepSeek MLA
      {"attn_q_a.weight", "self_attn.q_a_proj.weight"},
      {"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight"},
      {"attn_q_b.weight", "self_attn.q_b_proj.weight"},
      {"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight"},
      {"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight"},
      {"attn_kv_b.weight", "self_attn.kv_b_proj.weight"},
  };
  return names;
}

json gguf_generation_config(const GgufFile& f) {
  json g = json::object();
  auto num = [&](const char* key, const char* field) {
    if (f.find(key)) g[field] = f.get_float(key);
  };
  num("general.sampling.temp", "temperature");
  num("general.sampling.top_p", "top_p");
  num("general.sampling.min_p", "min_p");
  num("general.sampling.penalty_repeat", "repetition_penalty");
  if (f.find("general.sampling.top_k")) g["top_k"] = f.get_uint("general.sampling.top_k");
  if (!g.empty()) g["do_sample"] = !(g.contains("temperature") && g["temperature"].get<double>() == 0.0);
  return g;
}

GgufModel gguf_model(std::shared_ptr<const GgufFile> file) {
  GgufModel g;
  g.file = std::move(file);
  g.config = hf_config(*g.file);
  g.model_config = ModelConfig::from_json(g.config, g.file->source() + " (GGUF metadata)");
  g.generation_config = gguf_generation_config(*g.file);
  if (!g.config["eos_token_id"].empty()) g.generation_config["eos_token_id"] = g.config["eos_token_id"];
  g.weights = std::make_shared<GgufWeights>(g.file, g.file->get_string("general.architecture"), g.model_config);
  return g;
}

GgufModel open_gguf_model(const std::string& path) { return gguf_model(GgufFile::open(path)); }

}  // namespace reason
