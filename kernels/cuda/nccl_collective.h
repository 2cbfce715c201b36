// NCCL collectives for the CUDA backend (Backend::device_collective): the unique id made by rank 0
// and shared over MPI by the caller, one communicator per trainer, every operation on the backend's
// stream. Threads: one thread at a time.
#pragma once
#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "reason/kernels/backend.h"

namespace reason::kernels::cuda {

// ncclGetUniqueId's bytes. Throws BackendError when NCCL cannot be loaded or fails.
std::string nccl_unique_id();
// Joins the group of `ranks` ranks as `rank` (ncclCommInitRank; blocks until all have joined) on
// CUDA device `device`, enqueuing on `stream`. Throws BackendError naming the NCCL error.
std::unique_ptr<DeviceCollective> nccl_collective(const std::string& id, int rank, int ranks, int device,
                                                  cudaStream_t stream);

}  // namespace reason::kernels::cuda
