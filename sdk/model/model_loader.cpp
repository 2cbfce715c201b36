// Model::load: config.json -> ModelConfig, safetensors -> weights checked by name and shape,
// converted to the compute dtype (f32 weights used in place from the memory map when possible).
#include <filesystem>

#include "core/error.h"
#include "io/hf_weights.h"
#include "io/json_file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace reason {

namespace {

namespace fs = std::filesystem;

class Loader {
 public:
  Loader(const std::string& dir, const ModelConfig& cfg, DType compute)
      : dir_(dir), cfg_(cfg), compute_(compute), store_(WeightStore::open(dir)) {}

  // A weight checked against `shape` and converted to `dtype`.
  Tensor get(const std::string& name, const Shape& shape, DType dtype) {
    Tensor t = store_->get(name);
    if (t.shape() != shape) {
      Tensor expect = Tensor::view(dtype, shape, nullptr, nullptr);
      fail(ErrorCode::Format, "{}: tensor '{}' has shape {} but the config implies {}", dir_, name, t.shape_str(),
           expect.shape_str());
    }
    if (t.dtype() != DType::F32 && t.dtype() != DType::BF16 && t.dtype() != DType::F16)
      fail(ErrorCode::Unsupported, "{}: tensor '{}' has dtype {} (supported: f32, bf16, f16)", dir_, name,
           kernels::dtype_name(t.dtype()));
    n_params_ += t.numel();
    return t.to(dtype);  // always an owned copy: huge pages, and the file can change underneath
  }
  Tensor matrix(const std::string& name, int64_t rows, int64_t cols) { return get(name, {rows, cols}, compute_); }
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
                  linear(prefix + "." + dn, d, ffn, bias)};
  }
  bool has(const std::string& name) const { return store_->has(name); }
  int64_t n_params() const { return n_params_; }

 private:
  std::string dir_;
  const ModelConfig& cfg_;
  DType compute_;
  std::shared_ptr<const WeightStore> store_;
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
    if (c.shared_expert_gate) w.shared_gate = L.get(block + ".shared_expert_gate.weight", {1, d}, DType::F32);
  }
  return w;
}

}  // namespace

std::shared_ptr<const Model> Model::load(const std::string& dir, const LoadOptions& opts) {
  if (!fs::exists(dir)) fail(ErrorCode::Io, "{}: model directory does not exist", dir);
  if (!fs::is_directory(dir)) fail(ErrorCode::Io, "{}: not a directory (expected a Hugging Face model directory)", dir);
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(cfg_path)) fail(ErrorCode::Io, "{}: no config.json (expected a Hugging Face model directory)", dir);
  if (opts.compute_dtype != DType::F32 && opts.compute_dtype != DType::BF16)
    fail(ErrorCode::InvalidArgument, "compute dtype must be f32 or bf16, not {}", kernels::dtype_name(opts.compute_dtype));

  std::shared_ptr<Model> m(new Model());
  m->cfg_ = ModelConfig::from_json(read_json_file(cfg_path), cfg_path);
  m->dir_ = dir;
  m->compute_dtype_ = opts.compute_dtype;
  const ModelConfig& c = m->cfg_;
  const int64_t d = c.hidden_size, hd = c.head_dim, qd = c.n_heads * hd, kvd = c.n_kv_heads * hd;

  Loader L(dir, c, opts.compute_dtype);
  m->embed_ = L.matrix("model.embed_tokens.weight", c.vocab_size, d);
  m->final_norm_ = L.vec("model.norm.weight", d);
  if (c.tie_word_embeddings) {
    m->lm_head_ = m->embed_;
  } else {
    m->lm_head_ = L.matrix("lm_head.weight", c.vocab_size, d);
  }
  m->layers_.resize(size_t(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i);
    DecoderLayer& ly = m->layers_[size_t(i)];
    ly.attn_norm = L.vec(p + ".input_layernorm.weight", d);
    ly.q = L.linear(p + ".self_attn.q_proj", qd, d, c.attention_bias);
    ly.k = L.linear(p + ".self_attn.k_proj", kvd, d, c.attention_bias);
    ly.v = L.linear(p + ".self_attn.v_proj", kvd, d, c.attention_bias);
    ly.o = L.linear(p + ".self_attn.o_proj", d, qd, c.o_bias);
    if (c.qk_norm) {
      ly.q_norm = L.vec(p + ".self_attn.q_norm.weight", hd);
      ly.k_norm = L.vec(p + ".self_attn.k_norm.weight", hd);
    }
    ly.mlp_norm = L.vec(p + ".post_attention_layernorm.weight", d);
    if (c.is_moe_layer(i)) {
      ly.is_moe = true;
      ly.moe = load_moe(L, c, p);
    } else {
      ly.mlp = L.swiglu(p + ".mlp", c.intermediate_size, d, c.mlp_bias);
    }
  }
  m->n_params_ = L.n_params();
  m->rope_ = make_rope_table(c, int(hd));

  if (opts.load_tokenizer && fs::exists(fs::path(dir) / "tokenizer.json")) m->tokenizer_ = Tokenizer::load(dir);
  return m;
}

size_t Model::kv_bytes_per_token() const {
  return size_t(cfg_.n_layers) * size_t(cfg_.n_kv_heads * cfg_.head_dim) * 2 * sizeof(float);
}

}  // namespace reason
