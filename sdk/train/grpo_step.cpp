// Trainer::grpo_step and Trainer::advantages (trainer.h): the GRPO family's objective over a
// batch — advantages, the aggregation's token weights over the whole batch, the importance ratio
// per token (GRPO) or per completion (GSPO, GSPO-token), rollout correction, the top-entropy token
// mask and the entropy bonus — with the per-token loss computed by the backend
// (Backend::grpo_token_loss). Every formula follows TRL 1.16's GRPOTrainer (_compute_loss and
// _generate_and_score_completions); tests/unit/test_grpo_trl.cpp and test_grpo_options_trl.cpp
// check them against fixtures TRL produced.
#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "core/error.h"
#include "train/trainer.h"

namespace reason {

namespace detail {

// What a step fixes for the whole batch before any micro-batch runs.
struct GrpoPlan {
  std::span<const GrpoSample> batch;
  const GrpoConfig* cfg = nullptr;
  std::vector<float> adv;
  std::vector<int64_t> n_live;  // live tokens per sample
  int64_t live_total = 0;
  std::vector<double> w;        // the aggregation's token weight per sample
  double threshold = -INFINITY; // top-entropy quantile threshold (-inf: every token)
  int64_t n_eff = 0;            // tokens the policy term acts on (live and kept by the entropy mask)
  double coef = 0.0;            // this step's entropy bonus coefficient
};

// Running sums of a step's metrics over its micro-batches.
struct GrpoSums {
  double loss = 0, kl = 0, low = 0, high = 0, ent = 0, ent_eff = 0;
  int64_t counted = 0, seq_low = 0, seq_high = 0;
  double is_min = INFINITY, is_max = -INFINITY, is_sum = 0, diff_sum = 0, diff_max = 0;
  int64_t is_n = 0, diff_n = 0;
  void add_is(double w) {
    is_min = std::min(is_min, w);
    is_max = std::max(is_max, w);
    is_sum += w;
    ++is_n;
  }
};

}  // namespace detail

namespace {

using detail::GrpoPlan;
using detail::GrpoSums;

void check_logprobs(const std::vector<float>& v, size_t n, size_t i, const char* what, bool nan_ok) {
  if (v.size() != n)
    fail(ErrorCode::InvalidArgument, "grpo: sample {} has {} {} for {} completion tokens", i, v.size(), what, n);
  for (size_t t = 0; t < n; ++t)
    if (!(std::isfinite(v[t]) || (nan_ok && std::isnan(v[t]))))
      fail(ErrorCode::InvalidArgument, "grpo: sample {} has a non-finite {} value at token {}", i, what, t);
}

void check_config(const GrpoConfig& cfg) {
  if (!(cfg.epsilon >= 0.0f) || !(cfg.epsilon_high >= 0.0f)) fail(ErrorCode::InvalidArgument, "grpo: epsilon must be >= 0");
  if (!(cfg.beta >= 0.0f)) fail(ErrorCode::InvalidArgument, "grpo: beta must be >= 0 (got {})", cfg.beta);
  if (cfg.aggregation == GrpoAggregation::Constant && cfg.max_completion_length <= 0)
    fail(ErrorCode::InvalidArgument, "grpo: the constant (Dr. GRPO) normaliser needs max_completion_length > 0");
  if (!(cfg.top_entropy_quantile >= 0.0f && cfg.top_entropy_quantile <= 1.0f))
    fail(ErrorCode::InvalidArgument, "grpo: top_entropy_quantile must be in [0, 1] (got {})", cfg.top_entropy_quantile);
  if (!std::isfinite(cfg.entropy_coef)) fail(ErrorCode::InvalidArgument, "grpo: entropy_coef must be finite");
  if (cfg.adaptive_entropy && !(cfg.entropy_coef_min <= cfg.entropy_coef_max && cfg.entropy_coef_delta >= 0.0f &&
                                std::isfinite(cfg.entropy_target)))
    fail(ErrorCode::InvalidArgument, "grpo: adaptive entropy needs entropy_coef_min <= entropy_coef_max, delta >= 0 and a finite target");
  if (cfg.rollout_correction != RolloutCorrection::None &&
      !(cfg.rollout_clip_min >= 0.0f && cfg.rollout_clip_max >= cfg.rollout_clip_min))
    fail(ErrorCode::InvalidArgument, "grpo: rollout correction needs 0 <= clip_min <= clip_max (got {}, {})",
         cfg.rollout_clip_min, cfg.rollout_clip_max);
}

// A rank of a data-parallel job may have no group in a step (DAPO dynamic sampling kept none of
// its prompts); a single process needs at least one.
void check_batch(std::span<const GrpoSample> batch, const GrpoConfig& cfg, bool distributed) {
  if (batch.empty() && !distributed) fail(ErrorCode::InvalidArgument, "grpo: empty batch");
  check_config(cfg);
  for (size_t i = 0; i < batch.size(); ++i) {
    const GrpoSample& s = batch[i];
    const size_t n = s.completion.size();
    if (s.prompt.empty() || s.completion.empty())
      fail(ErrorCode::InvalidArgument, "grpo: sample {} has an empty prompt or completion", i);
    if (!s.old_logprobs.empty()) check_logprobs(s.old_logprobs, n, i, "old logprobs", false);
    if (cfg.beta > 0.0f) {
      if (s.ref_logprobs.size() != n)
        fail(ErrorCode::InvalidArgument, "grpo: beta > 0 needs ref_logprobs for every completion token (sample {})", i);
      check_logprobs(s.ref_logprobs, n, i, "reference logprobs", false);
    }
    if (cfg.rollout_correction != RolloutCorrection::None) {
      if (s.sampling_logprobs.empty())
        fail(ErrorCode::InvalidArgument, "grpo: rollout correction needs the sampler's logprobs (sample {} has none)", i);
      check_logprobs(s.sampling_logprobs, n, i, "sampling logprobs", true);
    }
    if (!s.mask.empty() && s.mask.size() != n)
      fail(ErrorCode::InvalidArgument, "grpo: sample {} has {} mask values for {} completion tokens", i, s.mask.size(), n);
    if (!std::isfinite(s.reward)) fail(ErrorCode::InvalidArgument, "grpo: sample {} has a non-finite reward", i);
  }
}

// Whether completion token t of sample s carries loss (TRL's completion_mask * tool_mask).
bool is_live(const GrpoSample& s, size_t t, const GrpoConfig& cfg) {
  return !(cfg.mask_truncated && s.truncated) && (s.mask.empty() || s.mask[t] != 0);
}

int64_t live_count(const GrpoSample& s, const GrpoConfig& cfg) {
  int64_t n = 0;
  for (size_t t = 0; t < s.completion.size(); ++t) n += is_live(s, t, cfg) ? 1 : 0;
  return n;
}

// torch.quantile(x, q): linear interpolation between the order statistics around q (n - 1).
double quantile(std::vector<float> x, double q) {
  std::sort(x.begin(), x.end());
  const double pos = q * double(x.size() - 1);
  const size_t lo = size_t(std::floor(pos)), hi = std::min(x.size() - 1, lo + 1);
  return double(x[lo]) + (double(x[hi]) - double(x[lo])) * (pos - double(lo));
}

bool sequence_correction(const GrpoConfig& cfg) {
  return cfg.rollout_correction == RolloutCorrection::SequenceTruncate ||
         cfg.rollout_correction == RolloutCorrection::SequenceMask;
}

// The policy-gradient term's rollout-correction factor of each completion token of s (1 for all
// without correction): w = exp(old - sampler) per token or exp of its sum over the live tokens
// per completion, truncated or masked to [clip_min, clip_max] (TRL, grpo_trainer.py ~2660-2707).
std::vector<double> rollout_weights(const GrpoSample& s, const std::vector<float>& old, const GrpoConfig& cfg) {
  const size_t n = s.completion.size();
  std::vector<double> w(n, 1.0);
  if (cfg.rollout_correction == RolloutCorrection::None) return w;
  std::vector<double> d(n, 0.0);
  for (size_t t = 0; t < n; ++t) {
    const double v = double(old[t]) - double(s.sampling_logprobs[t]);
    d[t] = is_live(s, t, cfg) && !std::isnan(v) ? v : 0.0;
  }
  const bool seq = sequence_correction(cfg);
  const bool mask = cfg.rollout_correction == RolloutCorrection::TokenMask ||
                    cfg.rollout_correction == RolloutCorrection::SequenceMask;
  double sum = 0;
  for (double v : d) sum += v;
  for (size_t t = 0; t < n; ++t) {
    double r = std::exp(seq ? sum : d[t]);
    if (mask) r = (r < cfg.rollout_clip_min || r > cfg.rollout_clip_max) ? 0.0 : r;
    else r = std::clamp(r, double(cfg.rollout_clip_min), double(cfg.rollout_clip_max));
    w[t] = double(float(r));  // TRL holds the ratios in f32
  }
  return w;
}

// A micro-batch's completion tokens, gathered for the backend's GRPO loss op.
struct GrpoTokens {
  std::vector<size_t> pos;             // index of each token's logprob in the pass's output
  std::vector<size_t> sample, token;   // its sample (batch index) and position in the completion
  std::vector<float> logp, old, ref, adv;
  std::vector<float> lw;               // GSPO: the sequence's log importance weight (else empty)
  std::vector<float> scale;            // the policy term's factor (entropy mask x rollout correction), or empty
  std::vector<double> weight;          // aggregation weight (0: masked)
  std::vector<uint8_t> effective;      // live and kept by the entropy mask: the entropy bonus's tokens
};

// Runs Backend::grpo_token_loss over the tokens (uploaded to the backend's memory): returns d loss /
// d logp per token (weighted) and fills sums (backend.h's GrpoLossArgs::sums); with dlw, the
// derivative by the log importance weight goes there instead of into the result.
std::vector<float> grpo_token_loss(kernels::Backend& be, const GrpoTokens& tk, const GrpoConfig& cfg, double* sums,
                                   std::vector<float>* dlw) {
  const size_t n = tk.logp.size();
  DeviceArray<float> logp, old, ref, adv, lw, scale, dlogp(be, n), dlw_dev;
  DeviceArray<double> weight, sums_dev(be, 5);
  logp.upload(be, tk.logp);
  old.upload(be, tk.old);
  if (cfg.beta > 0.0f) ref.upload(be, tk.ref);
  adv.upload(be, tk.adv);
  weight.upload(be, tk.weight);
  if (!tk.lw.empty()) lw.upload(be, tk.lw);
  if (!tk.scale.empty()) scale.upload(be, tk.scale);
  if (dlw) dlw_dev.resize(be, n);
  kernels::GrpoLossArgs a;
  a.logp = logp.data();
  a.old_logp = old.data();
  a.log_weight = tk.lw.empty() ? nullptr : lw.data();
  a.pg_scale = tk.scale.empty() ? nullptr : scale.data();
  a.ref_logp = cfg.beta > 0.0f ? ref.data() : nullptr;
  a.adv = adv.data();
  a.weight = weight.data();
  a.n = int64_t(n);
  a.eps_low = cfg.epsilon;
  a.eps_high = cfg.epsilon_high;
  a.beta = cfg.beta;
  a.kl = cfg.kl == KlEstimator::K1 ? 1 : cfg.kl == KlEstimator::K2 ? 2 : 3;
  a.k3_clamp = cfg.k3_clamp;
  a.kl_ratio_correction = cfg.kl_ratio_correction;
  a.dlogp = dlogp.data();
  a.dlog_weight = dlw ? dlw_dev.data() : nullptr;
  a.sums = sums_dev.data();
  be.grpo_token_loss(a);
  const std::vector<double> s = sums_dev.download();
  std::copy(s.begin(), s.end(), sums);
  if (dlw) *dlw = dlw_dev.download();
  return dlogp.download();
}

bool sequence_level(const GrpoConfig& cfg) { return cfg.importance_level != ImportanceLevel::Token; }

// GSPO's log importance weight of a sample: the mean of log(pi / pi_old) over its live tokens.
float sequence_log_weight(const GrpoSample& s, const float* lp, const std::vector<float>& old, int64_t n_live,
                          const GrpoConfig& cfg) {
  double sum = 0;
  for (size_t t = 0; t < s.completion.size(); ++t)
    if (is_live(s, t, cfg)) sum += double(lp[t]) - double(old[t]);
  return float(sum / double(std::max<int64_t>(1, n_live)));
}

// Gathers the completion tokens of samples [b0, b1) from their pass (logprobs lp, entropies ent,
// indexed by target) and adds their entropy, rollout-correction and sequence-clip metrics to S.
GrpoTokens gather_tokens(const GrpoPlan& P, size_t b0, size_t b1, const std::vector<float>& lp,
                         const std::vector<float>& ent, GrpoSums& S) {
  const GrpoConfig& cfg = *P.cfg;
  const bool scaled = cfg.rollout_correction != RolloutCorrection::None || cfg.top_entropy_quantile < 1.0f;
  GrpoTokens tk;
  size_t k = 0;
  for (size_t i = b0; i < b1; ++i) {
    const GrpoSample& s = P.batch[i];
    k += s.prompt.size() - 1;  // targets inside the prompt carry no loss
    const size_t n = s.completion.size();
    std::vector<float> old = s.old_logprobs.empty() ? std::vector<float>(lp.begin() + long(k), lp.begin() + long(k + n))
                                                    : s.old_logprobs;
    const std::vector<double> is_w = rollout_weights(s, old, cfg);
    if (sequence_correction(cfg)) S.add_is(is_w[0]);
    float lw = 0.0f;
    if (sequence_level(cfg)) {
      lw = sequence_log_weight(s, &lp[k], old, P.n_live[i], cfg);
      const double r = std::exp(double(lw));
      S.seq_low += r < 1.0 - cfg.epsilon && P.adv[i] < 0 ? 1 : 0;
      S.seq_high += r > 1.0 + cfg.epsilon_high && P.adv[i] > 0 ? 1 : 0;
    }
    for (size_t t = 0; t < n; ++t, ++k) {
      const bool live = is_live(s, t, cfg);
      const bool kept = live && double(ent[k]) >= P.threshold;
      tk.pos.push_back(k);
      tk.sample.push_back(i);
      tk.token.push_back(t);
      tk.logp.push_back(lp[k]);
      tk.old.push_back(old[t]);
      if (cfg.beta > 0.0f) tk.ref.push_back(s.ref_logprobs[t]);
      tk.adv.push_back(P.adv[i]);
      tk.weight.push_back(live ? P.w[i] : 0.0);
      tk.effective.push_back(kept);
      if (sequence_level(cfg)) tk.lw.push_back(lw);
      if (scaled) tk.scale.push_back(float((kept ? 1.0 : 0.0) * is_w[t]));
      if (!live) continue;
      S.ent += ent[k];
      ++S.counted;
      if (kept) S.ent_eff += ent[k];
      if (cfg.rollout_correction == RolloutCorrection::None) continue;
      if (!sequence_correction(cfg)) S.add_is(is_w[t]);
      const double d = std::fabs(double(old[t]) - double(s.sampling_logprobs[t]));
      if (!std::isnan(d)) {
        S.diff_sum += d;
        S.diff_max = std::max(S.diff_max, d);
        ++S.diff_n;
      }
    }
  }
  return tk;
}

// GSPO: d loss / d lw of each token, summed over its sample, reaches each live token's logprob
// divided by the sample's live count (lw is their mean).
void spread_sequence_grad(const GrpoPlan& P, const GrpoTokens& tk, const std::vector<float>& dlw,
                          std::vector<float>& dlogp) {
  for (size_t q0 = 0; q0 < tk.pos.size();) {
    size_t q1 = q0;
    double sum = 0;
    for (; q1 < tk.pos.size() && tk.sample[q1] == tk.sample[q0]; ++q1) sum += double(dlw[q1]);
    const size_t i = tk.sample[q0];
    const double g = sum / double(std::max<int64_t>(1, P.n_live[i]));
    for (size_t q = q0; q < q1; ++q)
      if (tk.weight[q] != 0.0) dlogp[q] = float(double(dlogp[q]) + g);
    q0 = q1;
  }
}

// Fills the batch-level metrics (rewards, ties, lengths) of a GRPO step from the whole batch's
// rewards and completion lengths (every rank's, in rank order: groups stay consecutive).
void reward_metrics(const std::vector<float>& reward, const std::vector<float>& length, int64_t G, StepMetrics& m) {
  const size_t B = reward.size();
  double rm = 0, rs = 0, cl = 0, il = 0;
  int64_t nc = 0, ni = 0, tied = 0;
  for (float r : reward) rm += r;
  rm /= double(B);
  for (float r : reward) rs += (r - rm) * (r - rm);
  m.reward_mean = float(rm);
  m.reward_std = float(std::sqrt(rs / double(B)));
  for (size_t g0 = 0; g0 + size_t(G) <= B; g0 += size_t(G)) {
    bool all = true;
    for (int64_t j = 1; j < G; ++j) all = all && reward[g0 + size_t(j)] == reward[g0];
    tied += all ? 1 : 0;
  }
  m.tied_group_share = float(double(tied) / double(B / size_t(G)));
  for (size_t i = 0; i < B; ++i) {
    if (reward[i] > 0) {
      cl += double(length[i]);
      ++nc;
    } else {
      il += double(length[i]);
      ++ni;
    }
  }
  m.correct_length = nc ? float(cl / double(nc)) : 0.0f;
  m.incorrect_length = ni ? float(il / double(ni)) : 0.0f;
}

// Sums a step's metric sums over the ranks (nothing on one rank).
void reduce_sums(Communicator& c, GrpoSums& S) {
  if (c.size() <= 1) return;
  double d[8] = {S.loss, S.kl, S.low, S.high, S.ent, S.ent_eff, S.is_sum, S.diff_sum};
  int64_t n[5] = {S.counted, S.seq_low, S.seq_high, S.is_n, S.diff_n};
  double mx[3] = {S.is_max, -S.is_min, S.diff_max};
  c.allreduce_sum(std::span<double>(d));
  c.allreduce_sum(std::span<int64_t>(n));
  c.allreduce_max(std::span<double>(mx));
  S.loss = d[0], S.kl = d[1], S.low = d[2], S.high = d[3], S.ent = d[4], S.ent_eff = d[5], S.is_sum = d[6], S.diff_sum = d[7];
  S.counted = n[0], S.seq_low = n[1], S.seq_high = n[2], S.is_n = n[3], S.diff_n = n[4];
  S.is_max = mx[0], S.is_min = -mx[1], S.diff_max = mx[2];
}

}  // namespace

std::vector<float> Trainer::advantages(std::span<const GrpoSample> batch, const GrpoConfig& cfg, Communicator* comm) {
  const int64_t G = cfg.group_size;
  if (G < 2) fail(ErrorCode::InvalidArgument, "grpo: group_size must be at least 2 (got {})", G);
  if (int64_t(batch.size()) % G)
    fail(ErrorCode::InvalidArgument, "grpo: batch of {} samples is not a whole number of groups of {}", batch.size(), G);
  auto unbiased_std = [&](size_t b0, size_t n) {  // as torch.std
    double mean = 0, var = 0;
    for (size_t j = b0; j < b0 + n; ++j) mean += batch[j].reward;
    mean /= double(n);
    for (size_t j = b0; j < b0 + n; ++j) var += (batch[j].reward - mean) * (batch[j].reward - mean);
    return std::sqrt(var / double(n - 1));
  };
  double batch_sd = 0;
  if (cfg.reward_scaling == RewardScaling::Batch) {
    if (comm && comm->size() > 1) {  // torch.std over every rank's rewards
      double sn[2] = {0, double(batch.size())};
      for (const auto& s : batch) sn[0] += s.reward;
      comm->allreduce_sum(std::span<double>(sn));
      double var = 0;
      for (const auto& s : batch) var += (s.reward - sn[0] / sn[1]) * (s.reward - sn[0] / sn[1]);
      comm->allreduce_sum(std::span<double>(&var, 1));
      batch_sd = std::sqrt(var / (sn[1] - 1));
    } else {
      batch_sd = unbiased_std(0, batch.size());
    }
  }
  std::vector<float> adv(batch.size());
  for (size_t g0 = 0; g0 < batch.size(); g0 += size_t(G)) {
    double mean = 0;
    for (int64_t j = 0; j < G; ++j) mean += batch[g0 + size_t(j)].reward;
    mean /= double(G);
    const double sd = cfg.reward_scaling == RewardScaling::Batch ? batch_sd : unbiased_std(g0, size_t(G));
    for (int64_t j = 0; j < G; ++j) {
      double a = batch[g0 + size_t(j)].reward - mean;
      if (cfg.reward_scaling != RewardScaling::None) a /= sd + 1e-4;
      adv[g0 + size_t(j)] = float(a);
    }
  }
  return adv;
}

StepMetrics Trainer::grpo_step(std::span<const GrpoSample> batch, const GrpoConfig& cfg, int64_t micro_batch, bool apply) {
  agree(*comm_, [&] { check_batch(batch, cfg, distributed()); });  // a bad sample on one rank fails every rank
  const size_t B = batch.size();
  const size_t mb = micro_batch > 0 ? size_t(micro_batch) : B;
  GrpoPlan P;
  P.batch = batch;
  P.cfg = &cfg;
  P.adv = advantages(batch, cfg, comm_.get());
  // The aggregation's per-sample token weights over the whole batch (the normaliser contract):
  // with several ranks, over every rank's samples and live tokens.
  P.n_live.resize(B);
  for (size_t i = 0; i < B; ++i) P.live_total += P.n_live[i] = live_count(batch[i], cfg);
  int64_t totals[2] = {int64_t(B), P.live_total};
  comm_->allreduce_sum(std::span<int64_t>(totals));
  const double B_all = double(totals[0]);
  P.live_total = totals[1];
  P.n_eff = P.live_total;
  P.w.assign(B, 0.0);
  for (size_t i = 0; i < B; ++i) {
    if (P.n_live[i] == 0) continue;
    switch (cfg.aggregation) {
      case GrpoAggregation::SequenceMean: P.w[i] = 1.0 / (double(P.n_live[i]) * B_all); break;
      case GrpoAggregation::TokenMean: P.w[i] = 1.0 / double(std::max<int64_t>(1, P.live_total)); break;
      case GrpoAggregation::Constant: P.w[i] = 1.0 / (B_all * double(cfg.max_completion_length)); break;
    }
  }
  // The entropy bonus coefficient of this step (adaptive: gated by the last step's entropy).
  if (cfg.adaptive_entropy && !entropy_.started) entropy_ = EntropyControl{cfg.entropy_coef, INFINITY, true};
  P.coef = !cfg.adaptive_entropy ? cfg.entropy_coef
           : entropy_.last_entropy <= double(cfg.entropy_target) ? entropy_.coef : 0.0;

  auto forward = [&](LogprobPass& pass, size_t b0, size_t b1) {
    std::vector<std::vector<int32_t>> seqs;
    std::vector<uint8_t> need;  // completion targets only: the LM head skips the prompt's rows
    for (size_t i = b0; i < b1; ++i) append_completion_sequence(seqs, need, batch[i].prompt, batch[i].completion);
    pass.set_aux_loss(cfg_.aux_loss_alpha, float(double(b1 - b0) / B_all));
    pass.set_recompute(cfg_.recompute_activations);
    dropout_for(b0);  // the same mask for a micro-batch's forward-only and training passes
    return pass.forward(*policy_, seqs, cfg.temperature, need);
  };
  DropoutOff off{*policy_};
  // The top-entropy threshold is over the whole batch's live tokens: with several micro-batches a
  // forward-only pass over them finds it first (one more forward); with one, its own pass does.
  auto set_threshold = [&](const LogprobPass& pass, size_t b0, size_t b1, std::vector<float>& ent, bool last) {
    size_t k = 0;
    for (size_t i = b0; i < b1; ++i) {
      k += batch[i].prompt.size() - 1;
      for (size_t t = 0; t < batch[i].completion.size(); ++t, ++k)
        if (is_live(batch[i], t, cfg)) ent.push_back(pass.entropies()[k]);
    }
    if (!last) return;
    if (distributed()) ent = comm_->allgather(ent);  // the quantile of the whole batch's tokens
    if (ent.empty()) return;
    P.threshold = quantile(ent, 1.0 - double(cfg.top_entropy_quantile));
    P.n_eff = 0;
    for (float e : ent) P.n_eff += double(e) >= P.threshold ? 1 : 0;
  };
  const bool entropy_mask = cfg.top_entropy_quantile < 1.0f;
  if (entropy_mask && B == 0) {  // a rank without samples still takes part in the whole batch's quantile
    std::vector<float> ent;
    set_threshold(LogprobPass{}, 0, 0, ent, true);
  }
  if (entropy_mask && mb < B) {
    std::vector<float> ent;
    for (size_t b0 = 0; b0 < B; b0 += mb) {
      LogprobPass pass;
      forward(pass, b0, std::min(B, b0 + mb));
      set_threshold(pass, b0, std::min(B, b0 + mb), ent, b0 + mb >= B);
    }
  }

  zero_gradients();
  std::fill(load_.begin(), load_.end(), 0);
  last_dlogp_.assign(B, {});
  last_logp_.assign(B, {});
  for (size_t i = 0; i < B; ++i) {
    last_dlogp_[i].assign(batch[i].completion.size(), 0.0f);
    last_logp_[i].assign(batch[i].completion.size(), 0.0f);
  }
  GrpoSums S;
  for (size_t b0 = 0; b0 < B; b0 += mb) {
    const size_t b1 = std::min(B, b0 + mb);
    LogprobPass pass;
    const std::vector<float> lp = forward(pass, b0, b1);
    S.loss += double(b1 - b0) / B_all * pass.aux_loss();
    count_routes(pass);
    if (entropy_mask && mb >= B) {
      std::vector<float> ent;
      set_threshold(pass, b0, b1, ent, true);
    }
    if (b1 == B) overlap_backward(pass);  // the last micro-batch's backward finishes the gradients
    grpo_backward(pass, P, b0, b1, lp, S);
  }
  reduce_gradients();
  reduce_sums(*comm_, S);
  StepMetrics m = grpo_metrics(P, S);
  if (!apply) {
    if (!std::isfinite(m.loss)) fail(ErrorCode::InvalidArgument, "grpo loss is not finite ({})", m.loss);
    double sq = 0;
    for (auto& [name, g] : grads_.by_name) sq += policy_->backend().sum_squares(g.data<float>(), g.numel());
    m.grad_norm = float(std::sqrt(sq));
    return m;
  }
  m = apply_step(m);
  if (cfg.adaptive_entropy) {  // the next step's coefficient, from this step's entropy (TRL's controller)
    const double world = S.ent_eff / double(std::max<int64_t>(1, P.n_eff));
    entropy_.coef = world <= double(cfg.entropy_target) ? std::min(entropy_.coef + cfg.entropy_coef_delta, cfg.entropy_coef_max)
                                                        : std::max(entropy_.coef - cfg.entropy_coef_delta, cfg.entropy_coef_min);
    entropy_.last_entropy = world;
    m.entropy_coef = entropy_.coef;
  }
  return m;
}

// One micro-batch's loss and gradient: the backend's per-token loss, GSPO's spreading of the
// sequence weight's gradient, the entropy bonus's full-vocabulary rows, then the pass's backward.
void Trainer::grpo_backward(LogprobPass& pass, const detail::GrpoPlan& P, size_t b0, size_t b1, const std::vector<float>& lp,
                            detail::GrpoSums& S) {
  const GrpoConfig& cfg = *P.cfg;
  const GrpoTokens tk = gather_tokens(P, b0, b1, lp, pass.entropies(), S);
  double sums[5];
  std::vector<float> dlw;
  const bool seq = cfg.importance_level == ImportanceLevel::Sequence;
  std::vector<float> tok_dlogp = grpo_token_loss(policy_->backend(), tk, cfg, sums, seq ? &dlw : nullptr);
  if (seq) spread_sequence_grad(P, tk, dlw, tok_dlogp);
  S.loss += sums[0];
  S.kl += sums[1];
  S.low += sums[2];
  S.high += sums[3];
  std::vector<float> dlp(lp.size(), 0.0f);
  for (size_t q = 0; q < tk.pos.size(); ++q) {
    dlp[tk.pos[q]] = tok_dlogp[q];
    last_dlogp_[tk.sample[q]][tk.token[q]] = tok_dlogp[q];
    last_logp_[tk.sample[q]][tk.token[q]] = tk.logp[q];
  }
  if (P.coef == 0.0) {
    pass.backward(dlp, grads_);
    return;
  }
  // Entropy bonus -coef * mean H over the effective tokens: with H = -sum_j p_j lp_j, its gradient
  // by each log-probability of the row is coef / n_eff * p_j (lp_j + 1); the target adds its dlogp.
  const double c = P.coef / double(std::max<int64_t>(1, P.n_eff));
  std::vector<float> bonus(lp.size(), 0.0f);
  std::vector<int32_t> target(lp.size(), 0);
  for (size_t q = 0; q < tk.pos.size(); ++q) {
    target[tk.pos[q]] = P.batch[tk.sample[q]].completion[tk.token[q]];
    if (tk.effective[q]) {
      bonus[tk.pos[q]] = float(c);
      S.loss -= c * double(pass.entropies()[tk.pos[q]]);
    }
  }
  pass.backward_rows(
      [&](int64_t i, const float* lrow, float* g) {
        const float b = bonus[size_t(i)];
        if (b != 0.0f)
          for (int64_t j = 0; j < policy_->config().vocab_size; ++j) g[j] = b * std::exp(lrow[j]) * (lrow[j] + 1.0f);
        g[target[size_t(i)]] += dlp[size_t(i)];
      },
      grads_);
}

StepMetrics Trainer::grpo_metrics(const detail::GrpoPlan& P, const detail::GrpoSums& S) const {
  const GrpoConfig& cfg = *P.cfg;
  StepMetrics m;
  m.loss = float(S.loss);
  m.tokens = S.counted;
  if (S.counted) {
    m.kl = float(S.kl / double(S.counted));
    m.entropy = float(S.ent / double(S.counted));
    m.clip_low = float(S.low / double(S.counted));
    m.clip_high = float(S.high / double(S.counted));
  }
  // The whole batch's (reward, length) pairs, every rank's in rank order (one allgather).
  std::vector<float> pairs;
  for (const auto& s : P.batch) pairs.insert(pairs.end(), {s.reward, float(s.completion.size())});
  if (distributed()) pairs = comm_->allgather(pairs);
  std::vector<float> reward, length;
  for (size_t i = 0; i < pairs.size(); i += 2) reward.push_back(pairs[i]), length.push_back(pairs[i + 1]);
  if (sequence_level(cfg)) {  // one ratio per completion: the share of completions clipped (TRL)
    m.clip_low = float(double(S.seq_low) / double(reward.size()));
    m.clip_high = float(double(S.seq_high) / double(reward.size()));
  }
  m.policy_tokens = P.n_eff;
  m.entropy_coef = float(cfg.adaptive_entropy ? entropy_.coef : cfg.entropy_coef);
  if (S.is_n) {
    m.is_ratio_min = float(S.is_min);
    m.is_ratio_max = float(S.is_max);
    m.is_ratio_mean = float(S.is_sum / double(S.is_n));
  }
  if (S.diff_n) {
    m.sampling_logp_diff_mean = float(S.diff_sum / double(S.diff_n));
    m.sampling_logp_diff_max = float(S.diff_max);
  }
  reward_metrics(reward, length, cfg.group_size, m);
  return m;
}

}  // namespace reason
