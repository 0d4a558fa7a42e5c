#include "common/file_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace driftwatch {

int read_file_into(const char* path, std::string& out, size_t max_bytes) {
  out.clear();
  int fd;
  do {
    fd = ::open(path, O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno;
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
  ::close(fd);
  out.resize(used);
  return error;
}

Result<std::string> read_file(const std::filesystem::path& path, size_t max_bytes,
                              std::string_view what) {
  std::string text;
  std::string name = what.empty() ? path.string() : std::string(what) + " " + path.string();
  int error = read_file_into(path.c_str(), text, max_bytes);
  if (error == EFBIG)
    return fail("cannot read ", name, ": larger than ", std::to_string(max_bytes), " bytes");
  if (error != 0) return fail("cannot read ", name, ": ", std::generic_category().message(error));
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

}  // namespace driftwatch
