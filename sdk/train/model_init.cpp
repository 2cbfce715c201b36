#include "train/model_init.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/tensor.h"
#include "infer/sampler.h"
#include "io/atomic_write.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

namespace reason {

namespace fs = std::filesystem;

namespace {

class Normal {
 public:
  explicit Normal(uint64_t seed) : rng_(seed) {}
  float operator()(float std) {  // Box-Muller, both values used
    if (have_) {
      have_ = false;
      return float(spare_) * std;
    }
    double u1 = 0;
    while (u1 <= 1e-300) u1 = rng_.uniform();
    const double u2 = rng_.uniform(), r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2 * M_PI * u2);
    have_ = true;
    return float(r * std::cos(2 * M_PI * u2)) * std;
  }

 private:
  Rng rng_;
  bool have_ = false;
  double spare_ = 0;
};

Tensor filled(std::vector<int64_t> shape, float value) {
  Tensor t = Tensor::empty(DType::F32, std::move(shape));
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = value;
  return t;
}

Tensor normal(std::vector<int64_t> shape, float std, Normal& gen) {
  Tensor t = Tensor::empty(DType::F32, std::move(shape));
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = gen(std);
  return t;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(ErrorCode::Io, "cannot read {}", p.string());
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

}  // namespace

void check_model_init_options(const ModelInitOptions& o) {
  const bool qwen2 = o.architecture == "Qwen2ForCausalLM";
  if (!qwen2 && o.architecture != "LlamaForCausalLM")
    fail(ErrorCode::InvalidArgument, "init.architecture must be Qwen2ForCausalLM or LlamaForCausalLM (got '{}')",
         o.architecture);
  for (auto [v, name] : {std::pair{o.hidden_size, "hidden_size"}, {o.intermediate_size, "intermediate_size"},
                         {o.num_layers, "num_layers"}, {o.num_heads, "num_heads"},
                         {o.max_position_embeddings, "max_position_embeddings"}})
    if (v <= 0) fail(ErrorCode::InvalidArgument, "init.{} must be > 0 (got {})", name, v);
  const int64_t kv = o.num_kv_heads ? o.num_kv_heads : o.num_heads;
  if (o.hidden_size % o.num_heads)
    fail(ErrorCode::InvalidArgument, "init.num_heads ({}) must divide hidden_size ({})", o.num_heads, o.hidden_size);
  if (kv <= 0 || o.num_heads % kv)
    fail(ErrorCode::InvalidArgument, "init.num_kv_heads ({}) must divide num_heads ({})", kv, o.num_heads);
  if (!(o.initializer_range > 0) || !std::isfinite(o.initializer_range))
    fail(ErrorCode::InvalidArgument, "init.initializer_range must be > 0 (got {})", o.initializer_range);
}

void write_initial_model(const std::string& dir, const ModelInitOptions& o, uint64_t seed) {
  check_model_init_options(o);
  const bool qwen2 = o.architecture == "Qwen2ForCausalLM";
  const int64_t kv = o.num_kv_heads ? o.num_kv_heads : o.num_heads;
  const fs::path tdir(o.tokenizer_dir);
  if (!fs::exists(tdir / "tokenizer.json"))
    fail(ErrorCode::Io, "init.tokenizer: no tokenizer.json in '{}'", o.tokenizer_dir);
  auto tok = Tokenizer::load(tdir.string());
  int64_t vocab = o.vocab_size ? o.vocab_size : (int64_t(tok->vocab_size()) + 63) / 64 * 64;
  if (vocab < tok->vocab_size())
    fail(ErrorCode::InvalidArgument, "init.vocab_size {} is smaller than the tokenizer's {} tokens", vocab,
         tok->vocab_size());
  const int64_t d = o.hidden_size, hd = d / o.num_heads, ffn = o.intermediate_size;

  nlohmann::json cfg = {
      {"architectures", {o.architecture}},
      {"model_type", qwen2 ? "qwen2" : "llama"},
      {"hidden_size", d},
      {"intermediate_size", ffn},
      {"num_hidden_layers", o.num_layers},
      {"num_attention_heads", o.num_heads},
      {"num_key_value_heads", kv},
      {"head_dim", hd},
      {"max_position_embeddings", o.max_position_embeddings},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", o.rope_theta},
      {"tie_word_embeddings", o.tie_word_embeddings},
      {"vocab_size", vocab},
      {"hidden_act", "silu"},
      {"initializer_range", o.initializer_range},
      {"torch_dtype", "float32"},
      {"bos_token_id", nullptr},
      {"eos_token_id", tok->eos_id() ? nlohmann::json(*tok->eos_id()) : nlohmann::json(nullptr)},
  };
  if (!qwen2) {
    cfg["attention_bias"] = false;
    cfg["mlp_bias"] = false;
  }

  Normal gen(seed ^ 0x1417a11e5eedULL);
  const float sd = o.initializer_range;
  std::vector<std::pair<std::string, Tensor>> w;
  w.emplace_back("model.embed_tokens.weight", normal({vocab, d}, sd, gen));
  for (int64_t l = 0; l < o.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.emplace_back(p + "input_layernorm.weight", filled({d}, 1.0f));
    w.emplace_back(p + "self_attn.q_proj.weight", normal({o.num_heads * hd, d}, sd, gen));
    w.emplace_back(p + "self_attn.k_proj.weight", normal({kv * hd, d}, sd, gen));
    w.emplace_back(p + "self_attn.v_proj.weight", normal({kv * hd, d}, sd, gen));
    if (qwen2) {
      w.emplace_back(p + "self_attn.q_proj.bias", filled({o.num_heads * hd}, 0.0f));
      w.emplace_back(p + "self_attn.k_proj.bias", filled({kv * hd}, 0.0f));
      w.emplace_back(p + "self_attn.v_proj.bias", filled({kv * hd}, 0.0f));
    }
    w.emplace_back(p + "self_attn.o_proj.weight", normal({d, o.num_heads * hd}, sd, gen));
    w.emplace_back(p + "post_attention_layernorm.weight", filled({d}, 1.0f));
    w.emplace_back(p + "mlp.gate_proj.weight", normal({ffn, d}, sd, gen));
    w.emplace_back(p + "mlp.up_proj.weight", normal({ffn, d}, sd, gen));
    w.emplace_back(p + "mlp.down_proj.weight", normal({d, ffn}, sd, gen));
  }
  w.emplace_back("model.norm.weight", filled({d}, 1.0f));
  if (!o.tie_word_embeddings) w.emplace_back("lm_head.weight", normal({vocab, d}, sd, gen));

  const fs::path final_dir(dir);
  const fs::path tmp = fs::absolute(final_dir).parent_path() /
                       (final_dir.filename().string() + ".tmp." + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    atomic_write_file((tmp / "config.json").string(), cfg.dump(2) + "\n");
    write_safetensors((tmp / "model.safetensors").string(), w, {{"format", "pt"}});
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      if (fs::exists(tdir / f)) atomic_write_file((tmp / f).string(), read_file(tdir / f));
    fs::remove_all(final_dir);
    fs::rename(tmp, final_dir);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace reason
