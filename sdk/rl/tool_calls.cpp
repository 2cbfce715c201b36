#include "rl/tool_calls.h"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tokenizer/unicode_util.h"

namespace reason {

namespace {

// Tool threads abandoned after their deadline and not yet returned; past the cap no new call is
// started (a tool that hangs on every call cannot eat every thread).
std::atomic<int> g_stuck{0};
constexpr int kMaxStuck = 16;

struct CallState {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false, abandoned = false, failed = false;
  std::string out;
};

}  // namespace

ParsedToolCall parse_tool_call(std::string_view body) {
  ParsedToolCall c;
  const auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    c.error = "the tool call is not a JSON object";
    return c;
  }
  if (!j.contains("name") || !j["name"].is_string()) {
    c.error = "the tool call has no string \"name\"";
    return c;
  }
  c.name = j["name"].get<std::string>();
  if (j.contains("arguments"))
    c.arguments = j["arguments"].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return c;
}

std::string run_tool_call(const ToolOptions& opts, const ParsedToolCall& call, bool* failed) {
  auto fail_with = [&](std::string why) {
    if (failed) *failed = true;
    return "error: " + why;
  };
  if (failed) *failed = false;
  if (!call.error.empty()) return fail_with(call.error);
  auto it = opts.tools.find(call.name);
  if (it == opts.tools.end()) return fail_with(fmt::format("no tool named '{}'", call.name));
  if (g_stuck.load() >= kMaxStuck) return fail_with(fmt::format("tool '{}' not run: too many calls are stuck", call.name));
  auto st = std::make_shared<CallState>();
  ToolFn fn = it->second;  // copies: an abandoned call keeps its own
  std::string args = call.arguments, name = call.name;
  try {
    std::thread([st, fn, args, name] {
      std::string out;
      bool bad = false;
      try {
        out = fn(args);
      } catch (const std::exception& e) {
        out = fmt::format("error: tool '{}' failed: {}", name, e.what()), bad = true;
      } catch (...) {
        out = fmt::format("error: tool '{}' failed", name), bad = true;
      }
      std::lock_guard<std::mutex> lk(st->mu);
      if (st->abandoned) g_stuck.fetch_sub(1);  // no longer stuck
      st->out = std::move(out);
      st->failed = bad;
      st->done = true;
      st->cv.notify_all();
    }).detach();
  } catch (const std::system_error& e) {
    return fail_with(fmt::format("tool '{}' not run: {}", call.name, e.what()));
  }
  std::unique_lock<std::mutex> lk(st->mu);
  if (!st->cv.wait_for(lk, opts.deadline, [&] { return st->done; })) {
    st->abandoned = true;  // the thread uncounts itself when (if) it returns
    g_stuck.fetch_add(1);
    return fail_with(fmt::format("tool '{}' timed out after {} ms", call.name, opts.deadline.count()));
  }
  if (failed) *failed = st->failed;
  std::string out;  // the model reads it: valid UTF-8 (ill-formed bytes become U+FFFD), cut at max_result_bytes
  tok::append_lossy_utf8(out, st->out, true);
  if (out.size() > opts.max_result_bytes) {
    size_t cut = opts.max_result_bytes;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;  // whole UTF-8 characters
    out = out.substr(0, cut) + " [cut]";
  }
  return out;
}

}  // namespace reason
