// A read-only memory mapping of a whole file (the way safetensors weights are read: zero-copy,
// paged in on demand by the kernel).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace reason {

// Owns one read-only, private mapping of a regular file for its whole lifetime; the file
// descriptor is closed as soon as the mapping exists. Immutable after open: any number of
// threads may read data() concurrently. Not copyable or movable (tensors point into it);
// share it through the shared_ptr that open() returns, which tensor views keep alive.
//
// Caveat inherent to mmap: if another process truncates the file while it is mapped, reading
// the lost pages raises SIGBUS. Model files are treated as immutable while loaded.
class MappedFile {
 public:
  // Maps `path` read-only. An empty file gives size() == 0 and data() == nullptr (nothing to map).
  // Throws reason::Error(Io) naming the path and the errno text when the file cannot be opened,
  // is not a regular file, or cannot be mapped.
  static std::shared_ptr<const MappedFile> open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // First byte of the file (nullptr when size() == 0). Valid while this object lives.
  const uint8_t* data() const { return data_; }
  // File length in bytes at the time it was mapped.
  size_t size() const { return size_; }
  // The path as given to open().
  const std::string& path() const { return path_; }

  // Hints the kernel to read [offset, offset + length) ahead (MADV_WILLNEED), e.g. before a
  // tensor is streamed to a device. Ranges are clamped to the file; failure is ignored (a
  // hint). Safe from any thread.
  void prefetch(size_t offset, size_t length) const;
  // Drops the resident pages of [offset, offset + length) (MADV_DONTNEED) once the caller holds its
  // own copy of those bytes: the mapping is private and never written, so a later read just pages
  // them in from the file again. Clamped to the file; failure is ignored. Safe from any thread.
  void release(size_t offset, size_t length) const;

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace reason
