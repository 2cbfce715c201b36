// The gradient all-reduce of data-parallel training, overlapped with the backward pass (PyTorch
// DDP's reducer): the trained gradients are cut into buckets in the order the backward finishes
// them (the last decoder layer first, down to the first; tensors outside the layers, such as the
// embeddings, the final norm and the LM head, last, since a tied embedding is written again at
// the very end), and a bucket's all-reduce starts as soon as the layer that completes it has run
// its backward, while the layers below it compute. The collectives themselves are MPI's or NCCL's.
//
// How each kind of memory travels:
// - host memory (the CPU backend): a tensor of at least a bucket is reduced in place, in
//   bucket-sized pieces; smaller tensors are packed into a bucket buffer (at most kBuffers in
//   flight) and copied back when their bucket completes. The collectives run on a communication
//   thread of the reducer's, so they progress while the backward computes; MPI needs
//   MPI_THREAD_SERIALIZED for that (the library asks for it when it initialises MPI; a program
//   that initialised MPI with less gets the all-reduce after the backward, not overlapped; so does
//   REASON_DIST_OVERLAP=0, for comparison).
// - device memory with a device collective (NCCL): each bucket is one fused NCCL group,
//   enqueued in place on the backend's stream when its layer is done.
// - device memory without one: through host buffers (download, all-reduce, upload).
//
// Threads: one trainer thread calls every method; between the first layer_done() of a step and
// finish() that thread must make no other call on the communicator (the reducer's thread uses
// it). Every rank makes the same calls in the same order (the same layers complete on every rank;
// a rank with nothing to train on calls finish() alone, which starts every bucket).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "train/logprob_pass.h"

namespace reason {

class GradientReducer {
 public:
  static constexpr int kBuffers = 4;  // host bucket buffers in flight (memory: 4 buckets)

  // Buckets of about bucket_bytes over the gradients `names` of g (which must outlive the
  // reducer and keep its tensors), for a model of n_layers decoder layers. `device`: the
  // backend's device collective (NCCL) or nullptr.
  GradientReducer(std::shared_ptr<Communicator> comm, Gradients& g, const std::vector<std::string>& names, int64_t n_layers,
                  int64_t bucket_bytes, kernels::DeviceCollective* device = nullptr);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Layer `layer`'s backward of the step's last micro-batch has added its gradients (layers
  // arrive in descending order): starts every bucket that is now complete. The first call of a
  // step begins it; throws Internal when the previous step never finished (a rank failed in the
  // middle of a backward: the ranks' collectives no longer match, so the job cannot go on).
  void layer_done(int64_t layer);
  // Starts the buckets not started yet, waits for every one and leaves the sums in the
  // gradients (on a device collective: enqueued on the backend's stream, which orders them before
  // anything enqueued later). Rethrows the communication thread's error, if any.
  struct Report {
    int64_t buckets = 0;         // bucket all-reduces this step
    double exposed_seconds = 0;  // the trainer's thread in layer_done() and finish(): what the step waited
    double busy_seconds = 0;     // in collectives, hidden behind the backward or not (host collectives only)
  };
  Report finish();

  // The number of buckets, and whether the collectives overlap the backward (a communication
  // thread, or a device collective).
  int64_t buckets() const { return int64_t(buckets_.size()); }
  int64_t started() const { return int64_t(started_); }  // buckets of this step started so far
  bool overlaps() const;

  // The decoder layer whose backward writes the gradient `name` ("...model.layers.N...": N), or
  // -1 for one outside the layers.
  static int64_t layer_of(const std::string& name);

 private:
  struct Piece {
    float* p;      // gradient memory
    size_t n, at;  // elements, offset in the bucket
    kernels::Backend* be;  // nullptr or host-addressable: host memory
  };
  struct Bucket {
    std::vector<Piece> pieces;
    size_t n = 0;
    int64_t stage = 0;  // complete once this many stages (layers, top down) have run
    bool in_place = false;  // one contiguous host piece, reduced where it lies
    int buffer = -1;        // the host buffer it travels in while in flight
    size_t job = 0;         // its number in the communication thread's queue
  };
  struct Worker;  // the communication thread and what it shares with this one

  void plan(Gradients& g, const std::vector<std::string>& names, int64_t n_layers, size_t cap);
  void start_ready(int64_t stages_done);
  void start(size_t k);
  void complete(size_t k);  // waits for bucket k and copies it back

  std::shared_ptr<Communicator> comm_;
  kernels::DeviceCollective* device_;
  int64_t n_layers_;
  std::vector<Bucket> buckets_;
  std::unique_ptr<Worker> worker_;  // null: collectives run on this thread
  std::vector<std::vector<float>> buffers_;  // kBuffers host buffers of the largest packed bucket
  std::vector<int> free_;                    // buffers not in flight
  size_t started_ = 0, completed_ = 0;       // buckets of this step, in order
  bool in_step_ = false;
  int64_t last_layer_ = 0;
  double exposed_ = 0, busy_ = 0;
};

}  // namespace reason
