#include "train/data_parallel.h"

#include <algorithm>
#include <fmt/format.h>
#include <numeric>

#include "core/error.h"
#include "core/log.h"
#include "reason/kernels/backend.h"

namespace reason {

std::unique_ptr<kernels::DeviceCollective> make_device_collective(Communicator& c, kernels::Backend& be) {
  if (c.size() <= 1 || be.host_addressable()) return nullptr;
  std::string id;
  on_rank0(c, [&] { id = be.device_collective_id(); });
  c.broadcast(id, 0);
  if (id.empty()) return nullptr;
  return be.device_collective(id, c.rank(), c.size());
}

void wait_device(const Communicator& c, kernels::DeviceCollective* device) {
  if (!device) return;
  try {
    device->wait(collective_timeout_seconds());
  } catch (const std::exception& e) {
    log_message(LogLevel::Error, fmt::format("libreason: rank {} of {}: {}; aborting the job", c.rank(), c.size(), e.what()));
    abort_job_if_distributed(3);
    throw;
  }
}

std::vector<int> zero1_owners(const std::vector<std::pair<std::string, Tensor>>& params, int ranks) {
  std::vector<size_t> order(params.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return params[a].second.numel() > params[b].second.numel(); });
  std::vector<int64_t> load(size_t(std::max(1, ranks)), 0);
  std::vector<int> owner(params.size(), 0);
  for (size_t i : order) {
    const size_t r = size_t(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = int(r);
    load[r] += params[i].second.numel();
  }
  return owner;
}

void broadcast_tensor(Communicator& c, const Tensor& t, int root, kernels::DeviceCollective* device) {
  if (c.size() <= 1) return;
  if (t.dtype() != kernels::DType::F32) fail(ErrorCode::Internal, "broadcast_tensor: only f32 tensors are broadcast");
  float* p = const_cast<float*>(t.data<float>());
  if (device) {
    device->broadcast(p, size_t(t.numel()), root);
    return;
  }
  if (!t.backend() || t.backend()->host_addressable()) {
    c.broadcast(std::span<float>(p, size_t(t.numel())), root);
    return;
  }
  std::vector<float> h(size_t(t.numel()));
  t.backend()->download(h.data(), p, h.size() * sizeof(float));
  c.broadcast(std::span<float>(h), root);
  t.backend()->upload(p, h.data(), h.size() * sizeof(float));
}

}  // namespace reason
