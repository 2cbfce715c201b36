// A resizable array of T in a backend's memory (Backend::alloc): the activations, scratch
// buffers and per-pass index arrays of the forward and backward passes. Unlike std::vector it
// never gives the host its elements: data() is a device pointer that only the backend's ops may
// touch; the host reads and writes through upload() / download() (or read(), which avoids the
// copy when the backend's memory is host memory).
//
// Ownership: owns its allocation (move-only); the backend must outlive it.
// resize() keeps the allocation when it is large enough and otherwise allocates anew WITHOUT
// keeping the old elements (every user overwrites what it resizes); zeros() resizes and fills 0.
// Threads: not synchronised; one pass on one thread owns it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include "reason/kernels/backend.h"

namespace reason {

template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(kernels::Backend& be, size_t n) { resize(be, n); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept { swap(o); }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      release();
      swap(o);
    }
    return *this;
  }
  ~DeviceArray() { release(); }

  // n elements on `be`, contents undefined (see above). A new backend drops the old allocation.
  // Throws std::length_error when n elements overflow a size_t of bytes, and whatever be.alloc
  // throws when it cannot allocate.
  void resize(kernels::Backend& be, size_t n) {
    if (be_ != &be) release();
    be_ = &be;
    if (n > cap_) {
      if (n > SIZE_MAX / sizeof(T)) throw std::length_error("DeviceArray: size overflows");
      be.dealloc(p_);
      p_ = nullptr;
      cap_ = 0;
      p_ = static_cast<T*>(be.alloc(n * sizeof(T)));
      cap_ = n;
    }
    n_ = n;
  }
  // n zero elements on `be`.
  void zeros(kernels::Backend& be, size_t n) {
    resize(be, n);
    if (n) be.fill_zero(p_, n * sizeof(T));
  }
  // Frees the allocation (size 0).
  void release() {
    if (be_ && p_) be_->dealloc(p_);
    p_ = nullptr;
    n_ = cap_ = 0;
  }
  // The host's elements, uploaded (resizes to src.size()).
  void upload(kernels::Backend& be, std::span<const T> src) {
    resize(be, src.size());
    if (!src.empty()) be.upload(p_, src.data(), src.size() * sizeof(T));
  }
  // A copy of another array's elements (same backend memory, resizes).
  void copy_from(kernels::Backend& be, const DeviceArray& src) {
    resize(be, src.size());
    if (n_) be.copy_bytes(p_, src.data(), n_ * sizeof(T));
  }
  // The elements [i0, i0 + n) in host memory.
  std::vector<T> download(size_t i0, size_t n) const {
    if (i0 > n_ || n > n_ - i0) throw std::out_of_range("DeviceArray::download: elements past the end");
    std::vector<T> out;
    // GCC 12 warns (-Walloc-size-larger-than) that a size_t from an int64_t might exceed
    // PTRDIFF_MAX after inlining, though the range check above bounds it by an allocation's size.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
    out.resize(n);
#pragma GCC diagnostic pop
    if (n) be_->download(out.data(), p_ + i0, n * sizeof(T));
    return out;
  }
  std::vector<T> download() const { return download(0, n_); }
  // The elements for the host to read: the array itself when the backend's memory is host
  // memory, else a copy downloaded into `mirror`. Valid until this array or mirror changes.
  std::span<const T> read(std::vector<T>& mirror) const {
    if (!n_) return {};
    if (be_->host_addressable()) return {p_, n_};
    mirror = download();
    return mirror;
  }

  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  kernels::Backend* backend() const { return be_; }

 private:
  void swap(DeviceArray& o) noexcept {
    std::swap(be_, o.be_);
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    std::swap(cap_, o.cap_);
  }
  kernels::Backend* be_ = nullptr;
  T* p_ = nullptr;
  size_t n_ = 0, cap_ = 0;
};

}  // namespace reason
