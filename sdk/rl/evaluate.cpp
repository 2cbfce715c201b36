#include "rl/evaluate.h"

#include <chrono>

#include <fmt/format.h>

#include "core/error.h"
#include "infer/generator.h"
#include "rl/rewards.h"
#include "rl/rollout.h"

namespace reason {

EvalOptions r1_eval_options() {
  EvalOptions o;
  o.sampling.temperature = 0.6f;
  o.sampling.top_p = 0.95f;
  o.sampling.max_new_tokens = 256;
  return o;
}

std::string majority_answer(std::span<const std::string> completions) {
  std::vector<std::string> reps;
  std::vector<int> votes;
  for (const auto& c : completions) {
    auto a = extract_last_boxed(c);
    if (!a) continue;
    size_t g = 0;
    while (g < reps.size() && !math_answers_equivalent(reps[g], *a)) ++g;
    if (g == reps.size()) {
      reps.push_back(*a);
      votes.push_back(0);
    }
    votes[g] += 1;
  }
  if (reps.empty()) return "";
  size_t best = 0;
  for (size_t g = 1; g < reps.size(); ++g)
    if (votes[g] > votes[best]) best = g;
  return reps[best];
}

namespace {

// Every rank's problems [first, last) of r.details to every rank, and the format / token counts summed.
void gather_details(Communicator& c, EvalReport& r, size_t first, size_t last, int64_t& formatted, int64_t& tokens) {
  std::vector<std::string> mine;
  for (size_t i = first; i < last; ++i) {
    const EvalProblem& p = r.details[i];
    mine.push_back(nlohmann::json{{"s", p.samples}, {"c", p.correct}, {"m", p.majority}, {"mc", p.majority_correct},
                                  {"g", p.greedy}, {"gc", p.greedy_correct}}
                       .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  const std::vector<std::string> all = allgather_strings(c, mine);
  if (all.size() != r.details.size()) fail(ErrorCode::Internal, "eval: gathered {} problems of {}", all.size(), r.details.size());
  for (size_t i = 0; i < all.size(); ++i) {
    const auto j = nlohmann::json::parse(all[i]);
    EvalProblem& p = r.details[i];
    p.samples = j["s"].get<std::vector<std::string>>();
    p.correct = j["c"].get<std::vector<uint8_t>>();
    p.majority = j["m"].get<std::string>();
    p.majority_correct = j["mc"].get<bool>();
    p.greedy = j["g"].get<std::string>();
    p.greedy_correct = j["gc"].get<bool>();
  }
  int64_t sums[2] = {formatted, tokens};
  c.allreduce_sum(std::span<int64_t>(sums));
  formatted = sums[0], tokens = sums[1];
}

}  // namespace

EvalReport evaluate(const Model& model, std::span<const EvalItem> items, const EvalOptions& opts) {
  if (opts.samples < 1) fail(ErrorCode::InvalidArgument, "eval: samples must be >= 1 (got {})", opts.samples);
  if (items.empty()) fail(ErrorCode::InvalidArgument, "eval: no problems");
  const auto t0 = std::chrono::steady_clock::now();
  const size_t K = size_t(opts.samples);
  const int64_t per_batch = std::max<int64_t>(1, opts.batch_problems);
  EvalReport r;
  r.problems = int64_t(items.size());
  r.k = opts.samples;
  r.details.resize(items.size());
  int64_t formatted = 0, tokens = 0;
  const auto [first, last] = opts.comm ? rank_share(*opts.comm, items.size()) : std::pair<size_t, size_t>{0, items.size()};
  for (size_t b0 = first; b0 < last; b0 += size_t(per_batch)) {
    const size_t b1 = std::min(last, b0 + size_t(per_batch));
    const size_t per = K + (opts.greedy ? 1 : 0);
    std::vector<GenRequest> reqs;
    for (size_t i = b0; i < b1; ++i) {
      for (size_t j = 0; j < per; ++j) {
        GenRequest q;
        q.prompt = items[i].ids;
        q.params = opts.sampling;
        if (j == K) q.params.temperature = 0.0f;  // greedy
        q.params.seed = rollout_seed(opts.seed ^ (uint64_t(i) * 0x2545f4914f6cdd1dULL), int64_t(j));
        q.share_prefix_with = j == 0 ? -1 : int64_t(reqs.size() - j);
        reqs.push_back(std::move(q));
      }
    }
    GenerateOptions go;
    go.max_active = std::max(opts.max_active, int(per));
    auto res = generate(model, reqs, {}, go);
    for (size_t i = b0; i < b1; ++i) {
      EvalProblem& p = r.details[i];
      for (size_t j = 0; j < K; ++j) {
        GenResult& g = res[(i - b0) * per + j];
        p.correct.push_back(math_accuracy_reward(g.text, items[i].answer) > 0.5f);
        formatted += format_reward(g.text) > 0.5f;
        tokens += int64_t(g.tokens.size());
        p.samples.push_back(std::move(g.text));
      }
      p.majority = majority_answer(p.samples);
      p.majority_correct = !p.majority.empty() && math_answers_equivalent(items[i].answer, p.majority);
      if (opts.greedy) {
        p.greedy = std::move(res[(i - b0) * per + K].text);
        p.greedy_correct = math_accuracy_reward(p.greedy, items[i].answer) > 0.5f;
      }
    }
    if (opts.on_progress) opts.on_progress(int64_t(b1 - first), int64_t(last - first));
  }
  if (opts.comm && opts.comm->size() > 1) gather_details(*opts.comm, r, first, last, formatted, tokens);
  const double n = double(items.size());
  r.pass_at_1 = 0;
  r.cons_at_k = 0;
  for (const auto& p : r.details) {
    for (uint8_t c : p.correct) r.pass_at_1 += c;
    r.cons_at_k += p.majority_correct;
  }
  r.pass_at_1 /= n * double(K);
  r.cons_at_k /= n;
  r.format_rate = double(formatted) / (n * double(K));
  r.mean_length = double(tokens) / (n * double(K));
  if (opts.greedy) {
    int64_t c = 0;
    for (const auto& p : r.details) c += p.greedy_correct;
    r.greedy_accuracy = double(c) / n;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

nlohmann::json eval_summary_json(const EvalReport& r) {
  nlohmann::json j = {{"problems", r.problems}, {"k", r.k},           {"pass@1", r.pass_at_1},
                      {"cons@k", r.cons_at_k},  {"format", r.format_rate}, {"mean_length", r.mean_length},
                      {"seconds", r.seconds}};
  j["greedy"] = r.greedy_accuracy >= 0 ? nlohmann::json(r.greedy_accuracy) : nlohmann::json(nullptr);
  return j;
}

std::string eval_table(const EvalReport& r) {
  std::string s = fmt::format("  problems      {}\n", r.problems);
  s += fmt::format("  pass@1        {:.1f}%   (mean over {} samples per problem)\n", 100 * r.pass_at_1, r.k);
  s += fmt::format("  cons@{:<8} {:.1f}%   (majority vote)\n", r.k, 100 * r.cons_at_k);
  if (r.greedy_accuracy >= 0) s += fmt::format("  greedy        {:.1f}%\n", 100 * r.greedy_accuracy);
  s += fmt::format("  format        {:.1f}%   (<think>...</think> answer)\n", 100 * r.format_rate);
  s += fmt::format("  mean length   {:.1f} tokens\n", r.mean_length);
  return s;
}

}  // namespace reason
