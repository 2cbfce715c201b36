// C ABI: pull-style streaming. generate() runs on a library thread whose token callback pushes
// events into a bounded queue; reason_stream_next pops them; reason_stream_free cancels and joins.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "capi_internal.h"
#include "handles.h"

namespace {

struct Event {
  int32_t token = 0;
  float logprob = 0;
  std::string text;
};

constexpr size_t kMaxQueued = 256;  // the producer waits when the reader falls this far behind

}  // namespace

struct reason_stream {
  std::shared_ptr<reason::capi::ModelLock> lock;  // open streams make a training step on the model fail
  ~reason_stream() {
    if (lock) lock->stream_closed();
  }
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Event> queue;
  bool finished = false, cancel = false;
  reason_finish_reason finish = REASON_FINISH_LENGTH;
  reason_status error = REASON_OK;
  std::string error_message;
  std::string current;  // the text handed out by the last reason_stream_next
  std::thread worker;
};

extern "C" {

REASON_API reason_status reason_stream_start(reason_stream** out, const reason_model* model, const char* prompt,
                                             const reason_sampling_options* opts) {
  REASON_CHECK_ARG(out, "reason_stream_start", "out is NULL");
  *out = nullptr;
  REASON_CHECK_ARG(model && model->model, "reason_stream_start", "model is NULL");
  REASON_CHECK_ARG(prompt, "reason_stream_start", "prompt is NULL");
  REASON_CHECK_ARG(model->tokenizer.tok, "reason_stream_start", "the model has no tokenizer");
  REASON_CHECK_ARG(!opts || opts->struct_size >= sizeof(uint32_t), "reason_stream_start", "opts->struct_size is not set");
  return reason::capi::guard("reason_stream_start", [&] {
    reason::GenRequest req;
    req.prompt = model->tokenizer.tok->encode(prompt, /*add_special_tokens=*/true);
    if (req.prompt.empty()) reason::fail(reason::ErrorCode::InvalidArgument, "the prompt encodes to no tokens");
    req.params = reason::capi::sampling_params(reason::capi::sampling_options_or_default(opts));
    req.params.validate();
    auto s = std::make_unique<reason_stream>();
    s->lock = model->lock;
    s->lock->stream_opened();
    reason_stream* sp = s.get();
    std::shared_ptr<const reason::Model> m = model->model;
    const int threads = reason::kernels::thread_cpu_threads();  // the starting thread's own count, if any
    sp->worker = std::thread([sp, m, threads, req = std::move(req)]() mutable {
      reason::kernels::ScopedCpuThreads own(threads);
      reason_status status = REASON_OK;
      std::string message;
      reason_finish_reason finish = REASON_FINISH_LENGTH;
      status = reason::capi::guard("reason_stream_next", [&] {
        std::vector<reason::GenRequest> reqs{std::move(req)};
        auto res = reason::generate(*m, reqs, [sp](size_t, int32_t tok, float lp, std::string_view text) {
          std::unique_lock<std::mutex> lk(sp->mu);
          sp->cv.wait(lk, [sp] { return sp->cancel || sp->queue.size() < kMaxQueued; });
          if (sp->cancel) return false;
          sp->queue.push_back(Event{tok, lp, std::string(text)});
          sp->cv.notify_all();
          return true;
        });
        finish = static_cast<reason_finish_reason>(static_cast<int>(res[0].finish));
      });
      if (status != REASON_OK) message = reason_last_error();
      std::lock_guard<std::mutex> lk(sp->mu);
      sp->finished = true;
      sp->finish = finish;
      sp->error = status;
      sp->error_message = message;
      sp->cv.notify_all();
    });
    *out = s.release();
  });
}

REASON_API reason_status reason_stream_next(reason_stream* s, reason_stream_event* ev) {
  REASON_CHECK_ARG(s, "reason_stream_next", "stream is NULL");
  REASON_CHECK_ARG(ev && ev->struct_size >= sizeof(reason_stream_event), "reason_stream_next",
                   "event is NULL or its struct_size is not set");
  std::unique_lock<std::mutex> lk(s->mu);
  s->cv.wait(lk, [s] { return !s->queue.empty() || s->finished; });
  if (!s->queue.empty()) {
    Event e = std::move(s->queue.front());
    s->queue.pop_front();
    s->cv.notify_all();  // room for the producer
    s->current = std::move(e.text);
    ev->done = 0;
    ev->token_id = e.token;
    ev->logprob = e.logprob;
    ev->text = s->current.c_str();
    ev->text_len = s->current.size();
    return REASON_OK;
  }
  if (s->error != REASON_OK) return reason::capi::fail_with(s->error, s->error_message);
  s->current.clear();
  ev->done = 1;
  ev->token_id = -1;
  ev->logprob = 0;
  ev->text = s->current.c_str();
  ev->text_len = 0;
  ev->finish_reason = s->finish;
  return REASON_OK;
}

REASON_API void reason_stream_free(reason_stream* s) {
  if (!s) return;
  {
    std::lock_guard<std::mutex> lk(s->mu);
    s->cancel = true;
    s->cv.notify_all();
  }
  if (s->worker.joinable()) s->worker.join();
  delete s;
}

}  // extern "C"
