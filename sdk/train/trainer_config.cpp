#include "train/trainer_config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <cmath>
#include <map>
#include <string>

#include "core/error.h"
#include "reason.pb.h"

namespace reason {

namespace {

// Collects text-format parse errors with their position.
class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    if (text.empty()) text = fmt::format("line {}, column {}: {}", line + 1, column + 1, message);
  }
  void AddWarning(int, google::protobuf::io::ColumnNumber, const std::string&) override {}
  std::string text;
};

// Throws InvalidArgument "<where><field> <why>" unless ok.
void require(bool ok, std::string_view where, const char* field, const std::string& why) {
  if (!ok) fail(ErrorCode::InvalidArgument, "{}{} {}", where, field, why);
}

}  // namespace

AdamWConfig adamw_from_proto(const proto::OptimizerConfig& o, std::string_view where) {
  AdamWConfig a;
  if (o.has_lr()) a.lr = o.lr();
  if (o.has_beta1()) a.beta1 = o.beta1();
  if (o.has_beta2()) a.beta2 = o.beta2();
  if (o.has_eps()) a.eps = o.eps();
  if (o.has_weight_decay()) a.weight_decay = o.weight_decay();
  if (o.has_max_grad_norm()) a.max_grad_norm = o.max_grad_norm();
  require(std::isfinite(a.lr) && a.lr >= 0, where, "optimizer.lr", fmt::format("must be >= 0 (got {})", a.lr));
  require(a.beta1 >= 0 && a.beta1 < 1, where, "optimizer.beta1", "must be in [0, 1)");
  require(a.beta2 >= 0 && a.beta2 < 1, where, "optimizer.beta2", "must be in [0, 1)");
  require(a.eps > 0, where, "optimizer.eps", "must be > 0");
  require(a.weight_decay >= 0, where, "optimizer.weight_decay", "must be >= 0");
  require(a.max_grad_norm >= 0, where, "optimizer.max_grad_norm", "must be >= 0");
  return a;
}

LrSchedule schedule_from_proto(const proto::ScheduleConfig& sc, std::string_view where) {
  LrSchedule s;
  s.kind = sc.kind() == proto::ScheduleConfig::LINEAR   ? LrSchedule::Kind::Linear
           : sc.kind() == proto::ScheduleConfig::COSINE ? LrSchedule::Kind::Cosine
                                                         : LrSchedule::Kind::Constant;
  s.warmup_steps = sc.warmup_steps();
  s.total_steps = sc.total_steps();
  require(sc.warmup_steps() >= 0, where, "schedule.warmup_steps", "must be >= 0");
  require(sc.kind() == proto::ScheduleConfig::CONSTANT || sc.total_steps() > sc.warmup_steps(), where,
          "schedule.total_steps", "must exceed warmup_steps for a decaying schedule");
  return s;
}

namespace {

void rollout_correction_from_proto(const proto::GrpoConfig& g, GrpoConfig& gc, std::string_view where) {
  using RC = proto::GrpoConfig::RolloutCorrection;
  const RC& rc = g.rollout_correction();
  switch (rc.mode()) {
    case RC::TOKEN_TRUNCATE: gc.rollout_correction = RolloutCorrection::TokenTruncate; break;
    case RC::TOKEN_MASK: gc.rollout_correction = RolloutCorrection::TokenMask; break;
    case RC::SEQUENCE_TRUNCATE: gc.rollout_correction = RolloutCorrection::SequenceTruncate; break;
    case RC::SEQUENCE_MASK: gc.rollout_correction = RolloutCorrection::SequenceMask; break;
    default: gc.rollout_correction = RolloutCorrection::None; break;
  }
  if (rc.has_clip_min()) gc.rollout_clip_min = rc.clip_min();
  if (rc.has_clip_max()) gc.rollout_clip_max = rc.clip_max();
  const bool mask = gc.rollout_correction == RolloutCorrection::TokenMask ||
                    gc.rollout_correction == RolloutCorrection::SequenceMask;
  if (mask && rc.has_clip_max() && rc.clip_max() == 0.0f) gc.rollout_clip_max = INFINITY;
  require(gc.rollout_clip_min >= 0, where, "grpo.rollout_correction.clip_min", "must be >= 0");
  require(gc.rollout_clip_max > 0 && gc.rollout_clip_max >= gc.rollout_clip_min, where,
          "grpo.rollout_correction.clip_max", "must be > 0 and >= clip_min");
}

}  // namespace

GrpoConfig grpo_from_proto(const proto::GrpoConfig& g, bool require_group, std::string_view where) {
  GrpoConfig gc;
  gc.group_size = g.group_size();
  if (g.has_epsilon()) gc.epsilon = g.epsilon();
  gc.epsilon_high = g.has_epsilon_high() ? g.epsilon_high() : gc.epsilon;
  if (g.has_beta()) gc.beta = g.beta();
  gc.kl = g.kl() == proto::GrpoConfig::K1 ? KlEstimator::K1 : g.kl() == proto::GrpoConfig::K2 ? KlEstimator::K2 : KlEstimator::K3;
  if (g.has_k3_clamp()) gc.k3_clamp = g.k3_clamp();
  gc.aggregation = g.aggregation() == proto::GrpoConfig::DAPO      ? GrpoAggregation::TokenMean
                   : g.aggregation() == proto::GrpoConfig::DR_GRPO ? GrpoAggregation::Constant
                                                                    : GrpoAggregation::SequenceMean;
  if (g.has_scale_rewards()) gc.reward_scaling = g.scale_rewards() ? RewardScaling::Group : RewardScaling::None;
  if (g.has_reward_scaling())
    gc.reward_scaling = g.reward_scaling() == proto::GrpoConfig::SCALE_BATCH  ? RewardScaling::Batch
                        : g.reward_scaling() == proto::GrpoConfig::SCALE_NONE ? RewardScaling::None
                                                                               : RewardScaling::Group;
  gc.importance_level = g.importance_sampling_level() == proto::GrpoConfig::SEQUENCE_LEVEL ? ImportanceLevel::Sequence
                        : g.importance_sampling_level() == proto::GrpoConfig::SEQUENCE_TOKEN_LEVEL
                            ? ImportanceLevel::SequenceToken
                            : ImportanceLevel::Token;
  rollout_correction_from_proto(g, gc, where);
  if (g.has_top_entropy_quantile()) gc.top_entropy_quantile = g.top_entropy_quantile();
  gc.entropy_coef = g.entropy_coef();
  if (g.has_adaptive_entropy()) {
    const auto& a = g.adaptive_entropy();
    gc.adaptive_entropy = true;
    gc.entropy_target = a.target();
    if (a.has_delta()) gc.entropy_coef_delta = a.delta();
    if (a.has_coef_min()) gc.entropy_coef_min = a.coef_min();
    if (a.has_coef_max()) gc.entropy_coef_max = a.coef_max();
    require(gc.entropy_coef_delta >= 0, where, "grpo.adaptive_entropy.delta", "must be >= 0");
    require(gc.entropy_coef_min <= gc.entropy_coef_max, where, "grpo.adaptive_entropy.coef_min", "must be <= coef_max");
  }
  require(gc.top_entropy_quantile >= 0 && gc.top_entropy_quantile <= 1, where, "grpo.top_entropy_quantile",
          "must be in [0, 1]");
  gc.mask_truncated = g.mask_truncated();
  gc.max_completion_length = g.max_completion_length();
  if (g.has_temperature()) gc.temperature = g.temperature();
  gc.kl_ratio_correction = g.kl_ratio_correction();
  if (require_group)
    require(gc.group_size >= 2, where, "grpo.group_size", fmt::format("must be >= 2 (got {})", gc.group_size));
  require(gc.epsilon >= 0 && gc.epsilon < 1, where, "grpo.epsilon", "must be in [0, 1)");
  require(gc.epsilon_high >= 0, where, "grpo.epsilon_high", "must be >= 0");
  require(gc.beta >= 0, where, "grpo.beta", "must be >= 0");
  require(gc.temperature > 0, where, "grpo.temperature", "must be > 0");
  require(gc.aggregation != GrpoAggregation::Constant || gc.max_completion_length > 0, where,
          "grpo.max_completion_length", "must be > 0 for DR_GRPO");
  return gc;
}

DistillConfig distill_from_proto(const proto::DistillConfig& d, std::string_view where) {
  DistillConfig c;
  c.loss = d.loss() == proto::DistillConfig::REVERSE_KL ? DistillLoss::ReverseKL
           : d.loss() == proto::DistillConfig::JSD      ? DistillLoss::JSD
                                                         : DistillLoss::ForwardKL;
  if (d.has_beta()) c.beta = d.beta();
  if (d.has_temperature()) c.temperature = d.temperature();
  require(c.temperature > 0, where, "distill.temperature", "must be > 0");
  require(c.beta > 0 && c.beta < 1, where, "distill.beta", "must be in (0, 1)");
  return c;
}

TrainerSettings parse_trainer_config(std::string_view bytes, bool binary) {
  proto::TrainerConfig pc;
  if (binary) {
    if (!pc.ParseFromArray(bytes.data(), int(bytes.size())))
      fail(ErrorCode::InvalidArgument, "trainer config: not a valid binary TrainerConfig message");
  } else {
    google::protobuf::TextFormat::Parser parser;
    ErrorCollector errors;
    parser.RecordErrorsTo(&errors);
    if (!parser.ParseFromString(std::string(bytes), &pc))
      fail(ErrorCode::InvalidArgument, "trainer config: {}", errors.text.empty() ? "not valid text format" : errors.text);
  }
  constexpr std::string_view where = "trainer config: ";
  TrainerSettings s;
  s.trainer.optim = adamw_from_proto(pc.optimizer(), where);
  s.trainer.schedule = schedule_from_proto(pc.schedule(), where);
  for (const auto& p : pc.frozen_prefixes()) s.trainer.frozen_prefixes.push_back(p);
  s.trainer.bias_update_speed = pc.bias_update_speed();
  s.trainer.aux_loss_alpha = pc.aux_loss_alpha();
  s.trainer.recompute_activations = pc.recompute_activations();
  require(std::isfinite(pc.aux_loss_alpha()) && pc.aux_loss_alpha() >= 0, where, "aux_loss_alpha", "must be >= 0");
  require(std::isfinite(pc.bias_update_speed()) && pc.bias_update_speed() >= 0, where, "bias_update_speed",
          "must be >= 0");
  s.grpo = grpo_from_proto(pc.grpo(), pc.has_grpo(), where);
  s.distill = distill_from_proto(pc.distill(), where);
  s.micro_batch = pc.micro_batch();
  require(s.micro_batch >= 0, where, "micro_batch", "must be >= 0");
  if (pc.has_data_parallel()) {
    data_parallel_from_proto(pc.data_parallel(), s.trainer, where);
    s.trainer.comm = default_communicator();
  }
  return s;
}

void data_parallel_from_proto(const proto::DataParallelConfig& d, TrainerConfig& tc, std::string_view where) {
  require(d.allreduce_bucket_mb() >= 0 && d.allreduce_bucket_mb() <= 4096, where, "data_parallel.allreduce_bucket_mb",
          "must be in [0, 4096]");
  if (d.allreduce_bucket_mb() > 0) tc.allreduce_bucket_bytes = d.allreduce_bucket_mb() << 20;
  tc.zero1 = d.zero1();
}

LoraSpec lora_from_proto(const proto::LoraConfig& l, std::string_view where) {
  LoraSpec s;
  if (l.rank() < 0) fail(ErrorCode::InvalidArgument, "{}: lora.rank must be > 0 (got {})", where, l.rank());
  s.r = l.rank() > 0 ? l.rank() : 8;
  s.alpha = l.alpha() != 0.0f ? l.alpha() : 2.0f * float(s.r);
  if (!std::isfinite(s.alpha)) fail(ErrorCode::InvalidArgument, "{}: lora.alpha is not finite", where);
  if (!(l.dropout() >= 0.0f && l.dropout() < 1.0f))
    fail(ErrorCode::InvalidArgument, "{}: lora.dropout must be in [0, 1) (got {})", where, l.dropout());
  s.dropout = l.dropout();
  s.use_rslora = l.use_rslora();
  const std::string t = l.target_modules().empty() ? "all-linear" : l.target_modules();
  if (t == "all-linear") {
    s.all_linear = true;
  } else {
    size_t at = 0;
    while (at <= t.size()) {
      size_t comma = t.find(',', at);
      if (comma == std::string::npos) comma = t.size();
      std::string name = t.substr(at, comma - at);
      name.erase(0, name.find_first_not_of(' '));
      name.erase(name.find_last_not_of(' ') + 1);
      if (name.empty()) fail(ErrorCode::InvalidArgument, "{}: lora.target_modules '{}' has an empty name", where, t);
      s.target_modules.push_back(name);
      at = comma + 1;
    }
  }
  // protobuf maps have no order: the keys are tried in sorted order (and saved so, which PEFT keeps)
  for (const auto& [k, v] : std::map<std::string, int32_t>(l.rank_pattern().begin(), l.rank_pattern().end())) {
    if (v <= 0) fail(ErrorCode::InvalidArgument, "{}: lora.rank_pattern[{}] must be > 0", where, k);
    s.rank_pattern.emplace_back(k, v);
  }
  for (const auto& [k, v] : std::map<std::string, float>(l.alpha_pattern().begin(), l.alpha_pattern().end()))
    s.alpha_pattern.emplace_back(k, v);
  return s;
}

}  // namespace reason
