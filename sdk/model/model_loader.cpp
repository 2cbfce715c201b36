// Model::load: config.json -> ModelConfig, safetensors -> weights checked by name and shape,
// converted to the compute dtype (f32 weights used in place from the memory map when possible).
#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <map>
#include <optional>

#include "core/error.h"
#include "io/hf_weights.h"
#include "io/gguf.h"
#include "io/json_file.h"
#include "model/gguf_model.h"
#include "model/model.h"
#include "model/quant_scheme.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer.h"

namespace reason {

namespace {

namespace fs = std::filesystem;

// Backend selection: the one place that names a concrete backend.
kernels::Backend& select_backend(const LoadOptions& o) {
  if (o.backend) return *o.backend;
  if (o.device == Device::Cpu) return kernels::cpu_backend();
  std::string why;
  kernels::Backend* be = kernels::cuda_backend(&why);
  if (!be) fail(ErrorCode::Unsupported, "device cuda is not available: {}", why);
  return *be;
}

// A weight's role for the quantisation schemes (model/quant_scheme.h), from its checkpoint name as
// llama.cpp decides from its GGUF name; nullopt for weights that are never quantised (MLA's kv_b,
// whose transpose the absorbed attention path needs).
std::optional<TensorRole> role_of(const std::string& name, bool tied) {
  auto ends = [&](const char* s) { return name.size() >= std::strlen(s) && name.compare(name.size() - std::strlen(s), std::string::npos, s) == 0; };
  if (ends("kv_b_proj.weight")) return std::nullopt;
  if (name == "model.embed_tokens.weight") return tied ? TensorRole::Output : TensorRole::Embedding;
  if (name == "lm_head.weight" || ends("shared_head.head.weight")) return TensorRole::Output;
  if (ends("v_proj.weight")) return TensorRole::AttnV;
  if (ends("down_proj.weight") || ends(".w2.weight")) return TensorRole::FfnDown;
  return TensorRole::Other;
}

// The N of "model.layers.N.", or 0.
int64_t layer_of(const std::string& name) {
  static const std::string p = "model.layers.";
  if (name.rfind(p, 0) != 0) return 0;
  return std::strtoll(name.c_str() + p.size(), nullptr, 10);
}

class Loader {
 public:
  Loader(std::shared_ptr<const WeightSource> store, const ModelConfig& cfg, DType compute, WeightQuant quant,
         kernels::Backend& backend)
      : dir_(store->source()), cfg_(cfg), compute_(compute), quant_(quant), store_(std::move(store)), backend_(backend) {}

  // A weight checked against `shape` and converted to `dtype`.
  Tensor get(const std::string& name, const Shape& shape, DType dtype) {
    Tensor t = fetch(name, store_->get(name), shape).to(dtype);  // always an owned copy: huge pages, and the file can change underneath
    store_->release(name);
    return t;
  }
  // A matmul weight: quantised as stored (AsStored), quantised now (Q8_0 / Q4_K_M, for float
  // weights), or in the compute dtype.
  Tensor matrix(const std::string& name, int64_t rows, int64_t cols) {
    const std::optional<TensorRole> role = role_of(name, cfg_.tie_word_embeddings);
    if (!role || quant_ == WeightQuant::None) return get(name, {rows, cols}, compute_);
    Tensor t = fetch(name, store_->get_quantized(name), {rows, cols});
    if (!kernels::dtype_is_quantized(t.dtype())) {
      const DType q = quant_type_for(quant_, *role, layer_of(name), cfg_.n_layers, cols);
      t = t.to(kernels::dtype_is_quantized(q) ? q : compute_);  // a copy: the file's pages can go
      store_->release(name);
      if (!kernels::dtype_is_quantized(q)) return t;
    }
    return packed(name, std::move(t));  // else a view of the file, rows put in order, or quantised now
  }
  // A quantised weight in the backend's fastest layout for it (the CPU's x8 interleave), the
  // source's pages released once copied.
  Tensor packed(const std::string& name, Tensor t) {
    const DType p = backend_.weight_layout(t.dtype(), t.dim(0), t.dim(1));
    if (p == t.dtype()) return t;
    Tensor out = Tensor::empty(p, t.shape());
    backend_.pack_weight(out.raw(), t.raw(), t.dtype(), p, t.dim(0), t.dim(1));
    t = Tensor();
    store_->release(name);
    return out;
  }
  Tensor vec(const std::string& name, int64_t n) { return get(name, {n}, DType::F32); }
  Linear linear(const std::string& prefix, int64_t out, int64_t in, bool bias) {
    Linear l;
    l.w = matrix(prefix + ".weight", out, in);
    if (bias) l.b = vec(prefix + ".bias", out);
    return l;
  }
  SwiGLU swiglu(const std::string& prefix, int64_t ffn, int64_t d, bool bias,
                const char* g = "gate_proj", const char* u = "up_proj", const char* dn = "down_proj") {
    return SwiGLU{linear(prefix + "." + g, ffn, d, bias), linear(prefix + "." + u, ffn, d, bias),
                  linear(prefix + "." + dn, d, ffn, bias), cfg_.hidden_act};
  }
  bool has(const std::string& name) const { return store_->has(name); }

  // Tensor `name` as the source gave it (FP8 dequantised), checked against `shape` and counted.
  Tensor fetch(const std::string& name, Tensor t, const Shape& shape) {
    stored_dtypes_[name] = t.dtype();
    if (t.dtype() == DType::F8_E4M3) t = dequantize_fp8(name, t);
    if (t.shape() != shape) {
      Tensor expect = Tensor::view(DType::F32, shape, nullptr, nullptr);
      fail(ErrorCode::Format, "{}: tensor '{}' has shape {} but the config implies {}", dir_, name, t.shape_str(),
           expect.shape_str());
    }
    if (t.dtype() != DType::F32 && t.dtype() != DType::BF16 && t.dtype() != DType::F16 &&
        !kernels::dtype_is_quantized(t.dtype()))
      fail(ErrorCode::Unsupported, "{}: tensor '{}' has dtype {} (supported: f32, bf16, f16, f8_e4m3 with block scales)",
           dir_, name, kernels::dtype_name(t.dtype()));
    n_params_ += t.numel();
    return t;
  }

  // DeepSeek-V3 FP8: w[i, j] = fp8[i, j] * scale_inv[i / block_rows, j / block_cols], with the
  // scales in "<name>_scale_inv" (F32, [ceil(rows / 128), ceil(cols / 128)]; edge blocks partial).
  // Dequantised once at load to bf16, exactly as DeepSeek's fp8_cast_bf16 conversion does
  // (product in f32, rounded to bf16), then converted to the compute dtype.
  Tensor dequantize_fp8(const std::string& name, const Tensor& q) {
    if (!cfg_.fp8)
      fail(ErrorCode::Format, "{}: tensor '{}' is F8_E4M3 but config.json has no fp8 quantization_config", dir_, name);
    if (q.ndim() != 2) fail(ErrorCode::Format, "{}: FP8 tensor '{}' must be 2-D (shape {})", dir_, name, q.shape_str());
    const std::string sname = name + "_scale_inv";
    if (!store_->has(sname)) fail(ErrorCode::Format, "{}: FP8 tensor '{}' has no scale tensor '{}'", dir_, name, sname);
    Tensor sc = store_->get(sname);
    const int64_t rows = q.dim(0), cols = q.dim(1), br = cfg_.fp8_block_rows, bc = cfg_.fp8_block_cols;
    const Shape want{(rows + br - 1) / br, (cols + bc - 1) / bc};
    if (sc.dtype() != DType::F32 || sc.shape() != want)
      fail(ErrorCode::Format, "{}: scale tensor '{}' is {} {} but FP8 tensor '{}' of shape {} with {}x{} blocks needs f32 [{}, {}]",
           dir_, sname, kernels::dtype_name(sc.dtype()), sc.shape_str(), name, q.shape_str(), br, bc, want[0], want[1]);
    Tensor out = Tensor::empty(DType::F32, q.shape());
    const uint8_t* src = q.data<uint8_t>();
    const float* s = sc.data<float>();
    float* dst = out.data<float>();
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        dst[i * cols + j] = kernels::f8e4m3_to_f32(src[i * cols + j]) * s[(i / br) * want[1] + j / bc];
    return out.to(DType::BF16);
  }
  int64_t n_params() const { return n_params_; }
  std::map<std::string, DType> stored_dtypes_;

 private:
  std::string dir_;
  const ModelConfig& cfg_;
  DType compute_;
  WeightQuant quant_;
  std::shared_ptr<const WeightSource> store_;
  kernels::Backend& backend_;
  int64_t n_params_ = 0;
};

// The routed experts, router and shared experts of one MoE layer, by the tensor names of the
// original checkpoints (Mixtral: block_sparse_moe.experts.N.w1/w3/w2; Qwen2/3-MoE:
// mlp.experts.N.gate_proj/up_proj/down_proj, mlp.shared_expert*, mlp.gate).
MoeWeights load_moe(Loader& L, const ModelConfig& c, const std::string& p) {
  MoeWeights w;
  w.router.scoring = RouterConfig::Scoring::Softmax;
  w.router.n_experts = int(c.n_experts);
  w.router.top_k = int(c.n_experts_per_tok);
  w.router.norm_topk_prob = c.norm_topk_prob;
  w.router.routed_scaling_factor = c.routed_scaling_factor;
  const int64_t d = c.hidden_size, ffn = c.moe_intermediate_size;
  const bool mixtral = c.arch == Arch::Mixtral;
  const std::string block = p + (mixtral ? ".block_sparse_moe" : ".mlp");
  w.gate = L.get(block + ".gate.weight", {c.n_experts, d}, DType::F32);
  w.experts.reserve(size_t(c.n_experts));
  for (int64_t e = 0; e < c.n_experts; ++e) {
    const std::string ep = block + ".experts." + std::to_string(e);
    w.experts.push_back(mixtral ? L.swiglu(ep, ffn, d, false, "w1", "w3", "w2") : L.swiglu(ep, ffn, d, false));
  }
  if (c.shared_expert_intermediate_size > 0) {
    w.has_shared = true;
    w.shared = L.swiglu(block + ".shared_expert", c.shared_expert_intermediate_size, d, false);
    if (c.shared_expert_gate) w.shared_gate.w = L.get(block + ".shared_expert_gate.weight", {1, d}, DType::F32);
  }
  return w;
}

// DeepSeek-V3: sigmoid router with e_score_correction_bias, routed experts, shared experts fused
// as one MLP of n_shared_experts * moe_intermediate_size.
MoeWeights load_deepseek_moe(Loader& L, const ModelConfig& c, const std::string& p) {
  MoeWeights w;
  w.router.scoring = RouterConfig::Scoring::Sigmoid;
  w.router.n_experts = int(c.n_experts);
  w.router.top_k = int(c.n_experts_per_tok);
  w.router.n_group = int(c.n_group);
  w.router.topk_group = int(c.topk_group);
  w.router.norm_topk_prob = c.norm_topk_prob;
  w.router.routed_scaling_factor = c.routed_scaling_factor;
  const int64_t d = c.hidden_size, ffn = c.moe_intermediate_size;
  w.gate = L.get(p + ".mlp.gate.weight", {c.n_experts, d}, DType::F32);
  w.score_bias = L.get(p + ".mlp.gate.e_score_correction_bias", {c.n_experts}, DType::F32);
  w.experts.reserve(size_t(c.n_experts));
  for (int64_t e = 0; e < c.n_experts; ++e) w.experts.push_back(L.swiglu(p + ".mlp.experts." + std::to_string(e), ffn, d, false));
  if (c.n_shared_experts > 0) {
    w.has_shared = true;
    w.shared = L.swiglu(p + ".mlp.shared_experts", ffn * c.n_shared_experts, d, false);
  }
  return w;
}

// W_UK_h^T [kv_lora, nope] of head h, from kv_b's f32 rows (host memory), in `dtype`.
Tensor w_uk_transposed(const Tensor& kvb32, const ModelConfig& c, int64_t h, DType dtype) {
  const int64_t nope = c.qk_nope_head_dim, vd = c.v_head_dim, Lr = c.kv_lora_rank;
  Tensor t = Tensor::empty(DType::F32, {Lr, nope});
  const float* src = kvb32.data<float>() + h * (nope + vd) * Lr;  // [nope, Lr]
  for (int64_t i = 0; i < nope; ++i)
    for (int64_t j = 0; j < Lr; ++j) t.data<float>()[j * nope + i] = src[i * Lr + j];
  return t.to(dtype);
}

// MLA weights of one layer, plus the per-head matrices of the absorbed path.
void load_mla(Loader& L, const ModelConfig& c, const std::string& p, DType compute, DecoderLayer& ly) {
  const int64_t d = c.hidden_size, H = c.n_heads, nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim;
  const int64_t qk = nope + rope, vd = c.v_head_dim, Lr = c.kv_lora_rank;
  const std::string a = p + ".self_attn";
  if (c.q_lora_rank > 0) {
    ly.q_a = L.linear(a + ".q_a_proj", c.q_lora_rank, d, c.attention_bias);
    ly.q_a_norm = L.vec(a + ".q_a_layernorm.weight", c.q_lora_rank);
    ly.q_b = L.linear(a + ".q_b_proj", H * qk, c.q_lora_rank, false);
  } else {
    ly.q = L.linear(a + ".q_proj", H * qk, d, false);
  }
  ly.kv_a = L.linear(a + ".kv_a_proj_with_mqa", Lr + rope, d, c.attention_bias);
  ly.kv_a_norm = L.vec(a + ".kv_a_layernorm.weight", Lr);
  ly.kv_b = L.linear(a + ".kv_b_proj", H * (nope + vd), Lr, false);
  ly.o = L.linear(a + ".o_proj", d, H * vd, c.attention_bias);
  // Absorbed path: W_UV_h are row blocks of kv_b (shared storage); W_UK_h^T are transposed copies.
  const Tensor kvb32 = ly.kv_b.w.to(DType::F32);
  for (int64_t h = 0; h < H; ++h) {
    ly.w_uv.push_back(Linear{ly.kv_b.w.slice_rows(h * (nope + vd) + nope, vd), Tensor()});
    ly.w_uk_t.push_back(Linear{w_uk_transposed(kvb32, c, h, compute), Tensor()});
  }
}

}  // namespace

void Model::refresh_absorbed_weights() const {
  if (!cfg_.mla) return;
  for (const DecoderLayer& ly : layers_) {  // (MTP modules are not trained)
    const Tensor kvb32 = ly.kv_b.w.host().to(DType::F32);
    for (size_t h = 0; h < ly.w_uk_t.size(); ++h) {
      Tensor dst = ly.w_uk_t[h].w;  // shares the storage the absorbed path reads
      const Tensor t = w_uk_transposed(kvb32, cfg_, int64_t(h), dst.dtype());
      backend_->upload(dst.raw(), t.raw(), t.nbytes());  // (a memcpy on the CPU backend)
    }
  }
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::Cpu;
  if (name == "cuda") return Device::Cuda;
  fail(ErrorCode::InvalidArgument, "unknown device '{}' (cpu or cuda)", name);
}

const char* device_name(Device d) { return d == Device::Cuda ? "cuda" : "cpu"; }

std::shared_ptr<const Model> Model::load(const std::string& dir, const LoadOptions& opts) {
  if (opts.compute_dtype != DType::F32 && opts.compute_dtype != DType::BF16)
    fail(ErrorCode::InvalidArgument, "compute dtype must be f32 or bf16, not {}", kernels::dtype_name(opts.compute_dtype));
  if (opts.kv_dtype && *opts.kv_dtype != DType::F32 && *opts.kv_dtype != DType::BF16)
    fail(ErrorCode::InvalidArgument, "KV cache dtype must be f32 or bf16, not {}", kernels::dtype_name(*opts.kv_dtype));
  if (std::optional<std::string> base = adapter_base_model(dir)) {  // a PEFT adapter directory: base + it
    if (!opts.adapter.empty() || opts.new_adapter)
      fail(ErrorCode::InvalidArgument, "{} is a LoRA adapter directory: load it as the model or as the adapter, not both", dir);
    LoadOptions o = opts;
    o.adapter = dir;
    return load(*base, o);
  }
  std::shared_ptr<Model> m(new Model());
  std::shared_ptr<const WeightSource> weights;
  if (is_gguf_file(dir)) {
    // A GGUF file: config, tokenizer and generation defaults from its metadata.
    GgufModel g = open_gguf_model(dir);
    m->cfg_ = g.model_config;
    m->config_json_ = g.config;
    weights = g.weights;
    if (opts.load_tokenizer) {
      GgufTokenizerFiles tf = gguf_tokenizer_files(*g.file);
      m->tokenizer_ = Tokenizer::load_from_json(tf.tokenizer_json, tf.tokenizer_config_json, dir);
      m->derived_files_["tokenizer.json"] = std::move(tf.tokenizer_json);
      m->derived_files_["tokenizer_config.json"] = std::move(tf.tokenizer_config_json);
    }
    if (!g.generation_config.empty()) m->derived_files_["generation_config.json"] = g.generation_config.dump(2);
  } else {
    if (!fs::exists(dir)) fail(ErrorCode::Io, "{}: model directory does not exist", dir);
    if (!fs::is_directory(dir))
      fail(ErrorCode::Io, "{}: not a directory or a GGUF file (expected a Hugging Face model directory or a .gguf file)", dir);
    const std::string cfg_path = (fs::path(dir) / "config.json").string();
    if (!fs::exists(cfg_path)) fail(ErrorCode::Io, "{}: no config.json (expected a Hugging Face model directory)", dir);
    m->config_json_ = read_json_file(cfg_path);
    const char* env = std::getenv("REASON_ALLOW_UNKNOWN_CONFIG");
    const bool allow = opts.allow_unknown_config_fields || (env && std::string(env) == "1");
    m->cfg_ = ModelConfig::from_json(m->config_json_, cfg_path, allow);
    weights = WeightStore::open(dir);
    if (opts.load_tokenizer && fs::exists(fs::path(dir) / "tokenizer.json")) m->tokenizer_ = Tokenizer::load(dir);
  }
  m->dir_ = dir;
  m->compute_dtype_ = opts.compute_dtype;
  m->kv_dtype_ = opts.kv_dtype.value_or(opts.compute_dtype);
  m->backend_ = &select_backend(opts);
  const ModelConfig& c = m->cfg_;
  const int64_t d = c.hidden_size, hd = c.head_dim, qd = c.n_heads * hd, kvd = c.n_kv_heads * hd;

  Loader L(weights, c, opts.compute_dtype, opts.quantize, *m->backend_);
  m->embed_ = L.matrix("model.embed_tokens.weight", c.vocab_size, d);
  m->final_norm_ = L.vec("model.norm.weight", d);
  if (c.tie_word_embeddings) {
    m->lm_head_ = m->embed_;
  } else {
    m->lm_head_ = L.matrix("lm_head.weight", c.vocab_size, d);
  }
  // Nothing is sized by num_hidden_layers until the weights are known to have that many
  // layers: the last one must be there, and layers are added one by one as they load.
  if (const std::string last = fmt::format("model.layers.{}.input_layernorm.weight", c.n_layers - 1); !L.has(last))
    fail(ErrorCode::Format, "{}: config.json field 'num_hidden_layers' = {} but the weights have no tensor '{}'", dir,
         c.n_layers, last);
  m->layers_.reserve(size_t(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i);
    DecoderLayer& ly = m->layers_.emplace_back();
    ly.attn_norm = L.vec(p + ".input_layernorm.weight", d);
    if (c.mla) {
      load_mla(L, c, p, opts.compute_dtype, ly);
    } else {
      ly.q = L.linear(p + ".self_attn.q_proj", qd, d, c.attention_bias);
      ly.k = L.linear(p + ".self_attn.k_proj", kvd, d, c.attention_bias);
      ly.v = L.linear(p + ".self_attn.v_proj", kvd, d, c.attention_bias);
      ly.o = L.linear(p + ".self_attn.o_proj", d, qd, c.o_bias);
    }
    if (c.qk_norm) {
      ly.q_norm = L.vec(p + ".self_attn.q_norm.weight", hd);
      ly.k_norm = L.vec(p + ".self_attn.k_norm.weight", hd);
    }
    ly.mlp_norm = L.vec(p + ".post_attention_layernorm.weight", d);
    if (c.is_moe_layer(i)) {
      ly.is_moe = true;
      ly.moe = c.arch == Arch::DeepseekV3 ? load_deepseek_moe(L, c, p) : load_moe(L, c, p);
    } else {
      ly.mlp = L.swiglu(p + ".mlp", c.intermediate_size, d, c.mlp_bias);
    }
  }
  // DeepSeek-V3's multi-token-prediction modules follow the decoder layers (model.layers.N...).
  // They are loaded and kept (for speculative decoding and MTP training later); a checkpoint
  // that ships none of their tensors (many conversions drop them) loads without them.
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
    const int64_t idx = c.n_layers + k;
    const std::string p = "model.layers." + std::to_string(idx);
    if (!L.has(p + ".enorm.weight") && !L.has(p + ".eh_proj.weight")) break;
    MtpModule mt;
    mt.enorm = L.vec(p + ".enorm.weight", d);
    mt.hnorm = L.vec(p + ".hnorm.weight", d);
    mt.eh_proj = L.linear(p + ".eh_proj", d, 2 * d, false);
    mt.layer.attn_norm = L.vec(p + ".input_layernorm.weight", d);
    load_mla(L, c, p, opts.compute_dtype, mt.layer);
    mt.layer.mlp_norm = L.vec(p + ".post_attention_layernorm.weight", d);
    if (c.n_experts > 0) {
      mt.layer.is_moe = true;
      mt.layer.moe = load_deepseek_moe(L, c, p);
    } else {
      mt.layer.mlp = L.swiglu(p + ".mlp", c.intermediate_size, d, false);
    }
    mt.head_norm = L.vec(p + ".shared_head.norm.weight", d);
    if (L.has(p + ".shared_head.head.weight")) mt.head = L.matrix(p + ".shared_head.head.weight", c.vocab_size, d);
    m->mtp_.push_back(std::move(mt));
  }
  m->stored_dtypes_ = L.stored_dtypes_;
  m->mla_path_ = opts.mla_path;
  m->n_params_ = L.n_params();
  m->rope_ = make_rope_table(c, int(hd));
  {
    Tensor freq = Tensor::empty(DType::F32, {int64_t(m->rope_.inv_freq.size())});
    std::copy(m->rope_.inv_freq.begin(), m->rope_.inv_freq.end(), freq.data<float>());
    m->rope_freq_ = freq.on(*m->backend_);
  }
  m->quantized_ = m->find_quantized_weights();
  if (m->backend_->kind() != kernels::DeviceKind::CPU)
    if (auto q = m->quantized_weights())
      fail(ErrorCode::Unsupported, "{}: {} weights run on the CPU backend only; load with quantize none to run on {}", dir,
           kernels::dtype_name(*q), m->backend_->name());
  if (!m->backend_->host_addressable()) m->place_weights_on_backend();
  m->attach_adapter(opts);
  return m;
}

std::shared_ptr<const Tokenizer> Model::require_tokenizer() const {
  if (!tokenizer_) fail(ErrorCode::Io, "{}: no tokenizer.json in the model directory", dir_);  // (a GGUF always has one)
  return tokenizer_;
}

size_t Model::kv_bytes_per_token() const {
  return size_t(cfg_.n_layers) * size_t(cfg_.kv_k_dim() + cfg_.kv_v_dim()) * kernels::dtype_size(kv_dtype_);
}

}  // namespace reason
