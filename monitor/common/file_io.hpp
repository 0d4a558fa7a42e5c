#pragma once
// Reading files. Two kinds of input, two kinds of function:
//
// - Kernel files (/proc, cgroupfs): read_file_into() / read_file(), one
//   open, a read loop, one close; no iostreams, no stat (they are on the
//   sampling hot path).
// - Outside input (files named by configuration, the launch journal, state
//   files): open_regular_file() / read_regular_file(), which do not follow a
//   symbolic link, cannot block in open(2) (a FIFO would stop the event loop,
//   SIGTERM included), and refuse anything that is not a regular file.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/posix.hpp"
#include "common/result.hpp"

namespace driftwatch {

/// Reads all of `path` into `out` (reusing its capacity). Returns 0 or an
/// errno value; EFBIG when the file holds more than `max_bytes`.
int read_file_into(const char* path, std::string& out, size_t max_bytes);

/// The whole file, or an error "cannot read WHAT PATH: reason" (`what` may
/// be empty) and "…: larger than N bytes" past `max_bytes`.
Result<std::string> read_file(const std::filesystem::path& path, size_t max_bytes,
                              std::string_view what = "");

/// A regular file opened by open_regular_file(): a read-only, close-on-exec,
/// blocking descriptor and what fstat(2) said of it when it was opened.
struct RegularFile {
  Fd fd;
  ino_t inode = 0;
  dev_t device = 0;
  uint64_t size = 0;
};

/// Opens outside input for reading: O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, then
/// fstat, then O_NONBLOCK cleared again. Refuses, naming it as "WHAT PATH":
/// a symbolic link ("… is a symbolic link; name the file itself") and
/// anything that is not a regular file ("… is a FIFO, not a regular file").
/// Only the last component is checked for a link (O_NOFOLLOW): a linked
/// directory on the way is followed, as operators do with /var/log. Other
/// failures: "cannot open WHAT PATH: reason".
Result<RegularFile> open_regular_file(const std::filesystem::path& path, std::string_view what);

/// What is left of `file` to read, at most `max_bytes` ("cannot read NAME:
/// larger than N bytes" past it); `name` names the file in messages.
Result<std::string> read_opened_file(const RegularFile& file, size_t max_bytes,
                                     std::string_view name);

/// open_regular_file(), but a file that does not exist (ENOENT) is nullopt
/// instead of an error. A dangling symbolic link is still an error.
Result<std::optional<RegularFile>> open_regular_file_if_exists(const std::filesystem::path& path,
                                                               std::string_view what);

/// The whole of a file opened as by open_regular_file(). Errors as there,
/// "cannot read WHAT PATH: reason" for one that cannot be opened or read,
/// and "…: larger than N bytes" past `max_bytes`.
Result<std::string> read_regular_file(const std::filesystem::path& path, size_t max_bytes,
                                      std::string_view what);

/// read_regular_file(), but nullopt for a file that does not exist.
Result<std::optional<std::string>> read_regular_file_if_exists(const std::filesystem::path& path,
                                                               size_t max_bytes,
                                                               std::string_view what);

/// open_regular_file_if_exists() of `relative` below the directory `root`,
/// following no symbolic link below root: every directory on the way is
/// opened with openat(O_NOFOLLOW | O_DIRECTORY) from the one before, so a
/// link anywhere below root is refused ("WHAT ROOT/REL: tile on the way is a
/// symbolic link, which is not followed"), not only a last one. root itself
/// is followed (it is named by configuration). `relative` must be plain
/// names joined by '/': "", ".", ".." or a NUL is an error, never a lookup.
/// nullopt when root or a component does not exist, or a component on the
/// way is not a directory.
Result<std::optional<RegularFile>> open_regular_file_beneath(const std::filesystem::path& root,
                                                             std::string_view relative,
                                                             std::string_view what);

/// The whole of the file open_regular_file_beneath() opens; errors as there
/// and as in read_regular_file().
Result<std::optional<std::string>> read_regular_file_beneath(const std::filesystem::path& root,
                                                             std::string_view relative,
                                                             size_t max_bytes,
                                                             std::string_view what);

/// Replaces `path` with `text` so that after a crash it holds the old text
/// or the new, never a mix: a temporary file beside it (`path`.tmp, `mode`),
/// fsync, rename, fsync of the directory (created first when missing).
/// Errors name the file as "WHAT PATH".
Result<void> replace_file_durably(const std::filesystem::path& path, std::string_view text,
                                  mode_t mode, std::string_view what);

/// mkdir -p with mode 0700 for what it creates (state and key directories:
/// nobody else needs to list them). Existing directories keep their mode.
Result<void> make_private_dirs(const std::filesystem::path& dir);

}  // namespace driftwatch
