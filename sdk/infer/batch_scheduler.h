// A live continuous batch: requests join at any time; each step() prefills waiting prompts (in
// chunks bounded by a token budget) and decodes every live sequence in one forward pass, samples
// them in one backend call, streams each new token's text, and frees the slot of a sequence that
// finished or was cancelled at once, for the next waiting prompt. generate() gives it every
// request at once; `reason serve` feeds it from HTTP requests as they arrive. Each request has its
// own sampling parameters and seeded RNG, so its output does not depend on which other requests
// run beside it (for a fixed build and thread count, up to floating-point differences of the
// batched matmul shape).
//
// Threads: one thread makes every call (the scheduler owns its KV cache and scratch); the model
// may be shared with other schedulers and generate() calls. The callbacks run on that thread,
// inside step().
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "infer/kv_cache.h"
#include "infer/sampler.h"
#include "model/model.h"

namespace reason {

enum class FinishReason { Length = 0, Stop = 1, Callback = 2 };

struct GenRequest {
  std::vector<int32_t> prompt;
  SamplingParams params;
  // Prefix sharing (GRPO groups, best-of-n): the index of an EARLIER request with the identical
  // prompt. The prompt's keys/values are then computed once, by that request, and its cache
  // blocks are shared with this request's slot (KVCache::fork_sequence, no copy but the last
  // partly filled block's, on first write) right after the prompt's last position;
  // this request samples its first token from the same logits with its own seed. -1: none.
  int64_t share_prefix_with = -1;
  // Top logprobs reported with each token (TokenEvent; 0: none), at most kMaxTopLogprobs.
  int32_t top_logprobs = 0;
  static constexpr int32_t kMaxTopLogprobs = 20;
};

struct GenResult {
  std::vector<int32_t> tokens;   // generated ids, including the EOS/stop token that ended it
  std::vector<float> logprobs;   // one per token: log softmax(logits / T)[token]
  std::string text;              // decoded text, without EOS and cut before a stop string
  std::string stop_text;         // what was cut: the stop string that ended it and the rest of its token's text
  FinishReason finish = FinishReason::Length;
};

// Called once per generated token; `text` is the newly completed UTF-8 text (may be empty).
// Return false to stop that request (finish reason Callback).
using TokenCallback = std::function<bool(size_t request, int32_t token, float logprob, std::string_view text)>;

// What a generate() call computed (for tests and throughput figures).
struct GenerateStats {
  int64_t prompt_tokens_computed = 0;  // prompt positions run through the model
  int64_t prompt_tokens_shared = 0;    // prompt positions taken from another request's cache (shared blocks)
  int64_t generated_tokens = 0;
  int64_t forward_calls = 0;
  // Largest window a stop-string search scanned: at most the longest stop string - 1 plus one
  // token's text (the search never rescans the whole completion).
  int64_t stop_window_max_bytes = 0;
  // Most KV-cache bytes in use at once (blocks shared by a group's samples count once).
  int64_t kv_peak_bytes = 0;
};

struct GenerateOptions {
  int max_active = 64;              // sequences decoded together (a group sharing a prefix is admitted whole)
  int64_t prefill_token_budget = 512;  // prompt tokens per forward step
  GenerateStats* stats = nullptr;   // when non-null, filled with this call's counts (not owned)
};

// One generated token of request `id`: `text` is the newly completed UTF-8 text (may be empty);
// top_ids / top_logprobs the request's top_logprobs most likely tokens at that position.
struct TokenEvent {
  uint64_t id = 0;
  int32_t token = 0;
  float logprob = 0.0f;
  std::string_view text;
  std::span<const int32_t> top_ids;
  std::span<const float> top_logprobs;
};
// Called once per generated token; return false to stop that request (finish reason Callback).
using ScheduledTokenCallback = std::function<bool(const TokenEvent& event)>;
// Called once when request `id` ends (finished, stopped or cancelled), with its result.
using ScheduledDoneCallback = std::function<void(uint64_t id, GenResult&& result)>;

class BatchScheduler {
 public:
  // `model` must outlive the scheduler. opts.stats, when set, accumulates this scheduler's counts.
  BatchScheduler(const Model& model, const GenerateOptions& opts, ScheduledTokenCallback on_token = {},
                 ScheduledDoneCallback on_done = {});
  ~BatchScheduler();
  BatchScheduler(const BatchScheduler&) = delete;
  BatchScheduler& operator=(const BatchScheduler&) = delete;

  // Checks and queues a request; returns its id (0, 1, ... in the order added). Throws
  // InvalidArgument (naming the request by its would-be id) for an empty prompt, out-of-range ids,
  // a prompt of max_position_embeddings tokens or more, bad sampling parameters, or a
  // share_prefix_with that is not a waiting request added earlier with the same prompt; nothing
  // is queued then.
  uint64_t add(GenRequest request);
  // Ends request `id` at the next step (finish reason Callback; on_done reports what it generated).
  // Unknown or finished ids are ignored.
  void cancel(uint64_t id);
  // One step (admission, one forward pass, sampling); nothing when idle().
  void step();
  bool idle() const { return waiting_.empty() && active_.empty(); }
  size_t waiting() const { return waiting_.size(); }
  size_t active() const { return active_.size(); }
  const GenerateStats& stats() const { return stats_; }

 private:
  struct Entry;
  struct Active;
  std::unique_ptr<Active> start(uint64_t id, int slot);
  void finish(Active& a, FinishReason why);
  void advance(Active& a, Sampled sm);

  const Model& model_;
  GenerateOptions opts_;
  ScheduledTokenCallback on_token_;
  ScheduledDoneCallback on_done_;
  std::vector<int32_t> eos_;
  KVCache cache_;
  ForwardScratch scratch_;
  uint64_t next_id_ = 0;
  std::unordered_map<uint64_t, std::unique_ptr<Entry>> entries_;  // requests not yet done
  std::deque<uint64_t> waiting_;                                   // roots of prefix groups, in order
  std::vector<std::unique_ptr<Active>> active_;
  GenerateStats stats_;
};

}  // namespace reason
