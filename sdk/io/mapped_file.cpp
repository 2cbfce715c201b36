#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace reason {

namespace {

// Closes a descriptor on every path out of open().
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) fail(ErrorCode::Io, "{}: cannot open: {}", path, std::strerror(errno));
  FdCloser closer{fd};

  struct stat st;
  if (::fstat(fd, &st) != 0) fail(ErrorCode::Io, "{}: cannot stat: {}", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(ErrorCode::Io, "{}: not a regular file", path);
  if (st.st_size < 0) fail(ErrorCode::Io, "{}: negative file size", path);

  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = size_t(st.st_size);
  if (m->size_ == 0) return m;  // mmap of length 0 is EINVAL; an empty file maps to nothing

  void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) fail(ErrorCode::Io, "{}: cannot mmap {} bytes: {}", path, m->size_, std::strerror(errno));
  m->data_ = static_cast<const uint8_t*>(p);
  return m;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::prefetch(size_t offset, size_t length) const {
  if (!data_ || offset >= size_) return;
  if (length > size_ - offset) length = size_ - offset;
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  size_t begin = offset / page * page;  // madvise needs a page-aligned start
  ::madvise(const_cast<uint8_t*>(data_) + begin, length + (offset - begin), MADV_WILLNEED);
}

void MappedFile::release(size_t offset, size_t length) const {
  if (!data_ || offset >= size_) return;
  if (length > size_ - offset) length = size_ - offset;
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  const size_t begin = offset / page * page;
  ::madvise(const_cast<uint8_t*>(data_) + begin, length + (offset - begin), MADV_DONTNEED);
}

}  // namespace reason
