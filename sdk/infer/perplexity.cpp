#include "infer/perplexity.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/device_array.h"
#include "model/model.h"

namespace reason {

PerplexityResult perplexity(const Model& model, std::span<const int32_t> tokens, const PerplexityOptions& o) {
  if (o.n_ctx < 4 || o.n_ctx > model.config().max_position_embeddings)
    fail(ErrorCode::InvalidArgument, "perplexity: n_ctx must be in [4, {}] (got {})", model.config().max_position_embeddings,
         o.n_ctx);
  if (int64_t(tokens.size()) < 2 * o.n_ctx)
    fail(ErrorCode::InvalidArgument, "perplexity: need at least {} tokens for a context of {} (the text has {})",
         2 * o.n_ctx, o.n_ctx, tokens.size());
  int64_t n_chunks = int64_t(tokens.size()) / o.n_ctx;
  if (o.max_chunks >= 0) n_chunks = std::min(n_chunks, o.max_chunks);
  if (o.batch < 1) fail(ErrorCode::InvalidArgument, "perplexity: batch must be >= 1 (got {})", o.batch);
  const int64_t first = o.n_ctx / 2, batch = std::min(o.batch, o.n_ctx), V = model.config().vocab_size;
  kernels::Backend& be = model.backend();
  PerplexityResult r;
  std::vector<int32_t> chunk(size_t(o.n_ctx));
  ForwardScratch scratch;
  // Per chunk: logp[p] = log p(chunk[p + 1] | chunk[..p]) by the backend's log-softmax (sums in
  // double), the targets being the text's tokens (not the BOS put first).
  DeviceArray<int32_t> targets;
  DeviceArray<float> logp(be, size_t(o.n_ctx)), lse(be, size_t(batch));
  for (int64_t c = 0; c < n_chunks; ++c) {
    std::copy(tokens.begin() + c * o.n_ctx, tokens.begin() + (c + 1) * o.n_ctx, chunk.begin());
    if (o.replace_bos) chunk[0] = o.bos_id;
    targets.upload(be, tokens.subspan(size_t(c * o.n_ctx + 1), size_t(o.n_ctx - 1)));
    KVCache cache = model.make_cache();
    const int slot = cache.add_sequence();
    for (int64_t p0 = 0; p0 < o.n_ctx - 1; p0 += batch) {
      const int64_t n = std::min(batch, o.n_ctx - 1 - p0);  // the last token predicts nothing
      SeqChunk ch{slot, chunk.data() + p0, n, true};
      model.forward_device(std::span<const SeqChunk>(&ch, 1), cache, scratch);
      const int64_t i0 = std::max<int64_t>(0, first - p0);  // only the second half is scored
      if (i0 < n)
        be.logsoftmax_rows(scratch.logits.data() + i0 * V, n - i0, V, 1.0f, targets.data() + p0 + i0, lse.data(),
                           logp.data() + p0 + i0, nullptr);
    }
    const std::vector<float> lp = logp.download();
    for (int64_t p = first; p < o.n_ctx - 1; ++p) r.nll -= double(lp[size_t(p)]);
    r.tokens += o.n_ctx - 1 - first;
    r.chunks += 1;
    r.running_ppl.push_back(std::exp(r.nll / double(r.tokens)));
  }
  r.ppl = r.running_ppl.empty() ? 0.0 : r.running_ppl.back();
  return r;
}

}  // namespace reason
