// A dense, row-major tensor: dtype, shape, the device its elements live on and a pointer to them,
// which it either owns or borrows from a keep-alive owner (e.g. a memory-mapped file).
// Device: backend() is null for host memory the tensor allocated itself (64-byte aligned, 2 MiB
// with huge pages when large) or borrowed; otherwise the backend whose alloc() gave the memory
// (freed with its dealloc() when the last copy goes; the backend must outlive it). Only the
// backend's ops may touch device memory; data<T>() of a tensor on a non-CPU backend is a device
// pointer (host_accessible() says whether the host may dereference it).
// Copying a Tensor shares the storage (like a shared_ptr). Not synchronised: a tensor that is
// written must not be shared across threads without external synchronisation; read-only
// tensors (model weights) may be read from any thread.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reason/kernels/backend.h"
#include "reason/kernels/dtype.h"

namespace reason {

using kernels::DType;
using Shape = std::vector<int64_t>;

class Tensor {
 public:
  Tensor() = default;

  // Owned, uninitialised host storage. Throws reason::Error(OutOfMemory) if allocation fails.
  static Tensor empty(DType dtype, Shape shape);
  // Owned, zero-filled host storage.
  static Tensor zeros(DType dtype, Shape shape);
  // Owned storage in `be`'s memory (Backend::alloc): uninitialised, or zero-filled by the backend.
  // Throws reason::Error(OutOfMemory) naming the tensor if the backend cannot allocate it.
  static Tensor empty(kernels::Backend& be, DType dtype, Shape shape);
  static Tensor zeros(kernels::Backend& be, DType dtype, Shape shape);
  // Borrowed storage kept alive by `owner` (may be null when the caller guarantees lifetime).
  static Tensor view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner);

  bool defined() const { return data_ != nullptr || (numel() == 0 && !shape_.empty()); }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int64_t numel() const;
  // Bytes of the elements (whole blocks for the quantised dtypes, whose last dimension is a
  // multiple of the block: empty() and view() check it).
  size_t nbytes() const { return kernels::dtype_nbytes(dtype_, numel()); }
  // The backend whose memory holds the elements, or null for host memory (see above).
  kernels::Backend* backend() const { return backend_; }
  bool host_accessible() const { return !backend_ || backend_->host_addressable(); }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <typename T> T* data() { return static_cast<T*>(data_); }
  template <typename T> const T* data() const { return static_cast<const T*>(data_); }

  // A new owned host tensor with the elements converted to `dtype` (copies even if equal); the
  // elements must be host-accessible.
  Tensor to(DType dtype) const;
  // The elements in host memory: this tensor when host_accessible(), else a downloaded copy.
  Tensor host() const;
  // A copy in `be`'s memory, uploaded from this tensor (whose elements must be host-accessible).
  Tensor on(kernels::Backend& be) const;
  // Rows [begin, begin + count) of a tensor of ndim >= 1, sharing its storage.
  Tensor slice_rows(int64_t begin, int64_t count) const;
  // Same storage, new shape with the same element count.
  Tensor reshape(Shape shape) const;

  std::string shape_str() const;

 private:
  // Throws InvalidArgument for a negative dimension or a quantised row of partial blocks.
  void check_shape() const;
  DType dtype_ = DType::F32;
  Shape shape_;
  void* data_ = nullptr;
  std::shared_ptr<const void> owner_;
  kernels::Backend* backend_ = nullptr;
};

}  // namespace reason
