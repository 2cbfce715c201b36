// A dense, row-major host tensor: dtype, shape and a pointer to its elements, which it either
// owns (64-byte aligned) or borrows from a keep-alive owner (e.g. a memory-mapped file).
// Copying a Tensor shares the storage (like a shared_ptr). Not synchronised: a tensor that is
// written must not be shared across threads without external synchronisation; read-only
// tensors (model weights) may be read from any thread.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reason/kernels/dtype.h"

namespace reason {

using kernels::DType;
using Shape = std::vector<int64_t>;

class Tensor {
 public:
  Tensor() = default;

  // Owned, uninitialised storage. Throws reason::Error(OutOfMemory) if allocation fails.
  static Tensor empty(DType dtype, Shape shape);
  // Owned, zero-filled storage.
  static Tensor zeros(DType dtype, Shape shape);
  // Borrowed storage kept alive by `owner` (may be null when the caller guarantees lifetime).
  static Tensor view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner);

  bool defined() const { return data_ != nullptr || (numel() == 0 && !shape_.empty()); }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * kernels::dtype_size(dtype_); }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <typename T> T* data() { return static_cast<T*>(data_); }
  template <typename T> const T* data() const { return static_cast<const T*>(data_); }

  // A new owned tensor with the elements converted to `dtype` (copies even if equal).
  Tensor to(DType dtype) const;
  // Rows [begin, begin + count) of a tensor of ndim >= 1, sharing its storage.
  Tensor slice_rows(int64_t begin, int64_t count) const;
  // Same storage, new shape with the same element count.
  Tensor reshape(Shape shape) const;

  std::string shape_str() const;

 private:
  DType dtype_ = DType::F32;
  Shape shape_;
  void* data_ = nullptr;
  std::shared_ptr<const void> owner_;
};

}  // namespace reason
