// Tool calls in rollouts: a completion may call tools the embedding program registers (a
// calculator, a code runner...). The model writes a call as Hermes/Qwen2.5 do,
//   <tool_call>{"name": "calc", "arguments": {"expr": "12*7"}}</tool_call>
// generation stops at the closing tag, the tool runs (under a deadline) and its result is appended
// as text the model did not choose,
//   \n<tool_response>\n84\n</tool_response>\n
// whose tokens are masked out of the loss (GrpoSample::mask), then generation continues. The tags
// are configurable.
//
// Threads: a ToolFn is called on a thread of its own per call and may outlive the rollout when it
// hangs (it is abandoned after the deadline, as reward callbacks are, rl/reward_runner.h): it must
// be thread-safe and must not capture anything that dies before it returns.
#pragma once
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace reason {

// A tool: the call's "arguments" (JSON text; "" when absent) -> the result text. Throwing reports
// the error to the model as the result ("error: ...").
using ToolFn = std::function<std::string(const std::string& arguments)>;

struct ToolOptions {
  std::map<std::string, ToolFn> tools;  // by the name calls use
  std::string call_open = "<tool_call>", call_close = "</tool_call>";
  std::string result_open = "\n<tool_response>\n", result_close = "\n</tool_response>\n";
  int max_calls = 4;                                       // per completion; later calls are not run
  std::chrono::milliseconds deadline{5000};                // per call
  size_t max_result_bytes = 4096;                          // longer results are cut (and say so)
  // Non-empty: calls are not JSON; the text between the tags is the arguments of this tool (one
  // tool, a tag of its own, e.g. <calc>12*7</calc>: simpler for small models).
  std::string raw_tool;
  bool enabled() const { return !tools.empty(); }
};

struct ParsedToolCall {
  std::string name, arguments;  // arguments as JSON text
  std::string error;            // non-empty: the call could not be parsed (the model is told why)
};

// Parses the call body between the tags: a JSON object with a string "name" and optional
// "arguments" (any JSON value, kept as its JSON text).
ParsedToolCall parse_tool_call(std::string_view body);

// Runs the call with the registered tool under opts.deadline; returns the text the model sees:
// the tool's result as valid UTF-8 (ill-formed bytes become U+FFFD), cut at max_result_bytes, or
// "error: ..." ("error: no tool named 'x'", "error: tool 'x' failed: <what()>", "error: tool 'x'
// timed out after N ms", an unparsable call, too many tools stuck). Never throws. *failed (when
// given) says whether it was an error.
std::string run_tool_call(const ToolOptions& opts, const ParsedToolCall& call, bool* failed = nullptr);

}  // namespace reason
