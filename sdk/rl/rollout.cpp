#include "rl/rollout.h"

#include <chrono>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "train/logprob_pass.h"

namespace reason {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

float overlong_penalty(int64_t length, const OverlongShaping& o) {
  if (o.max_length <= 0) return 0.0f;
  const int64_t free_len = o.max_length - o.cache;
  if (length <= free_len) return 0.0f;
  if (length > o.max_length || o.cache <= 0) return -o.weight;
  return o.weight * float(double(free_len - length) / double(o.cache));
}

uint64_t rollout_seed(uint64_t prompt_seed, int64_t j) {
  uint64_t x = prompt_seed + 0x9e3779b97f4a7c15ULL * uint64_t(j + 1);
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

namespace {

// When a turn stopped at the tool call's closing tag: the text the generator cut, the tag and
// whatever its last token carried after it (the text then matches the ids). Empty otherwise.
std::string call_tail(const GenResult& r, const ToolOptions& t) {
  if (r.finish != FinishReason::Stop || r.stop_text.compare(0, t.call_close.size(), t.call_close) != 0) return {};
  return r.stop_text;
}

// The call that ends `text`: JSON calls must open after `from` (the end of the last tool
// response: an opening tag of an earlier turn is not this call's); a raw tool gets the text since
// the last opening tag anywhere, earlier calls and responses included (a tool may use them: see
// examples/cpp/tool_grpo.cpp).
ParsedToolCall last_call(const std::string& text, size_t from, const ToolOptions& t) {
  const size_t at = text.rfind(t.call_open);
  if (at == std::string::npos || (t.raw_tool.empty() && at < from))
    return ParsedToolCall{{}, {}, "no " + t.call_open + " before " + t.call_close};
  const std::string_view body = std::string_view(text).substr(at + t.call_open.size());
  if (!t.raw_tool.empty()) return ParsedToolCall{t.raw_tool, std::string(body), {}};
  return parse_tool_call(body);
}

// A tool response's ids: the tags may hold special tokens (a chat template's), the tool's text is
// encoded as plain text (a result cannot inject <|im_end|> or a turn marker).
std::vector<int32_t> response_ids(const Tokenizer& tok, const ToolOptions& t, const std::string& result) {
  std::vector<int32_t> ids = tok.encode(t.result_open);
  const std::vector<int32_t> body = tok.encode(result, false, /*parse_special=*/false), close = tok.encode(t.result_close);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.insert(ids.end(), close.begin(), close.end());
  return ids;
}

// Runs the tool calls of rollouts whose last turn stopped at one and samples their next turns,
// until none calls a tool (results[k]: rollout k's last turn).
void continue_with_tools(const Model& model, std::span<const RolloutPrompt> prompts, const RolloutOptions& opts,
                         std::vector<Rollout>& out, std::vector<GenResult> last, GenerateStats& gs,
                         RolloutStats* stats) {
  const ToolOptions& t = *opts.tools;
  const Tokenizer& tok = *model.require_tokenizer();
  const size_t G = size_t(opts.group_size);
  const int64_t max_new = opts.sampling.max_new_tokens, max_pos = model.config().max_position_embeddings;
  std::vector<size_t> turn_start(out.size(), 0);  // where each rollout's current turn begins in its text
  for (int turn = 1;; ++turn) {
    std::vector<GenRequest> reqs;
    std::vector<size_t> who;
    for (size_t k = 0; k < out.size(); ++k) {
      Rollout& r = out[k];
      const std::string tail = call_tail(last[k], t);
      if (tail.empty()) continue;
      const ParsedToolCall call = last_call(r.text, turn_start[k], t);
      r.text += tail;
      if (r.tool_calls >= t.max_calls) {  // ends on a call it may not make: no EOS, as truncated
        r.truncated = true;
        continue;
      }
      const auto t0 = std::chrono::steady_clock::now();
      bool failed = false;
      const std::string result = run_tool_call(t, call, &failed);
      if (stats) stats->tool_seconds += seconds_since(t0);
      r.tool_calls += 1;
      r.tool_errors += failed ? 1 : 0;
      const std::vector<int32_t> ids = response_ids(tok, t, result);
      const int64_t len = int64_t(r.completion.size() + ids.size());
      if (len >= max_new || int64_t(prompts[r.prompt].ids.size()) + len + 1 >= max_pos) {
        r.truncated = true;  // no room for the result and an answer: ends here, without it
        continue;
      }
      r.text += t.result_open + result + t.result_close;
      turn_start[k] = r.text.size();
      r.completion.insert(r.completion.end(), ids.begin(), ids.end());
      r.logprobs.insert(r.logprobs.end(), ids.size(), 0.0f);
      r.mask.resize(r.completion.size() - ids.size(), 1);
      r.mask.insert(r.mask.end(), ids.size(), 0);
      GenRequest q;
      q.prompt = prompts[r.prompt].ids;
      q.prompt.insert(q.prompt.end(), r.completion.begin(), r.completion.end());
      q.params = opts.sampling;
      q.params.stop_strings.push_back(t.call_close);
      q.params.max_new_tokens = int32_t(max_new - len);
      q.params.seed = rollout_seed(prompts[r.prompt].seed, int64_t(k % G)) ^ (0x5851f42d4c957f2dULL * uint64_t(turn));
      reqs.push_back(std::move(q));
      who.push_back(k);
    }
    for (size_t k = 0; k < out.size(); ++k) last[k].finish = FinishReason::Length;  // handled: not again
    if (reqs.empty()) break;
    GenerateOptions go;
    go.max_active = std::max(opts.max_active, 1);
    GenerateStats turn_stats;
    go.stats = &turn_stats;
    auto res = generate(model, reqs, {}, go);
    gs.prompt_tokens_computed += turn_stats.prompt_tokens_computed;
    gs.generated_tokens += turn_stats.generated_tokens;
    for (size_t q = 0; q < who.size(); ++q) {
      Rollout& r = out[who[q]];
      r.completion.insert(r.completion.end(), res[q].tokens.begin(), res[q].tokens.end());
      r.logprobs.insert(r.logprobs.end(), res[q].logprobs.begin(), res[q].logprobs.end());
      r.mask.resize(r.completion.size(), 1);
      r.text += res[q].text;
      r.truncated = res[q].finish == FinishReason::Length;
      last[who[q]] = std::move(res[q]);
    }
  }
  if (stats)
    for (const Rollout& r : out) stats->tool_calls += r.tool_calls, stats->tool_errors += r.tool_errors;
}

}  // namespace

std::vector<Rollout> sample_rollouts(const Model& model, std::span<const RolloutPrompt> prompts,
                                     const RolloutOptions& opts, RolloutStats* stats) {
  if (opts.group_size < 1) fail(ErrorCode::InvalidArgument, "rollouts: group_size must be >= 1 (got {})", opts.group_size);
  const bool tools = opts.tools && opts.tools->enabled();
  if (tools && opts.tools->call_close.empty()) fail(ErrorCode::InvalidArgument, "rollouts: the tool call's closing tag is empty");
  const auto t0 = std::chrono::steady_clock::now();
  const size_t G = size_t(opts.group_size);
  std::vector<GenRequest> reqs;
  reqs.reserve(prompts.size() * G);
  for (size_t i = 0; i < prompts.size(); ++i)
    for (size_t j = 0; j < G; ++j) {
      GenRequest r;
      r.prompt = prompts[i].ids;
      r.params = opts.sampling;
      r.params.seed = rollout_seed(prompts[i].seed, int64_t(j));
      if (tools) r.params.stop_strings.push_back(opts.tools->call_close);
      r.share_prefix_with = j == 0 ? -1 : int64_t(i * G);
      reqs.push_back(std::move(r));
    }
  GenerateStats gs;
  GenerateOptions go;
  go.max_active = std::max(opts.max_active, int(G));
  go.stats = &gs;
  auto res = generate(model, reqs, {}, go);
  std::vector<Rollout> out(res.size());
  for (size_t k = 0; k < res.size(); ++k) {
    Rollout& r = out[k];
    r.prompt = k / G;
    r.completion = res[k].tokens;
    r.logprobs = res[k].logprobs;
    r.text = res[k].text;
    r.truncated = res[k].finish == FinishReason::Length;
  }
  if (tools) {
    continue_with_tools(model, prompts, opts, out, std::move(res), gs, stats);
    for (Rollout& r : out)
      if (r.tool_calls == 0) r.mask.clear();  // all sampled
  }
  if (stats) {
    stats->prompt_tokens_computed += gs.prompt_tokens_computed;
    stats->prompt_tokens_shared += gs.prompt_tokens_shared;
    stats->generated_tokens += gs.generated_tokens;
    stats->generate_seconds += seconds_since(t0);
  }
  return out;
}

void score_rollouts(std::vector<Rollout>& rollouts, std::span<const RolloutPrompt> prompts, RewardRunner& runner,
                    const OverlongShaping& overlong, RolloutStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<RewardInput> inputs(rollouts.size());
  for (size_t k = 0; k < rollouts.size(); ++k) {
    const RolloutPrompt& p = prompts[rollouts[k].prompt];
    inputs[k] = RewardInput{p.text, rollouts[k].text, p.answer, p.extra_json};
  }
  auto outcomes = runner.score(inputs);
  for (size_t k = 0; k < rollouts.size(); ++k) {
    Rollout& r = rollouts[k];
    r.reward_terms = outcomes[k].values;
    r.overlong_penalty = overlong_penalty(int64_t(r.completion.size()), overlong);
    r.reward = outcomes[k].total + r.overlong_penalty;
    r.reward_failed = outcomes[k].failed;
    r.reward_error = outcomes[k].error;
    if (stats && r.reward_failed) stats->reward_failures += 1;
  }
  if (stats) stats->reward_seconds += seconds_since(t0);
}

bool group_rewards_tied(std::span<const Rollout> group) {
  for (const Rollout& r : group)
    if (r.reward != group.front().reward) return false;
  return true;
}

std::vector<GrpoSample> to_grpo_samples(std::span<const Rollout> rollouts, std::span<const RolloutPrompt> prompts,
                                        bool sampler_logprobs_as_sampling) {
  std::vector<GrpoSample> out(rollouts.size());
  for (size_t k = 0; k < rollouts.size(); ++k) {
    out[k].prompt = prompts[rollouts[k].prompt].ids;
    out[k].completion = rollouts[k].completion;
    out[k].reward = rollouts[k].reward;
    (sampler_logprobs_as_sampling ? out[k].sampling_logprobs : out[k].old_logprobs) = rollouts[k].logprobs;
    out[k].mask = rollouts[k].mask;
    out[k].truncated = rollouts[k].truncated;
  }
  return out;
}

void fill_reference_logprobs(const Model& model, std::span<GrpoSample> samples, float temperature,
                             int64_t batch_tokens) {
  LogprobPass pass;
  size_t i = 0;
  while (i < samples.size()) {
    std::vector<std::vector<int32_t>> seqs;
    std::vector<uint8_t> need;  // completion targets only
    size_t j = i;
    int64_t tokens = 0;
    while (j < samples.size() && (j == i || tokens < batch_tokens)) {
      append_completion_sequence(seqs, need, samples[j].prompt, samples[j].completion);
      tokens += int64_t(seqs.back().size());
      ++j;
    }
    const auto lp = pass.forward(model, seqs, temperature, need);
    size_t off = 0;
    for (size_t k = i; k < j; ++k) {
      const size_t n = seqs[k - i].size() - 1, c = samples[k].completion.size();
      samples[k].ref_logprobs.assign(lp.begin() + long(off + n - c), lp.begin() + long(off + n));
      off += n;
    }
    i = j;
  }
}

}  // namespace reason
