#include "rl/dataset.h"

#include <fstream>

#include "core/error.h"
#include "io/atomic_write.h"

namespace reason {

namespace {

// Reads string field `key` of `line` into `out`; false when absent.
bool read_field(const nlohmann::json& obj, const std::string& key, std::string& out, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return false;
  if (it->is_string()) {
    out = it->get<std::string>();
  } else if (it->is_number()) {  // answers are often written as numbers
    out = it->dump();
  } else {
    fail(ErrorCode::InvalidArgument, "{}: field '{}' must be a string (got {})", where, key, it->type_name());
  }
  return true;
}

void check_record(const DataRecord& r, const DatasetFields& f, DatasetUse use, const std::string& where) {
  auto need = [&](bool ok, const std::string& field) {
    if (!ok) fail(ErrorCode::InvalidArgument, "{}: missing required field '{}'", where, field);
  };
  switch (use) {
    case DatasetUse::Any:
      break;
    case DatasetUse::Prompts:
      need(r.fields.contains(f.prompt), f.prompt);
      break;
    case DatasetUse::PromptsAndAnswers:
      need(r.fields.contains(f.prompt), f.prompt);
      need(r.fields.contains(f.answer), f.answer);
      break;
    case DatasetUse::Sft:
      if (!r.fields.contains(f.text)) {
        if (!r.fields.contains(f.prompt) || !r.fields.contains(f.completion))
          fail(ErrorCode::InvalidArgument, "{}: an SFT line needs '{}', or '{}' and '{}'", where, f.text, f.prompt,
               f.completion);
      }
      break;
  }
}

}  // namespace

void check_dataset(const Dataset& d, const DatasetFields& fields, DatasetUse use) {
  if (d.records.empty()) fail(ErrorCode::InvalidArgument, "dataset '{}' ({}) is empty", d.name, d.source);
  for (const auto& r : d.records) check_record(r, fields, use, fmt::format("{}:{}", d.source, r.line));
}

Dataset load_jsonl_dataset(const std::string& path, const std::string& name, const DatasetFields& fields, DatasetUse use,
                           const JsonlLimits& limits) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::Io, "dataset '{}': cannot open {}", name, path);
  Dataset d;
  d.name = name;
  d.source = path;
  std::string line;
  int64_t n = 0;
  for (;;) {
    const LineRead got = read_bounded_line(in, line, limits.max_line_bytes);
    if (got == LineRead::End) break;
    ++n;
    const std::string where = fmt::format("{}:{}", path, n);
    if (got == LineRead::TooLong)
      fail(ErrorCode::InvalidArgument, "{}: line is longer than {} bytes (the JSONL line limit)", where,
           limits.max_line_bytes);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    DataRecord r;
    r.line = n;
    try {
      r.fields = parse_json_text(line, where, limits.max_depth);  // UTF-8, nesting, then the parser
    } catch (const Error& e) {
      fail(ErrorCode::InvalidArgument, "{}", e.what());
    }
    if (!r.fields.is_object()) fail(ErrorCode::InvalidArgument, "{}: a line must be a JSON object", where);
    read_field(r.fields, fields.prompt, r.prompt, where);
    read_field(r.fields, fields.answer, r.answer, where);
    read_field(r.fields, fields.completion, r.completion, where);
    read_field(r.fields, fields.text, r.text, where);
    check_record(r, fields, use, where);
    d.records.push_back(std::move(r));
  }
  if (in.bad()) fail(ErrorCode::Io, "dataset '{}': error reading {}", name, path);
  if (d.records.empty()) fail(ErrorCode::InvalidArgument, "dataset '{}' ({}) is empty", name, path);
  return d;
}

void write_jsonl(const std::string& path, const std::vector<nlohmann::json>& lines) {
  std::string out;
  for (const auto& l : lines) {
    out += l.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    out += '\n';
  }
  atomic_write_file(path, out);
}

}  // namespace reason
