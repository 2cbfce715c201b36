// The training steps: SFT memorises a small corpus, the loss normaliser contract (micro-batches
// give the one-big-batch gradient for every aggregation), AdamW's first step, schedules, and a
// failed step leaving the weights untouched.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/model.h"
#include "fixture_util.h"
#include "train/trainer.h"

using namespace reason;

namespace {

const std::string kDense = std::string(REASON_FIXTURES_DIR) + "/dense/";

std::vector<GrpoSample> toy_batch() {
  // 2 prompts x G=4, different lengths, one truncated, one group with tied rewards.
  std::vector<GrpoSample> b;
  const float rewards[8] = {1.0f, 0.0f, 0.5f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  for (int i = 0; i < 8; ++i) {
    GrpoSample s;
    s.prompt = {int32_t(10 + i / 4), 20, 30};
    for (int t = 0; t < 3 + i % 5; ++t) s.completion.push_back(int32_t(40 + 7 * i + t));
    s.reward = rewards[i];
    s.truncated = i == 2;
    for (size_t t = 0; t < s.completion.size(); ++t) {
      s.old_logprobs.push_back(-6.0f + 0.3f * float((i + t) % 5));
      s.ref_logprobs.push_back(-6.2f + 0.25f * float((i * 3 + t) % 4));
    }
    b.push_back(s);
  }
  return b;
}

double max_rel_diff(const Gradients& a, const Gradients& b) {
  double worst = 0;
  for (const auto& [name, ta] : a.by_name) {
    const Tensor& tb = b.by_name.at(name);
    double scale = 1e-12;
    for (int64_t i = 0; i < ta.numel(); ++i) scale = std::max(scale, double(std::fabs(ta.data<float>()[i])));
    for (int64_t i = 0; i < ta.numel(); ++i)
      worst = std::max(worst, std::fabs(double(ta.data<float>()[i]) - tb.data<float>()[i]) / scale);
  }
  return worst;
}

Gradients copy(const Gradients& g) {
  Gradients out;
  for (const auto& [n, t] : g.by_name) out.by_name.emplace(n, t.to(DType::F32));
  return out;
}

}  // namespace

TEST_CASE("SFT memorises a small corpus", "[train][sft]") {
  auto m = Model::load(kDense + "qwen2_tied");
  TrainerConfig cfg;
  cfg.optim.lr = 1e-2f;
  cfg.optim.max_grad_norm = 1.0f;
  Trainer tr(m, cfg);
  std::vector<SftExample> corpus;
  for (int i = 0; i < 4; ++i) {
    SftExample ex;
    for (int t = 0; t < 10; ++t) ex.tokens.push_back(int32_t((37 * i + 11 * t) % 390));
    ex.mask.assign(ex.tokens.size(), 1);
    ex.mask[0] = ex.mask[1] = ex.mask[2] = 0;  // prompt
    corpus.push_back(ex);
  }
  std::vector<std::vector<SftExample>> batch{corpus};
  float first = 0, last = 0;
  for (int step = 0; step < 80; ++step) {
    auto met = tr.sft_step(batch);
    if (step == 0) first = met.loss;
    last = met.loss;
    CHECK(met.tokens == 4 * 7);
  }
  INFO("loss " << first << " -> " << last);
  CHECK(first > 3.0f);
  CHECK(last < 0.05f);
  // The gradients and the optimizer state live on the model's backend.
  for (const auto& [name, g] : tr.gradients().by_name) REQUIRE(g.backend() == &m->backend());
  REQUIRE(!tr.optimizer().state().empty());
  for (const auto& [name, mv] : tr.optimizer().state()) {
    REQUIRE(mv.first.backend() == &m->backend());
    REQUIRE(mv.second.backend() == &m->backend());
  }
}

TEST_CASE("tensors on a backend: zeroed by it, copied to and from the host", "[train][device]") {
  auto m = Model::load(kDense + "qwen2_tied");
  kernels::Backend& be = m->backend();
  Tensor z = Tensor::zeros(be, DType::F32, {3, 5});
  CHECK(z.backend() == &be);
  CHECK(z.host_accessible());  // the CPU backend's memory is host memory
  const Tensor h = z.host();
  for (int64_t i = 0; i < 15; ++i) CHECK(h.data<float>()[i] == 0.0f);
  Tensor src = Tensor::empty(DType::F32, {3, 5});
  for (int64_t i = 0; i < 15; ++i) src.data<float>()[i] = float(i) * 0.5f;
  Tensor dev = src.on(be);
  CHECK(dev.backend() == &be);
  CHECK(dev.raw() != src.raw());  // a copy
  for (int64_t i = 0; i < 15; ++i) CHECK(dev.host().data<float>()[i] == float(i) * 0.5f);
  CHECK(dev.slice_rows(1, 2).backend() == &be);
  CHECK(src.backend() == nullptr);
  Gradients g = Gradients::zeros_like(*m);
  for (auto& [name, t] : g.by_name) {
    REQUIRE(t.backend() == &be);
    t.data<float>()[0] = 3.0f;
  }
  g.zero();
  for (const auto& [name, t] : g.by_name) REQUIRE(t.data<float>()[0] == 0.0f);
}

TEST_CASE("micro-batches give the same gradient as one batch, for every aggregation", "[train][grpo]") {
  auto m = Model::load(kDense + "qwen2_tied");
  Trainer tr(m, TrainerConfig{});
  auto batch = toy_batch();
  for (auto agg : {GrpoAggregation::SequenceMean, GrpoAggregation::TokenMean, GrpoAggregation::Constant}) {
    for (bool mask_trunc : {false, true}) {
      GrpoConfig cfg;
      cfg.group_size = 4;
      cfg.epsilon = 0.2f;
      cfg.epsilon_high = 0.28f;
      cfg.beta = 0.04f;
      cfg.aggregation = agg;
      cfg.mask_truncated = mask_trunc;
      cfg.max_completion_length = 8;
      cfg.temperature = 0.7f;
      INFO("aggregation " << int(agg) << " mask_truncated " << mask_trunc);
      auto whole = tr.grpo_step(batch, cfg, 0, false);
      Gradients g_whole = copy(tr.gradients());
      for (int64_t mb : {1, 3}) {
        auto split = tr.grpo_step(batch, cfg, mb, false);
        CHECK(std::fabs(split.loss - whole.loss) <= 1e-6f * std::max(1.0f, std::fabs(whole.loss)));
        CHECK(max_rel_diff(g_whole, tr.gradients()) < 1e-5);
      }
      CHECK(whole.grad_norm > 0.0f);
    }
  }
  // SFT as well
  std::vector<SftExample> all;
  for (int i = 0; i < 4; ++i) all.push_back(SftExample{{1, 2, int32_t(3 + i), 4, 5}, {0, 0, 1, 1, uint8_t(i % 2)}});
  TrainerConfig zero;
  zero.optim.lr = 0.0f;
  Trainer t2(m, zero);
  std::vector<std::vector<SftExample>> one{all};
  t2.sft_step(one);
  Gradients g1 = copy(t2.gradients());
  std::vector<std::vector<SftExample>> four{{all[0]}, {all[1]}, {all[2]}, {all[3]}};
  t2.sft_step(four);
  CHECK(max_rel_diff(g1, t2.gradients()) < 1e-5);
}

TEST_CASE("GRPO advantages, clip fractions and tied groups", "[train][grpo]") {
  auto batch = toy_batch();
  GrpoConfig cfg;
  cfg.group_size = 4;
  auto adv = Trainer::advantages(batch, cfg);
  // group 0: rewards 1, 0, 0.5, 1: mean 0.625, unbiased std 0.4787
  const double sd = std::sqrt(((0.375 * 0.375) * 2 + 0.625 * 0.625 + 0.125 * 0.125) / 3.0);
  CHECK(adv[0] == Approx((1.0 - 0.625) / (sd + 1e-4)).epsilon(1e-5));
  CHECK(adv[1] == Approx((0.0 - 0.625) / (sd + 1e-4)).epsilon(1e-5));
  for (int i = 4; i < 8; ++i) CHECK(adv[size_t(i)] == 0.0f);  // tied group
  cfg.reward_scaling = RewardScaling::None;
  adv = Trainer::advantages(batch, cfg);
  CHECK(adv[1] == Approx(-0.625));
  cfg.group_size = 1;
  CHECK_THROWS_AS(Trainer::advantages(batch, cfg), Error);
  cfg.group_size = 3;
  CHECK_THROWS_AS(Trainer::advantages(batch, cfg), Error);
  auto m = Model::load(kDense + "qwen2_tied");
  Trainer tr(m, TrainerConfig{});
  GrpoConfig g;
  g.group_size = 4;
  auto met = tr.grpo_step(batch, g, 0, false);
  CHECK(met.tied_group_share == 0.5f);
  CHECK(met.reward_mean == Approx(2.5 / 8));
  CHECK(met.clip_low + met.clip_high > 0.0f);  // old logprobs far from current ones
}

TEST_CASE("AdamW first step and schedules follow torch/transformers", "[train][optim]") {
  auto m = Model::load(kDense + "qwen2_tied");
  TrainerConfig cfg;
  cfg.optim.lr = 1e-3f;
  cfg.optim.max_grad_norm = 0.0f;
  cfg.optim.weight_decay = 0.1f;
  Trainer tr(m, cfg);
  auto params = m->parameters();
  const float before = params[1].second.data<float>()[0];  // layer 0 input_layernorm (no decay)
  const float w_before = params[2].second.data<float>()[0];  // q_proj weight (decay)
  std::vector<std::vector<SftExample>> b{{SftExample{{1, 2, 3, 4}, {0, 1, 1, 1}}}};
  tr.sft_step(b);
  const float g = tr.gradients().by_name.at(params[1].first).data<float>()[0];
  const float gw = tr.gradients().by_name.at(params[2].first).data<float>()[0];
  // step 1: m_hat = g, v_hat = g^2 -> update lr * g / (|g| + eps)
  CHECK(params[1].second.data<float>()[0] == Approx(before - 1e-3 * g / (std::fabs(g) + 1e-8)).epsilon(1e-6));
  CHECK(params[2].second.data<float>()[0] ==
        Approx(w_before * (1 - 1e-3 * 0.1) - 1e-3 * gw / (std::fabs(gw) + 1e-8)).epsilon(1e-6));
  LrSchedule s;
  s.kind = LrSchedule::Kind::Cosine;
  s.warmup_steps = 10;
  s.total_steps = 110;
  CHECK(s.at(0, 1.0f) == 0.0f);
  CHECK(s.at(5, 1.0f) == Approx(0.5));
  CHECK(s.at(10, 1.0f) == Approx(1.0));
  CHECK(s.at(60, 1.0f) == Approx(0.5));
  CHECK(s.at(110, 1.0f) == Approx(0.0).margin(1e-7));
  s.kind = LrSchedule::Kind::Linear;
  CHECK(s.at(60, 1.0f) == Approx(0.5));
}

TEST_CASE("a NaN loss stops the step with a clear error and leaves the weights unchanged", "[train][errors]") {
  auto m = Model::load(kDense + "qwen2_tied");
  Trainer tr(m, TrainerConfig{});
  auto batch = toy_batch();
  // finite inputs (NaN inputs are refused before any work) whose ratio overflows: exp(1e30) = inf,
  // times a negative or zero advantage gives an infinite or NaN loss
  for (auto& s : batch) s.old_logprobs[0] = -1e30f;
  GrpoConfig cfg;
  cfg.group_size = 4;
  std::vector<std::vector<float>> snapshot;
  for (auto& [n, t] : m->parameters()) snapshot.emplace_back(t.data<float>(), t.data<float>() + t.numel());
  try {
    tr.grpo_step(batch, cfg);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains("not finite"));
  }
  size_t i = 0;
  for (auto& [n, t] : m->parameters()) {
    CHECK(std::memcmp(t.data<float>(), snapshot[i].data(), snapshot[i].size() * 4) == 0);
    ++i;
  }
  CHECK(tr.step_count() == 0);
}

TEST_CASE("distillation losses: zero against itself, gradients match finite differences", "[train][distill]") {
  auto student = Model::load(kDense + "qwen2_tied");
  auto teacher = Model::load(kDense + "qwen2_sharded");
  auto twin = Model::load(kDense + "qwen2_tied");
  TrainerConfig cfg;
  cfg.optim.lr = 0.0f;
  Trainer tr(student, cfg);
  std::vector<std::vector<SftExample>> batch{{SftExample{{5, 9, 200, 31, 77, 3}, {0, 0, 1, 1, 1, 1}},
                                              SftExample{{8, 1, 2, 90}, {0, 1, 1, 0}}}};
  for (auto kind : {DistillLoss::ForwardKL, DistillLoss::ReverseKL, DistillLoss::JSD}) {
    INFO("loss kind " << int(kind));
    DistillConfig dc;
    dc.loss = kind;
    dc.temperature = 2.0f;
    auto self = tr.distill_step(*twin, batch, dc, false);
    CHECK(std::fabs(self.loss) < 1e-6f);
    auto met = tr.distill_step(*teacher, batch, dc, false);
    CHECK(met.loss > 0.0f);
    CHECK(met.tokens == 6);
    Gradients g = copy(tr.gradients());
    auto params = student->parameters();
    for (size_t pi : {size_t(0), size_t(3), params.size() - 1}) {
      float* data = params[pi].second.data<float>();
      const float* grad = g.by_name.at(params[pi].first).data<float>();
      int64_t best = 0;
      for (int64_t i = 0; i < params[pi].second.numel(); ++i)
        if (std::fabs(grad[i]) > std::fabs(grad[best])) best = i;
      const float orig = data[best], h = 2e-3f * std::max(1.0f, std::fabs(orig));
      data[best] = orig + h;
      const double lp = tr.distill_step(*teacher, batch, dc, false).loss;
      data[best] = orig - h;
      const double lm = tr.distill_step(*teacher, batch, dc, false).loss;
      data[best] = orig;
      const double fd = (lp - lm) / (2.0 * h);
      INFO(params[pi].first << " analytic " << grad[best] << " fd " << fd);
      CHECK(std::fabs(grad[best] - fd) <= 2e-2 * std::max(1e-3, std::fabs(fd)) + 1e-5);
    }
  }
}

TEST_CASE("aux-loss-free balancing moves the selection bias against the load", "[train][moe]") {
  auto m = Model::load(std::string(REASON_FIXTURES_DIR) + "/moe/dsv3_qlora_group");
  Trainer tr(m, TrainerConfig{});
  const auto& c = m->config();
  std::vector<int64_t> load(size_t(c.n_layers * c.n_experts), 0);
  load[size_t(1 * c.n_experts + 2)] = 50;  // layer 1: expert 2 overloaded, the rest idle
  std::vector<float> before;
  for (auto& [n, t] : m->buffers())
    if (n == "model.layers.1.mlp.gate.e_score_correction_bias") before.assign(t.data<float>(), t.data<float>() + t.numel());
  REQUIRE(before.size() == size_t(c.n_experts));
  tr.balance_experts(load, 0.001f);
  for (auto& [n, t] : m->buffers())
    if (n == "model.layers.1.mlp.gate.e_score_correction_bias")
      for (int64_t e = 0; e < c.n_experts; ++e)
        CHECK(t.data<float>()[e] == Approx(before[size_t(e)] + (e == 2 ? -0.001f : 0.001f)));
  // Routing after the update prefers the under-loaded experts a little more.
  std::vector<int64_t> wrong(3);
  CHECK_THROWS_AS(tr.balance_experts(wrong, 0.001f), Error);
  auto dense = Model::load(kDense + "qwen2_tied");
  Trainer td(dense, TrainerConfig{});
  CHECK_THROWS_AS(td.balance_experts(load, 0.001f), Error);
}

TEST_CASE("MoE SFT steps train and balance the experts", "[train][moe]") {
  auto m = Model::load(std::string(REASON_FIXTURES_DIR) + "/moe/dsv3_qlora_group");
  TrainerConfig cfg;
  cfg.optim.lr = 1e-2f;
  cfg.bias_update_speed = 1e-3f;
  Trainer tr(m, cfg);
  std::vector<float> before;
  for (auto& [n, t] : m->buffers())
    if (n == "model.layers.1.mlp.gate.e_score_correction_bias") before.assign(t.data<float>(), t.data<float>() + t.numel());
  std::vector<std::vector<SftExample>> b{{SftExample{{3, 9, 27, 81, 243, 200, 100, 50}, {0, 0, 1, 1, 1, 1, 1, 1}}}};
  const float first = tr.sft_step(b).loss;
  float last = first;
  for (int i = 0; i < 30; ++i) last = tr.sft_step(b).loss;
  CHECK(last < 0.2f * first);
  for (auto& [n, t] : m->buffers())
    if (n == "model.layers.1.mlp.gate.e_score_correction_bias") {
      int moved = 0;
      for (int64_t e = 0; e < t.numel(); ++e) moved += std::fabs(t.data<float>()[e] - before[size_t(e)]) > 1e-5f;
      CHECK(moved > 0);
    }
}

TEST_CASE("the sequence-wise auxiliary balance loss: value and router gradient", "[train][moe]") {
  for (const char* name : {"dsv3_noqlora_nogroup", "qwen2_moe"}) {
    INFO(name);
    auto m = Model::load(std::string(REASON_FIXTURES_DIR) + "/moe/" + name);
    TrainerConfig with, without;
    with.optim.lr = without.optim.lr = 0.0f;
    with.aux_loss_alpha = 0.5f;
    Trainer ta(m, with), tb(m, without);
    std::vector<std::vector<SftExample>> b{{SftExample{{3, 9, 27, 81, 243, 200}, {0, 1, 1, 1, 1, 1}},
                                            SftExample{{7, 70, 140, 280}, {0, 0, 1, 1}}}};
    const float la = ta.sft_step(b).loss, lb = tb.sft_step(b).loss;
    CHECK(la > lb);  // the balance term is positive
    // finite differences on router weights of the total loss
    auto params = m->parameters();
    int checked = 0;
    for (auto& [pname, t] : params) {
      if (pname.find(".gate.weight") == std::string::npos || pname.find("shared") != std::string::npos) continue;
      ta.sft_step(b);
      const float* g = ta.gradients().by_name.at(pname).data<float>();
      int64_t best = 0;
      for (int64_t i = 0; i < t.numel(); ++i)
        if (std::fabs(g[i]) > std::fabs(g[best])) best = i;
      const float gb = g[best];
      float* w = t.data<float>();
      const float orig = w[best], h = 1e-3f;
      w[best] = orig + h;
      const double lp = ta.sft_step(b).loss;
      w[best] = orig - h;
      const double lm = ta.sft_step(b).loss;
      w[best] = orig;
      const double fd = (lp - lm) / (2.0 * h);
      INFO(pname << " analytic " << gb << " fd " << fd);
      CHECK(std::fabs(gb - fd) <= 3e-2 * std::max(1e-3, std::fabs(fd)) + 1e-5);
      ++checked;
    }
    CHECK(checked > 0);
  }
}

TEST_CASE("a packed SFT example trains exactly like its samples given separately", "[train][sft]") {
  auto m = Model::load(kDense + "qwen2_tied");
  TrainerConfig cfg;
  cfg.optim.lr = 0.0f;
  Trainer tr(m, cfg);
  SftExample a{{1, 2, 3, 4, 5}, {0, 0, 1, 1, 1}, {}}, b{{9, 8, 7, 6}, {0, 1, 1, 1}, {}};
  SftExample packed{{1, 2, 3, 4, 5, 9, 8, 7, 6}, {0, 0, 1, 1, 1, 0, 1, 1, 1}, {5}};
  std::vector<std::vector<SftExample>> sep{{a, b}}, pk{{packed}};
  const auto ms = tr.sft_step(sep);
  Gradients gs = copy(tr.gradients());
  const auto mp = tr.sft_step(pk);
  CHECK(mp.loss == ms.loss);
  CHECK(mp.tokens == ms.tokens);
  CHECK(max_rel_diff(gs, tr.gradients()) == 0.0);
  packed.segment_starts = {9};
  std::vector<std::vector<SftExample>> bad{{packed}};
  CHECK_THROWS_AS(tr.sft_step(bad), Error);
}

TEST_CASE("activation recomputation gives identical losses and gradients", "[train][recompute]") {
  for (const char* path : {"/dense/qwen2_tied", "/moe/dsv3_qlora_group", "/moe/qwen3_moe"}) {
    INFO(path);
    auto m = Model::load(std::string(REASON_FIXTURES_DIR) + path);
    TrainerConfig keep, rec;
    keep.optim.lr = rec.optim.lr = 0.0f;
    rec.recompute_activations = true;
    rec.aux_loss_alpha = keep.aux_loss_alpha = 0.1f;
    Trainer a(m, keep), b(m, rec);
    std::vector<std::vector<SftExample>> batch{{SftExample{{3, 9, 27, 81, 243, 200}, {0, 1, 1, 1, 1, 1}, {}},
                                                SftExample{{7, 70, 140, 280}, {0, 0, 1, 1}, {}}}};
    const auto ma = a.sft_step(batch);
    const auto mb = b.sft_step(batch);
    CHECK(ma.loss == mb.loss);
    CHECK(max_rel_diff(a.gradients(), b.gradients()) == 0.0);
  }
}

TEST_CASE("after training steps an MLA model's absorbed decode still equals its expanded prefill", "[train][mla]") {
  // The absorbed path reads W_UK^T, a transposed copy of kv_b: the trainer refreshes it after each
  // update (before, decode kept the loaded W_UK and disagreed with the trained kv_b).
  auto m = Model::load(std::string(REASON_FIXTURES_DIR) + "/moe/dsv3_qlora_group");
  TrainerConfig tc;
  tc.optim.lr = 0.05f;
  Trainer tr(m, tc);
  SftExample ex;
  for (int t = 0; t < 12; ++t) ex.tokens.push_back(int32_t((13 * t + 5) % m->config().vocab_size));
  ex.mask.assign(ex.tokens.size(), 1);
  const std::vector<std::vector<SftExample>> batch{{ex}};
  for (int step = 0; step < 3; ++step) tr.sft_step(batch);
  const std::vector<int32_t> ids(ex.tokens.begin(), ex.tokens.begin() + 9);
  const std::vector<float> full = test::prefill_logits(*m, ids);  // expanded path, every position
  const std::vector<int32_t> prompt(ids.begin(), ids.begin() + 3), rest(ids.begin() + 3, ids.end());
  const size_t V = size_t(m->config().vocab_size);
  float scale = 0;
  for (float v : full) scale = std::max(scale, std::fabs(v));
  test::for_each_decode_step(*m, prompt, rest, [&](size_t step, const float* logits) {
    INFO("step " << step);  // step 0: the prompt's last position; then one token at a time (absorbed)
    CHECK(test::max_abs_diff(logits, &full[(prompt.size() - 1 + step) * V], V) <= 1e-4f * scale);
  });
}

TEST_CASE("kept logits and the chunked LM head give the same logprobs and gradients", "[train][logits]") {
  // Budget 0: the logits are never kept; the LM head runs 64 rows at a time, again in backward.
  auto m = Model::load(kDense + "qwen2_tied");
  std::vector<std::vector<int32_t>> seqs;
  for (int s = 0; s < 3; ++s) {
    std::vector<int32_t> q;
    for (int t = 0; t < 50 + 17 * s; ++t) q.push_back(int32_t((31 * s + 7 * t + 2) % 390));
    seqs.push_back(q);
  }
  Gradients gk = Gradients::zeros_like(*m), gc = Gradients::zeros_like(*m);
  LogprobPass kept, chunked;
  chunked.set_logits_budget(0);
  const std::vector<float> lk = kept.forward(*m, seqs, 0.7f), lc = chunked.forward(*m, seqs, 0.7f);
  REQUIRE(lk.size() > 64);  // more than one chunk
  REQUIRE(lk.size() == lc.size());
  double worst = 0;  // the matmul's blocking differs with its row count: rounding only
  for (size_t i = 0; i < lk.size(); ++i) worst = std::max(worst, std::fabs(double(lk[i]) - lc[i]) / std::max(1.0, std::fabs(double(lk[i]))));
  CHECK(worst < 1e-5);
  std::vector<float> dlogp(lk.size());
  for (size_t i = 0; i < dlogp.size(); ++i) dlogp[i] = 0.01f * float(int(i % 7) - 3);
  kept.backward(dlogp, gk);
  chunked.backward(dlogp, gc);
  CHECK(max_rel_diff(gk, gc) < 1e-5);  // the LM head's weight gradient is summed in another order
}

TEST_CASE("skipping targets without loss (need = 0) changes no logprob or gradient of the others", "[train][logits]") {
  // `need` makes the LM head and log-softmax skip rows (PyTorch's logits_to_keep); the kept rows'
  // logprobs and every weight's gradient equal the full pass with zero dL/dlogprob on the others.
  auto m = Model::load(kDense + "qwen2_tied");
  std::vector<std::vector<int32_t>> seqs;
  std::vector<uint8_t> need;
  for (int s = 0; s < 3; ++s) {
    std::vector<int32_t> q;
    for (int t = 0; t < 20 + 9 * s; ++t) q.push_back(int32_t((29 * s + 11 * t + 3) % 390));
    seqs.push_back(q);
    for (size_t t = 1; t < q.size(); ++t) need.push_back(uint8_t(s != 1 && (t % 3 != 0 || t > 12)));
  }
  for (const int64_t budget : {LogprobPass::kKeepLogitsBytes, int64_t(0)}) {
    INFO("logits budget " << budget);
    LogprobPass full, part;
    full.set_logits_budget(budget);
    part.set_logits_budget(budget);
    const std::vector<float> lf = full.forward(*m, seqs, 0.8f), lp = part.forward(*m, seqs, 0.8f, need);
    REQUIRE(lf.size() == need.size());
    REQUIRE(lp.size() == need.size());
    REQUIRE(part.n_targets() == int64_t(need.size()));
    std::vector<float> dlogp(lf.size(), 0.0f);
    for (size_t i = 0; i < lf.size(); ++i) {
      if (need[i]) {
        CHECK(std::fabs(lf[i] - lp[i]) <= 1e-5f * std::max(1.0f, std::fabs(lf[i])));
        CHECK(std::fabs(full.entropies()[i] - part.entropies()[i]) <= 1e-4f);
        dlogp[i] = 0.02f * float(int(i % 5) - 2);
      } else {
        CHECK(lp[i] == 0.0f);
        CHECK(part.entropies()[i] == 0.0f);
      }
    }
    Gradients gf = Gradients::zeros_like(*m), gp = Gradients::zeros_like(*m);
    full.backward(dlogp, gf);
    part.backward(dlogp, gp);
    CHECK(max_rel_diff(gf, gp) < 1e-5);
    // A gradient on a skipped target is a caller's error, not a silent drop.
    size_t skipped = 0;
    while (need[skipped]) ++skipped;
    dlogp[skipped] = 1.0f;
    CHECK_THROWS_WITH(part.backward(dlogp, gp), Catch::Contains("skipped"));
  }
  LogprobPass bad;
  std::vector<uint8_t> short_need(need.begin(), need.end() - 1);
  CHECK_THROWS_WITH(bad.forward(*m, seqs, 1.0f, short_need), Catch::Contains("need flags"));
}
