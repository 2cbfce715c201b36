// RewardRunner: reward calls on worker threads with a per-call deadline (rules in
// rl/reward_runner.h).
#include "rl/reward_runner.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "core/error.h"

namespace reason {
namespace {

using Clock = std::chrono::steady_clock;

enum class CallState : uint8_t { Pending, Running, Done, Failed };
enum class Failure : uint8_t { None, TimedOut, Threw, NonFinite, NotRun };

// One (input, reward) call and its result.
struct Call {
  CallState state = CallState::Pending;
  Failure failure = Failure::None;
  float value = 0.0f;
  std::string error;  // set when Failed
};

constexpr size_t kNoCall = static_cast<size_t>(-1);

// One worker thread of a batch.
struct Worker {
  size_t call = kNoCall;      // the call it is running, or kNoCall
  Clock::time_point started;  // when it started `call`
  bool abandoned = false;     // its call timed out: it exits as soon as the callback returns
};

// Everything the workers of one score() call touch. Shared by the caller and every worker, so a
// stuck worker keeps it alive after score() returned and after the runner is gone. All members
// below `mu` are guarded by it.
struct Batch {
  std::shared_ptr<const std::vector<NamedReward>> rewards;
  std::vector<RewardInput> inputs;
  std::shared_ptr<std::atomic<int>> stuck_threads;  // the runner's count of abandoned live threads

  std::mutex mu;
  std::condition_variable all_finished;  // signalled when the last call finishes
  std::vector<Call> calls;               // input i, reward r -> calls[i * rewards->size() + r]
  size_t next = 0;                       // the next call a worker takes
  size_t finished = 0;                   // calls Done or Failed
  std::deque<Worker> workers;            // a deque: references stay valid as workers are added
};

// Runs one reward on one input; every failure of the callback becomes a Failed call.
Call run_call(const NamedReward& reward, const RewardInput& input) {
  Call out;
  out.state = CallState::Failed;
  try {
    const float v = reward.fn(input);
    if (std::isfinite(v)) {
      out.state = CallState::Done;
      out.value = v;
    } else {
      out.failure = Failure::NonFinite;
      out.error = fmt::format("reward '{}' returned {}", reward.name, std::isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf");
    }
  } catch (const std::exception& e) {
    out.failure = Failure::Threw;
    out.error = fmt::format("reward '{}' threw: {}", reward.name, e.what());
  } catch (...) {
    out.failure = Failure::Threw;
    out.error = fmt::format("reward '{}' threw a non-standard exception", reward.name);
  }
  return out;
}

// A worker takes calls until none is left or until the caller abandons it (its call timed out).
void worker_main(std::shared_ptr<Batch> b, Worker* me) {
  const size_t num_rewards = b->rewards->size();
  std::unique_lock lock(b->mu);
  while (b->next < b->calls.size()) {
    const size_t c = b->next++;
    me->call = c;
    me->started = Clock::now();
    b->calls[c].state = CallState::Running;
    lock.unlock();
    Call result = run_call((*b->rewards)[c % num_rewards], b->inputs[c / num_rewards]);
    lock.lock();
    me->call = kNoCall;
    if (me->abandoned) {  // the caller already failed this call; the result goes nowhere
      b->stuck_threads->fetch_sub(1);
      return;
    }
    b->calls[c] = std::move(result);
    if (++b->finished == b->calls.size()) b->all_finished.notify_all();
  }
}

// The threads of one score() call. On the way out of score() the workers that are not stuck are
// joined (they have nothing left to do and exit at once) and stuck ones are detached. If score()
// is left by an exception, every worker is detached instead: none can be waited for safely.
class WorkerThreads {
 public:
  explicit WorkerThreads(std::shared_ptr<Batch> batch) : b_(std::move(batch)) {}
  WorkerThreads(const WorkerThreads&) = delete;
  WorkerThreads& operator=(const WorkerThreads&) = delete;

  // Starts one worker; false (and an error message) if the system refuses. Call with b->mu held.
  bool start(std::string& error) {
    Worker* w = &b_->workers.emplace_back();
    try {
      threads_.emplace_back(worker_main, b_, w);
      return true;
    } catch (const std::exception& e) {
      b_->workers.pop_back();
      error = e.what();
      return false;
    }
  }

  ~WorkerThreads() {
    const bool unwinding = std::uncaught_exceptions() > exceptions_;
    std::vector<char> detach(threads_.size());
    {
      std::lock_guard lock(b_->mu);
      b_->next = b_->calls.size();  // no worker takes another call
      for (size_t i = 0; i < threads_.size(); ++i) detach[i] = unwinding || b_->workers[i].abandoned;
    }
    for (size_t i = 0; i < threads_.size(); ++i) {
      if (detach[i])
        threads_[i].detach();
      else
        threads_[i].join();
    }
  }

 private:
  std::shared_ptr<Batch> b_;
  std::vector<std::thread> threads_;  // threads_[i] runs b_->workers[i]
  int exceptions_ = std::uncaught_exceptions();
};

}  // namespace

RewardRunner::RewardRunner(std::vector<NamedReward> rewards, std::chrono::milliseconds deadline, int threads)
    : deadline_(deadline), threads_(threads), stuck_threads_(std::make_shared<std::atomic<int>>(0)) {
  if (threads < 1) fail(ErrorCode::InvalidArgument, "RewardRunner: threads must be >= 1, got {}", threads);
  if (deadline.count() < 0)
    fail(ErrorCode::InvalidArgument, "RewardRunner: deadline must be >= 0 ms, got {}", deadline.count());
  for (const NamedReward& r : rewards) {
    if (!r.fn) fail(ErrorCode::InvalidArgument, "RewardRunner: reward '{}' has no function", r.name);
    if (!std::isfinite(r.weight))
      fail(ErrorCode::InvalidArgument, "RewardRunner: reward '{}' has a non-finite weight", r.name);
  }
  rewards_ = std::make_shared<const std::vector<NamedReward>>(std::move(rewards));
}

RewardRunner::~RewardRunner() = default;  // stuck threads are detached and own what they use

std::vector<RewardOutcome> RewardRunner::score(std::span<const RewardInput> inputs) {
  const size_t num_rewards = rewards_->size();
  auto b = std::make_shared<Batch>();
  b->rewards = rewards_;
  b->inputs.assign(inputs.begin(), inputs.end());
  b->stuck_threads = stuck_threads_;
  b->calls.resize(inputs.size() * num_rewards);
  const size_t total = b->calls.size();
  const bool has_deadline = deadline_.count() > 0;

  WorkerThreads threads(b);  // declared before `lock`: it locks b->mu itself when destroyed
  std::unique_lock lock(b->mu);
  std::string not_run_reason;
  while (b->finished < total) {
    // Fail the calls that passed their deadline and abandon their workers.
    // A call started after `now` is due after now + deadline, so waking then is never late.
    const Clock::time_point now = Clock::now();
    Clock::time_point wake = has_deadline ? now + deadline_ : Clock::time_point::max();
    int live = 0;
    for (Worker& w : b->workers) {
      if (w.abandoned) continue;
      if (has_deadline && w.call != kNoCall) {
        const Clock::time_point due = w.started + deadline_;
        if (due <= now) {
          Call& call = b->calls[w.call];
          call.state = CallState::Failed;
          call.failure = Failure::TimedOut;
          call.error = fmt::format("reward '{}' timed out after {} ms", (*rewards_)[w.call % num_rewards].name,
                                   deadline_.count());
          ++b->finished;
          w.abandoned = true;
          stuck_threads_->fetch_add(1);
          ++stats_.abandoned_threads;
          continue;
        }
        wake = std::min(wake, due);
      }
      ++live;
    }
    // Keep `threads_` workers while calls are waiting (the first ones, then replacements).
    while (b->next < total && live < threads_) {
      if (stuck_threads_->load() >= kMaxStuckThreads) {
        not_run_reason = fmt::format("{} threads of this runner are stuck in earlier calls", kMaxStuckThreads);
        break;
      }
      if (!threads.start(not_run_reason)) {
        not_run_reason = "could not start a worker thread: " + not_run_reason;
        break;
      }
      ++live;
    }
    // No worker to run the waiting calls: they fail without being run.
    if (live == 0 && b->next < total) {
      for (; b->next < total; ++b->next) {
        Call& call = b->calls[b->next];
        call.state = CallState::Failed;
        call.failure = Failure::NotRun;
        call.error = fmt::format("reward '{}' not run: {}", (*rewards_)[b->next % num_rewards].name, not_run_reason);
        ++b->finished;
      }
    }
    if (b->finished == total) break;
    if (wake == Clock::time_point::max())
      b->all_finished.wait(lock);
    else
      b->all_finished.wait_until(lock, wake);
  }

  // Every call is Done or Failed; abandoned workers no longer write into b->calls.
  std::vector<RewardOutcome> outcomes(inputs.size());
  for (size_t i = 0; i < outcomes.size(); ++i) {
    RewardOutcome& o = outcomes[i];
    o.values.assign(num_rewards, 0.0f);
    double sum = 0.0;
    for (size_t r = 0; r < num_rewards; ++r) {
      const Call& call = b->calls[i * num_rewards + r];
      if (call.state == CallState::Done) {
        o.values[r] = call.value;
        sum += static_cast<double>((*rewards_)[r].weight) * static_cast<double>(call.value);
        continue;
      }
      if (!o.failed) {
        o.failed = true;
        o.error = call.error;
      }
      switch (call.failure) {
        case Failure::TimedOut: ++stats_.timed_out; break;
        case Failure::Threw: ++stats_.threw; break;
        case Failure::NonFinite: ++stats_.non_finite; break;
        case Failure::None:
        case Failure::NotRun: break;
      }
    }
    o.total = static_cast<float>(sum);
    ++stats_.scored;
    if (o.failed) ++stats_.failed;
  }
  return outcomes;
}

}  // namespace reason
