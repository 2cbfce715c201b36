#include "nccl_collective.h"

#include <cstring>

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

 private:
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
