// The structs behind the C ABI's opaque handles.
#pragma once
#include <memory>
#include <vector>

#include "infer/generator.h"
#include "model/model.h"
#include "reason.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

struct reason_tokenizer {
  std::shared_ptr<const reason::Tokenizer> tok;
};

struct reason_model {
  std::shared_ptr<const reason::Model> model;
  reason_tokenizer tokenizer;  // empty tok when the model has none
};

struct reason_generation {
  std::vector<reason::GenResult> results;
  std::vector<reason_completion> views;
};

namespace reason::capi {
// The caller's sampling options (fields beyond its struct_size keep their defaults; NULL: all
// defaults) and their engine form (throws InvalidArgument for NULL arrays with a count).
reason_sampling_options sampling_options_or_default(const reason_sampling_options* in);
reason::SamplingParams sampling_params(const reason_sampling_options& o);
}  // namespace reason::capi
