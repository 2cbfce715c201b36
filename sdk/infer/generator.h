// Batched generation with continuous batching: prompts are prefilled (in chunks bounded by a
// token budget) and decoded together; a sequence that finishes frees its slot for the next
// waiting prompt. Each request has its own sampling parameters and seeded RNG, so its output
// does not depend on which other requests run beside it (for a fixed build and thread count,
// up to floating-point differences of the batched matmul shape).
//
// Threads: generate() runs on the calling thread (compute is parallelised inside); the model
// may be shared by concurrent generate() calls. The callback is called on the calling thread.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

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

// Length cap: a sequence never grows past the model's max_position_embeddings. A request ends
// with FinishReason::Length at max_new_tokens generated tokens or when prompt + generated tokens
// reach max_position_embeddings, whichever comes first, so each sequence's KV cache holds at most
// max_position_embeddings positions.
// Throws InvalidArgument for empty prompts, prompts of max_position_embeddings tokens or more,
// out-of-range ids, bad sampling parameters or a share_prefix_with that is not an earlier request
// with the same prompt (checked before any work starts).
std::vector<GenResult> generate(const Model& model, std::span<const GenRequest> requests,
                                const TokenCallback& callback = {}, const GenerateOptions& opts = {});

// Runs `ids` through the model and returns how many tokens each MoE layer routed to each expert:
// [n_layers * n_experts], row-major by layer (dense layers' rows stay 0). Throws
// InvalidArgument for a dense model or bad ids.
std::vector<int64_t> expert_load(const Model& model, std::span<const int32_t> ids);

// What a score() call held (for tests): the LM head and log-softmax ran on blocks of at most
// chunk_rows positions, so the logits buffer never exceeded chunk_rows x vocab floats.
struct ScoreStats {
  int64_t chunk_rows = 0;       // the block size used
  int64_t blocks = 0;           // LM head blocks computed
  int64_t max_block_rows = 0;   // most rows of logits held at once
  int64_t logits_capacity = 0;  // floats the logits buffer held at its largest
};

struct ScoreOptions {
  // Positions per LM-head block: the extra memory of scoring is chunk_rows x vocab floats,
  // whatever the sequence length (never the [n x vocab] matrix).
  int64_t chunk_rows = 64;
  ScoreStats* stats = nullptr;  // when non-null, filled (not owned)
};

// Teacher-forced per-token logprobs: out[t] = log p(ids[t+1] | ids[..t]) at temperature 1.
// Throws InvalidArgument for fewer than 2 ids, more than max_position_embeddings ids,
// out-of-range ids or chunk_rows < 1.
std::vector<float> score(const Model& model, std::span<const int32_t> ids, const ScoreOptions& opts = {});

}  // namespace reason
