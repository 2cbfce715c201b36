// The server's engine: one thread owns a BatchScheduler (the KV cache and the continuous batch)
// and runs it while HTTP threads submit requests and read their tokens. Every request in flight
// shares the one batch; a full queue refuses new requests (429), a draining server refuses them
// too (503); a cancelled request (its client went away) leaves the batch at the next step.
// Threads: submit, cancel, drain and metrics may be called from any thread; a Job's events are
// pushed by the engine thread and popped by the one HTTP thread that serves it.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "infer/batch_scheduler.h"
#include "serve/openai_protocol.h"

namespace reason::serve {

// Prometheus histogram (cumulative buckets, sum, count). Threads: guarded by its owner.
struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // per bound, plus +Inf
  double sum = 0;
  uint64_t count = 0;
  explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
  void observe(double v);
  std::string text(const std::string& name, const std::string& help) const;
};

// One HTTP request's completions (n choices) in flight.
class Job {
 public:
  struct Event {
    int choice = 0;
    std::string text;  // new text of that choice (may be empty)
    int32_t token = -1;  // -1: no token (a done or error event)
    float logprob = 0.0f;
    std::vector<int32_t> top_ids;
    std::vector<float> top_logprobs;
    bool done = false;  // the choice ended: finish and completion_tokens are set
    FinishReason finish = FinishReason::Stop;
    int64_t completion_tokens = 0;
    std::string error;  // the engine failed: the whole job ends with this message
  };
  explicit Job(ApiRequest r) : req(std::move(r)) {}
  const ApiRequest req;
  const std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();
  // Waits up to `wait` for the next event; false when none came.
  bool pop(Event& e, std::chrono::milliseconds wait);
  void push(Event e);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  std::atomic<bool> cancelled_{false};
};

class ServeEngine {
 public:
  struct Options {
    int max_batch = 16;          // sequences decoded together
    int max_queue = 64;          // requests waiting beyond those (then 429)
    int64_t prefill_budget = 512;  // prompt tokens per step
  };
  ServeEngine(std::shared_ptr<const Model> model, Options opts);
  ~ServeEngine();  // cancels what is in flight and stops the thread

  // Queues a request; throws ApiError 429 when the queue is full, 503 while draining.
  std::shared_ptr<Job> submit(ApiRequest req);
  // Stops taking requests (503) and waits until every request in flight has ended or
  // timeout_s has passed; returns whether all ended.
  bool drain(double timeout_s);
  // Prometheus text for /metrics (the engine's part; the HTTP layer adds its counters).
  std::string metrics_text();
  size_t in_flight();

 private:
  void run();
  void admit(const std::shared_ptr<Job>& job);
  void fail_all(const std::string& message);
  void job_ended();  // a job in flight ended: one fewer, drain() may wake
  // A job that ends before any of its choices ran (cancelled while queued, or `error`).
  void end_unstarted(Job& job, const std::string& error);
  std::shared_ptr<const Model> model_;
  Options opts_;
  std::unique_ptr<BatchScheduler> batch_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> inbox_;
  size_t jobs_ = 0;  // submitted and not ended (guarded by mu_)
  bool draining_ = false, stop_ = false;
  // Engine thread only: the jobs running and which choice each scheduler id is.
  struct Running {
    std::shared_ptr<Job> job;
    int choice = 0;
    std::chrono::steady_clock::time_point last;  // the submit, then each token
    bool first = true;
  };
  std::unordered_map<uint64_t, Running> running_;
  std::unordered_map<Job*, int> choices_left_;
  // Metrics (guarded by metrics_mu_).
  std::mutex metrics_mu_;
  uint64_t prompt_tokens_ = 0, generation_tokens_ = 0, steps_ = 0, engine_errors_ = 0;
  uint64_t finished_[3] = {0, 0, 0};  // choices by FinishReason (length, stop, cancelled)
  size_t queue_depth_ = 0, batch_size_ = 0;
  Histogram ttft_{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
  Histogram tpot_{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};
  Histogram batch_hist_{{1, 2, 4, 8, 16, 32, 64, 128}};
  std::thread thread_;
};

}  // namespace reason::serve
