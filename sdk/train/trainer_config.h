// Trainer configuration from the protobuf schema (sdk/proto/reason.proto, message TrainerConfig),
// given as text format (what people write) or binary bytes. Defaults fill unset fields; every
// value is validated and an error names the field.
#pragma once
#include <string_view>

#include "reason.pb.h"
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

// The converters parse_trainer_config uses, for other configs that embed these messages (the
// pipeline's). Unset fields take the documented defaults; a bad value throws InvalidArgument
// "<where><field> <reason>", e.g. "stages[2] 'rl': optimizer.lr must be >= 0 (got -1)".
AdamWConfig adamw_from_proto(const proto::OptimizerConfig& o, std::string_view where);
LrSchedule schedule_from_proto(const proto::ScheduleConfig& s, std::string_view where);
// require_group: group_size must be >= 2.
GrpoConfig grpo_from_proto(const proto::GrpoConfig& g, bool require_group, std::string_view where);
DistillConfig distill_from_proto(const proto::DistillConfig& d, std::string_view where);
// ZeRO-1 and the bucket size of a DataParallelConfig into tc (the communicator is the caller's).
void data_parallel_from_proto(const proto::DataParallelConfig& d, TrainerConfig& tc, std::string_view where);
// The LoRA settings of a stage's `lora { ... }` (defaults: rank 8, alpha 2 x rank, all-linear).
LoraSpec lora_from_proto(const proto::LoraConfig& l, std::string_view where);

}  // namespace reason
