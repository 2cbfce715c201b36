// reason_train_bench: training-step throughput (SFT and GRPO) of reason::Trainer on the CPU, the
// libreason side of bench/run_train_vs_torch.sh (the PyTorch side is bench/train_bench_torch.py).
//
//   reason_train_bench --model DIR [--threads N] [--mode sft|grpo] [--batch B] [--seq-len T]
//                      [--steps S] [--warmup W] [--lr LR] [--data-seed SEED] [--breakdown]
//
// The model is loaded in f32 (the trainer's master weights). One step is one optimizer step
// over one micro-batch of B sequences of T tokens:
//   sft:  Trainer::sft_step: masked next-token loss, the first T/4 tokens of every sequence are
//         prompt (mask 0), the rest completion (mask 1); backward; clip 1.0; AdamW.
//   grpo: Trainer::grpo_step over B samples = B/4 groups of G = 4 (prompt T/4 tokens, completion
//         T - T/4), random rewards, old logprobs = the logprobs before the first step + uniform
//         noise in [-0.1, 0.1], beta 0 (no reference), epsilon 0.2 / epsilon_high 0.28,
//         token-level aggregation (TokenMean: "dapo"/"bnpo"), temperature 1, scaled rewards.
// AdamW: lr 1e-5 (--lr), betas 0.9 / 0.999, eps 1e-8, weight decay 0, max_grad_norm 1.0.
//
// The batch (token ids, rewards, the noise) comes from a counter-based splitmix64 generator that
// train_bench_torch.py reproduces bit for bit, so both engines train on the same batch and the
// first step's loss ("first_loss") can be compared. The same batch is used at every step.
//
// W warm-up steps, then S timed steps (steady_clock around each sft_step / grpo_step call; the
// batch is built once, before). tokens/s = B * T / mean seconds per step: every token forwarded
// counts, prompt tokens included.
//
// --breakdown: after the timed steps, runs max(W, 1) warm-up and S timed steps more through the
// trainer's own building blocks (LogprobPass::forward, the loss's dL/dlogprob,
// LogprobPass::backward, AdamW::step, as Trainer::sft_step / grpo_step call them) and times each
// phase: where a step's time goes.
//
// The JSON document goes to stdout; progress goes to stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"
#include "reason/kernels/backend.h"
#include "train/logprob_pass.h"
#include "train/optimizer.h"
#include "train/trainer.h"

namespace {

namespace rk = reason::kernels;
using Clock = std::chrono::steady_clock;

constexpr int64_t kGroup = 4;
constexpr double kNoise = 0.1;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Args {
  std::string model;
  int threads = 0;
  std::string mode = "sft";
  int64_t batch = 8;
  int64_t seq_len = 128;
  int steps = 5;
  int warmup = 2;
  float lr = 1e-5f;
  uint64_t data_seed = 1234;
  bool breakdown = false;
};

[[noreturn]] void usage(const char* msg) {
  if (msg) std::fprintf(stderr, "reason_train_bench: %s\n", msg);
  std::fprintf(stderr,
               "usage: reason_train_bench --model DIR [--threads N] [--mode sft|grpo] [--batch B] [--seq-len T]\n"
               "                          [--steps S] [--warmup W] [--lr LR] [--data-seed SEED] [--breakdown]\n");
  std::exit(2);
}

Args parse_args(int argc, char** argv) {
  Args a;
  auto need = [&](int& i) -> const char* {
    if (i + 1 >= argc) usage((std::string("missing value after ") + argv[i]).c_str());
    return argv[++i];
  };
  auto to_int = [&](const char* s, const char* name, long lo) -> long {
    char* end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (!end || *end || v < lo) usage((std::string("bad value for ") + name + ": " + s).c_str());
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--model" || s == "-m") a.model = need(i);
    else if (s == "--threads" || s == "-t") a.threads = int(to_int(need(i), "--threads", 0));
    else if (s == "--mode") a.mode = need(i);
    else if (s == "--batch" || s == "-b") a.batch = to_int(need(i), "--batch", 1);
    else if (s == "--seq-len") a.seq_len = to_int(need(i), "--seq-len", 8);
    else if (s == "--steps") a.steps = int(to_int(need(i), "--steps", 1));
    else if (s == "--warmup") a.warmup = int(to_int(need(i), "--warmup", 0));
    else if (s == "--data-seed") a.data_seed = uint64_t(to_int(need(i), "--data-seed", 0));
    else if (s == "--lr") {
      const char* v = need(i);
      char* end = nullptr;
      a.lr = std::strtof(v, &end);
      if (!end || *end || !(a.lr >= 0)) usage((std::string("bad value for --lr: ") + v).c_str());
    } else if (s == "--breakdown") a.breakdown = true;
    else if (s == "--help" || s == "-h") usage(nullptr);
    else usage(("unknown argument " + s).c_str());
  }
  if (a.model.empty()) usage("--model is required");
  if (a.mode != "sft" && a.mode != "grpo") usage("--mode must be sft or grpo");
  if (a.mode == "grpo" && a.batch % kGroup) usage("--batch must be a multiple of the group size 4 for grpo");
  return a;
}

// ---- the shared batch (train_bench_torch.py: mix, rnd, uniform, make_batch) ------------------

uint64_t mix(uint64_t x) {  // splitmix64's output function
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
uint64_t rnd(uint64_t seed, uint64_t stream, uint64_t i) { return mix((seed * 0x100000001B3ull) ^ (stream << 48) ^ i); }
double uniform(uint64_t seed, uint64_t stream, uint64_t i) { return double(rnd(seed, stream, i) >> 11) * (1.0 / 9007199254740992.0); }

struct Batch {
  std::vector<std::vector<int32_t>> tokens;  // [B][T]
  std::vector<float> rewards;                // [B]
  std::vector<std::vector<float>> noise;     // [B][T - T/4]
};

Batch make_batch(uint64_t seed, int64_t B, int64_t T, int64_t V) {
  Batch b;
  const int64_t C = T - T / 4;
  b.tokens.assign(size_t(B), std::vector<int32_t>(size_t(T)));
  b.noise.assign(size_t(B), std::vector<float>(size_t(C)));
  for (int64_t i = 0; i < B; ++i) {
    for (int64_t t = 0; t < T; ++t) b.tokens[size_t(i)][size_t(t)] = int32_t(rnd(seed, 1, uint64_t(i * T + t)) % uint64_t(V));
    b.rewards.push_back(float(uniform(seed, 2, uint64_t(i))));
    for (int64_t t = 0; t < C; ++t)
      b.noise[size_t(i)][size_t(t)] = float((2.0 * uniform(seed, 3, uint64_t(i * C + t)) - 1.0) * kNoise);
  }
  return b;
}

// ---- statistics ----------------------------------------------------------------------------

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean(v);
  double sq = 0;
  for (double x : v) sq += (x - m) * (x - m);
  return std::sqrt(sq / double(v.size() - 1));
}
std::string json_array(const std::vector<double>& v, double scale) {
  std::string s = "[";
  char buf[64];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.3f", i ? ", " : "", v[i] * scale);
    s += buf;
  }
  return s + "]";
}

// ---- the phases of a step, timed (--breakdown) ----------------------------------------------

struct Phases {
  std::vector<double> forward, loss, backward, optimizer;
};

// One step as Trainer::sft_step / grpo_step runs it, phase by phase, on its own gradients and
// optimizer (the weights are updated, as by the trainer).
void breakdown_step(const reason::Model& model, const Args& a, const std::vector<std::vector<int32_t>>& seqs,
                    const std::vector<std::vector<float>>& old_lp, const std::vector<float>& adv,
                    reason::Gradients& grads, reason::AdamW& opt, const std::vector<std::pair<std::string, reason::Tensor>>& params,
                    Phases& ph) {
  const int64_t B = int64_t(seqs.size()), T = a.seq_len, P = T / 4, C = T - P;
  auto t0 = Clock::now();
  for (auto& [n, g] : grads.by_name) std::fill(g.data<float>(), g.data<float>() + g.numel(), 0.0f);
  reason::LogprobPass pass;
  const std::vector<float> lp = pass.forward(model, seqs, 1.0f);
  auto t1 = Clock::now();
  std::vector<float> dlp(lp.size(), 0.0f);
  if (a.mode == "sft") {
    const float w = -1.0f / float(B * (T - P));
    for (int64_t i = 0; i < B; ++i)
      for (int64_t t = 1; t < T; ++t) dlp[size_t(i * (T - 1) + t - 1)] = t >= P ? w : 0.0f;
  } else {
    const double w = 1.0 / double(B * C);
    for (int64_t i = 0; i < B; ++i)
      for (int64_t t = 0; t < C; ++t) {
        const size_t k = size_t(i * (T - 1) + P - 1 + t);
        const double ratio = std::exp(double(lp[k]) - old_lp[size_t(i)][size_t(t)]);
        const double A = adv[size_t(i)], cl = std::clamp(ratio, 0.8, 1.28);
        dlp[k] = float((cl * A < ratio * A && cl != ratio) ? 0.0 : -A * ratio * w);
      }
  }
  auto t2 = Clock::now();
  pass.backward(dlp, grads);
  auto t3 = Clock::now();
  opt.step(model.backend(), params, grads, a.lr);
  auto t4 = Clock::now();
  auto s = [](Clock::time_point x, Clock::time_point y) { return std::chrono::duration<double>(y - x).count(); };
  ph.forward.push_back(s(t0, t1));
  ph.loss.push_back(s(t1, t2));
  ph.backward.push_back(s(t2, t3));
  ph.optimizer.push_back(s(t3, t4));
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  try {
    if (args.threads > 0) rk::set_cpu_threads(args.threads);
    const int threads = rk::cpu_threads();
    auto t0 = Clock::now();
    reason::LoadOptions lo;
    lo.compute_dtype = reason::DType::F32;
    lo.load_tokenizer = false;
    std::shared_ptr<const reason::Model> model = reason::Model::load(args.model, lo);
    const double load_s = seconds_since(t0);
    const reason::ModelConfig& c = model->config();
    const int64_t B = args.batch, T = args.seq_len, P = T / 4, C = T - P, V = c.vocab_size;
    std::fprintf(stderr, "reason_train_bench: %s: %s, %lld params, f32, %d threads, %s B=%lld T=%lld, loaded in %.2fs\n",
                 args.model.c_str(), c.architecture.c_str(), (long long)model->n_params(), threads, args.mode.c_str(),
                 (long long)B, (long long)T, load_s);

    reason::TrainerConfig tc;
    tc.optim.lr = args.lr;
    tc.optim.beta1 = 0.9f;
    tc.optim.beta2 = 0.999f;
    tc.optim.eps = 1e-8f;
    tc.optim.weight_decay = 0.0f;
    tc.optim.max_grad_norm = 1.0f;
    reason::Trainer trainer(model, tc);

    const Batch data = make_batch(args.data_seed, B, T, V);
    // SFT: one micro-batch of B examples.
    std::vector<std::vector<reason::SftExample>> sft(1);
    // GRPO: B samples, old logprobs = current (before the first step) + noise.
    std::vector<reason::GrpoSample> grpo;
    reason::GrpoConfig gc;
    gc.group_size = kGroup;
    gc.epsilon = 0.2f;
    gc.epsilon_high = 0.28f;
    gc.beta = 0.0f;
    gc.aggregation = reason::GrpoAggregation::TokenMean;
    gc.reward_scaling = reason::RewardScaling::Group;
    gc.temperature = 1.0f;
    std::vector<std::vector<float>> old_lp;
    if (args.mode == "sft") {
      for (const auto& toks : data.tokens) {
        reason::SftExample ex;
        ex.tokens = toks;
        ex.mask.assign(size_t(T), 0);
        std::fill(ex.mask.begin() + P, ex.mask.end(), uint8_t(1));
        sft[0].push_back(std::move(ex));
      }
    } else {
      reason::LogprobPass pass;
      const std::vector<float> lp = pass.forward(*model, data.tokens, 1.0f);
      for (int64_t i = 0; i < B; ++i) {
        reason::GrpoSample s;
        const auto& toks = data.tokens[size_t(i)];
        s.prompt.assign(toks.begin(), toks.begin() + P);
        s.completion.assign(toks.begin() + P, toks.end());
        s.reward = data.rewards[size_t(i)];
        for (int64_t t = 0; t < C; ++t)
          s.old_logprobs.push_back(lp[size_t(i * (T - 1) + P - 1 + t)] + data.noise[size_t(i)][size_t(t)]);
        old_lp.push_back(s.old_logprobs);
        grpo.push_back(std::move(s));
      }
    }

    auto step = [&]() -> reason::StepMetrics {
      if (args.mode == "sft") return trainer.sft_step(sft);
      return trainer.grpo_step(grpo, gc, 0, true);
    };
    double first_loss = NAN, last_loss = NAN;
    for (int w = 0; w < args.warmup; ++w) {
      auto t = Clock::now();
      const reason::StepMetrics m = step();
      if (std::isnan(first_loss)) first_loss = m.loss;
      std::fprintf(stderr, "  warm-up %d: %.1f ms, loss %.6f, grad norm %.4f\n", w + 1, seconds_since(t) * 1e3, m.loss,
                   m.grad_norm);
    }
    std::vector<double> times;
    for (int s = 0; s < args.steps; ++s) {
      auto t = Clock::now();
      const reason::StepMetrics m = step();
      times.push_back(seconds_since(t));
      if (std::isnan(first_loss)) first_loss = m.loss;
      last_loss = m.loss;
      std::fprintf(stderr, "  step %d: %.1f ms, loss %.6f, grad norm %.4f\n", s + 1, times.back() * 1e3, m.loss, m.grad_norm);
    }
    const double ms = mean(times);

    std::string bd;
    if (args.breakdown) {
      reason::Gradients grads = reason::Gradients::zeros_like(*model);
      reason::AdamW opt(tc.optim);
      const auto params = model->parameters();
      std::vector<float> adv;
      if (args.mode == "grpo") adv = reason::Trainer::advantages(grpo, gc);
      Phases warm, ph;  // the first step allocates the optimizer state: warm up as the timed steps did
      for (int s = 0; s < std::max(1, args.warmup); ++s) breakdown_step(*model, args, data.tokens, old_lp, adv, grads, opt, params, warm);
      for (int s = 0; s < args.steps; ++s) breakdown_step(*model, args, data.tokens, old_lp, adv, grads, opt, params, ph);
      const double f = mean(ph.forward), l = mean(ph.loss), b = mean(ph.backward), o = mean(ph.optimizer);
      const double tot = f + l + b + o;
      std::fprintf(stderr, "breakdown (%d steps, ms per step): forward %.1f (%.1f%%), loss %.2f, backward %.1f (%.1f%%), "
                   "optimizer %.1f (%.1f%%), sum %.1f vs trainer step %.1f\n",
                   args.steps, f * 1e3, 100 * f / tot, l * 1e3, b * 1e3, 100 * b / tot, o * 1e3, 100 * o / tot, tot * 1e3, ms * 1e3);
      char buf[512];
      std::snprintf(buf, sizeof buf,
                    ", \"breakdown_ms\": {\"forward\": %.3f, \"loss\": %.3f, \"backward\": %.3f, \"optimizer\": %.3f, "
                    "\"total\": %.3f}",
                    f * 1e3, l * 1e3, b * 1e3, o * 1e3, tot * 1e3);
      bd = buf;
    }

    std::printf(
        "{\"engine\": \"libreason\", \"mode\": \"%s\", \"threads\": %d, \"batch\": %lld, \"seq_len\": %lld, "
        "\"steps\": %d, \"warmup\": %d, \"params\": %lld, \"tokens_per_step\": %lld, \"ms_per_step\": %.3f, "
        "\"ms_per_step_median\": %.3f, \"ms_per_step_min\": %.3f, \"ms_per_step_stddev\": %.3f, "
        "\"tokens_per_s\": %.3f, \"first_loss\": %.7g, \"last_loss\": %.7g, \"step_ms\": %s%s}\n",
        args.mode.c_str(), threads, (long long)B, (long long)T, args.steps, args.warmup, (long long)model->n_params(),
        (long long)(B * T), ms * 1e3, median(times) * 1e3, *std::min_element(times.begin(), times.end()) * 1e3,
        stddev(times) * 1e3, double(B * T) / ms, first_loss, last_loss, json_array(times, 1e3).c_str(), bd.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reason_train_bench: %s\n", e.what());
    return 1;
  }
}
