#include "train/data_parallel.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "reason/kernels/backend.h"

namespace reason {

namespace {

// One piece of a bucket: n floats of a gradient at pointer p (on backend be; null: host memory), at offset `at` of the bucket.
struct Piece {
  kernels::Backend* be;
  float* p;
  size_t n, at;
};

}  // namespace

namespace {

// NCCL: the tensors of each bucket reduced as one group, in place on the device.
int64_t allreduce_on_device(kernels::DeviceCollective& d, Gradients& g, const std::vector<std::string>& names,
                            int64_t bucket_bytes) {
  const size_t cap = size_t(std::max<int64_t>(bucket_bytes, 4096)) / sizeof(float);
  int64_t reduces = 0;
  size_t in_bucket = 0;
  d.group_start();
  for (const std::string& name : names) {
    Tensor& t = g.at(name);
    float* p = t.data<float>();
    for (size_t off = 0, n = size_t(t.numel()); off < n;) {
      if (in_bucket == cap) {
        d.group_end();
        ++reduces;
        d.group_start();
        in_bucket = 0;
      }
      const size_t take = std::min(n - off, cap - in_bucket);
      d.allreduce_sum(p + off, take);
      in_bucket += take;
      off += take;
    }
  }
  d.group_end();
  return reduces + 1;
}

}  // namespace

std::unique_ptr<kernels::DeviceCollective> make_device_collective(Communicator& c, kernels::Backend& be) {
  if (c.size() <= 1 || be.host_addressable()) return nullptr;
  std::string id;
  on_rank0(c, [&] { id = be.device_collective_id(); });
  c.broadcast(id, 0);
  if (id.empty()) return nullptr;
  return be.device_collective(id, c.rank(), c.size());
}

int64_t allreduce_gradients(Communicator& c, Gradients& g, const std::vector<std::string>& names, int64_t bucket_bytes,
                            kernels::DeviceCollective* device) {
  if (c.size() <= 1) return 0;
  if (device) return allreduce_on_device(*device, g, names, bucket_bytes);
  const size_t cap = size_t(std::max<int64_t>(bucket_bytes, 4096)) / sizeof(float);
  std::vector<float> bucket;
  bucket.reserve(cap);
  std::vector<Piece> pieces;
  int64_t reduces = 0;
  auto flush = [&] {
    if (bucket.empty()) return;
    c.allreduce_sum(std::span<float>(bucket));
    ++reduces;
    for (const Piece& q : pieces)
      if (q.be) q.be->upload(q.p, bucket.data() + q.at, q.n * sizeof(float));
      else std::copy_n(bucket.data() + q.at, q.n, q.p);
    bucket.clear();
    pieces.clear();
  };
  for (const std::string& name : names) {
    Tensor& t = g.at(name);
    if (t.dtype() != kernels::DType::F32) fail(ErrorCode::Internal, "gradient '{}' is not f32", name);
    float* p = t.data<float>();
    for (size_t off = 0, n = size_t(t.numel()); off < n;) {
      if (bucket.size() == cap) flush();
      const size_t take = std::min(n - off, cap - bucket.size());
      const size_t at = bucket.size();
      bucket.resize(at + take);
      if (t.backend()) t.backend()->download(bucket.data() + at, p + off, take * sizeof(float));
      else std::copy_n(p + off, take, bucket.data() + at);
      pieces.push_back({t.backend(), p + off, take, at});
      off += take;
    }
  }
  flush();
  return reduces;
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
