#include "common/file_io.hpp"

#include "common/posix.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <vector>

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

// open_regular_file() with nullopt for ENOENT, of `name` in the directory
// `dir_fd` (AT_FDCWD: a path); `display` names it in messages, `verb`
// ("open", "read") is for the generic failure message.
Result<std::optional<RegularFile>> open_regular_at(int dir_fd, const char* name,
                                                   const std::string& display,
                                                   std::string_view verb) {
  // O_NONBLOCK: open(2) of a FIFO waits for a writer, forever if none comes;
  // with it the open returns at once and fstat below refuses the FIFO.
  // O_NOFOLLOW covers the last component only (ELOOP when it is a link).
  int fd;
  do {
    fd = ::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) return std::nullopt;
    // ELOOP: the name is a link (O_NOFOLLOW). ENXIO: a socket. Say which.
    struct stat st {};
    if ((error == ELOOP || error == ENXIO) &&
        ::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISLNK(st.st_mode)) return fail(display, " is a symbolic link; name the file itself");
      if (!S_ISREG(st.st_mode)) return not_regular(display, st.st_mode);
    }
    return fail("cannot ", verb, " ", display, ": ", describe_errno(error));
  }
  Fd owned(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return fail("cannot ", verb, " ", display, ": fstat failed: ", describe_errno(errno));
  }
  if (!S_ISREG(st.st_mode)) return not_regular(display, st.st_mode);
  // A regular file never blocks a read anyway; clear the flag so that the
  // descriptor behaves as any other for whoever reads it.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return fail("cannot ", verb, " ", display, ": fcntl failed: ", describe_errno(errno));
  }
  return RegularFile{std::move(owned), st.st_ino, st.st_dev, static_cast<uint64_t>(st.st_size)};
}

Result<std::optional<RegularFile>> open_regular(const std::filesystem::path& path,
                                                std::string_view what, std::string_view verb) {
  return open_regular_at(AT_FDCWD, path.c_str(), name_of(what, path), verb);
}

Result<std::optional<std::string>> read_regular(const std::filesystem::path& path, size_t max_bytes,
                                                std::string_view what) {
  DW_TRY(file, open_regular(path, what, "read"));
  if (!file) return std::nullopt;
  DW_TRY(text, read_opened_file(*file, max_bytes, name_of(what, path)));
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

Result<std::string> read_opened_file(const RegularFile& file, size_t max_bytes,
                                     std::string_view name) {
  std::string text;
  const int error = read_fd_into(file.fd.get(), text, max_bytes);
  if (error == EFBIG) {
    return fail("cannot read ", name, ": larger than ", std::to_string(max_bytes), " bytes");
  }
  if (error != 0) return fail("cannot read ", name, ": ", describe_errno(error));
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

Result<std::optional<RegularFile>> open_regular_file_beneath(const std::filesystem::path& root,
                                                             std::string_view relative,
                                                             std::string_view what) {
  // Not root / relative: an absolute `relative` would replace root there.
  const std::string display = name_of(what, root.string() + "/" + std::string(relative));
  // The components, each checked: the walk must stay below root by itself,
  // whatever the caller checked before.
  std::vector<std::string> components;
  for (std::string_view rest = relative;;) {
    const size_t slash = rest.find('/');
    const std::string_view component = rest.substr(0, slash);
    if (component.empty() || component == "." || component == ".." ||
        component.find('\0') != std::string_view::npos) {
      return fail("cannot open ", display,
                  ": not a relative path of plain names (no '', '.', '..' or NUL)");
    }
    components.emplace_back(component);
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  int flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  Fd dir(::open(root.c_str(), flags));
  if (!dir) {
    if (errno == ENOENT) return std::nullopt;
    return fail("cannot open ", display, ": cannot open ", root.string(), ": ",
                describe_errno(errno));
  }
  // Each directory below root with O_NOFOLLOW: a link there is opened as
  // itself, and O_DIRECTORY then refuses it (ENOTDIR).
  flags |= O_NOFOLLOW;
  for (size_t i = 0; i + 1 < components.size(); ++i) {
    Fd next(::openat(dir.get(), components[i].c_str(), flags));
    if (!next) {
      const int error = errno;
      if (error == ENOENT) return std::nullopt;
      struct stat st {};
      if (error == ENOTDIR &&
          ::fstatat(dir.get(), components[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
          return fail(display, ": ", components[i],
                      " on the way is a symbolic link, which is not followed");
        }
        return std::nullopt;  // a file where a directory would be: no such path
      }
      return fail("cannot open ", display, ": ", describe_errno(error));
    }
    dir = std::move(next);
  }
  return open_regular_at(dir.get(), components.back().c_str(), display, "open");
}

Result<std::optional<std::string>> read_regular_file_beneath(const std::filesystem::path& root,
                                                             std::string_view relative,
                                                             size_t max_bytes,
                                                             std::string_view what) {
  DW_TRY(file, open_regular_file_beneath(root, relative, what));
  if (!file) return std::nullopt;
  DW_TRY(text, read_opened_file(*file, max_bytes,
                                name_of(what, root.string() + "/" + std::string(relative))));
  return text;
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

Result<void> replace_file_durably(const std::filesystem::path& path, std::string_view text,
                                  mode_t mode, std::string_view what) {
  const std::string name = std::string(what) + " " + path.string();
  const std::filesystem::path directory =
      path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec)
    return fail("cannot write ", name, ": cannot create ", directory.string(), ": ", ec.message());
  std::filesystem::path temporary = path;
  temporary += ".tmp";
  {
    Fd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
    if (!fd) return fail("cannot write ", name, ": ", std::strerror(errno));
    if (auto written = write_all(fd.get(), text); !written)
      return fail("cannot write ", name, ": ", written.error().message);
    if (::fsync(fd.get()) != 0) return fail("cannot fsync ", name, ": ", std::strerror(errno));
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0)
    return fail("cannot write ", name, ": rename from ", temporary.string(),
                " failed: ", std::strerror(errno));
  Fd dirfd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd || ::fsync(dirfd.get()) != 0)
    return fail("cannot fsync the directory of ", name, ": ", std::strerror(errno));
  return {};
}

}  // namespace driftwatch
