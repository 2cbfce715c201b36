// Model -> GGUF (see gguf_export.h).
#include "model/gguf_export.h"

#include "model/quant_scheme.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <fstream>
#include <numbers>
#include <set>
#include <tuple>

#include "core/error.h"
#include "io/gguf_write.h"
#include "io/json_file.h"
#include "model/gguf_model.h"
#include "reason/kernels/dtype.h"
#include "tokenizer/gguf_vocab.h"

namespace reason {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Meta = std::vector<std::pair<std::string, GgufValue>>;

const char* arch_name(const ModelConfig& c) {
  switch (c.arch) {
    case Arch::Llama: case Arch::Mixtral: return "llama";
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
    case Arch::Qwen2Moe: return "qwen2moe";
    case Arch::Qwen3Moe: return "qwen3moe";
    case Arch::DeepseekV3: return "deepseek2";
  }
  return "";
}

// llama.cpp's rope_freqs.weight for rope_type llama3 (convert_hf_to_gguf.py's formula).
std::vector<float> llama3_factors(const ModelConfig& c) {
  const RopeScaling& s = c.rope_scaling;
  const double orig = double(s.original_max_position_embeddings), low_wl = orig / s.low_freq_factor,
               high_wl = orig / s.high_freq_factor;
  std::vector<float> out;
  for (int64_t i = 0; i < c.head_dim / 2; ++i) {
    const double freq = 1.0 / std::pow(double(c.rope_theta), double(2 * i) / double(c.head_dim));
    const double wl = 2 * std::numbers::pi / freq;
    if (wl < high_wl) out.push_back(1.0f);
    else if (wl > low_wl) out.push_back(s.factor);
    else {
      const double smooth = (orig / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      out.push_back(float(1 / ((1 - smooth) / s.factor + smooth)));
    }
  }
  return out;
}

Meta model_metadata(const ModelConfig& c, const std::string& name, GgufOutType type, const std::string& src) {
  const std::string a = arch_name(c);
  if (c.hidden_act != Activation::Silu)
    fail(ErrorCode::Unsupported, "{}: a GELU MLP cannot be written to GGUF (llama.cpp's {} is SwiGLU)", src, a);
  if (!c.layer_window.empty())
    fail(ErrorCode::Unsupported, "{}: sliding-window attention cannot be written to GGUF by this engine", src);
  Meta kv;
  auto u = [&](const std::string& k, int64_t v) { kv.emplace_back(a + "." + k, gguf_u32(uint32_t(v))); };
  auto f = [&](const std::string& k, double v) { kv.emplace_back(a + "." + k, gguf_f32(float(v))); };
  kv.emplace_back("general.architecture", gguf_string(a));
  kv.emplace_back("general.name", gguf_string(name));
  // llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_BF16, MOSTLY_Q8_0, MOSTLY_Q4_K_M
  const uint32_t file_type[] = {0, 1, 32, 7, 15};
  kv.emplace_back("general.file_type", gguf_u32(file_type[int(type)]));
  if (type == GgufOutType::Q8_0 || type == GgufOutType::Q4_K_M)
    kv.emplace_back("general.quantization_version", gguf_u32(2));
  u("context_length", c.max_position_embeddings);
  u("embedding_length", c.hidden_size);
  u("block_count", c.n_layers);
  u("feed_forward_length", c.intermediate_size);
  u("attention.head_count", c.n_heads);
  u("attention.head_count_kv", c.n_kv_heads);
  f("attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  f("rope.freq_base", c.rope_theta);
  u("vocab_size", c.vocab_size);
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == "linear") {
    kv.emplace_back(a + ".rope.scaling.type", gguf_string("linear"));
    f("rope.scaling.factor", rs.factor);
  } else if (rs.type == "yarn") {
    if (rs.mscale != rs.mscale_all_dim || rs.beta_fast != 32.0f || rs.beta_slow != 1.0f || rs.attention_factor)
      fail(ErrorCode::Unsupported,
           "{}: YaRN rope scaling with mscale != mscale_all_dim, other betas or an attention_factor cannot be written to GGUF", src);
    kv.emplace_back(a + ".rope.scaling.type", gguf_string("yarn"));
    f("rope.scaling.factor", rs.factor);
    u("rope.scaling.original_context_length", rs.original_max_position_embeddings);
    f("rope.scaling.yarn_log_multiplier", 0.1 * rs.mscale_all_dim);
  }
  if (c.arch == Arch::DeepseekV3) {
    if (c.q_lora_rank > 0) u("attention.q_lora_rank", c.q_lora_rank);
    u("attention.kv_lora_rank", c.kv_lora_rank);
    u("attention.key_length", c.kv_lora_rank + c.qk_rope_head_dim);  // the MQA-absorbed layout
    u("attention.value_length", c.kv_lora_rank);
    u("attention.key_length_mla", c.qk_nope_head_dim + c.qk_rope_head_dim);
    u("attention.value_length_mla", c.v_head_dim);
    u("rope.dimension_count", c.qk_rope_head_dim);
    u("leading_dense_block_count", c.first_k_dense_replace);
    u("expert_count", c.n_experts);
    u("expert_used_count", c.n_experts_per_tok);
    u("expert_feed_forward_length", c.moe_intermediate_size);
    u("expert_shared_count", c.n_shared_experts);
    f("expert_weights_scale", c.routed_scaling_factor);
    kv.emplace_back(a + ".expert_weights_norm", gguf_bool(c.norm_topk_prob));
    u("expert_gating_func", 2);  // sigmoid
    u("expert_group_count", c.n_group);
    u("expert_group_used_count", c.topk_group);
    return kv;
  }
  u("attention.key_length", c.head_dim);
  u("attention.value_length", c.head_dim);
  u("rope.dimension_count", c.head_dim);
  if (c.n_experts > 0) {
    if (c.decoder_sparse_step != 1 || !c.mlp_only_layers.empty())
      fail(ErrorCode::Unsupported, "{}: MoE models with dense layers (decoder_sparse_step, mlp_only_layers) cannot be written to GGUF", src);
    u("expert_count", c.n_experts);
    u("expert_used_count", c.n_experts_per_tok);
    if (c.arch != Arch::Mixtral) {
      u("expert_feed_forward_length", c.moe_intermediate_size);
      kv.emplace_back(a + ".expert_weights_norm", gguf_bool(c.norm_topk_prob));
    }
    if (c.shared_expert_intermediate_size > 0) u("expert_shared_feed_forward_length", c.shared_expert_intermediate_size);
  }
  return kv;
}

// The ggml type of GGUF tensor `name` (dims in ggml order: dims[0] is the row length) in a file of
// type `want` with n_layers layers: llama-quantize's choice for the quantised types (by GGUF name, as
// llama_tensor_get_type decides), the converter's for the float ones.
uint32_t tensor_type(const std::string& name, const std::vector<int64_t>& dims, GgufOutType want, bool has_output,
                     int64_t n_layers) {
  if (dims.size() < 2) return uint32_t(GgmlType::F32);
  switch (want) {
    case GgufOutType::F32: return uint32_t(GgmlType::F32);
    case GgufOutType::F16: return uint32_t(GgmlType::F16);
    case GgufOutType::BF16: return uint32_t(GgmlType::BF16);
    case GgufOutType::Q8_0:
    case GgufOutType::Q4_K_M: break;
  }
  if (name.find("ffn_gate_inp") != std::string::npos) return uint32_t(GgmlType::F32);  // routers stay f32
  TensorRole role = TensorRole::Other;
  if (name == "output.weight" || (!has_output && name == "token_embd.weight")) role = TensorRole::Output;
  else if (name == "token_embd.weight") role = TensorRole::Embedding;
  else if (name.find("attn_v.weight") != std::string::npos) role = TensorRole::AttnV;
  else if (name.find("ffn_down") != std::string::npos) role = TensorRole::FfnDown;
  const int64_t layer = name.rfind("blk.", 0) == 0 ? std::strtoll(name.c_str() + 4, nullptr, 10) : 0;
  const WeightQuant q = want == GgufOutType::Q8_0 ? WeightQuant::Q8_0 : WeightQuant::Q4_K_M;
  switch (quant_type_for(q, role, layer, n_layers, dims[0])) {
    case DType::Q8_0: return uint32_t(GgmlType::Q8_0);
    case DType::Q4_K: return uint32_t(GgmlType::Q4_K);
    case DType::Q6_K: return uint32_t(GgmlType::Q6_K);
    case DType::Q5_0: return uint32_t(GgmlType::Q5_0);
    default: return uint32_t(GgmlType::F16);  // rows that are not whole blocks of 32
  }
}

// One GGUF tensor of ggml type `type` made from f32 host values produced on demand.
GgufWriteTensor make_tensor(std::string name, std::vector<int64_t> dims, uint32_t type,
                            std::function<std::vector<float>()> values) {
  GgufWriteTensor t{std::move(name), std::move(dims), type, {}};
  t.write = [type, values = std::move(values)](const auto& sink) {
    const std::vector<float> v = values();
    if (type == uint32_t(GgmlType::F32)) {
      sink(v.data(), v.size() * 4);
    } else if (const std::optional<DType> q = ggml_quant_dtype(type)) {
      std::vector<uint8_t> out(kernels::dtype_nbytes(*q, int64_t(v.size())));
      ggml_quantize(*q, v.data(), int64_t(v.size()), out.data());
      sink(out.data(), out.size());
    } else {
      std::vector<uint16_t> h(v.size());
      for (size_t i = 0; i < v.size(); ++i)
        h[i] = type == uint32_t(GgmlType::F16) ? kernels::f32_to_f16(v[i]) : kernels::f32_to_bf16(v[i]);
      sink(h.data(), h.size() * 2);
    }
  };
  return t;
}

// f32 host values of a model tensor.
std::vector<float> values_of(const Tensor& t) {
  const Tensor h = t.host().to(DType::F32);
  return std::vector<float>(h.data<float>(), h.data<float>() + h.numel());
}

std::vector<int64_t> ggml_dims(const Tensor& t) { return std::vector<int64_t>(t.shape().rbegin(), t.shape().rend()); }

class Exporter {
 public:
  Exporter(const Model& m, GgufOutType type) : m_(m), c_(m.config()), type_(type) {
    for (auto list : {m.parameters(), m.buffers()})
      for (auto& [name, t] : list) by_name_.emplace(name, t);
  }
  std::vector<GgufWriteTensor> tensors();

 private:
  void emit(std::string name, std::vector<int64_t> dims, std::function<std::vector<float>()> values) {
    const uint32_t type = tensor_type(name, dims, type_, !c_.tie_word_embeddings, c_.n_layers);
    out_.push_back(make_tensor(std::move(name), std::move(dims), type, std::move(values)));
  }
  const Tensor& need(const std::string& name) {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) fail(ErrorCode::Format, "{}: the model has no tensor '{}'", m_.dir(), name);
    used_.insert(name);
    return it->second;
  }
  void plain(const std::string& gguf, const std::string& hf) {
    const Tensor& t = need(hf);
    emit(gguf, ggml_dims(t), [&t] { return values_of(t); });
  }
  void permuted(const std::string& gguf, const std::string& hf, int64_t heads);
  void experts(const std::string& gguf, const std::string& prefix, const std::string& proj, int64_t n);
  void kv_b_split(int64_t layer);
  void layer(int64_t i);

  const Model& m_;
  const ModelConfig& c_;
  GgufOutType type_;
  std::map<std::string, Tensor> by_name_;
  std::set<std::string> used_;
  std::vector<GgufWriteTensor> out_;
};

// Hugging Face row (h, p, j) goes to GGUF row (h, j, p): convert_hf_to_gguf.py's LlamaModel.permute.
void Exporter::permuted(const std::string& gguf, const std::string& hf, int64_t heads) {
  const Tensor& t = need(hf);
  emit(gguf, ggml_dims(t), [&t, heads] {
    const std::vector<float> src = values_of(t);
    const int64_t rows = t.shape()[0], cols = int64_t(src.size()) / rows, half = rows / heads / 2;
    std::vector<float> dst(src.size());
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t p = 0; p < 2; ++p)
        for (int64_t j = 0; j < half; ++j)
          std::memcpy(dst.data() + ((h * half + j) * 2 + p) * cols, src.data() + ((h * 2 + p) * half + j) * cols,
                      size_t(cols) * sizeof(float));
    return dst;
  });
}

void Exporter::experts(const std::string& gguf, const std::string& prefix, const std::string& proj, int64_t n) {
  std::vector<const Tensor*> ts;
  for (int64_t e = 0; e < n; ++e) ts.push_back(&need(prefix + std::to_string(e) + "." + proj + ".weight"));
  std::vector<int64_t> dims = ggml_dims(*ts[0]);
  dims.push_back(n);
  emit(gguf, dims, [ts] {
    std::vector<float> all;
    for (const Tensor* t : ts) {
      const std::vector<float> v = values_of(*t);
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  });
}

// kv_b [H x (nope + v), kv_lora] -> attn_k_b [H][kv_lora][nope] (W_UK transposed) and attn_v_b [H][v][kv_lora].
void Exporter::kv_b_split(int64_t i) {
  const Tensor& t = need(fmt::format("model.layers.{}.self_attn.kv_b_proj.weight", i));
  const int64_t H = c_.n_heads, nope = c_.qk_nope_head_dim, vd = c_.v_head_dim, lr = c_.kv_lora_rank;
  emit(fmt::format("blk.{}.attn_k_b.weight", i), {nope, lr, H}, [&t, H, nope, vd, lr] {
    const std::vector<float> kv = values_of(t);
    std::vector<float> kb(size_t(H * lr * nope));
    for (int64_t h = 0; h < H; ++h)
      for (int64_t r = 0; r < nope; ++r)
        for (int64_t j = 0; j < lr; ++j) kb[size_t((h * lr + j) * nope + r)] = kv[size_t((h * (nope + vd) + r) * lr + j)];
    return kb;
  });
  emit(fmt::format("blk.{}.attn_v_b.weight", i), {lr, vd, H}, [&t, H, nope, vd, lr] {
    const std::vector<float> kv = values_of(t);
    std::vector<float> vb;
    for (int64_t h = 0; h < H; ++h)
      vb.insert(vb.end(), kv.begin() + (h * (nope + vd) + nope) * lr, kv.begin() + (h + 1) * (nope + vd) * lr);
    return vb;
  });
}

void Exporter::layer(int64_t i) {
  const std::string p = fmt::format("model.layers.{}.", i), b = fmt::format("blk.{}.", i);
  for (const auto& [gs, hs] : gguf_layer_tensor_names())
    if (hs != "self_attn.kv_b_proj.weight" && by_name_.count(p + hs)) plain(b + gs, p + hs);
  for (const char* w : {"weight", "bias"})
    for (auto [qk, heads] : {std::pair{"q", c_.n_heads}, {"k", c_.n_kv_heads}}) {
      const std::string hf = fmt::format("{}self_attn.{}_proj.{}", p, qk, w);
      if (!by_name_.count(hf)) continue;
      const std::string g = fmt::format("{}attn_{}.{}", b, qk, w);
      if (c_.arch == Arch::Llama || c_.arch == Arch::Mixtral) permuted(g, hf, heads);
      else plain(g, hf);
    }
  if (c_.mla) kv_b_split(i);
  if (!c_.is_moe_layer(i)) return;
  const bool mixtral = c_.arch == Arch::Mixtral, ds = c_.arch == Arch::DeepseekV3;
  const std::string blk = p + (mixtral ? "block_sparse_moe." : "mlp.");
  plain(b + "ffn_gate_inp.weight", blk + "gate.weight");
  if (ds) plain(b + "exp_probs_b.bias", blk + "gate.e_score_correction_bias");
  for (auto [g, hf, mx] : {std::tuple{"gate", "gate_proj", "w1"}, {"up", "up_proj", "w3"}, {"down", "down_proj", "w2"}}) {
    experts(fmt::format("{}ffn_{}_exps.weight", b, g), blk + "experts.", mixtral ? mx : hf, c_.n_experts);
    const std::string shared = blk + (ds ? "shared_experts." : "shared_expert.") + hf + ".weight";
    if (by_name_.count(shared)) plain(fmt::format("{}ffn_{}_shexp.weight", b, g), shared);
  }
  if (by_name_.count(blk + "shared_expert_gate.weight")) {
    const Tensor& t = need(blk + "shared_expert_gate.weight");
    emit(b + "ffn_gate_inp_shexp.weight", {t.numel()}, [&t] { return values_of(t); });
  }
}

std::vector<GgufWriteTensor> Exporter::tensors() {
  plain("token_embd.weight", "model.embed_tokens.weight");
  if (c_.rope_scaling.type == "llama3") {
    std::vector<float> rf = llama3_factors(c_);
    emit("rope_freqs.weight", {int64_t(rf.size())}, [rf] { return rf; });
  }
  for (int64_t i = 0; i < c_.n_layers; ++i) layer(i);
  plain("output_norm.weight", "model.norm.weight");
  if (!c_.tie_word_embeddings) plain("output.weight", "lm_head.weight");
  for (const auto& [name, t] : by_name_) {
    const bool mtp = name.rfind(fmt::format("model.layers.{}.", c_.n_layers), 0) == 0 ||
                     (name.rfind("model.layers.", 0) == 0 && std::stoll(name.substr(13)) >= c_.n_layers);
    if (!used_.count(name) && !mtp)
      fail(ErrorCode::Unsupported, "{}: tensor '{}' has no GGUF equivalent; not written", m_.dir(), name);
  }
  return std::move(out_);
}

// The tokenizer files the model was loaded with.
std::string source_file(const Model& m, const std::string& name) {
  if (auto it = m.derived_files().find(name); it != m.derived_files().end()) return it->second;
  const fs::path p = fs::path(m.dir()) / name;
  if (!fs::is_regular_file(p)) return {};
  return read_json_file(p.string(), size_t(1) << 30).dump();
}

}  // namespace

GgufOutType parse_gguf_out_type(const std::string& name) {
  if (name == "f32") return GgufOutType::F32;
  if (name == "f16") return GgufOutType::F16;
  if (name == "bf16") return GgufOutType::BF16;
  if (name == "q8_0") return GgufOutType::Q8_0;
  if (name == "q4_k" || name == "q4_k_m") return GgufOutType::Q4_K_M;
  fail(ErrorCode::InvalidArgument, "unknown GGUF output type '{}' (f32, f16, bf16, q8_0 or q4_k)", name);
}

void write_gguf_model(const Model& m, const std::string& path, GgufOutType type) {
  if (m.adapter())
    fail(ErrorCode::InvalidArgument, "{}: the model has a LoRA adapter, which a GGUF file cannot hold; merge it first (reason merge)",
         path);
  const ModelConfig& c = m.config();
  const std::string src = m.dir();
  Meta meta = model_metadata(c, fs::path(src).filename().string(), type, src);
  const std::string tj = source_file(m, "tokenizer.json");
  if (tj.empty()) fail(ErrorCode::Io, "{}: no tokenizer.json: a GGUF file needs the tokenizer", src);
  const std::string tc = source_file(m, "tokenizer_config.json");
  const json cfg = tc.empty() ? json::object() : json::parse(tc);
  std::string chat_template = cfg.contains("chat_template") && cfg["chat_template"].is_string() ? cfg["chat_template"].get<std::string>() : "";
  if (const fs::path jinja = fs::path(src) / "chat_template.jinja"; m.derived_files().empty() && fs::is_regular_file(jinja)) {
    std::ifstream in(jinja, std::ios::binary);
    chat_template.assign(std::istreambuf_iterator<char>(in), {});
  }
  for (auto& kv : gguf_tokenizer_metadata(json::parse(tj), cfg, chat_template, c.vocab_size, src)) meta.push_back(std::move(kv));
  Exporter ex(m, type);
  write_gguf(path, meta, ex.tensors());
}

}  // namespace reason
