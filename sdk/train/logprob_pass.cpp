#include "train/logprob_pass.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "core/error.h"
#include "model/layers/embedding.h"
#include "model/layers/rmsnorm.h"
#include "reason/kernels/backend.h"

namespace reason {

namespace {

// The gradient accumulator of each parameter tensor, found by the tensor's storage (tied
// embeddings share one, which is model.embed_tokens.weight's). A parameter without an
// accumulator in `g` is frozen (null: LoRA training has accumulators for the adapter only).
class GradSink final : public ParamGrads {
 public:
  GradSink(const Model& m, Gradients& g) {
    auto add = [&](const std::vector<std::pair<std::string, Tensor>>& params) {
      for (auto& [name, t] : params) {
        auto it = g.by_name.find(name);
        by_ptr_.emplace(t.raw(), it == g.by_name.end() ? nullptr : it->second.data<float>());
      }
    };
    add(m.parameters());
    add(m.adapter_parameters());
  }
  float* of(const Tensor& t) const override {
    auto it = by_ptr_.find(t.raw());
    if (it == by_ptr_.end()) fail(ErrorCode::Internal, "training backward: a weight of shape {} is not a parameter", t.shape_str());
    return it->second;
  }

 private:
  std::unordered_map<const void*, float*> by_ptr_;
};

}  // namespace

void append_completion_sequence(std::vector<std::vector<int32_t>>& seqs, std::vector<uint8_t>& need,
                                std::span<const int32_t> prompt, std::span<const int32_t> completion) {
  if (prompt.empty()) fail(ErrorCode::InvalidArgument, "sequence {}: a completion needs a non-empty prompt", seqs.size());
  std::vector<int32_t> s(prompt.begin(), prompt.end());
  s.insert(s.end(), completion.begin(), completion.end());
  seqs.push_back(std::move(s));
  need.insert(need.end(), prompt.size() - 1, 0);
  need.insert(need.end(), completion.size(), 1);
}

Gradients Gradients::zeros_like(const Model& m) {
  Gradients g;
  for (auto& [name, t] : m.adapter() ? m.adapter_parameters() : m.parameters())
    g.by_name.emplace(name, Tensor::zeros(m.backend(), DType::F32, t.shape()));
  return g;
}

void Gradients::zero() {
  for (auto& [name, g] : by_name) {
    if (g.backend())
      g.backend()->fill_zero(g.raw(), g.nbytes());
    else
      std::memset(g.raw(), 0, g.nbytes());  // host accumulators (made by a caller)
  }
}

Tensor& Gradients::at(const std::string& name) {
  auto it = by_name.find(name);
  if (it == by_name.end()) fail(ErrorCode::Internal, "no gradient accumulator for parameter '{}'", name);
  return it->second;
}

LayerCtx LogprobPass::layer_ctx() const {
  LayerCtx ctx;
  ctx.be = &model_->backend();
  ctx.cfg = &model_->config();
  ctx.rope = &model_->rope();
  ctx.rows = int64_t(tokens_.size());
  ctx.pos = pos_dev_.data();
  ctx.inv_freq = model_->rope_freq();
  ctx.seq_start = &seq_start_;
  ctx.seq_start_dev = seq_start_dev_.data();
  ctx.keep_inputs = true;
  return ctx;
}

void LogprobPass::layer_forward(int64_t l, DeviceArray<float>& x, bool record) {
  const DecoderLayer& ly = model_->layers()[size_t(l)];
  LayerActs& a = acts_[size_t(l)];
  decoder_layer_forward(layer_ctx(), ly, l, x, a, nullptr);
  if (!record || !ly.is_moe) return;
  routes_[size_t(l)] = a.route_idx.download();
  if (aux_alpha_ > 0.0f)  // on the host, from the downloaded router logits and choices
    aux_loss_ += moe_seq_aux_loss(ly.moe.router, a.router_logits.download(), routes_[size_t(l)], seq_start_, aux_alpha_,
                                  nullptr, 0.0f);
}

std::vector<float> LogprobPass::to_all(std::vector<float> computed) const {
  if (head_pos_.empty() && int64_t(computed.size()) == n_all_targets_) return computed;
  std::vector<float> all(size_t(n_all_targets_), 0.0f);
  for (size_t i = 0; i < head_pos_.size(); ++i) all[size_t(head_pos_[i])] = computed[i];
  return all;
}

template <class T>
std::vector<T> LogprobPass::to_computed(std::span<const T> all, const char* what) const {
  if (int64_t(all.size()) != n_all_targets_)
    fail(ErrorCode::InvalidArgument, "backward: {} {} for {} target tokens", all.size(), what, n_all_targets_);
  if (int64_t(target_row_.size()) == n_all_targets_) return std::vector<T>(all.begin(), all.end());
  std::vector<T> out(head_pos_.size());
  size_t j = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    if (j < head_pos_.size() && head_pos_[j] == int64_t(i)) {
      out[j++] = all[i];
    } else if (all[i] != T(0)) {
      fail(ErrorCode::InvalidArgument, "backward: target {} has {} {} but the forward skipped it (need = 0)", i,
           double(all[i]), what);
    }
  }
  return out;
}

std::vector<float> LogprobPass::forward(const Model& model, std::span<const std::vector<int32_t>> seqs,
                                        float temperature, std::span<const uint8_t> need) {
  const ModelConfig& c = model.config();
  if (model.compute_dtype() != DType::F32)
    fail(ErrorCode::Unsupported, "training needs the model loaded in f32 (its master weights)");
  if (!(temperature > 0.0f)) fail(ErrorCode::InvalidArgument, "training temperature must be > 0 (got {})", temperature);
  model_ = &model;
  temperature_ = temperature;
  kernels::Backend& be = model.backend();
  const int64_t d = c.hidden_size, V = c.vocab_size;

  tokens_.clear();
  seq_start_.clear();
  target_row_.clear();
  head_pos_.clear();
  n_all_targets_ = 0;
  int64_t n_need = 0;
  for (size_t s = 0; s < seqs.size(); ++s) n_need += std::max<int64_t>(0, int64_t(seqs[s].size()) - 1);
  if (!need.empty() && int64_t(need.size()) != n_need)
    fail(ErrorCode::InvalidArgument, "training forward: {} need flags for {} target tokens", need.size(), n_need);
  std::vector<int32_t> pos, target_id;
  for (size_t s = 0; s < seqs.size(); ++s) {
    if (seqs[s].size() < 2) fail(ErrorCode::InvalidArgument, "training sequence {} has fewer than 2 tokens", s);
    seq_start_.push_back(int64_t(tokens_.size()));
    for (size_t t = 0; t < seqs[s].size(); ++t) {
      const int32_t id = seqs[s][t];
      if (id < 0 || id >= V)
        fail(ErrorCode::InvalidArgument, "sequence {}: token id {} at position {} is outside the vocabulary [0, {})", s, id, t, V);
      if (t + 1 < seqs[s].size()) {
        if (need.empty() || need[size_t(n_all_targets_)]) {
          if (!need.empty()) head_pos_.push_back(n_all_targets_);
          target_row_.push_back(int32_t(tokens_.size()));
          target_id.push_back(seqs[s][t + 1]);
        }
        ++n_all_targets_;
      }
      tokens_.push_back(id);
      pos.push_back(int32_t(t));
    }
  }
  const int64_t T = int64_t(tokens_.size());
  seq_start_.push_back(T);
  aux_loss_ = 0.0;
  if (T == 0) fail(ErrorCode::InvalidArgument, "training batch is empty");
  if (T > INT32_MAX) fail(ErrorCode::InvalidArgument, "training batch has {} tokens (at most {})", T, INT32_MAX);
  tokens_dev_.upload(be, tokens_);
  pos_dev_.upload(be, pos);
  seq_start_dev_.upload(be, seq_start_);
  target_row_dev_.upload(be, target_row_);
  target_id_dev_.upload(be, target_id);

  DeviceArray<float> x(be, size_t(T * d));
  embedding_forward(be, model.embed(), tokens_dev_.data(), T, x.data());

  acts_.clear();
  acts_.resize(size_t(c.n_layers));
  routes_.assign(size_t(c.n_layers), {});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    layer_forward(l, x, true);
    // With recomputation only the layer's input is kept; backward() runs the layer again.
    if (recompute_) {
      DeviceArray<float> x_in = std::move(acts_[size_t(l)].x_in);
      acts_[size_t(l)] = LayerActs{};
      acts_[size_t(l)].x_in = std::move(x_in);
    }
  }
  x_final_ = std::move(x);
  rstd_f_.resize(be, static_cast<size_t>(T));
  h_final_.resize(be, size_t(T * d));
  rmsnorm_forward(be, x_final_.data(), model.final_norm(), h_final_.data(), rstd_f_.data(), T, d, c.rms_norm_eps);

  // LM head + log-softmax. When the [targets x vocab] logits fit in kKeepLogitsBytes they are
  // computed by one matmul and kept for the backward (which then needs no second LM-head
  // forward and runs the head's backward as one matmul); otherwise in chunks of rows that fit the
  // same budget (chunk_rows()), computed again by the backward.
  const int64_t N = int64_t(target_row_.size());
  DeviceArray<float> out(be, size_t(N)), entropy(be, size_t(N));
  lse_.resize(be, size_t(N));
  const bool keep = double(N) * double(V) * sizeof(float) <= double(logits_budget_);
  const int64_t B = keep ? N : std::min(N, chunk_rows(V));
  DeviceArray<float> hc(be, size_t(B * d)), chunk;
  DeviceArray<float>& logits = keep ? logits_ : chunk;
  logits.resize(be, size_t(B * V));
  logits_kept_ = false;
  const float inv_t = 1.0f / temperature;
  for (int64_t c0 = 0; c0 < N; c0 += B) {
    const int64_t m = std::min(B, N - c0);
    be.gather_rows(hc.data(), h_final_.data(), DType::F32, target_row_dev_.data() + c0, m, d);
    linear_forward(be, Linear{model.lm_head(), Tensor()}, hc.data(), m, logits.data(), true);
    be.logsoftmax_rows(logits.data(), m, V, inv_t, target_id_dev_.data() + c0, lse_.data() + c0, out.data() + c0,
                       entropy.data() + c0);
  }
  logits_kept_ = keep;
  if (!keep) logits_.release();
  entropy_ = to_all(entropy.download());
  return to_all(out.download());
}

void LogprobPass::row_logits(int64_t i0, int64_t n, float* out) const {
  if (!model_) fail(ErrorCode::InvalidArgument, "LogprobPass::row_logits called before forward");
  kernels::Backend& be = model_->backend();
  const int64_t d = model_->config().hidden_size;
  if (i0 < 0 || n < 0 || i0 + n > int64_t(target_row_.size())) fail(ErrorCode::InvalidArgument, "row_logits: rows out of range");
  if (logits_kept_) {  // the forward's own logits
    const int64_t V = model_->config().vocab_size;
    be.copy_bytes(out, logits_.data() + i0 * V, size_t(n * V) * sizeof(float));
    return;
  }
  DeviceArray<float> hc(be, size_t(n * d));
  be.gather_rows(hc.data(), h_final_.data(), DType::F32, target_row_dev_.data() + i0, n, d);
  linear_forward(be, Linear{model_->lm_head(), Tensor()}, hc.data(), n, out, true);
}

void LogprobPass::backward(std::span<const float> dlogp, Gradients& grads) {
  const std::vector<float> g = to_computed(dlogp, "dL/dlogprob values");
  backward_impl(nullptr, nullptr, g, grads);
}

void LogprobPass::backward_rows(const RowGrad& row_grad, Gradients& grads) { backward_impl(&row_grad, nullptr, {}, grads); }

void LogprobPass::backward_distill(const Distill& d, Gradients& grads) {
  if (!model_ || !d.teacher || !d.teacher->model_) fail(ErrorCode::InvalidArgument, "backward_distill: both passes need a forward");
  if (d.teacher->target_row_ != target_row_ || d.teacher->n_all_targets_ != n_all_targets_ ||
      d.teacher->temperature_ != temperature_ ||
      d.teacher->model_->config().vocab_size != model_->config().vocab_size)
    fail(ErrorCode::InvalidArgument, "backward_distill: the teacher's pass covers other rows, temperature or vocabulary");
  if (!d.row_loss) fail(ErrorCode::InvalidArgument, "backward_distill: no row_loss output");
  const std::vector<float> w = to_computed(d.row_weight, "row weights");
  Distill dc = d;
  dc.row_weight = w;
  std::vector<double> loss;
  dc.row_loss = &loss;
  backward_impl(nullptr, &dc, {}, grads);
  d.row_loss->assign(size_t(n_all_targets_), 0.0);
  for (size_t i = 0; i < loss.size(); ++i) (*d.row_loss)[head_pos_.empty() ? i : size_t(head_pos_[i])] = loss[i];
}

void LogprobPass::backward_impl(const RowGrad* row_grad, const Distill* distill, std::span<const float> dlogp,
                                Gradients& grads) {
  if (!model_) fail(ErrorCode::InvalidArgument, "LogprobPass::backward called before forward");
  const Model& model = *model_;
  // A forward on quantised weights is fine (a GRPO reference, a distillation teacher, a QLoRA
  // base: dequantised f32 panels); gradients of quantised weights are not.
  if (auto q = model.quantized_weights(); q && !model.adapter())
    fail(ErrorCode::Unsupported,
         "training needs unquantised weights, but the model has {} weights (load it with quantize none, or train a LoRA "
         "adapter on it)",
         kernels::dtype_name(*q));
  kernels::Backend& be = model.backend();
  const ModelConfig& c = model.config();
  const int64_t d = c.hidden_size, V = c.vocab_size;
  const int64_t T = int64_t(tokens_.size()), N = int64_t(target_row_.size());
  const float inv_t = 1.0f / temperature_;
  const GradSink gs(model, grads);

  // LM head and log-softmax: dz = dlogp * (onehot - softmax), dlogits = dz / T, over the logits the
  // forward kept (all rows at once; overwritten by their gradient), else chunk by chunk with the
  // logits computed again.
  DeviceArray<float> dh;
  dh.zeros(be, size_t(T * d));
  {
    const bool kept = logits_kept_;
    logits_kept_ = false;  // the backward overwrites them
    const int64_t B = kept ? N : std::min(N, chunk_rows(V));
    DeviceArray<float> hc(be, size_t(B * d)), chunk, dhc(be, size_t(B * d)), tlogits, dlogp_dev, weight_dev;
    DeviceArray<float>& logits = kept ? logits_ : chunk;
    if (!kept) chunk.resize(be, size_t(B * V));
    DeviceArray<double> loss_dev;
    if (distill) {
      tlogits.resize(be, size_t(B * V));
      weight_dev.upload(be, distill->row_weight);
      loss_dev.resize(be, size_t(N));
    } else if (!row_grad) {
      dlogp_dev.upload(be, dlogp);
    }
    const Linear head{model.lm_head(), Tensor()};
    for (int64_t c0 = 0; c0 < N; c0 += B) {
      const int64_t m = std::min(B, N - c0);
      be.gather_rows(hc.data(), h_final_.data(), DType::F32, target_row_dev_.data() + c0, m, d);
      if (!kept) linear_forward(be, head, hc.data(), m, logits.data(), true);
      if (distill) {
        distill->teacher->row_logits(c0, m, tlogits.data());
        kernels::DistillRowsArgs da;
        da.z_s = logits.data();
        da.lse_s = lse_.data() + c0;
        da.z_t = tlogits.data();
        da.lse_t = distill->teacher->lse_.data() + c0;
        da.weight = weight_dev.data() + c0;
        da.rows = m;
        da.n = V;
        da.inv_t = inv_t;
        da.kind = distill->kind;
        da.beta = distill->beta;
        da.loss = loss_dev.data() + c0;
        be.distill_rows(da);
      } else if (row_grad) {
        host_row_grads(*row_grad, c0, m, logits, inv_t);
      } else {
        // dz = g (onehot - p) / T with p = exp(z / T - lse) from the forward.
        be.logsoftmax_rows_bwd(logits.data(), m, V, inv_t, target_id_dev_.data() + c0, lse_.data() + c0,
                               dlogp_dev.data() + c0);
      }
      linear_backward(be, head, hc.data(), logits.data(), m, dhc.data(), false, gs);
      be.scatter_add_rows(dh.data(), target_row_dev_.data() + c0, dhc.data(), nullptr, m, d);
    }
    logits_.release();
    if (distill) *distill->row_loss = loss_dev.download();
  }
  DeviceArray<float> dx;
  dx.zeros(be, size_t(T * d));
  rmsnorm_backward(be, x_final_.data(), model.final_norm(), rstd_f_.data(), dh.data(), dx.data(), T, d, gs);

  const LayerCtx ctx = layer_ctx();
  for (int64_t l = c.n_layers - 1; l >= 0; --l) {
    if (recompute_) {  // rebuild this layer's activations from its saved input; drop the layer above's
      if (l + 1 < c.n_layers) {
        DeviceArray<float> keep = std::move(acts_[size_t(l + 1)].x_in);
        acts_[size_t(l + 1)] = LayerActs{};
        acts_[size_t(l + 1)].x_in = std::move(keep);
      }
      DeviceArray<float> xr;
      xr.copy_from(be, acts_[size_t(l)].x_in);
      layer_forward(l, xr, false);
    }
    decoder_layer_backward(ctx, model.layers()[size_t(l)], acts_[size_t(l)], dx, gs, AuxLoss{aux_alpha_, aux_weight_});
    if (layer_hook_) layer_hook_(l);
  }
  embedding_backward(be, model.embed(), tokens_dev_.data(), T, dx.data(), gs);
}

// A caller's dL/dlogprob rows (RowGrad, host code): the chunk's logits come to the host, each
// row's dz_j = (g_j - p_j * sum_k g_k) / T goes back into them.
void LogprobPass::host_row_grads(const RowGrad& row_grad, int64_t c0, int64_t m, DeviceArray<float>& logits,
                                 float inv_t) const {
  const int64_t V = model_->config().vocab_size;
  std::vector<float> z = logits.download(0, size_t(m * V)), lse = lse_.download(size_t(c0), size_t(m));
  std::vector<float> rowlp(static_cast<size_t>(V)), rowg(static_cast<size_t>(V));
  for (int64_t i = 0; i < m; ++i) {
    float* zi = &z[size_t(i * V)];
    for (int64_t j = 0; j < V; ++j) rowlp[size_t(j)] = zi[j] * inv_t - lse[size_t(i)];
    std::fill(rowg.begin(), rowg.end(), 0.0f);
    row_grad(head_pos_.empty() ? c0 + i : head_pos_[size_t(c0 + i)], rowlp.data(), rowg.data());
    double gsum = 0;
    for (int64_t j = 0; j < V; ++j) gsum += rowg[size_t(j)];
    for (int64_t j = 0; j < V; ++j) zi[j] = float((rowg[size_t(j)] - std::exp(double(rowlp[size_t(j)])) * gsum) * inv_t);
  }
  model_->backend().upload(logits.data(), z.data(), z.size() * sizeof(float));
}

}  // namespace reason
