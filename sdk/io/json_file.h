// Reading JSON files from model directories (config.json, tokenizer.json, the safetensors
// shard index) with the defences of an untrusted-file parser: a size cap, a nesting cap
// checked before the parser runs, and errors that name the file and the position.
// All functions are pure (no shared state): safe from any thread.
#pragma once
#include <cstddef>
#include <istream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace reason {

// Largest JSON file read_json_file accepts by default (tokenizer.json files are tens of MB).
inline constexpr size_t kJsonFileMaxBytes = size_t(256) << 20;
// Deepest nesting of arrays/objects accepted by default; real configs nest < 20 levels.
inline constexpr size_t kJsonMaxDepth = 256;

// Longest line of a JSON Lines file (datasets, metrics) accepted by default: a line holds one
// record (a prompt and its completion), far below this.
inline constexpr size_t kJsonlMaxLineBytes = size_t(16) << 20;

// Reads and parses the JSON file at `path`. Throws reason::Error:
//   Io      the file is missing or unreadable ("PATH: cannot open: No such file or directory"),
//   Format  it is larger than max_bytes, nests deeper than max_depth, is not valid UTF-8, or is
//           not JSON ("PATH: not valid JSON: parse error at line L, column C: ...").
// Duplicate object keys keep the last value (as Python's json does).
nlohmann::json read_json_file(const std::string& path, size_t max_bytes = kJsonFileMaxBytes,
                              size_t max_depth = kJsonMaxDepth);

// Parses `text` as above; `what` names the source in error messages (a path, or
// "model.safetensors: header"). Throws reason::Error(Format).
nlohmann::json parse_json_text(std::string_view text, const std::string& what, size_t max_depth = kJsonMaxDepth);

// The same two, keeping object keys in file order (nlohmann::ordered_json): for JSON handed to
// code that shows the order, as a chat template's tojson and items() do.
nlohmann::ordered_json read_ordered_json_file(const std::string& path, size_t max_bytes = kJsonFileMaxBytes,
                                              size_t max_depth = kJsonMaxDepth);
nlohmann::ordered_json parse_ordered_json_text(std::string_view text, const std::string& what,
                                               size_t max_depth = kJsonMaxDepth);

// JSON Lines: reads the next line of `in` into `line` (without its '\n'), never holding more
// than max_bytes bytes of it. End: nothing left. TooLong: the line has more than max_bytes bytes
// (the rest of it is not read). A last line without '\n' is a line, as std::getline reads it.
// Parse each line with parse_json_text, which checks UTF-8 and nesting before parsing.
enum class LineRead { Line, End, TooLong };
LineRead read_bounded_line(std::istream& in, std::string& line, size_t max_bytes = kJsonlMaxLineBytes);

// The kind of a JSON value with its article, for error messages: "an object", "an array",
// "a string", "a number", "a boolean", "null".
const char* json_kind(const nlohmann::json& value);

// Byte offset of the first '[' or '{' (outside strings) that opens nesting level
// max_depth + 1, or std::string_view::npos if the text never nests that deep. A linear scan
// with O(1) state, so it is safe on hostile input of any depth; malformed JSON is left for
// the parser to reject.
size_t json_depth_exceeded_at(std::string_view text, size_t max_depth);

// Byte offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or std::string_view::npos if all is valid.
size_t find_invalid_utf8(std::string_view text);

}  // namespace reason
