#include "common/file_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace driftwatch {
namespace {

// Reads `fd` to its end into `out`. Returns 0 or an errno value; EFBIG when
// there is more than `max_bytes`.
int read_fd_into(int fd, std::string& out, size_t max_bytes) {
  out.clear();
  size_t used = 0;
  out.resize(std::min<size_t>(4096, max_bytes + 1));
  int error = 0;
  while (true) {
    if (used == out.size()) {
      if (out.size() > max_bytes) {
        error = EFBIG;
        break;
      }
      out.resize(std::min(out.size() * 2, max_bytes + 1));
    }
    const ssize_t n = ::read(fd, out.data() + used, out.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = errno;
      break;
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  out.resize(used);
  return error;
}

std::string name_of(std::string_view what, const std::filesystem::path& path) {
  return what.empty() ? path.string() : std::string(what) + " " + path.string();
}

std::unexpected<Error> not_regular(const std::string& name, mode_t mode) {
  const char* type = S_ISDIR(mode)    ? "a directory"
                     : S_ISFIFO(mode) ? "a FIFO"
                     : S_ISSOCK(mode) ? "a socket"
                     : S_ISCHR(mode)  ? "a character device"
                     : S_ISBLK(mode)  ? "a block device"
                                      : nullptr;
  if (type == nullptr) return fail(name, " is not a regular file");
  return fail(name, " is ", type, ", not a regular file");
}

// open_regular_file() with nullopt for ENOENT; `verb` ("open", "read") for
// the generic failure message.
Result<std::optional<RegularFile>> open_regular(const std::filesystem::path& path,
                                                std::string_view what, std::string_view verb) {
  const std::string name = name_of(what, path);
  // O_NONBLOCK: open(2) of a FIFO waits for a writer, forever if none comes;
  // with it the open returns at once and fstat below refuses the FIFO.
  // O_NOFOLLOW covers the last component only (ELOOP when it is a link).
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) return std::nullopt;
    // ELOOP: the name is a link (O_NOFOLLOW). ENXIO: a socket. Say which.
    struct stat st {};
    if ((error == ELOOP || error == ENXIO) && ::lstat(path.c_str(), &st) == 0) {
      if (S_ISLNK(st.st_mode)) return fail(name, " is a symbolic link; name the file itself");
      if (!S_ISREG(st.st_mode)) return not_regular(name, st.st_mode);
    }
    return fail("cannot ", verb, " ", name, ": ", describe_errno(error));
  }
  Fd owned(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return fail("cannot ", verb, " ", name, ": fstat failed: ", describe_errno(errno));
  }
  if (!S_ISREG(st.st_mode)) return not_regular(name, st.st_mode);
  // A regular file never blocks a read anyway; clear the flag so that the
  // descriptor behaves as any other for whoever reads it.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return fail("cannot ", verb, " ", name, ": fcntl failed: ", describe_errno(errno));
  }
  return RegularFile{std::move(owned), st.st_ino, st.st_dev, static_cast<uint64_t>(st.st_size)};
}

Result<std::optional<std::string>> read_regular(const std::filesystem::path& path, size_t max_bytes,
                                                std::string_view what) {
  DW_TRY(file, open_regular(path, what, "read"));
  if (!file) return std::nullopt;
  std::string text;
  const int error = read_fd_into(file->fd.get(), text, max_bytes);
  if (error == EFBIG) {
    return fail("cannot read ", name_of(what, path), ": larger than ", std::to_string(max_bytes),
                " bytes");
  }
  if (error != 0) return fail("cannot read ", name_of(what, path), ": ", describe_errno(error));
  return text;
}

}  // namespace

int read_file_into(const char* path, std::string& out, size_t max_bytes) {
  out.clear();
  int fd;
  do {
    fd = ::open(path, O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno;
  const int error = read_fd_into(fd, out, max_bytes);
  ::close(fd);
  return error;
}

Result<std::string> read_file(const std::filesystem::path& path, size_t max_bytes,
                              std::string_view what) {
  std::string text;
  std::string name = name_of(what, path);
  int error = read_file_into(path.c_str(), text, max_bytes);
  if (error == EFBIG)
    return fail("cannot read ", name, ": larger than ", std::to_string(max_bytes), " bytes");
  if (error != 0) return fail("cannot read ", name, ": ", std::generic_category().message(error));
  return text;
}

Result<RegularFile> open_regular_file(const std::filesystem::path& path, std::string_view what) {
  DW_TRY(file, open_regular(path, what, "open"));
  if (!file) return fail("cannot open ", name_of(what, path), ": ", describe_errno(ENOENT));
  return std::move(*file);
}

Result<std::optional<RegularFile>> open_regular_file_if_exists(const std::filesystem::path& path,
                                                               std::string_view what) {
  return open_regular(path, what, "open");
}

Result<std::string> read_regular_file(const std::filesystem::path& path, size_t max_bytes,
                                      std::string_view what) {
  DW_TRY(text, read_regular(path, max_bytes, what));
  if (!text) return fail("cannot read ", name_of(what, path), ": ", describe_errno(ENOENT));
  return std::move(*text);
}

Result<std::optional<std::string>> read_regular_file_if_exists(const std::filesystem::path& path,
                                                               size_t max_bytes,
                                                               std::string_view what) {
  return read_regular(path, max_bytes, what);
}

Result<void> make_private_dirs(const std::filesystem::path& dir) {
  std::filesystem::path partial;
  for (const auto& part : dir) {
    partial /= part;
    if (partial == partial.root_path()) continue;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST)
      return fail("cannot create directory ", partial.string(), ": ", std::strerror(errno));
  }
  return {};
}

}  // namespace driftwatch
