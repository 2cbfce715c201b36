#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "core/mix64.h"
#include "train/data_parallel.h"

namespace reason {

Trainer::Trainer(std::shared_ptr<const Model> policy, TrainerConfig cfg)
    : policy_(std::move(policy)), cfg_(std::move(cfg)), opt_(cfg_.optim) {
  if (!policy_) fail(ErrorCode::InvalidArgument, "trainer: policy model is null");
  if (policy_->compute_dtype() != DType::F32)
    fail(ErrorCode::Unsupported, "trainer: load the policy in f32 (its weights are the master weights)");
  if (auto q = policy_->quantized_weights(); q && !policy_->adapter())
    fail(ErrorCode::Unsupported,
         "trainer: the policy has {} weights, which cannot be trained; load it with quantize none, or train a LoRA adapter on it",
         kernels::dtype_name(*q));
  if (!(cfg_.optim.lr >= 0.0f)) fail(ErrorCode::InvalidArgument, "trainer: learning rate must be >= 0 (got {})", cfg_.optim.lr);
  if (policy_->adapter() && cfg_.bias_update_speed > 0.0f)
    fail(ErrorCode::Unsupported,
         "trainer: bias_update_speed changes the frozen base's expert biases, which an adapter checkpoint does not hold; "
         "use 0 with a LoRA adapter");
  if (policy_->adapter() && !cfg_.frozen_prefixes.empty())
    fail(ErrorCode::InvalidArgument, "trainer: frozen prefixes apply to full training; a LoRA adapter already freezes the base");
  // With a LoRA adapter only the adapter trains: the base weights are frozen (no gradients).
  params_ = policy_->adapter() ? policy_->adapter_parameters() : policy_->parameters();
  for (const auto& [name, t] : params_)
    for (const auto& p : cfg_.frozen_prefixes)
      if (name.rfind(p, 0) == 0) frozen_.push_back(name);
  grads_ = Gradients::zeros_like(*policy_);
  comm_ = cfg_.comm ? cfg_.comm : single_process();
  for (const auto& [name, t] : params_)
    if (std::find(frozen_.begin(), frozen_.end(), name) == frozen_.end()) trained_.push_back(name);
  if (cfg_.zero1 && distributed()) owners_ = zero1_owners(params_, comm_->size());
}

std::vector<std::pair<std::string, int>> Trainer::zero1_assignment() const {
  std::vector<std::pair<std::string, int>> out;
  for (size_t i = 0; i < owners_.size(); ++i) out.emplace_back(params_[i].first, owners_[i]);
  return out;
}

void Trainer::gather_optimizer_state() {
  for (size_t i = 0; i < owners_.size(); ++i) {
    const auto& [name, p] = params_[i];
    if (std::find(trained_.begin(), trained_.end(), name) == trained_.end()) continue;
    auto& st = opt_.state();
    auto it = st.find(name);
    if (it == st.end()) {  // not this rank's (or no step yet: the owner has zeros too after its first)
      kernels::Backend& be = policy_->backend();
      it = st.emplace(name, std::make_pair(Tensor::zeros(be, DType::F32, p.shape()), Tensor::zeros(be, DType::F32, p.shape())))
               .first;
    }
    broadcast_tensor(*comm_, it->second.first, owners_[i], device_collective());
    broadcast_tensor(*comm_, it->second.second, owners_[i], device_collective());
  }
  wait_device(*comm_, device_collective());
}

void Trainer::shard_optimizer_state() {
  for (size_t i = 0; i < owners_.size(); ++i)
    if (owners_[i] != comm_->rank()) opt_.state().erase(params_[i].first);
}

kernels::DeviceCollective* Trainer::device_collective() {
  if (!device_comm_made_) {
    device_comm_made_ = true;
    device_comm_ = make_device_collective(*comm_, policy_->backend());
  }
  return device_comm_.get();
}

GradientReducer& Trainer::reducer() {
  if (!reducer_)
    reducer_ = std::make_unique<GradientReducer>(comm_, grads_, trained_, policy_->config().n_layers,
                                                 cfg_.allreduce_bucket_bytes, device_collective());
  return *reducer_;
}

void Trainer::overlap_backward(LogprobPass& pass) {
  if (!distributed()) return;
  GradientReducer& r = reducer();
  pass.set_layer_hook([&r](int64_t layer) { r.layer_done(layer); });
}

void Trainer::zero_gradients() {
  grads_.zero();
  if (distributed()) reducer();
}

void Trainer::reduce_gradients() {
  last_reduce_ = StepMetrics{};
  if (!distributed()) return;
  const GradientReducer::Report r = reducer().finish();
  const auto t0 = std::chrono::steady_clock::now();
  wait_device(*comm_, device_collective());  // a device collective's buckets are enqueued, not done
  policy_->backend().synchronize();
  last_reduce_.allreduce_buckets = r.buckets;
  last_reduce_.allreduce_seconds =
      r.exposed_seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  last_reduce_.allreduce_busy_seconds = r.busy_seconds;
  for (const auto& n : trained_) last_reduce_.allreduce_bytes += grads_.at(n).numel() * int64_t(sizeof(float));
}

void Trainer::dropout_for(size_t micro) const {
  // Each rank draws its own masks (rank 0's are a single process's).
  policy_->set_lora_dropout_seed(
      mix64(0x6c6f72612d64726fULL ^ (uint64_t(opt_.steps()) << 20) ^ uint64_t(micro) ^ (uint64_t(comm_->rank()) << 40)) | 1);
}

StepMetrics Trainer::apply_step(StepMetrics m) {
  if (!std::isfinite(m.loss)) fail(ErrorCode::InvalidArgument, "training loss is not finite ({}); the step was not applied", m.loss);
  m.allreduce_seconds = last_reduce_.allreduce_seconds;
  m.allreduce_busy_seconds = last_reduce_.allreduce_busy_seconds;
  m.allreduce_bytes = last_reduce_.allreduce_bytes;
  m.allreduce_buckets = last_reduce_.allreduce_buckets;
  m.lr = cfg_.schedule.at(opt_.steps(), cfg_.optim.lr);
  if (owners_.empty()) {
    m.grad_norm = opt_.step(policy_->backend(), params_, grads_, m.lr, frozen_);
  } else {  // ZeRO-1: update this rank's parameters, then every parameter comes from its owner
    std::vector<std::string> others;
    for (size_t i = 0; i < params_.size(); ++i)
      if (owners_[i] != comm_->rank()) others.push_back(params_[i].first);
    m.grad_norm = opt_.step(policy_->backend(), params_, grads_, m.lr, frozen_, &others);
    for (size_t i = 0; i < params_.size(); ++i)
      if (std::find(frozen_.begin(), frozen_.end(), params_[i].first) == frozen_.end())
        broadcast_tensor(*comm_, params_[i].second, owners_[i], device_collective());
    wait_device(*comm_, device_collective());
  }
  if (!policy_->adapter()) policy_->refresh_absorbed_weights();  // MLA: W_UK^T follows the updated kv_b
  if (cfg_.bias_update_speed > 0.0f && policy_->config().n_experts > 0) {
    const ModelConfig& c = policy_->config();
    load_.resize(size_t(c.n_layers * c.n_experts), 0);
    comm_->allreduce_sum(std::span<int64_t>(load_));  // the whole batch's expert load
    balance_experts(load_, cfg_.bias_update_speed);
  }
  return m;
}

void Trainer::count_routes(const LogprobPass& pass) {
  const ModelConfig& c = policy_->config();
  if (c.n_experts == 0) return;
  load_.resize(size_t(c.n_layers * c.n_experts), 0);
  const auto& routes = pass.routes();
  for (size_t l = 0; l < routes.size() && int64_t(l) < c.n_layers; ++l)
    for (int32_t e : routes[l]) load_[l * size_t(c.n_experts) + size_t(e)] += 1;
}

namespace {

// The index of the last micro-batch with examples (the one whose backward finishes the
// gradients), or the count when none has any.
size_t last_nonempty(std::span<const std::vector<SftExample>> micro_batches) {
  size_t last = micro_batches.size();
  for (size_t i = 0; i < micro_batches.size(); ++i)
    if (!micro_batches[i].empty()) last = i;
  return last;
}

// Splits packed examples at their segment boundaries into separate samples.
std::vector<SftExample> unpack(const std::vector<SftExample>& mb) {
  std::vector<SftExample> out;
  for (size_t i = 0; i < mb.size(); ++i) {
    const SftExample& ex = mb[i];
    if (ex.segment_starts.empty()) {
      out.push_back(ex);
      continue;
    }
    std::vector<int64_t> cuts{0};
    for (int64_t s : ex.segment_starts) {
      if (s <= cuts.back() || s >= int64_t(ex.tokens.size()))
        fail(ErrorCode::InvalidArgument, "sft: example {} has segment start {} out of order or out of range", i, s);
      cuts.push_back(s);
    }
    cuts.push_back(int64_t(ex.tokens.size()));
    for (size_t k = 0; k + 1 < cuts.size(); ++k) {
      SftExample seg;
      seg.tokens.assign(ex.tokens.begin() + cuts[k], ex.tokens.begin() + cuts[k + 1]);
      seg.mask.assign(ex.mask.begin() + cuts[k], ex.mask.begin() + cuts[k + 1]);
      if (seg.tokens.size() < 2) fail(ErrorCode::InvalidArgument, "sft: example {} has a packed sample shorter than 2 tokens", i);
      out.push_back(std::move(seg));
    }
  }
  return out;
}

}  // namespace

StepMetrics Trainer::sft_step(std::span<const std::vector<SftExample>> packed) {
  std::vector<std::vector<SftExample>> unpacked;
  agree(*comm_, [&] {  // a bad example on one rank fails every rank
    for (const auto& mb : packed)
      for (size_t i = 0; i < mb.size(); ++i)
        if (mb[i].mask.size() != mb[i].tokens.size())
          fail(ErrorCode::InvalidArgument, "sft: example {} has {} tokens but {} mask values", i, mb[i].tokens.size(),
               mb[i].mask.size());
    for (const auto& mb : packed) unpacked.push_back(unpack(mb));
  });
  std::span<const std::vector<SftExample>> micro_batches(unpacked);
  // The normaliser: every masked target token of the whole batch.
  int64_t n_tokens = 0;
  for (const auto& mb : micro_batches)
    for (size_t i = 0; i < mb.size(); ++i) {
      const SftExample& ex = mb[i];
      if (ex.mask.size() != ex.tokens.size())
        fail(ErrorCode::InvalidArgument, "sft: example {} has {} tokens but {} mask values", i, ex.tokens.size(), ex.mask.size());
      for (size_t t = 1; t < ex.tokens.size(); ++t) n_tokens += ex.mask[t] ? 1 : 0;
    }
  size_t n_seqs = 0;
  for (const auto& mb : micro_batches) n_seqs += mb.size();
  int64_t counts[2] = {n_tokens, int64_t(n_seqs)};  // over every rank's share of the batch
  comm_->allreduce_sum(std::span<int64_t>(counts));
  n_tokens = counts[0];
  n_seqs = size_t(counts[1]);
  if (n_tokens == 0) fail(ErrorCode::InvalidArgument, "sft: the batch has no completion tokens to train on");
  zero_gradients();
  std::fill(load_.begin(), load_.end(), 0);
  StepMetrics m;
  m.tokens = n_tokens;
  double loss = 0;
  DropoutOff off{*policy_};
  const size_t last = last_nonempty(micro_batches);
  for (size_t mi = 0; mi < micro_batches.size(); ++mi) {
    const auto& mb = micro_batches[mi];
    if (mb.empty()) continue;
    dropout_for(mi);
    std::vector<std::vector<int32_t>> seqs;
    std::vector<uint8_t> need;  // the LM head runs only on the rows the loss uses
    for (const auto& ex : mb) {
      seqs.push_back(ex.tokens);
      for (size_t t = 1; t < ex.tokens.size(); ++t) need.push_back(ex.mask[t] != 0);
    }
    LogprobPass pass;
    const float share = float(mb.size()) / float(n_seqs);
    pass.set_aux_loss(cfg_.aux_loss_alpha, share);
    pass.set_recompute(cfg_.recompute_activations);
    auto lp = pass.forward(*policy_, seqs, 1.0f, need);
    loss += double(n_tokens) * share * pass.aux_loss();  // divided by n_tokens below
    count_routes(pass);
    std::vector<float> dlp(lp.size());
    size_t k = 0;
    for (const auto& ex : mb)
      for (size_t t = 1; t < ex.tokens.size(); ++t, ++k) {
        const bool on = ex.mask[t] != 0;
        loss -= on ? double(lp[k]) : 0.0;
        dlp[k] = on ? -1.0f / float(n_tokens) : 0.0f;
      }
    if (mi == last) overlap_backward(pass);
    pass.backward(dlp, grads_);
  }
  reduce_gradients();
  comm_->allreduce_sum(std::span<double>(&loss, 1));
  m.loss = float(loss / double(n_tokens));
  return apply_step(m);
}

StepMetrics Trainer::distill_step(const Model& teacher, std::span<const std::vector<SftExample>> micro_batches,
                                  const DistillConfig& cfg, bool apply) {
  if (teacher.config().vocab_size != policy_->config().vocab_size)
    fail(ErrorCode::InvalidArgument, "distill: teacher vocabulary ({}) differs from the student's ({})",
         teacher.config().vocab_size, policy_->config().vocab_size);
  if (&teacher.backend() != &policy_->backend())
    fail(ErrorCode::InvalidArgument, "distill: the teacher runs on {} but the student on {}; load both on one device",
         teacher.backend().name(), policy_->backend().name());
  if (!(cfg.temperature > 0.0f)) fail(ErrorCode::InvalidArgument, "distill: temperature must be > 0");
  if (cfg.loss == DistillLoss::JSD && !(cfg.beta > 0.0f && cfg.beta < 1.0f))
    fail(ErrorCode::InvalidArgument, "distill: JSD beta must be in (0, 1) (got {}; use forward or reverse KL for 0 or 1)", cfg.beta);
  int64_t n_tokens = 0;
  agree(*comm_, [&] {
    for (const auto& mb : micro_batches)
      for (const auto& ex : mb) {
        if (ex.mask.size() != ex.tokens.size()) fail(ErrorCode::InvalidArgument, "distill: mask and tokens differ in length");
        for (size_t t = 1; t < ex.tokens.size(); ++t) n_tokens += ex.mask[t] ? 1 : 0;
      }
  });
  comm_->allreduce_sum(std::span<int64_t>(&n_tokens, 1));
  if (n_tokens == 0) fail(ErrorCode::InvalidArgument, "distill: the batch has no completion tokens");
  zero_gradients();
  double loss = 0;
  DropoutOff off{*policy_};
  const size_t last = last_nonempty(micro_batches);
  for (size_t mi = 0; mi < micro_batches.size(); ++mi) {
    const auto& mb = micro_batches[mi];
    if (mb.empty()) continue;
    dropout_for(mi);
    std::vector<std::vector<int32_t>> seqs;
    std::vector<uint8_t> on;
    for (const auto& ex : mb) {
      seqs.push_back(ex.tokens);
      for (size_t t = 1; t < ex.tokens.size(); ++t) on.push_back(ex.mask[t]);
    }
    LogprobPass student, teach;
    student.forward(*policy_, seqs, cfg.temperature, on);
    teach.forward(teacher, seqs, cfg.temperature, on);
    // The backend computes each completion row's divergence and its gradient (Backend::distill_rows).
    const float w = 1.0f / float(n_tokens);
    std::vector<float> row_weight(on.size());
    for (size_t i = 0; i < on.size(); ++i) row_weight[i] = on[i] ? w : 0.0f;
    std::vector<double> row_loss;
    LogprobPass::Distill d;
    d.teacher = &teach;
    d.kind = cfg.loss == DistillLoss::ForwardKL   ? kernels::DistillKind::ForwardKL
             : cfg.loss == DistillLoss::ReverseKL ? kernels::DistillKind::ReverseKL
                                                  : kernels::DistillKind::JSD;
    d.beta = cfg.beta;
    d.row_weight = row_weight;
    d.row_loss = &row_loss;
    if (mi == last) overlap_backward(student);
    student.backward_distill(d, grads_);
    for (double l : row_loss) loss += l;
  }
  reduce_gradients();
  comm_->allreduce_sum(std::span<double>(&loss, 1));
  StepMetrics m;
  m.tokens = n_tokens;
  m.loss = float(loss / double(n_tokens));
  if (!apply) {
    if (!std::isfinite(m.loss)) fail(ErrorCode::InvalidArgument, "distillation loss is not finite ({})", m.loss);
    return m;
  }
  return apply_step(m);
}

void Trainer::balance_experts(std::span<const int64_t> load, float gamma) {
  const ModelConfig& c = policy_->config();
  if (c.n_experts == 0) fail(ErrorCode::InvalidArgument, "balance_experts: {} has no experts", c.architecture);
  if (int64_t(load.size()) != c.n_layers * c.n_experts)
    fail(ErrorCode::InvalidArgument, "balance_experts: {} load values for {} layers x {} experts", load.size(), c.n_layers,
         c.n_experts);
  if (!(gamma >= 0.0f) || !std::isfinite(gamma)) fail(ErrorCode::InvalidArgument, "balance_experts: gamma must be >= 0");
  for (auto& [name, bias] : policy_->buffers()) {
    const std::string suffix = ".mlp.gate.e_score_correction_bias";
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const int64_t layer = std::stoll(name.substr(std::string("model.layers.").size()));
    if (layer >= c.n_layers) continue;  // MTP modules are not routed by the main model's forward
    const int64_t* l = load.data() + layer * c.n_experts;
    double mean = 0;
    for (int64_t e = 0; e < c.n_experts; ++e) mean += double(l[e]);
    mean /= double(c.n_experts);
    // The bias is a few values per layer: updated on the host, written back to the backend.
    Tensor h = bias.host();  // the bias itself in host memory, else a downloaded copy
    float* b = h.data<float>();
    for (int64_t e = 0; e < c.n_experts; ++e) {
      if (double(l[e]) > mean) b[e] -= gamma;
      else if (double(l[e]) < mean) b[e] += gamma;
    }
    if (h.raw() != bias.raw()) bias.backend()->upload(const_cast<void*>(bias.raw()), h.raw(), h.nbytes());
  }
}

}  // namespace reason
