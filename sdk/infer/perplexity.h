// Perplexity of a model on a text, computed as llama.cpp's llama-perplexity computes it, so the two
// engines' numbers on the same GGUF file and text can be compared directly:
//   the text is tokenised with the special tokens the tokenizer adds (BOS where it adds one), cut
//   into chunks of n_ctx tokens (a partial last chunk is dropped; at most max_chunks), each chunk
//   is evaluated on its own with its first token replaced by BOS when the tokenizer adds one, and
//   only the second half is scored: the tokens at positions n_ctx/2 + 1 .. n_ctx - 1, each given
//   all before it in its chunk. PPL = exp(mean negative log-likelihood over the scored tokens).
// Threads: reads the model only; calls may run concurrently.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "model/model.h"

namespace reason {

struct PerplexityOptions {
  int64_t n_ctx = 512;       // tokens per chunk (>= 4 and <= the model's max_position_embeddings)
  int64_t max_chunks = -1;   // < 0: every whole chunk
  // Tokens per forward call (>= 1; capped at n_ctx). With quantised weights a call of at most 8
  // tokens runs the integer kernels on int8-rounded activations, as llama.cpp computes every batch;
  // larger calls multiply dequantised weights with f32 activations (backend.h, MatmulArgs).
  int64_t batch = 512;
  bool replace_bos = false;  // put bos_id at each chunk's first position (llama.cpp does when it adds BOS)
  int32_t bos_id = 0;
};

struct PerplexityResult {
  double ppl = 0;                   // exp(nll / tokens)
  double nll = 0;                   // sum of the scored tokens' negative log-likelihoods
  int64_t tokens = 0;               // tokens scored
  int64_t chunks = 0;               // chunks evaluated
  std::vector<double> running_ppl;  // after each chunk (llama-perplexity's [1]x,[2]y,... line)
};

// Throws InvalidArgument when the text has fewer than 2 x n_ctx tokens (llama-perplexity's rule) or
// n_ctx is out of range.
PerplexityResult perplexity(const Model& model, std::span<const int32_t> tokens, const PerplexityOptions& opts);

}  // namespace reason
