// The structs behind the C ABI's opaque handles.
#pragma once
#include <memory>
#include <vector>

#include "infer/generator.h"
#include "model/model.h"
#include "model_lock.h"
#include "reason.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

struct reason_tokenizer {
  std::shared_ptr<const reason::Tokenizer> tok;
};

struct reason_model {
  std::shared_ptr<const reason::Model> model;
  reason_tokenizer tokenizer;  // empty tok when the model has none
  // Readers (generation, scoring, streams) or one writer (a trainer step): see model_lock.h.
  std::shared_ptr<reason::capi::ModelLock> lock = std::make_shared<reason::capi::ModelLock>();
};

struct reason_generation {
  std::vector<reason::GenResult> results;
  std::vector<reason_completion> views;
};

// Completions' finish reasons are cast the same way.
static_assert(int(reason::FinishReason::Length) == REASON_FINISH_LENGTH && int(reason::FinishReason::Stop) == REASON_FINISH_STOP &&
                  int(reason::FinishReason::Callback) == REASON_FINISH_CALLBACK,
              "reason::FinishReason and reason_finish_reason differ");

namespace reason::capi {
// The caller's sampling options (fields beyond its struct_size keep their defaults; NULL: all
// defaults) and their engine form (throws InvalidArgument for NULL arrays with a count).
reason_sampling_options sampling_options_or_default(const reason_sampling_options* in);
reason::SamplingParams sampling_params(const reason_sampling_options& o);
}  // namespace reason::capi
