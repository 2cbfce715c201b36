// Data parallelism for the trainer: ZeRO-1's assignment of parameters (and so of AdamW state) to
// ranks, parameter broadcasts and the device collective (the gradient all-reduce is
// train/gradient_reducer.h's). The collectives themselves are the Communicator's (MPI) or NCCL's.
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

// ZeRO-1: which rank keeps each parameter's AdamW state and updates it (then broadcasts it). Whole
// tensors, balanced by element count (largest first to the least-loaded rank; PyTorch's
// ZeroRedundancyOptimizer partitions the same way). Index i is params[i]'s owner.
std::vector<int> zero1_owners(const std::vector<std::pair<std::string, Tensor>>& params, int ranks);

// The values of `t` from rank `root` to every rank (over the device collective when given, else MPI,
// device tensors through host memory).
void broadcast_tensor(Communicator& c, const Tensor& t, int root, kernels::DeviceCollective* device = nullptr);

// Waits for the collectives enqueued on `device` (NCCL runs them asynchronously on the stream),
// against the collective timeout: when NCCL fails or the time passes, prints why and aborts the job
// (MPI_Abort), as an MPI collective that times out does. Nothing when device is null.
void wait_device(const Communicator& c, kernels::DeviceCollective* device);

// The device collective of backend `be` for the ranks of c (rank 0 makes the id, MPI carries it):
// nullptr when the backend has none (the CPU). Every rank calls it at the same point.
std::unique_ptr<kernels::DeviceCollective> make_device_collective(Communicator& c, kernels::Backend& be);

}  // namespace reason
