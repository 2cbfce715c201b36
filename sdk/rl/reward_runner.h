// Scores completions with several reward functions on worker threads, with a per-call deadline.
//
// The GRPO rollout loop scores every sampled completion with built-in rule-based rewards
// (rl/rewards.h: pure and fast) and with user callbacks (C++ here; C, Java, C# and Go callbacks
// through the C ABI later) that may be slow, hang forever, throw, or return NaN. A reward call
// that hangs, throws or returns a non-finite value scores as failed (its term counts 0), is
// reported in the outcome and in the stats, and the run goes on.
//
// How it works (one score() call):
// - Every (input, reward) pair is one call. score() starts `threads` worker threads; each takes
//   the next call, runs it and takes the next. The thread that called score() only waits on a
//   condition variable and watches the deadlines; it never runs a reward itself.
// - A call's deadline runs from the moment a worker starts it. When it passes, the caller marks
//   the call as failed ("timed out"), abandons (detaches) the stuck worker and, if calls are left,
//   starts a replacement, so one hung callback costs one thread, not the batch. An abandoned
//   worker finishes its call whenever the callback returns (its result is ignored) and exits.
// - Everything an abandoned worker touches (the copied inputs, the rewards, the result slots) is
//   held by shared ownership, so a callback that returns after score() returned, or after the
//   runner was destroyed, writes only into memory that is still alive and nobody reads.
// - Workers that are not stuck are joined before score() returns; only stuck threads outlive it.
// - While kMaxStuckThreads abandoned threads of this runner are alive, no worker is started (no
//   replacement, nor the first workers of a later batch); when no worker is left, the remaining
//   calls fail without being run ("not run"), built-in rewards included, until stuck callbacks
//   return. This bounds the threads a callback that hangs on every call can eat up. The same
//   happens if the system refuses to create a thread.
// - All rewards take the same path, built-ins included: `NamedReward::trusted` is informational
//   today (it says the reward is pure and fast); running trusted rewards inline is a possible
//   later optimisation that would not change results.
//
// Nothing can kill a hung thread in C++: an abandoned thread lives until its callback returns (or
// the process exits), with its stack and whatever the callback holds.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace reason {

// One completion to score. The runner copies these strings (a stuck callback may keep reading
// them after score() returned).
struct RewardInput {
  std::string prompt;      // prompt text
  std::string completion;  // completion text
  std::string answer;      // gold answer (may be empty)
  std::string extra_json;  // the dataset line's other fields as a JSON object text (may be empty)
};

// A reward function: the unweighted value for one completion. It may throw (any type) or return a
// non-finite value; both count as a failure. It is called concurrently from several worker
// threads, on inputs of the same batch and, after a timeout, even while a later batch runs: it
// MUST be thread-safe. It must not capture anything that dies before the callback can return
// (a hung call may return long after score() and the runner are gone).
using RewardFn = std::function<float(const RewardInput&)>;

struct NamedReward {
  std::string name;  // shown in reports and metrics, e.g. "math_accuracy", "judge"
  float weight = 1.0f;
  RewardFn fn;
  bool trusted = false;  // true for the built-ins (pure, fast); informational, see above
};

struct RewardOutcome {
  float total = 0.0f;         // sum of weight * value over the rewards; failed terms count 0
  std::vector<float> values;  // per reward, in the runner's order; 0 for a failed term
  bool failed = false;        // some term failed
  // The first failure in reward order, e.g. "reward 'judge' timed out after 200 ms",
  // "reward 'judge' threw: <what()>", "reward 'judge' threw a non-standard exception",
  // "reward 'judge' returned NaN", "reward 'judge' not run: ...". Empty when not failed.
  std::string error;
};

// Totals since construction. `scored` and `failed` count inputs (outcomes); `timed_out`, `threw`
// and `non_finite` count calls; `abandoned_threads` counts workers ever abandoned (a stuck thread
// that later returns still counts). A call that was not run counts only in `failed`.
struct RewardRunnerStats {
  int64_t scored = 0, failed = 0, timed_out = 0, threw = 0, non_finite = 0;
  int64_t abandoned_threads = 0;
};

class RewardRunner {
 public:
  // Limit on abandoned threads of one runner alive at the same time (see the top of this file).
  static constexpr int kMaxStuckThreads = 64;

  // deadline: per (completion, reward) call, from the moment a worker starts it; 0 = no deadline
  // (a hung call then blocks score() forever). threads: worker threads per score() call (>= 1).
  // Throws reason::Error (InvalidArgument) for threads < 1, a negative deadline, a reward without
  // a function or with a non-finite weight.
  RewardRunner(std::vector<NamedReward> rewards, std::chrono::milliseconds deadline, int threads = 2);

  // Does not block on a hung callback: stuck threads are already detached and keep what they use
  // alive themselves.
  ~RewardRunner();

  RewardRunner(const RewardRunner&) = delete;
  RewardRunner& operator=(const RewardRunner&) = delete;

  // Scores every input with every reward; one outcome per input, in order. Never throws because of
  // a callback; returns when every call has finished, passed its deadline or could not be run.
  // One thread at a time per runner: score() must not be called concurrently on the same runner
  // (different runners are independent). The inputs are copied: they need only live during the call.
  std::vector<RewardOutcome> score(std::span<const RewardInput> inputs);

  // Read from the thread that calls score(), not while score() runs on another thread.
  const RewardRunnerStats& stats() const { return stats_; }
  const std::vector<NamedReward>& rewards() const { return *rewards_; }
  std::chrono::milliseconds deadline() const { return deadline_; }
  int threads() const { return threads_; }
  // Abandoned threads of this runner still inside their callback now (any thread may call this).
  int stuck_threads() const { return stuck_threads_->load(); }

 private:
  std::shared_ptr<const std::vector<NamedReward>> rewards_;  // shared with stuck workers
  std::chrono::milliseconds deadline_;
  int threads_;
  std::shared_ptr<std::atomic<int>> stuck_threads_;  // abandoned workers still alive
  RewardRunnerStats stats_;
};

}  // namespace reason
