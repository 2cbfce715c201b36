// Data parallelism for the trainer: the gradient all-reduce in buckets and ZeRO-1's assignment of
// parameters (and so of AdamW state) to ranks. The collectives themselves are the Communicator's
// (MPI); these functions only decide what travels and in which pieces.
// Threads: called by the trainer's thread; every rank calls them in the same order.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "dist/communicator.h"
#include "train/logprob_pass.h"

namespace reason {

// Sums the gradients of `names` over the ranks of c, in place, in buckets of about bucket_bytes
// (small tensors are packed together into one buffer, a tensor larger than a bucket is reduced in
// bucket-sized pieces), as PyTorch DDP's buckets. Device tensors go through host memory.
// Returns the number of bucket all-reduces (for the benchmark's report). With a device collective
// (NCCL, on a backend whose memory the host cannot read) each bucket is one fused NCCL group on
// the device memory itself; otherwise MPI on host memory.
int64_t allreduce_gradients(Communicator& c, Gradients& g, const std::vector<std::string>& names, int64_t bucket_bytes,
                            kernels::DeviceCollective* device = nullptr);

// ZeRO-1: which rank keeps each parameter's AdamW state and updates it (then broadcasts it). Whole
// tensors, balanced by element count (largest first to the least-loaded rank; PyTorch's
// ZeroRedundancyOptimizer partitions the same way). Index i is params[i]'s owner.
std::vector<int> zero1_owners(const std::vector<std::pair<std::string, Tensor>>& params, int ranks);

// The values of `t` from rank `root` to every rank (over the device collective when given, else MPI,
// device tensors through host memory).
void broadcast_tensor(Communicator& c, const Tensor& t, int root, kernels::DeviceCollective* device = nullptr);

// The device collective of backend `be` for the ranks of c (rank 0 makes the id, MPI carries it):
// nullptr when the backend has none (the CPU). Every rank calls it at the same point.
std::unique_ptr<kernels::DeviceCollective> make_device_collective(Communicator& c, kernels::Backend& be);

}  // namespace reason
