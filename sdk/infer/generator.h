// Batched generation with continuous batching (a BatchScheduler given every request at once):
// prompts are prefilled (in chunks bounded by a token budget) and decoded together; a sequence
// that finishes frees its slot for the next waiting prompt. Each request has its own sampling parameters and seeded RNG, so its output
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

#include "infer/batch_scheduler.h"
#include "model/model.h"

namespace reason {

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
