// GRPO with a tool: the same base model and prompts, trained once with a column adder the
// completions may call and once without it; the tool raises the reward.
//
// The base model (the addition task's, see examples/pipelines/r1-zero.textproto) writes worked
// solutions such as " <think> 347+089 7+9+0=16 4+8+1=13 3+0+1=4 so 436 </think> \boxed{436}",
// and gets carries wrong. Here every "=" it writes is a tool call: the thinking since "<think>"
// goes to the column adder registered below (raw arguments between the tags "<think>" and "="),
// whose answer ("16", the column's true sum) is appended as tokens that carry no loss, and the
// model goes on from there.
//
//   example_cpp_tool_grpo BASE_MODEL_DIR OUT_DIR [STEPS]
//
// Prints the mean reward and accuracy per GRPO step of both runs and their means. Built against
// the public C ABI only (reason.h).
#include <reason.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

int fail(reason_tool_result* result) {
  const char msg[] = "not an addition in progress";
  reason_tool_result_set(result, msg, sizeof msg - 1);
  return 1;
}

// The column adder. Its arguments are the thinking so far, e.g. " 347+089 7+9+0=16 4+8+1" (the
// text since "<think>"): the operands, then the columns already done. It answers the sum of the
// current column (from the right) with the true carry of the columns before it: "13" here. The
// model still has to lay out the columns, read off the carries and the answer.
int column_adder(void*, const char* args, reason_tool_result* result) {
  std::string a, b;
  const char* p = args;
  while (*p == ' ') ++p;
  while (*p >= '0' && *p <= '9') a += *p++;
  if (*p++ != '+') return fail(result);
  while (*p >= '0' && *p <= '9') b += *p++;
  if (a.empty() || b.empty() || a.size() > 12 || b.size() > 12) return fail(result);
  int column = 0;  // columns already done: one '=' each
  for (const char* q = p; *q; ++q) column += *q == '=';
  while (a.size() < b.size()) a.insert(a.begin(), '0');
  while (b.size() < a.size()) b.insert(b.begin(), '0');
  if (column >= int(a.size())) return fail(result);
  int carry = 0, sum = 0;
  for (int c = 0; c <= column; ++c) {
    const size_t i = a.size() - 1 - size_t(c);
    sum = (a[i] - '0') + (b[i] - '0') + carry;
    carry = sum / 10;
  }
  const std::string out = std::to_string(sum);
  reason_tool_result_set(result, out.data(), out.size());
  return 0;
}

std::string config(const std::string& base, int steps, bool tools) {
  std::ostringstream c;
  c << "seed: 11\nthreads: 2\n"
       "prompt_format { template: \"User: {prompt}\\nAssistant:\" }\n"
       "models { name: \"policy\" path: \"" << base << "\" }\n"
       "datasets { name: \"train\" synthetic { kind: PROBLEMS count: 4000 min_digits: 3 max_digits: 3 } }\n"
       "stages { name: \"rl\" grpo { model: \"policy\" dataset: \"train\" steps: " << steps
    << " prompts_per_step: 32 grpo { group_size: 8 temperature: 1.0 aggregation: DAPO }"
       " optimizer { lr: 2e-4 } sampling { max_new_tokens: 96 }"
       " reward { terms { kind: MATH_ACCURACY } terms { kind: FORMAT weight: 0.1 } }";
  if (tools)
    c << " tools { callbacks: \"column_adder\" raw: true call_open: \"<think>\" call_close: \"=\" result_open: \"\""
         " result_close: \"\" max_calls: 8 deadline_ms: 30000 }";
  c << " } }\n";
  return c.str();
}

struct Run {
  std::vector<double> reward, accuracy, calls;
};

bool run(const std::string& base, const std::string& dir, int steps, bool tools, Run* out) {
  const std::string cfg_path = dir + (tools ? "/with_tool.textproto" : "/without_tool.textproto");
  std::ofstream(cfg_path) << config(base, steps, tools);
  reason_pipeline_tool calc = {"column_adder", column_adder, nullptr};
  reason_pipeline_options o = REASON_PIPELINE_OPTIONS_INIT;
  o.progress = 0;
  if (tools) o.tools = &calc, o.n_tools = 1;
  const std::string out_dir = dir + (tools ? "/with_tool" : "/without_tool");
  if (reason_pipeline_run(cfg_path.c_str(), out_dir.c_str(), &o, nullptr) != REASON_OK) {
    std::fprintf(stderr, "pipeline failed: %s\n", reason_last_error());
    return false;
  }
  std::ifstream metrics(out_dir + "/stages/00-rl/metrics.jsonl");
  std::string line;
  auto field = [&](const char* key) {  // a number from one JSON line (flat keys, written by the engine)
    const std::string k = std::string("\"") + key + "\":";
    const size_t at = line.find(k);
    return at == std::string::npos ? 0.0 : std::strtod(line.c_str() + at + k.size(), nullptr);
  };
  while (std::getline(metrics, line)) {
    out->reward.push_back(field("reward"));
    out->accuracy.push_back(field("accuracy"));
    out->calls.push_back(field("tool_calls"));
  }
  return !out->reward.empty();
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / double(v.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s BASE_MODEL_DIR OUT_DIR [STEPS]\n", argv[0]);
    return 2;
  }
  const int steps = argc > 3 ? std::atoi(argv[3]) : 8;
  // the config lives in OUT_DIR, and a config's relative paths are relative to its own directory
  const std::string base = std::filesystem::absolute(argv[1]).string();
  std::filesystem::create_directories(argv[2]);
  Run with, without;
  if (!run(base, argv[2], steps, false, &without) || !run(base, argv[2], steps, true, &with)) return 1;
  std::printf("step  reward (no tool / tool)  accuracy (no tool / tool)  tool calls per completion\n");
  for (size_t i = 0; i < with.reward.size() && i < without.reward.size(); ++i)
    std::printf("%4zu  %8.3f / %-8.3f       %8.3f / %-8.3f          %.2f\n", i + 1, without.reward[i], with.reward[i],
                without.accuracy[i], with.accuracy[i], with.calls[i]);
  std::printf("mean  %8.3f / %-8.3f       %8.3f / %-8.3f          %.2f\n", mean(without.reward), mean(with.reward),
              mean(without.accuracy), mean(with.accuracy), mean(with.calls));
  std::printf("the tool %s the mean reward by %.3f\n", mean(with.reward) > mean(without.reward) ? "raised" : "did not raise",
              mean(with.reward) - mean(without.reward));
  return 0;
}
