// Model::parameters: the weights by their Hugging Face checkpoint names; and every weight moved to
// the model's backend.
#include <unordered_map>

#include "model/model.h"

namespace reason {

namespace {

void add_linear(std::vector<std::pair<std::string, Tensor>>& out, const std::string& name, const Linear& l) {
  if (l.w.raw()) out.emplace_back(name + ".weight", l.w);
  if (l.b.raw()) out.emplace_back(name + ".bias", l.b);
}

void add_swiglu(std::vector<std::pair<std::string, Tensor>>& out, const std::string& p, const SwiGLU& m, bool mixtral) {
  add_linear(out, p + (mixtral ? ".w1" : ".gate_proj"), m.gate);
  add_linear(out, p + (mixtral ? ".w3" : ".up_proj"), m.up);
  add_linear(out, p + (mixtral ? ".w2" : ".down_proj"), m.down);
}

// Visits every weight tensor of a layer (incl. MLA's absorbed per-head matrices).
template <typename F>
void visit_layer(DecoderLayer& ly, F&& f) {
  auto lin = [&](Linear& l) {
    f(l.w);
    f(l.b);
  };
  auto mlp = [&](SwiGLU& m) {
    lin(m.gate);
    lin(m.up);
    lin(m.down);
  };
  for (Tensor* t : {&ly.attn_norm, &ly.q_norm, &ly.k_norm, &ly.mlp_norm, &ly.q_a_norm, &ly.kv_a_norm, &ly.moe.gate,
                    &ly.moe.score_bias, &ly.moe.shared_gate.w})
    f(*t);
  for (Linear* l : {&ly.q, &ly.k, &ly.v, &ly.o, &ly.q_a, &ly.q_b, &ly.kv_a, &ly.kv_b}) lin(*l);
  for (Linear& l : ly.w_uk_t) lin(l);
  mlp(ly.mlp);
  for (SwiGLU& m : ly.moe.experts) mlp(m);
  mlp(ly.moe.shared);
}

}  // namespace

void Model::place_weights_on_backend() {
  std::unordered_map<const void*, Tensor> placed;  // by host storage: shared tensors stay shared
  auto move = [&](Tensor& t) {
    if (!t.raw() || t.backend() == backend_) return;
    auto it = placed.find(t.raw());
    if (it == placed.end()) it = placed.emplace(t.raw(), t.on(*backend_)).first;
    t = it->second;
  };
  // W_UV per head stays a view of (the placed) kv_b, so a trainer's update reaches it.
  auto views = [&](DecoderLayer& ly) {
    const int64_t nope = cfg_.qk_nope_head_dim, vd = cfg_.v_head_dim;
    for (size_t h = 0; h < ly.w_uv.size(); ++h) ly.w_uv[h].w = ly.kv_b.w.slice_rows(int64_t(h) * (nope + vd) + nope, vd);
  };
  for (Tensor* t : {&embed_, &lm_head_, &final_norm_}) move(*t);
  for (DecoderLayer& ly : layers_) {
    visit_layer(ly, move);
    views(ly);
  }
  for (MtpModule& mt : mtp_) {
    for (Tensor* t : {&mt.enorm, &mt.hnorm, &mt.head_norm, &mt.head, &mt.eh_proj.w, &mt.eh_proj.b}) move(*t);
    visit_layer(mt.layer, move);
    views(mt.layer);
  }
}

void Model::add_layer_parameters(std::vector<std::pair<std::string, Tensor>>& out, const std::string& p,
                                 const DecoderLayer& ly) const {
  const ModelConfig& c = cfg_;
  out.emplace_back(p + ".input_layernorm.weight", ly.attn_norm);
  const std::string a = p + ".self_attn";
  if (c.mla) {
    if (c.q_lora_rank > 0) {
      add_linear(out, a + ".q_a_proj", ly.q_a);
      out.emplace_back(a + ".q_a_layernorm.weight", ly.q_a_norm);
      add_linear(out, a + ".q_b_proj", ly.q_b);
    } else {
      add_linear(out, a + ".q_proj", ly.q);
    }
    add_linear(out, a + ".kv_a_proj_with_mqa", ly.kv_a);
    out.emplace_back(a + ".kv_a_layernorm.weight", ly.kv_a_norm);
    add_linear(out, a + ".kv_b_proj", ly.kv_b);
    add_linear(out, a + ".o_proj", ly.o);
  } else {
    add_linear(out, a + ".q_proj", ly.q);
    add_linear(out, a + ".k_proj", ly.k);
    add_linear(out, a + ".v_proj", ly.v);
    add_linear(out, a + ".o_proj", ly.o);
    if (ly.q_norm.raw()) {
      out.emplace_back(a + ".q_norm.weight", ly.q_norm);
      out.emplace_back(a + ".k_norm.weight", ly.k_norm);
    }
  }
  out.emplace_back(p + ".post_attention_layernorm.weight", ly.mlp_norm);
  if (!ly.is_moe) {
    add_swiglu(out, p + ".mlp", ly.mlp, false);
    return;
  }
  const bool mixtral = c.arch == Arch::Mixtral;
  const std::string b = p + (mixtral ? ".block_sparse_moe" : ".mlp");
  out.emplace_back(b + ".gate.weight", ly.moe.gate);
  for (size_t e = 0; e < ly.moe.experts.size(); ++e) add_swiglu(out, b + ".experts." + std::to_string(e), ly.moe.experts[e], mixtral);
  if (ly.moe.has_shared)
    add_swiglu(out, b + (c.arch == Arch::DeepseekV3 ? ".shared_experts" : ".shared_expert"), ly.moe.shared, false);
  if (ly.moe.shared_gate.w.raw()) out.emplace_back(b + ".shared_expert_gate.weight", ly.moe.shared_gate.w);
}

std::vector<std::pair<std::string, Tensor>> Model::parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back("model.embed_tokens.weight", embed_);
  for (size_t i = 0; i < layers_.size(); ++i) add_layer_parameters(out, "model.layers." + std::to_string(i), layers_[i]);
  out.emplace_back("model.norm.weight", final_norm_);
  if (!cfg_.tie_word_embeddings) out.emplace_back("lm_head.weight", lm_head_);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Model::buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i].is_moe && layers_[i].moe.score_bias.raw())
      out.emplace_back("model.layers." + std::to_string(i) + ".mlp.gate.e_score_correction_bias", layers_[i].moe.score_bias);
  // DeepSeek-V3 MTP modules: saved with the checkpoint, not trained yet.
  for (size_t k = 0; k < mtp_.size(); ++k) {
    const MtpModule& mt = mtp_[k];
    const std::string p = "model.layers." + std::to_string(layers_.size() + k);
    out.emplace_back(p + ".enorm.weight", mt.enorm);
    out.emplace_back(p + ".hnorm.weight", mt.hnorm);
    add_linear(out, p + ".eh_proj", mt.eh_proj);
    add_layer_parameters(out, p, mt.layer);
    if (mt.layer.is_moe && mt.layer.moe.score_bias.raw())
      out.emplace_back(p + ".mlp.gate.e_score_correction_bias", mt.layer.moe.score_bias);
    out.emplace_back(p + ".shared_head.norm.weight", mt.head_norm);
    if (mt.head.raw()) out.emplace_back(p + ".shared_head.head.weight", mt.head);
  }
  return out;
}

}  // namespace reason

namespace reason {

std::optional<DType> Model::find_quantized_weights() const {
  for (const auto& [name, t] : parameters())
    if (kernels::dtype_is_quantized(t.dtype())) return kernels::dtype_block_format(t.dtype());
  return std::nullopt;
}

}  // namespace reason
