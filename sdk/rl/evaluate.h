// Evaluation with the DeepSeek-R1 protocol: pass@1 averaged over K samples at temperature 0.6 /
// top-p 0.95, cons@K (majority vote over the K samples' answers), and greedy accuracy. An answer
// is the last \boxed{} of a completion; correctness is math_accuracy_reward (sdk/rl/rewards.h).
// Threads: runs on the calling thread; nothing may train the model meanwhile.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/communicator.h"
#include "infer/sampler.h"
#include "model/model.h"

namespace reason {

struct EvalItem {
  std::vector<int32_t> ids;  // formatted, tokenized prompt
  std::string answer;        // gold
};

struct EvalOptions {
  int samples = 4;                 // K
  SamplingParams sampling;         // temperature / top-p / max_new_tokens of the K samples
  bool greedy = true;              // also decode greedily once per problem
  uint64_t seed = 0;               // sample j of problem i uses a seed derived from (seed, i, j)
  int max_active = 256;
  int64_t batch_problems = 32;     // problems per generate() call (progress granularity)
  // Called after each batch with (problems done, problems total).
  std::function<void(int64_t, int64_t)> on_progress;
  // Data parallelism: each rank of comm samples a contiguous share of the problems (with the
  // seeds a single process would use) and every rank gets the whole report. Null: this process.
  Communicator* comm = nullptr;
};

// The R1 paper's sampling settings (temperature 0.6, top-p 0.95), K = 4, 256 new tokens.
EvalOptions r1_eval_options();

struct EvalProblem {
  std::vector<std::string> samples;  // K completions
  std::vector<uint8_t> correct;      // per sample
  std::string majority;              // the majority answer ("" when no sample has one)
  bool majority_correct = false;
  std::string greedy;                // greedy completion (when enabled)
  bool greedy_correct = false;
};

struct EvalReport {
  int64_t problems = 0;
  int k = 0;
  double pass_at_1 = 0;        // mean over problems and samples of correctness
  double cons_at_k = 0;        // share of problems whose majority answer is correct
  double greedy_accuracy = -1; // -1 when greedy decoding was off
  double format_rate = 0;      // share of samples in the <think>...</think> answer format
  double mean_length = 0;      // mean sampled completion length in tokens
  double seconds = 0;
  std::vector<EvalProblem> details;
};

// Majority vote: answers are grouped by math_answers_equivalent; the largest group wins (ties:
// the group whose first member came first); samples without an answer do not vote. Returns ""
// when no sample has an answer.
std::string majority_answer(std::span<const std::string> completions);

EvalReport evaluate(const Model& model, std::span<const EvalItem> items, const EvalOptions& opts);

// {"problems", "k", "pass@1", "cons@k", "greedy", "format", "mean_length", "seconds"}.
nlohmann::json eval_summary_json(const EvalReport& r);
// A one-line-per-metric table for terminals.
std::string eval_table(const EvalReport& r);

}  // namespace reason
