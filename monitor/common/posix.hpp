#pragma once
// The few POSIX helpers every module that touches file descriptors needs,
// here once instead of a copy per module: an owning descriptor, a write loop
// and errno as words.

#include <unistd.h>

#include <cerrno>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/result.hpp"

namespace driftwatch {

/// errno as a readable phrase ("No such file or directory").
inline std::string describe_errno(int error) {
  return std::generic_category().message(error);
}

/// Owns one file descriptor and closes it when destroyed. Move-only.
class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// Closes the descriptor now (close errors on a read-only descriptor say
  /// nothing a caller could act on).
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  /// Gives the descriptor up without closing it.
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

/// Writes all of `data`, retrying short writes and EINTR. The error is
/// describe_errno() of the failing write; the caller names the file.
inline Result<void> write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(Error{describe_errno(errno)});
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

}  // namespace driftwatch
