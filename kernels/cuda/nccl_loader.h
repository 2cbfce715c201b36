// NCCL, loaded at run time with dlopen (CTranslate2's nccl_stub pattern), as cuBLAS is
// (cublas_loader.h): libreason never links libnccl, so a machine without it still loads the
// library; the first data-parallel job on CUDA loads libnccl.so.2.
// Threads: nccl_api() is safe from any thread; the load happens once and is kept (never dlclose'd).
#pragma once
#include <nccl.h>  // types only (ncclComm_t, ncclUniqueId, ncclResult_t, enums)

#include <string>

namespace reason::kernels::cuda {

struct NcclApi {
  ncclResult_t (*get_unique_id)(ncclUniqueId*) = nullptr;                                  // ncclGetUniqueId
  ncclResult_t (*comm_init_rank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;           // ncclCommInitRank
  ncclResult_t (*comm_destroy)(ncclComm_t) = nullptr;                                      // ncclCommDestroy
  ncclResult_t (*all_reduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                             cudaStream_t) = nullptr;                                      // ncclAllReduce
  ncclResult_t (*broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t,
                            cudaStream_t) = nullptr;                                       // ncclBroadcast
  ncclResult_t (*group_start)() = nullptr;                                                 // ncclGroupStart
  ncclResult_t (*group_end)() = nullptr;                                                   // ncclGroupEnd
  const char* (*get_error_string)(ncclResult_t) = nullptr;                                 // ncclGetErrorString
  ncclResult_t (*comm_abort)(ncclComm_t) = nullptr;                                        // ncclCommAbort
  ncclResult_t (*comm_get_async_error)(ncclComm_t, ncclResult_t*) = nullptr;               // ncclCommGetAsyncError
  std::string library;  // the soname that was loaded
};

// The process-wide NCCL table, or nullptr when NCCL cannot be loaded (*why names what was tried).
const NcclApi* nccl_api(std::string* why = nullptr);

}  // namespace reason::kernels::cuda
