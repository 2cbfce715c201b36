#include "infer/batch_scheduler.h"

#include <algorithm>
#include <optional>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace reason {

namespace {

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

struct BatchScheduler::Entry {
  GenRequest req;
  GenResult res;
  std::vector<uint64_t> followers;  // requests that reuse this one's prompt cache
  bool cancelled = false;
};

struct BatchScheduler::Active {
  uint64_t id = 0;
  Entry* e = nullptr;
  int slot = -1;
  int64_t prefilled = 0;         // prompt tokens already in the cache
  std::vector<int32_t> history;  // prompt + generated
  int32_t pending = -1;          // last sampled token, not yet in the cache
  Rng rng{0};
  std::optional<StreamDecoder> stream;
  std::string stop_window;  // reused buffer: the text's tail plus the new piece (stop strings)
  std::vector<int32_t> top_ids;  // this step's top logprobs (GenRequest::top_logprobs each)
  std::vector<float> top_lps;
  bool done = false;
};

BatchScheduler::BatchScheduler(const Model& model, const GenerateOptions& opts, ScheduledTokenCallback on_token,
                               ScheduledDoneCallback on_done)
    : model_(model), opts_(opts), on_token_(std::move(on_token)), on_done_(std::move(on_done)), cache_(model.make_cache()) {
  eos_ = model.config().eos_token_ids;
  auto tok = model.tokenizer();
  if (tok && tok->eos_id()) eos_.push_back(*tok->eos_id());
}

BatchScheduler::~BatchScheduler() = default;

uint64_t BatchScheduler::add(GenRequest r) {
  const ModelConfig& c = model_.config();
  const uint64_t i = next_id_;
  if (r.prompt.empty()) fail(ErrorCode::InvalidArgument, "generate: request {} has an empty prompt", i);
  for (size_t t = 0; t < r.prompt.size(); ++t)
    if (r.prompt[t] < 0 || r.prompt[t] >= c.vocab_size)
      fail(ErrorCode::InvalidArgument, "generate: request {}: token id {} at position {} is outside the vocabulary [0, {})", i,
           r.prompt[t], t, c.vocab_size);
  r.params.validate();
  if (r.top_logprobs < 0 || r.top_logprobs > GenRequest::kMaxTopLogprobs)
    fail(ErrorCode::InvalidArgument, "generate: request {}: top_logprobs must be in [0, {}] (got {})", i,
         GenRequest::kMaxTopLogprobs, r.top_logprobs);
  if (int64_t(r.prompt.size()) >= c.max_position_embeddings)
    fail(ErrorCode::InvalidArgument,
         "generate: request {}: the prompt has {} tokens, which leaves no room to generate: the model's "
         "max_position_embeddings is {}",
         i, r.prompt.size(), c.max_position_embeddings);
  Entry* root = nullptr;
  if (r.share_prefix_with != -1) {
    const int64_t j = r.share_prefix_with;
    auto it = j >= 0 ? entries_.find(uint64_t(j)) : entries_.end();
    if (j < 0 || uint64_t(j) >= i) fail(ErrorCode::InvalidArgument, "generate: request {}: share_prefix_with {} is not an earlier request", i, j);
    if (it == entries_.end())
      fail(ErrorCode::InvalidArgument, "generate: request {}: share_prefix_with {} has already started", i, j);
    if (it->second->req.prompt != r.prompt)
      fail(ErrorCode::InvalidArgument, "generate: request {}: share_prefix_with {} has a different prompt", i, j);
    uint64_t rid = uint64_t(j);
    while (entries_.at(rid)->req.share_prefix_with != -1) rid = uint64_t(entries_.at(rid)->req.share_prefix_with);
    if (std::find(waiting_.begin(), waiting_.end(), rid) == waiting_.end())
      fail(ErrorCode::InvalidArgument, "generate: request {}: share_prefix_with {} has already started", i, j);
    root = entries_.at(rid).get();
  }
  auto e = std::make_unique<Entry>();
  e->req = std::move(r);
  if (root) root->followers.push_back(i);
  else waiting_.push_back(i);
  entries_.emplace(i, std::move(e));
  ++next_id_;
  return i;
}

void BatchScheduler::cancel(uint64_t id) {
  auto it = entries_.find(id);
  if (it != entries_.end()) it->second->cancelled = true;
}

std::unique_ptr<BatchScheduler::Active> BatchScheduler::start(uint64_t id, int slot) {
  auto a = std::make_unique<Active>();
  a->id = id;
  a->e = entries_.at(id).get();
  a->slot = slot;
  a->history = a->e->req.prompt;
  a->rng = Rng(a->e->req.params.seed);
  a->top_ids.resize(size_t(a->e->req.top_logprobs));
  a->top_lps.resize(size_t(a->e->req.top_logprobs));
  if (auto tok = model_.tokenizer()) a->stream.emplace(*tok);
  return a;
}

void BatchScheduler::finish(Active& a, FinishReason why) {
  a.done = true;
  a.e->res.finish = why;
  cache_.remove_sequence(a.slot);
  auto node = entries_.extract(a.id);
  a.e = nullptr;
  if (on_done_) on_done_(a.id, std::move(node.mapped()->res));
}

// Takes the token sampled for `a` and handles streaming, stop strings and the end of the request.
void BatchScheduler::advance(Active& a, const Sampled sm) {
  const ModelConfig& c = model_.config();
  const GenRequest& rq = a.e->req;
  GenResult& res = a.e->res;
  res.tokens.push_back(sm.token);
  res.logprobs.push_back(sm.logprob);
  a.history.push_back(sm.token);
  a.pending = sm.token;
  stats_.generated_tokens += 1;

  const bool is_end = ends_request(eos_, rq.params, sm.token);
  std::string piece;
  // Ids past the tokenizer's vocabulary (padding rows of the embedding) decode to nothing.
  if (a.stream && !is_end && sm.token < model_.tokenizer()->vocab_size()) piece = a.stream->push(sm.token);
  // Stop strings: cut the text before the first stop string found in the new region.
  bool stop_string = false;
  if (!piece.empty() && !rq.params.stop_strings.empty()) {
    const size_t old_len = res.text.size();
    size_t scanned = 0;
    const size_t cut = find_stop(res.text, piece, rq.params.stop_strings, a.stop_window, scanned);
    stats_.stop_window_max_bytes = std::max<int64_t>(stats_.stop_window_max_bytes, int64_t(scanned));
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
  if (on_token_) keep_going = on_token_(TokenEvent{a.id, sm.token, sm.logprob, piece, a.top_ids, a.top_lps});
  if (is_end || stop_string) {
    finish(a, FinishReason::Stop);
  } else if (!keep_going || a.e->cancelled) {
    finish(a, FinishReason::Callback);
  } else if (at_limit) {
    finish(a, FinishReason::Length);
  }
}

void BatchScheduler::step() {
  // Cancelled requests leave first: waiting ones (with their followers) and live ones.
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    Entry& e = *entries_.at(*it);
    if (!e.cancelled) {
      ++it;
      continue;
    }
    std::vector<uint64_t> ids{*it};
    ids.insert(ids.end(), e.followers.begin(), e.followers.end());
    it = waiting_.erase(it);
    for (uint64_t id : ids) {
      auto node = entries_.extract(id);
      node.mapped()->res.finish = FinishReason::Callback;
      if (on_done_) on_done_(id, std::move(node.mapped()->res));
    }
  }
  for (auto& ap : active_)
    if (ap->e->cancelled) finish(*ap, FinishReason::Callback);
  active_.erase(std::remove_if(active_.begin(), active_.end(), [](const auto& a) { return a->done; }), active_.end());
  if (idle()) return;
  const ModelConfig& c = model_.config();
  const int max_active = std::max(1, opts_.max_active);
  // Admit waiting requests; a request is admitted together with the requests sharing its prompt.
  while (!waiting_.empty()) {
    const size_t need = 1 + entries_.at(waiting_.front())->followers.size();
    if (!active_.empty() && active_.size() + need > size_t(max_active)) break;
    const uint64_t id = waiting_.front();
    waiting_.pop_front();
    active_.push_back(start(id, cache_.add_sequence()));
  }
  // One step: decode tokens for sequences past their prompt, prompt chunks for the others.
  std::vector<SeqChunk> chunks;
  std::vector<Active*> owners;
  int64_t budget = std::max<int64_t>(1, opts_.prefill_token_budget);
  for (auto& ap : active_) {
    Active& a = *ap;
    const auto& prompt = a.e->req.prompt;
    if (a.prefilled < int64_t(prompt.size())) {
      if (budget <= 0) continue;
      const int64_t n = std::min<int64_t>(budget, int64_t(prompt.size()) - a.prefilled);
      chunks.push_back(SeqChunk{a.slot, prompt.data() + a.prefilled, n, false});
      budget -= n;
      stats_.prompt_tokens_computed += n;
    } else {
      chunks.push_back(SeqChunk{a.slot, &a.pending, 1, false});
    }
    owners.push_back(&a);
  }
  model_.forward_device(chunks, cache_, scratch_);
  stats_.forward_calls += 1;
  stats_.kv_peak_bytes = std::max<int64_t>(stats_.kv_peak_bytes, int64_t(cache_.bytes()));

  // The rows that sample now (sequences past their prompt, and the requests forked from a prompt
  // that just completed, from the same row), sampled by the backend in one call, then taken in order.
  std::vector<std::unique_ptr<Active>> forked;
  std::vector<Active*> takers;
  std::vector<kernels::SampleRow> rows;
  auto wants = [&](Active& a, size_t row) {
    kernels::SampleRow r = sample_row_of(a.e->req.params, a.history, a.rng, int64_t(a.e->req.prompt.size()));
    r.row = int64_t(row);
    r.top_n = a.e->req.top_logprobs;
    r.top_ids = a.top_ids.data();
    r.top_logprobs = a.top_lps.data();
    rows.push_back(r);
    takers.push_back(&a);
  };
  for (size_t i = 0; i < chunks.size(); ++i) {
    Active& a = *owners[i];
    const GenRequest& rq = a.e->req;
    if (a.prefilled < int64_t(rq.prompt.size())) {
      a.prefilled += chunks[i].n;
      if (a.prefilled < int64_t(rq.prompt.size())) continue;  // more prompt to go
      // The prompt is complete: the requests sharing it start from its cache blocks, shared
      // (taken before this request's first token can end it and free the slot).
      wants(a, i);
      for (uint64_t f : a.e->followers) {
        auto b = start(f, cache_.fork_sequence(a.slot, a.prefilled));
        b->prefilled = a.prefilled;
        stats_.prompt_tokens_shared += a.prefilled;
        wants(*b, i);
        forked.push_back(std::move(b));
      }
    } else {
      wants(a, i);
    }
  }
  kernels::SampleArgs sa;
  sa.logits = scratch_.logits.data();
  sa.n = c.vocab_size;
  sa.rows = rows.data();
  sa.n_rows = int64_t(rows.size());
  model_.backend().sample_rows(sa);
  for (size_t k = 0; k < rows.size(); ++k) advance(*takers[k], Sampled{rows[k].token, rows[k].logprob});
  active_.erase(std::remove_if(active_.begin(), active_.end(), [](const auto& a) { return a->done; }), active_.end());
  for (auto& b : forked)
    if (!b->done) active_.push_back(std::move(b));
}

}  // namespace reason
