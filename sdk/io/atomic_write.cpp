#include "io/atomic_write.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "core/error.h"

namespace reason {

namespace {

std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Owns the temporary file until it has been renamed into place.
class TempFile {
 public:
  TempFile(std::string target) : target_(std::move(target)) {
    tmp_ = target_ + ".tmp." + std::to_string(::getpid());
    for (int attempt = 0;; ++attempt) {
      fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (fd_ >= 0) break;
      if (errno == EINTR) continue;
      // A leftover from an earlier process that had our pid and crashed mid-write.
      if (errno == EEXIST && attempt == 0 && ::unlink(tmp_.c_str()) == 0) continue;
      fail(ErrorCode::Io, "{}: cannot create temporary file {}: {}", target_, tmp_, std::strerror(errno));
    }
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, size_t size) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (size > 0) {
      ssize_t n = ::write(fd_, p, size);  // Linux writes at most ~2 GiB per call
      if (n < 0) {
        if (errno == EINTR) continue;
        fail(ErrorCode::Io, "{}: write failed: {}", tmp_, std::strerror(errno));
      }
      if (n == 0) fail(ErrorCode::Io, "{}: write made no progress", tmp_);
      p += n;
      size -= size_t(n);
    }
  }

  void commit() {
    if (::fsync(fd_) != 0) fail(ErrorCode::Io, "{}: fsync failed: {}", tmp_, std::strerror(errno));
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail(ErrorCode::Io, "{}: close failed: {}", tmp_, std::strerror(errno));
    if (::rename(tmp_.c_str(), target_.c_str()) != 0)
      fail(ErrorCode::Io, "{}: cannot rename {} over it: {}", target_, tmp_, std::strerror(errno));
    committed_ = true;
    // Make the rename itself durable.
    std::string dir = parent_dir(target_);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
      fail(ErrorCode::Io, "{}: cannot open directory {} to fsync it: {}", target_, dir, std::strerror(errno));
    int rc = ::fsync(dfd);
    int err = errno;
    ::close(dfd);
    // Some file systems cannot fsync a directory (EINVAL); the rename is then as durable as they allow.
    if (rc != 0 && err != EINVAL)
      fail(ErrorCode::Io, "{}: fsync of directory {} failed: {}", target_, dir, std::strerror(err));
  }

 private:
  std::string target_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void atomic_write(const std::string& path, const std::function<void(const ByteSink& sink)>& produce) {
  if (path.empty()) fail(ErrorCode::InvalidArgument, "atomic_write: empty path");
  TempFile tmp(path);
  ByteSink sink = [&tmp](const void* data, size_t size) { tmp.write(data, size); };
  produce(sink);
  tmp.commit();
}

void atomic_write_file(const std::string& path, std::string_view bytes) {
  atomic_write(path, [&](const ByteSink& sink) { sink(bytes.data(), bytes.size()); });
}

}  // namespace reason
