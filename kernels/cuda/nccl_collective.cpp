#include "nccl_collective.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "nccl_loader.h"

namespace reason::kernels::cuda {

namespace {

const NcclApi& api() {
  std::string why;
  const NcclApi* a = nccl_api(&why);
  if (!a) throw BackendError("data-parallel CUDA jobs need NCCL: " + why);
  return *a;
}

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw BackendError(std::string("NCCL ") + what + " failed: " + api().get_error_string(r));
}

class NcclCollective final : public DeviceCollective {
 public:
  NcclCollective(const std::string& id, int rank, int ranks, int device, cudaStream_t stream) : stream_(stream) {
    if (id.size() != sizeof(ncclUniqueId))
      throw BackendError("NCCL unique id has " + std::to_string(id.size()) + " bytes, not " + std::to_string(sizeof(ncclUniqueId)));
    ncclUniqueId uid;
    std::memcpy(&uid, id.data(), sizeof uid);
    if (cudaSetDevice(device) != cudaSuccess) throw BackendError("NCCL: cudaSetDevice(" + std::to_string(device) + ") failed");
    check(api().comm_init_rank(&comm_, ranks, uid, rank), "CommInitRank");
  }
  ~NcclCollective() override {
    if (comm_) api().comm_destroy(comm_);
  }
  void allreduce_sum(float* p, size_t n) override { check(api().all_reduce(p, p, n, ncclFloat32, ncclSum, comm_, stream_), "AllReduce"); }
  void broadcast(float* p, size_t n, int root) override { check(api().broadcast(p, p, n, ncclFloat32, root, comm_, stream_), "Broadcast"); }
  void group_start() override { check(api().group_start(), "GroupStart"); }
  void group_end() override { check(api().group_end(), "GroupEnd"); }
  void wait(double timeout_s) override {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    for (;;) {
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) abort("the stream failed: " + std::string(cudaGetErrorString(q)));
      ncclResult_t async = ncclSuccess;
      check(api().comm_get_async_error(comm_, &async), "CommGetAsyncError");
      if (async != ncclSuccess && async != ncclInProgress)
        abort(std::string("a collective failed (") + api().get_error_string(async) + "): a peer died or its network broke");
      if (std::chrono::duration<double>(clock::now() - t0).count() > timeout_s)
        abort("collectives did not complete within " + std::to_string(int64_t(timeout_s)) +
              " s (REASON_DIST_TIMEOUT_S): another rank died or hangs");
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

 private:
  [[noreturn]] void abort(const std::string& why) {
    api().comm_abort(comm_);  // its kernels stop, so the process can end
    comm_ = nullptr;
    throw BackendError("NCCL: " + why);
  }
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace

std::string nccl_unique_id() {
  ncclUniqueId uid;
  check(api().get_unique_id(&uid), "GetUniqueId");
  return std::string(reinterpret_cast<const char*>(&uid), sizeof uid);
}

std::unique_ptr<DeviceCollective> nccl_collective(const std::string& id, int rank, int ranks, int device, cudaStream_t stream) {
  return std::make_unique<NcclCollective>(id, rank, ranks, device, stream);
}

}  // namespace reason::kernels::cuda
