#include "infer/generator.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace reason {

namespace {

struct Active {
  size_t req = 0;
  int slot = -1;
  int64_t prefilled = 0;  // prompt tokens already in the cache
  std::vector<int32_t> history;  // prompt + generated
  int32_t pending = -1;          // last sampled token, not yet in the cache
  Rng rng{0};
  std::optional<StreamDecoder> stream;
  std::string stop_window;  // reused buffer: the text's tail plus the new piece (stop strings)
  bool done = false;
};

// Where the earliest stop string starts in text + piece, searching only what can hold a new
// match: a bounded window of the text's last (longest stop string - 1) bytes plus the piece, so
// a token costs O(longest stop + piece) however long the text already is. Returns the byte
// offset in the whole text, or npos; `window` is scratch, `window_bytes` what was scanned.
size_t find_stop(const std::string& text, std::string_view piece, const std::vector<std::string>& stops,
                 std::string& window, size_t& window_bytes) {
  size_t longest = 0;
  for (const auto& ss : stops) longest = std::max(longest, ss.size());
  const size_t old_len = text.size();
  const size_t keep = std::min(old_len, longest - 1);  // stop strings are never empty (validated)
  const size_t base = old_len - keep;
  window.assign(text, base, keep);
  window.append(piece);
  window_bytes = window.size();
  size_t cut = std::string::npos;
  for (const auto& ss : stops) {
    // A match must end inside the piece: it starts after the text's last ss.size() - 1 bytes.
    const size_t from = keep >= ss.size() ? keep - ss.size() + 1 : 0;
    const size_t at = window.find(ss, from);
    if (at != std::string::npos) cut = std::min(cut, base + at);
  }
  return cut;
}

bool ends_request(const std::vector<int32_t>& eos, const SamplingParams& p, int32_t tok) {
  if (!p.ignore_eos && std::find(eos.begin(), eos.end(), tok) != eos.end()) return true;
  return std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), tok) != p.stop_token_ids.end();
}

}  // namespace

std::vector<GenResult> generate(const Model& model, std::span<const GenRequest> requests,
                                const TokenCallback& callback, const GenerateOptions& opts) {
  const ModelConfig& c = model.config();
  // followers[i]: the requests that reuse request i's prompt cache.
  std::vector<std::vector<size_t>> followers(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenRequest& r = requests[i];
    if (r.prompt.empty()) fail(ErrorCode::InvalidArgument, "generate: request {} has an empty prompt", i);
    for (size_t t = 0; t < r.prompt.size(); ++t)
      if (r.prompt[t] < 0 || r.prompt[t] >= c.vocab_size)
        fail(ErrorCode::InvalidArgument, "generate: request {}: token id {} at position {} is outside the vocabulary [0, {})",
             i, r.prompt[t], t, c.vocab_size);
    r.params.validate();
    if (int64_t(r.prompt.size()) >= c.max_position_embeddings)
      fail(ErrorCode::InvalidArgument,
           "generate: request {}: the prompt has {} tokens, which leaves no room to generate: the model's "
           "max_position_embeddings is {}",
           i, r.prompt.size(), c.max_position_embeddings);
    if (r.share_prefix_with != -1) {
      const int64_t j = r.share_prefix_with;
      if (j < 0 || j >= int64_t(i))
        fail(ErrorCode::InvalidArgument, "generate: request {}: share_prefix_with {} is not an earlier request", i, j);
      if (requests[size_t(j)].prompt != r.prompt)
        fail(ErrorCode::InvalidArgument, "generate: request {}: share_prefix_with {} has a different prompt", i, j);
      size_t root = size_t(j);
      while (requests[root].share_prefix_with != -1) root = size_t(requests[root].share_prefix_with);
      followers[root].push_back(i);
    }
  }
  std::vector<int32_t> eos = c.eos_token_ids;
  auto tok = model.tokenizer();
  if (tok && tok->eos_id()) eos.push_back(*tok->eos_id());

  GenerateStats local_stats;
  GenerateStats& stats = opts.stats ? *opts.stats : local_stats;
  stats = GenerateStats{};
  std::vector<GenResult> results(requests.size());
  KVCache cache = model.make_cache();
  ForwardScratch scratch;
  std::deque<size_t> waiting;
  for (size_t i = 0; i < requests.size(); ++i)
    if (requests[i].share_prefix_with == -1) waiting.push_back(i);
  std::vector<std::unique_ptr<Active>> active;
  const int64_t V = c.vocab_size;
  const int max_active = std::max(1, opts.max_active);

  auto start = [&](size_t req, int slot) {
    auto a = std::make_unique<Active>();
    a->req = req;
    a->slot = slot;
    a->history = requests[req].prompt;
    a->rng = Rng(requests[req].params.seed);
    if (tok) a->stream.emplace(*tok);
    return a;
  };
  auto finish = [&](Active& a, FinishReason why) {
    a.done = true;
    results[a.req].finish = why;
    cache.remove_sequence(a.slot);
  };
  // Takes the token sampled for `a` and handles streaming, stop strings and the end of the request.
  auto advance = [&](Active& a, const Sampled sm) {
    const GenRequest& rq = requests[a.req];
    GenResult& res = results[a.req];
    res.tokens.push_back(sm.token);
    res.logprobs.push_back(sm.logprob);
    a.history.push_back(sm.token);
    a.pending = sm.token;
    stats.generated_tokens += 1;

    const bool is_end = ends_request(eos, rq.params, sm.token);
    std::string piece;
    // Ids past the tokenizer's vocabulary (padding rows of the embedding) decode to nothing.
    if (a.stream && !is_end && sm.token < tok->vocab_size()) piece = a.stream->push(sm.token);
    // Stop strings: cut the text before the first stop string found in the new region.
    bool stop_string = false;
    if (!piece.empty() && !rq.params.stop_strings.empty()) {
      const size_t old_len = res.text.size();
      size_t scanned = 0;
      const size_t cut = find_stop(res.text, piece, rq.params.stop_strings, a.stop_window, scanned);
      stats.stop_window_max_bytes = std::max<int64_t>(stats.stop_window_max_bytes, int64_t(scanned));
      if (cut != std::string::npos) {
        stop_string = true;
        res.stop_text = cut >= old_len ? piece.substr(cut - old_len) : res.text.substr(cut) + piece;
        piece = cut > old_len ? piece.substr(0, cut - old_len) : std::string();
        res.text.resize(std::min(old_len, cut));
      }
    }
    // The last token of a request also carries any bytes still held by the stream decoder
    // (an incomplete UTF-8 sequence renders as U+FFFD, as decode() would), so the streamed
    // pieces concatenate to the final text (but for text streamed before a stop string that
    // began in it was complete, which stays sent). A sequence ends at max_new_tokens, or when
    // prompt + generated tokens reach max_position_embeddings (no position past it is computed).
    const bool at_limit = int64_t(res.tokens.size()) >= rq.params.max_new_tokens ||
                          int64_t(rq.prompt.size() + res.tokens.size()) >= c.max_position_embeddings;
    if (a.stream && !stop_string && (is_end || at_limit)) piece += a.stream->flush();
    res.text += piece;
    bool keep_going = true;
    if (callback) keep_going = callback(a.req, sm.token, sm.logprob, piece);
    if (is_end || stop_string) {
      finish(a, FinishReason::Stop);
    } else if (!keep_going) {
      finish(a, FinishReason::Callback);
    } else if (at_limit) {
      finish(a, FinishReason::Length);
    }
  };

  while (!waiting.empty() || !active.empty()) {
    // Admit waiting requests; a request is admitted together with the requests sharing its prompt.
    while (!waiting.empty()) {
      const size_t need = 1 + followers[waiting.front()].size();
      if (!active.empty() && active.size() + need > size_t(max_active)) break;
      const size_t req = waiting.front();
      waiting.pop_front();
      active.push_back(start(req, cache.add_sequence()));
    }
    // One step: decode tokens for sequences past their prompt, prompt chunks for the others.
    std::vector<SeqChunk> chunks;
    std::vector<Active*> owners;
    int64_t budget = std::max<int64_t>(1, opts.prefill_token_budget);
    for (auto& ap : active) {
      Active& a = *ap;
      const auto& prompt = requests[a.req].prompt;
      if (a.prefilled < int64_t(prompt.size())) {
        if (budget <= 0) continue;
        const int64_t n = std::min<int64_t>(budget, int64_t(prompt.size()) - a.prefilled);
        chunks.push_back(SeqChunk{a.slot, prompt.data() + a.prefilled, n, false});
        budget -= n;
        stats.prompt_tokens_computed += n;
      } else {
        chunks.push_back(SeqChunk{a.slot, &a.pending, 1, false});
      }
      owners.push_back(&a);
    }
    model.forward_device(chunks, cache, scratch);
    stats.forward_calls += 1;
    stats.kv_peak_bytes = std::max<int64_t>(stats.kv_peak_bytes, int64_t(cache.bytes()));

    // The rows that sample now (sequences past their prompt, and the requests forked from a prompt
    // that just completed, from the same row), sampled by the backend in one call, then taken in order.
    std::vector<std::unique_ptr<Active>> forked;
    std::vector<Active*> takers;
    std::vector<kernels::SampleRow> rows;
    auto wants = [&](Active& a, size_t row) {
      kernels::SampleRow r = sample_row_of(requests[a.req].params, a.history, a.rng);
      r.row = int64_t(row);
      rows.push_back(r);
      takers.push_back(&a);
    };
    for (size_t i = 0; i < chunks.size(); ++i) {
      Active& a = *owners[i];
      const GenRequest& rq = requests[a.req];
      if (a.prefilled < int64_t(rq.prompt.size())) {
        a.prefilled += chunks[i].n;
        if (a.prefilled < int64_t(rq.prompt.size())) continue;  // more prompt to go
        // The prompt is complete: the requests sharing it start from its cache blocks, shared
        // (taken before this request's first token can end it and free the slot).
        wants(a, i);
        for (size_t f : followers[a.req]) {
          auto b = start(f, cache.fork_sequence(a.slot, a.prefilled));
          b->prefilled = a.prefilled;
          stats.prompt_tokens_shared += a.prefilled;
          wants(*b, i);
          forked.push_back(std::move(b));
        }
      } else {
        wants(a, i);
      }
    }
    kernels::SampleArgs sa;
    sa.logits = scratch.logits.data();
    sa.n = V;
    sa.rows = rows.data();
    sa.n_rows = int64_t(rows.size());
    model.backend().sample_rows(sa);
    for (size_t k = 0; k < rows.size(); ++k) advance(*takers[k], Sampled{rows[k].token, rows[k].logprob});
    active.erase(std::remove_if(active.begin(), active.end(), [](const auto& a) { return a->done; }), active.end());
    for (auto& b : forked)
      if (!b->done) active.push_back(std::move(b));
  }
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
