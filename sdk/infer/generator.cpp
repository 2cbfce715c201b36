#include "infer/generator.h"

#include <algorithm>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace reason {

std::vector<GenResult> generate(const Model& model, std::span<const GenRequest> requests,
                                const TokenCallback& callback, const GenerateOptions& opts) {
  std::vector<GenResult> results(requests.size());
  ScheduledTokenCallback on_token;
  if (callback)
    on_token = [&](const TokenEvent& e) { return callback(size_t(e.id), e.token, e.logprob, e.text); };
  BatchScheduler batch(model, opts, on_token, [&](uint64_t id, GenResult&& r) { results[size_t(id)] = std::move(r); });
  for (const GenRequest& r : requests) batch.add(r);  // every request is checked before any work starts
  while (!batch.idle()) batch.step();
  if (opts.stats) *opts.stats = batch.stats();
  return results;
}

std::vector<int64_t> expert_load(const Model& model, std::span<const int32_t> ids) {
  if (model.config().n_experts == 0)
    fail(ErrorCode::InvalidArgument, "expert_load: {} is a dense model (no experts)", model.config().architecture);
  if (ids.empty()) fail(ErrorCode::InvalidArgument, "expert_load: empty prompt");
  KVCache cache = model.make_cache();
  ForwardScratch scratch;
  std::vector<int64_t> load;
  scratch.expert_load = &load;
  SeqChunk ch{cache.add_sequence(), ids.data(), int64_t(ids.size()), false};
  model.forward_device(std::span<const SeqChunk>(&ch, 1), cache, scratch);
  return load;
}

std::vector<float> score(const Model& model, std::span<const int32_t> ids, const ScoreOptions& opts) {
  if (ids.size() < 2) fail(ErrorCode::InvalidArgument, "score: need at least 2 tokens (got {})", ids.size());
  if (int64_t(ids.size()) > model.config().max_position_embeddings)
    fail(ErrorCode::InvalidArgument, "score: {} tokens is more than the model's max_position_embeddings ({})",
         ids.size(), model.config().max_position_embeddings);
  if (opts.chunk_rows < 1) fail(ErrorCode::InvalidArgument, "score: chunk_rows must be >= 1 (got {})", opts.chunk_rows);
  ScoreStats local;
  ScoreStats& st = opts.stats ? *opts.stats : local;
  st = ScoreStats{};
  st.chunk_rows = opts.chunk_rows;
  KVCache cache = model.make_cache();
  ForwardScratch scratch;
  kernels::Backend& be = model.backend();
  const int64_t V = model.config().vocab_size, N = int64_t(ids.size()) - 1;
  // The targets and their logprobs in the backend's memory; the log-softmax runs there too.
  DeviceArray<int32_t> targets;
  targets.upload(be, ids.subspan(1));
  DeviceArray<float> lp(be, size_t(N)), lse(be, size_t(std::min<int64_t>(opts.chunk_rows, N)));
  // The LM head runs on blocks of positions; each block's rows become logprobs at once.
  scratch.logits_chunk_rows = opts.chunk_rows;
  scratch.logits_sink = [&](int64_t row0, int64_t n, const float* block) {
    st.blocks += 1;
    st.max_block_rows = std::max(st.max_block_rows, n);
    st.logits_capacity = std::max(st.logits_capacity, int64_t(scratch.logits.size()));
    const int64_t m = std::min(n, N - row0);  // the last position predicts nothing
    if (m > 0) be.logsoftmax_rows(block, m, V, 1.0f, targets.data() + row0, lse.data(), lp.data() + row0, nullptr);
  };
  const int slot = cache.add_sequence();
  SeqChunk ch{slot, ids.data(), int64_t(ids.size()), true};
  model.forward_device(std::span<const SeqChunk>(&ch, 1), cache, scratch);
  return lp.download();
}

}  // namespace reason
