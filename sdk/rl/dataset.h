// Datasets of a pipeline: JSONL files (one JSON object per line) read into records, validated
// up front so that a bad line fails before any work starts, with the file and line named.
// Value types; thread-safe to read.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/json_file.h"

namespace reason {

// Which JSON fields hold what (the names are configurable per dataset).
struct DatasetFields {
  std::string prompt = "prompt";
  std::string answer = "answer";
  std::string completion = "completion";
  std::string text = "text";
};

struct DataRecord {
  std::string prompt, answer, completion, text;  // empty when the line has no such field
  nlohmann::json fields;                         // the whole line (all fields, extra ones included)
  int64_t line = 0;                              // 1-based line in the source file
};

struct Dataset {
  std::string name;
  std::string source;  // file path
  std::vector<DataRecord> records;
};

// What a stage needs from every record.
enum class DatasetUse {
  Any,              // no field required
  Prompts,          // prompt (eval/GRPO/rejection sampling also need answer: see PromptsAndAnswers)
  PromptsAndAnswers,
  Sft,              // text, or prompt + completion
};

// What a JSONL line may be: the same hardening as every JSON file the engine reads
// (io/json_file.h: UTF-8 checked, nesting bounded before the parser runs), plus a line length.
struct JsonlLimits {
  size_t max_line_bytes = kJsonlMaxLineBytes;  // 16 MiB
  size_t max_depth = kJsonMaxDepth;            // 256 levels of arrays/objects
};

// Reads `path`. Blank lines are skipped. Throws InvalidArgument "PATH:LINE: ..." for a line
// longer than limits.max_line_bytes, not valid UTF-8, nested deeper than limits.max_depth, not
// a JSON object, a field of the wrong type (all must be strings), or (per `use`) a missing
// required field; Io when the file cannot be read; InvalidArgument for an empty dataset.
Dataset load_jsonl_dataset(const std::string& path, const std::string& name, const DatasetFields& fields, DatasetUse use,
                           const JsonlLimits& limits = {});

// Checks that every record has what `use` needs (same messages as load_jsonl_dataset).
void check_dataset(const Dataset& d, const DatasetFields& fields, DatasetUse use);

// Writes one JSON object per line, atomically (temp file + rename).
void write_jsonl(const std::string& path, const std::vector<nlohmann::json>& lines);

}  // namespace reason
