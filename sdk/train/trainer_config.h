// Trainer configuration from the protobuf schema (sdk/proto/reason.proto, message TrainerConfig),
// given as text format (what people write) or binary bytes. Defaults fill unset fields; every
// value is validated and an error names the field.
#pragma once
#include <string_view>

#include "train/trainer.h"

namespace reason {

struct TrainerSettings {
  TrainerConfig trainer;
  GrpoConfig grpo;
  DistillConfig distill;
  int64_t micro_batch = 0;
};

// Throws reason::Error(InvalidArgument) with the parser's line/column for malformed text, or
// naming the offending field ("optimizer.lr must be >= 0").
TrainerSettings parse_trainer_config(std::string_view bytes, bool binary);

}  // namespace reason
