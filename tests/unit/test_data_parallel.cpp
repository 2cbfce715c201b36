// Data-parallel training over MPI (run by ctest under `mpirun -np 2`): every rank trains a policy
// on its share of each batch with the world communicator, and a second copy of the policy on the
// whole batch alone (the single-process oracle). After 3 steps the two copies' weights agree within
// 1e-5 of each tensor's largest value (and the gradients of every step within 1e-5 of their largest), for SFT, distillation and GRPO with every aggregation (and
// batch reward scaling, the top-entropy mask, micro-batches, an uneven split), with and without
// ZeRO-1; the step metrics agree too.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "dist/communicator.h"
#include "model/model.h"
#include "train/data_parallel.h"
#include "train/gradient_reducer.h"
#include "train/trainer.h"

using namespace reason;

namespace {

const std::string kDense = std::string(REASON_FIXTURES_DIR) + "/dense/";

Communicator& world() {
  static std::shared_ptr<Communicator> w = mpi_world();
  return *w;
}

// 4 prompts x G=4 per step, the rewards and lengths varying with the step.
std::vector<GrpoSample> grpo_batch(int step) {
  std::vector<GrpoSample> b;
  for (int i = 0; i < 16; ++i) {
    GrpoSample s;
    s.prompt = {int32_t(10 + i / 4 + step), 20, 30};
    for (int t = 0; t < 2 + (i * 3 + step) % 6; ++t) s.completion.push_back(int32_t((40 + 7 * i + 5 * t + step) % 390));
    s.reward = float((i * 7 + step * 3) % 5) / 4.0f;
    s.truncated = (i + step) % 5 == 0;
    b.push_back(s);
  }
  return b;
}

std::vector<SftExample> sft_batch(int step) {
  std::vector<SftExample> b;
  for (int i = 0; i < 6; ++i) {
    SftExample ex;
    for (int t = 0; t < 5 + (i + step) % 4; ++t) ex.tokens.push_back(int32_t((37 * i + 11 * t + step) % 390));
    ex.mask.assign(ex.tokens.size(), 1);
    ex.mask[0] = ex.mask[1] = 0;
    b.push_back(ex);
  }
  return b;
}

// This rank's samples [lo, hi) of n, cut at multiples of `unit`: an even split, or (uneven) rank 0
// takes all but the last unit.
std::pair<size_t, size_t> share(size_t n, size_t unit, bool uneven) {
  if (!uneven) return rank_share(world(), n, unit);
  const size_t cut = (n / unit - 1) * unit;
  return world().rank() == 0 ? std::pair{size_t(0), cut} : std::pair{cut, n};
}

// Largest |a - b| over the tensor divided by its largest |b|.
double rel_diff(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.host(), hb = b.host();
  double scale = 1e-12, d = 0;
  for (int64_t i = 0; i < hb.numel(); ++i) scale = std::max(scale, double(std::fabs(hb.data<float>()[i])));
  for (int64_t i = 0; i < hb.numel(); ++i) d = std::max(d, std::fabs(double(ha.data<float>()[i]) - double(hb.data<float>()[i])));
  return d / scale;
}

double max_rel_weight_diff(const Model& a, const Model& b) {
  double worst = 0;
  const auto pa = a.parameters(), pb = b.parameters();
  for (size_t k = 0; k < pa.size(); ++k) worst = std::max(worst, rel_diff(pa[k].second, pb[k].second));
  return worst;
}

// The same over every parameter's gradient. Step 0 starts from equal weights: only the order of
// the sums differs (1e-5). Later steps start from weights that already differ at f32 rounding
// level (1e-4).
void check_grads(const Trainer& dp, const Trainer& single, int step) {
  double worst = 0;
  for (const auto& [name, ta] : dp.gradients().by_name) worst = std::max(worst, rel_diff(ta, single.gradients().by_name.at(name)));
  INFO("largest relative gradient difference: " << worst);
  CHECK(worst <= (step == 0 ? 1e-5 : 1e-4));
}

// lr 1e-4 (GRPO runs use 1e-6 .. 1e-5): AdamW divides each gradient by its own running RMS, so an
// element whose gradient is at f32 rounding level of the tensor's largest moves by up to lr either
// way; the weights of two summation orders differ by about lr x 3e-2 after 3 steps (2.7e-4 at lr 1e-2,
// measured), the gradients themselves by 3e-7 .. 6e-6 of their largest element.
TrainerConfig config(bool dp, bool zero1) {
  TrainerConfig c;
  c.optim.lr = 1e-4f;
  c.optim.weight_decay = 0.01f;
  c.optim.max_grad_norm = 0.5f;  // the clipped norm must be the whole batch's
  if (dp) c.comm = mpi_world();
  c.zero1 = zero1;
  c.allreduce_bucket_bytes = 64 << 10;  // several buckets, and tensors split across them
  return c;
}

void check_close(const char* what, double dp, double single) {
  INFO(what << ": data-parallel " << dp << ", single process " << single);
  CHECK(std::fabs(dp - single) <= 1e-5 * std::max(1.0, std::fabs(single)));
}

struct GrpoCase {
  const char* name;
  GrpoAggregation agg;
  RewardScaling scaling = RewardScaling::Group;
  float top_entropy = 1.0f;
  int64_t micro = 0;
  bool uneven = false;
};

}  // namespace

TEST_CASE("the job has at least two ranks", "[dist]") {
  INFO("run this test under mpirun -np 2 (ctest does)");
  REQUIRE(world().size() >= 2);
}

TEST_CASE("GRPO: N ranks with B/N prompts each give the weights of one process with B", "[dist][grpo]") {
  const GrpoCase cases[] = {
      {"grpo", GrpoAggregation::SequenceMean},
      {"dapo", GrpoAggregation::TokenMean},
      {"dr_grpo", GrpoAggregation::Constant},
      {"dapo, batch scaling, top-entropy 0.5, micro-batches of 4", GrpoAggregation::TokenMean, RewardScaling::Batch, 0.5f, 4},
      {"grpo, uneven split 12/4", GrpoAggregation::SequenceMean, RewardScaling::Group, 1.0f, 0, true},
  };
  for (const GrpoCase& gc : cases)
    for (bool zero1 : {false, true}) {
      SECTION(std::string(gc.name) + (zero1 ? ", ZeRO-1" : "")) {
        auto dp_model = Model::load(kDense + "qwen2_tied");
        auto single_model = Model::load(kDense + "qwen2_tied");
        Trainer dp(dp_model, config(true, zero1)), single(single_model, config(false, false));
        GrpoConfig g;
        g.group_size = 4;
        g.aggregation = gc.agg;
        g.max_completion_length = 8;
        g.mask_truncated = true;
        g.reward_scaling = gc.scaling;
        g.top_entropy_quantile = gc.top_entropy;
        g.epsilon_high = 0.28f;
        for (int step = 0; step < 3; ++step) {
          const auto batch = grpo_batch(step);
          const auto [lo, hi] = share(batch.size(), 4, gc.uneven);
          const std::vector<GrpoSample> mine(batch.begin() + long(lo), batch.begin() + long(hi));
          const StepMetrics md = dp.grpo_step(mine, g, gc.micro);
          const StepMetrics ms = single.grpo_step(batch, g);
          check_grads(dp, single, step);
          check_close("loss", md.loss, ms.loss);
          check_close("grad norm", md.grad_norm, ms.grad_norm);
          check_close("reward mean", md.reward_mean, ms.reward_mean);
          check_close("entropy", md.entropy, ms.entropy);
          CHECK(md.tokens == ms.tokens);
          CHECK(md.policy_tokens == ms.policy_tokens);
        }
        const double d = max_rel_weight_diff(*dp_model, *single_model);
        INFO("largest relative weight difference after 3 steps: " << d);
        CHECK(d <= 1e-5);
        // The weights moved: the comparison is not of two untouched copies.
        auto fresh = Model::load(kDense + "qwen2_tied");
        CHECK(max_rel_weight_diff(*single_model, *fresh) > 1e-4);
        if (zero1) {  // each rank holds AdamW state for its own parameters only
          size_t owned = 0;
          for (const auto& [name, r] : dp.zero1_assignment()) owned += r == world().rank() ? 1 : 0;
          CHECK(dp.optimizer().state().size() == owned);
          CHECK(owned < dp_model->parameters().size());
        }
      }
    }
}

TEST_CASE("SFT and distillation: N ranks give the weights of one process", "[dist][sft]") {
  for (bool zero1 : {false, true}) {
    SECTION(zero1 ? "SFT, ZeRO-1" : "SFT") {
      auto dp_model = Model::load(kDense + "qwen2_tied");
      auto single_model = Model::load(kDense + "qwen2_tied");
      Trainer dp(dp_model, config(true, zero1)), single(single_model, config(false, false));
      for (int step = 0; step < 3; ++step) {
        const auto batch = sft_batch(step);
        const auto [lo, hi] = share(batch.size(), 1, false);
        // This rank's examples in micro-batches of two; the single process takes one micro-batch.
        std::vector<std::vector<SftExample>> mine;
        for (size_t i = lo; i < hi; i += 2) mine.emplace_back(batch.begin() + long(i), batch.begin() + long(std::min(hi, i + 2)));
        const StepMetrics md = dp.sft_step(mine);
        const StepMetrics ms = single.sft_step(std::vector<std::vector<SftExample>>{batch});
        check_grads(dp, single, step);
        check_close("loss", md.loss, ms.loss);
        check_close("grad norm", md.grad_norm, ms.grad_norm);
        CHECK(md.tokens == ms.tokens);
      }
      const double d = max_rel_weight_diff(*dp_model, *single_model);
      INFO("largest relative weight difference after 3 steps: " << d);
      CHECK(d <= 1e-5);
    }
    SECTION(zero1 ? "distillation (JSD), ZeRO-1" : "distillation (JSD)") {
      auto teacher = Model::load(kDense + "qwen2_sharded");
      auto dp_model = Model::load(kDense + "qwen2_tied");
      auto single_model = Model::load(kDense + "qwen2_tied");
      Trainer dp(dp_model, config(true, zero1)), single(single_model, config(false, false));
      DistillConfig dc;
      dc.loss = DistillLoss::JSD;
      dc.beta = 0.3f;
      dc.temperature = 0.9f;
      for (int step = 0; step < 3; ++step) {
        const auto batch = sft_batch(step);
        const auto [lo, hi] = share(batch.size(), 1, false);
        std::vector<std::vector<SftExample>> mine{std::vector<SftExample>(batch.begin() + long(lo), batch.begin() + long(hi))};
        const StepMetrics md = dp.distill_step(*teacher, mine, dc);
        const StepMetrics ms = single.distill_step(*teacher, std::vector<std::vector<SftExample>>{batch}, dc);
        check_grads(dp, single, step);
        check_close("loss", md.loss, ms.loss);
        check_close("grad norm", md.grad_norm, ms.grad_norm);
      }
      const double d = max_rel_weight_diff(*dp_model, *single_model);
      INFO("largest relative weight difference after 3 steps: " << d);
      CHECK(d <= 1e-5);
    }
  }
}

TEST_CASE("a bad sample on one rank fails the step on every rank, naming it, and changes nothing", "[dist]") {
  auto m = Model::load(kDense + "qwen2_tied");
  Trainer dp(m, config(true, false));
  GrpoConfig g;
  g.group_size = 4;
  auto batch = grpo_batch(0);
  const auto [lo, hi] = share(batch.size(), 4, false);
  std::vector<GrpoSample> mine(batch.begin() + long(lo), batch.begin() + long(hi));
  if (world().rank() == 1) mine[2].reward = NAN;
  try {
    dp.grpo_step(mine, g);
    FAIL("the step went on with a NaN reward on rank 1");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("non-finite reward") != std::string::npos);
    if (world().rank() == 0) CHECK(msg.find("rank 1: ") == 0);
  }
  auto fresh = Model::load(kDense + "qwen2_tied");
  CHECK(max_rel_weight_diff(*m, *fresh) == 0.0);
  CHECK(dp.step_count() == 0);
  // The job goes on: the next step with good samples runs on both ranks.
  batch = grpo_batch(1);
  mine.assign(batch.begin() + long(lo), batch.begin() + long(hi));
  CHECK(std::isfinite(dp.grpo_step(mine, g).loss));
}

namespace {

// Every gradient element's value on rank r: (r + 1) * (i % 97) + 0.5, so the sum over R ranks is
// R (R + 1) / 2 * (i % 97) + R / 2, exact in f32.
void fill_rank_values(Gradients& g, int rank) {
  for (auto& [name, t] : g.by_name) {
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(rank + 1) * float(i % 97) + 0.5f;
  }
}

void check_rank_sums(const Gradients& g, int ranks) {
  const float ranks_sum = float(ranks * (ranks + 1) / 2);
  for (auto& [name, t] : g.by_name)
    for (int64_t i = 0; i < t.numel(); ++i) {
      const float want = ranks_sum * float(i % 97) + 0.5f * float(ranks);
      if (t.data<float>()[i] != want) FAIL(name << "[" << i << "] = " << t.data<float>()[i] << ", want " << want);
    }
}

}  // namespace

TEST_CASE("gradient reducer: buckets in backward order, started as layers finish, every element summed once", "[dist]") {
  CHECK(GradientReducer::layer_of("model.layers.12.self_attn.q_proj.weight") == 12);
  CHECK(GradientReducer::layer_of("base_model.model.model.layers.3.mlp.up_proj.lora_A.weight") == 3);
  CHECK(GradientReducer::layer_of("model.embed_tokens.weight") == -1);
  CHECK(GradientReducer::layer_of("model.sublayers.2.x") == -1);
  CHECK(GradientReducer::layer_of("lm_head.weight") == -1);
  std::shared_ptr<Communicator> w = mpi_world();
  auto m = Model::load(kDense + "qwen2_tied");
  const int64_t L = m->config().n_layers;
  REQUIRE(L >= 2);
  Gradients g = Gradients::zeros_like(*m);
  std::vector<std::string> names;
  for (auto& [name, t] : g.by_name) names.push_back(name);
  GradientReducer r(w, g, names, L, 16 << 10);  // 16 KiB: many buckets, large tensors in several
  // MPI at MPI_THREAD_SERIALIZED: a communication thread, unless ctest's _after_backward variant
  // turns the overlap off.
  const char* off = std::getenv("REASON_DIST_OVERLAP");
  const bool overlap = !(off && std::string(off) == "0");
  CHECK(r.overlaps() == overlap);
  REQUIRE(r.buckets() > int64_t(names.size()) / 4);
  for (int step = 0; step < 2; ++step) {
    fill_rank_values(g, w->rank());
    // Rank 1 in step 1 ran no backward (no samples): finish() alone starts every bucket, in the
    // order rank 0's layers started them.
    const bool backward = !(step == 1 && w->rank() == 1);
    if (backward) {
      r.layer_done(L - 1);
      const int64_t after_top = r.started();
      CHECK((after_top > 0) == overlap);    // the last layer's buckets are on their way
      CHECK(after_top < r.buckets());       // the rest wait for their layers
      for (int64_t l = L - 2; l >= 0; --l) r.layer_done(l);
      CHECK(r.started() < r.buckets());     // the embeddings and final norm wait for finish()
    }
    const GradientReducer::Report rep = r.finish();
    CHECK(rep.buckets == r.buckets());
    CHECK(rep.busy_seconds > 0.0);
    check_rank_sums(g, w->size());
  }
  // A backward that failed part-way (layer_done without finish) leaves the ranks out of step: the
  // next step says so instead of calling collectives the peers do not make.
  GradientReducer broken(w, g, names, L, 1 << 30);  // one bucket, started only by finish()
  broken.layer_done(L - 1);
  try {
    broken.layer_done(L - 1);
    FAIL("a second backward began before the first one's all-reduce finished");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("never finished") != std::string::npos);
  }
  fill_rank_values(g, w->rank());
  broken.finish();
  check_rank_sums(g, w->size());
}

// Run alone by ctest (test_data_parallel_timeout) with REASON_DIST_TIMEOUT_S=2: rank 1 stops
// calling collectives (a hung peer); rank 0's barrier gives up after 2 s and aborts the whole job
// with a message naming the collective, instead of waiting forever. ctest checks the message.
TEST_CASE("a hung rank: the others' collective times out and aborts the job", "[.timeout]") {
  if (world().rank() == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(60));  // mpirun ends this rank first
    return;
  }
  world().barrier();
  FAIL("the barrier returned although rank 1 never arrived");
}
