// The C ABI's thread rule for a model, enforced once for every language: many readers at once
// (generation, scoring, streams, expert load, saving an adapter, a trainer's logprobs) or one
// writer (a trainer step, or loading trainer state, which change the weights in place).
// - A writer waits for the readers in progress; readers that arrive while a writer waits or runs
//   wait for it (no writer starves), except a nested read on a thread that already reads the same
//   model (a token callback scoring with it), which goes ahead.
// - A writer fails at once instead of waiting when waiting could last for ever: a stream on the
//   model is open (its tokens are pulled at the caller's pace), or this thread is itself reading
//   the model (a step called from a token callback would wait for itself).
// Threads: every method may be called from any thread.
#pragma once
#include <condition_variable>
#include <mutex>

namespace reason::capi {

class ModelLock {
 public:
  class Read {
   public:
    explicit Read(ModelLock& l);
    ~Read();
    Read(const Read&) = delete;
    Read& operator=(const Read&) = delete;

   private:
    ModelLock& l_;
    bool nested_;
  };
  class Write {
   public:
    // Throws reason::Error(InvalidArgument) naming `what` when waiting could last for ever.
    Write(ModelLock& l, const char* what);
    ~Write();
    Write(const Write&) = delete;
    Write& operator=(const Write&) = delete;

   private:
    ModelLock& l_;
  };
  // A stream on the model was opened / freed (a writer fails while any is open).
  void stream_opened();
  void stream_closed();

 private:
  bool read_by_this_thread() const;
  std::mutex mu_;
  std::condition_variable cv_;
  int readers_ = 0, streams_ = 0, writers_waiting_ = 0;
  bool writer_ = false;
};

}  // namespace reason::capi
