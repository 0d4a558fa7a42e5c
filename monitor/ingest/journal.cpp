#include "ingest/journal.hpp"

// How the position moves:
//
// - poll() reads on from where the previous poll() stopped (pending
//   position); commit() persists that position. After a restart the tail
//   resumes at the last commit, so lines polled but not committed are read
//   again (at least once; replays are idempotent `duplicate`s downstream).
// - The journal's inode changed (rename + new file): the old file is found
//   by its inode in the same directory and read to its end first. While the
//   new file is still empty the writer may not have reopened yet (logrotate's
//   `create` makes the new file before the writer is told), so the tail keeps
//   reading the old file until the new one has data. Once it does, the
//   writer has moved on: an unterminated last line of the old file will never
//   be finished and is returned as it is (the ingestor then reports it
//   `malformed`, visibly, instead of it vanishing).
// - The same inode but shorter than the position: truncated (copytruncate);
//   read again from 0.
// - A rotated file that is gone from the directory (deleted, compressed,
//   moved elsewhere) cannot be finished; the tail goes on with the new file.
//   Likewise only the one rotated file holding the position is read: a file
//   rotated twice between polls loses the middle one.
// - Known limit of an inode-only position: when a rotated file is deleted and
//   its inode reused by the new journal, that looks like the same file.
//
// Lines: only complete ('\n'-terminated) lines, without the '\n'; lines of
// only whitespace are skipped. A line longer than kMaxLineBytes is returned
// cut to its first kMaxLineBytes bytes (one more than the ingest limit), so
// the ingestor answers `too_large` for it without the tail holding the whole
// line in memory. One poll() returns about kMaxBytesPerPoll at most; the
// rest comes with the next poll().

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <optional>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/canonical_json.hpp"
#include "ingest/envelope.hpp"

namespace driftwatch::ingest {
namespace {

constexpr size_t kMaxLineBytes = kMaxEnvelopeBytes + 1;
constexpr size_t kMaxBytesPerPoll = size_t{16} << 20;
constexpr size_t kReadChunk = size_t{64} * 1024;
constexpr size_t kMaxOffsetFileBytes = 4096;

std::string describe_errno(int error) {
  return std::generic_category().message(error);
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
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

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

int open_retrying(int dirfd, const char* path, int flags, mode_t mode = 0) {
  int fd;
  do {
    fd = ::openat(dirfd, path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

struct OpenFile {
  Fd fd;
  ino_t inode = 0;
  uint64_t size = 0;
};

// nullopt when the file does not exist.
Result<std::optional<OpenFile>> open_journal(const std::filesystem::path& path) {
  Fd fd(open_retrying(AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    return fail("cannot open launch journal ", path.string(), ": ", describe_errno(errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return fail("cannot stat launch journal ", path.string(), ": ", describe_errno(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return fail("launch journal ", path.string(), " is not a regular file");
  }
  return OpenFile{std::move(fd), st.st_ino, static_cast<uint64_t>(st.st_size)};
}

// The regular file with `inode` in `directory` (on the directory's device),
// if any: where a rotated journal went.
Result<std::optional<OpenFile>> find_by_inode(const std::filesystem::path& directory, ino_t inode) {
  const std::filesystem::path dir = directory.empty() ? std::filesystem::path(".") : directory;
  Fd dirfd(open_retrying(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd) {
    return fail("cannot open the directory ", dir.string(),
                " to look for a rotated launch journal: ", describe_errno(errno));
  }
  struct stat dir_st {};
  if (::fstat(dirfd.get(), &dir_st) != 0) {
    return fail("cannot stat ", dir.string(), ": ", describe_errno(errno));
  }
  // fdopendir takes the descriptor over; keep ours for openat/fstatat.
  DIR* stream = ::fdopendir(::dup(dirfd.get()));
  if (stream == nullptr) {
    return fail("cannot list ", dir.string(), ": ", describe_errno(errno));
  }
  std::optional<std::string> match;
  while (const dirent* entry = ::readdir(stream)) {
    if (entry->d_type != DT_REG && entry->d_type != DT_UNKNOWN) continue;
    // d_ino can differ from st_ino on overlay file systems, so confirm with
    // fstatat instead of trusting it.
    struct stat st {};
    if (::fstatat(dirfd.get(), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISREG(st.st_mode) && st.st_ino == inode && st.st_dev == dir_st.st_dev) {
      match = entry->d_name;
      break;
    }
  }
  ::closedir(stream);
  if (!match) return std::nullopt;

  Fd fd(open_retrying(dirfd.get(), match->c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;  // deleted meanwhile
    return fail("cannot open rotated launch journal ", (dir / *match).string(), ": ",
                describe_errno(errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || st.st_ino != inode) return std::nullopt;  // replaced meanwhile
  return OpenFile{std::move(fd), st.st_ino, static_cast<uint64_t>(st.st_size)};
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

struct ReadOutcome {
  uint64_t offset = 0;  // after the last consumed line
  bool at_end = false;  // everything up to end of file consumed (no partial line held back)
};

// Appends the complete lines of `fd` from `offset` to `lines`, until end of
// file or until the byte budget is spent. With `take_unterminated_tail` a
// last line without '\n' counts as complete (a rotated file whose writer
// has moved on).
Result<ReadOutcome> read_lines(const OpenFile& file, uint64_t offset, bool take_unterminated_tail,
                               size_t& budget, std::vector<std::string>& lines,
                               const std::filesystem::path& what) {
  std::array<char, kReadChunk> chunk;
  std::string line;
  uint64_t position = offset;  // of the next byte to read
  uint64_t consumed = offset;
  while (true) {
    const ssize_t n =
        ::pread(file.fd.get(), chunk.data(), chunk.size(), static_cast<off_t>(position));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot read launch journal ", what.string(), ": ", describe_errno(errno));
    }
    if (n == 0) break;
    std::string_view data(chunk.data(), static_cast<size_t>(n));
    while (!data.empty()) {
      const size_t newline = data.find('\n');
      const std::string_view piece = data.substr(0, newline);
      if (line.size() < kMaxLineBytes) {
        line.append(piece.substr(0, kMaxLineBytes - line.size()));
      }
      if (newline == std::string_view::npos) {
        position += data.size();
        break;
      }
      position += newline + 1;
      data.remove_prefix(newline + 1);
      consumed = position;
      if (!is_blank(line)) {
        budget -= std::min(budget, line.size() + 1);
        lines.push_back(std::move(line));
      }
      line.clear();
      if (budget == 0) return ReadOutcome{consumed, false};
    }
  }
  if (consumed == position) return ReadOutcome{consumed, true};
  if (take_unterminated_tail) {
    if (!is_blank(line)) {
      budget -= std::min(budget, line.size());
      lines.push_back(std::move(line));
    }
    return ReadOutcome{position, true};
  }
  return ReadOutcome{consumed, false};
}

struct Position {
  ino_t inode = 0;
  uint64_t offset = 0;
};

// nullopt when the offset file does not exist yet.
Result<std::optional<Position>> read_offset_file(const std::filesystem::path& path) {
  const std::string what = "journal offset file " + path.string();
  Fd fd(open_retrying(AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    return fail("cannot read ", what, ": ", describe_errno(errno));
  }
  std::string text;
  std::array<char, 1024> buffer;
  while (text.size() <= kMaxOffsetFileBytes) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot read ", what, ": ", describe_errno(errno));
    }
    if (n == 0) break;
    text.append(buffer.data(), static_cast<size_t>(n));
  }
  const std::string remedy =
      " (delete it to read the journal again from its start; replayed envelopes are duplicates)";
  if (text.size() > kMaxOffsetFileBytes) {
    return fail(what, " is larger than ", std::to_string(kMaxOffsetFileBytes), " bytes", remedy);
  }
  auto document = parse_json(text, what);
  if (!document) return fail(document.error().message, remedy);
  if (!document->is_object() || document->size() != 2 || !document->contains("inode") ||
      !document->contains("offset") || !(*document)["inode"].is_number_unsigned() ||
      !(*document)["offset"].is_number_unsigned()) {
    return fail(what, " must be {\"inode\": N, \"offset\": N} with non-negative integers", remedy);
  }
  return Position{static_cast<ino_t>((*document)["inode"].get<uint64_t>()),
                  (*document)["offset"].get<uint64_t>()};
}

Result<void> write_all(int fd, std::string_view data) {
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

// Temp file + fsync + rename + fsync of the directory: after a crash the
// offset file is the old one or the new one, never a torn one.
Result<void> write_offset_file(const std::filesystem::path& path, Position position) {
  const std::string what = "journal offset file " + path.string();
  const std::filesystem::path directory =
      path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec)
    return fail("cannot write ", what, ": cannot create ", directory.string(), ": ", ec.message());

  const nlohmann::json document{{"inode", static_cast<uint64_t>(position.inode)},
                                {"offset", position.offset}};
  const std::string text = document.dump() + "\n";
  std::filesystem::path temporary = path;
  temporary += ".tmp";
  {
    Fd fd(
        open_retrying(AT_FDCWD, temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return fail("cannot write ", what, ": ", describe_errno(errno));
    if (auto written = write_all(fd.get(), text); !written) {
      return fail("cannot write ", what, ": ", written.error().message);
    }
    if (::fsync(fd.get()) != 0) return fail("cannot fsync ", what, ": ", describe_errno(errno));
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    return fail("cannot write ", what, ": rename from ", temporary.string(),
                " failed: ", describe_errno(errno));
  }
  Fd dirfd(open_retrying(AT_FDCWD, directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd || ::fsync(dirfd.get()) != 0) {
    return fail("cannot fsync the directory of ", what, ": ", describe_errno(errno));
  }
  return {};
}

}  // namespace

JournalTail::JournalTail(std::filesystem::path journal, std::filesystem::path offset_file)
    : journal_(std::move(journal)), offset_file_(std::move(offset_file)) {}

Result<void> JournalTail::load() {
  if (loaded_) return {};
  DW_TRY(stored, read_offset_file(offset_file_));
  if (stored) {
    inode_ = stored->inode;
    offset_ = stored->offset;
    on_disk_ = true;
  }
  pending_inode_ = inode_;
  pending_offset_ = offset_;
  loaded_ = true;
  return {};
}

Result<std::vector<std::string>> JournalTail::poll() {
  if (auto loaded = load(); !loaded) return std::unexpected(loaded.error());
  std::vector<std::string> lines;
  size_t budget = kMaxBytesPerPoll;
  DW_TRY(current, open_journal(journal_));

  if (pending_inode_ != 0 && (!current || current->inode != pending_inode_)) {
    // The file we were reading was rotated away (or the journal removed).
    DW_TRY(rotated, find_by_inode(journal_.parent_path(), pending_inode_));
    if (rotated) {
      const bool writer_moved_on = current && current->size > 0;
      const uint64_t from = pending_offset_ <= rotated->size ? pending_offset_ : 0;
      DW_TRY(read, read_lines(*rotated, from, writer_moved_on, budget, lines, journal_));
      pending_offset_ = read.offset;
      if (!writer_moved_on || !read.at_end) return lines;
    }
    if (!current) return lines;  // nothing to switch to yet
    pending_inode_ = current->inode;
    pending_offset_ = 0;
  }
  if (!current) return lines;
  if (pending_inode_ == 0) {
    pending_inode_ = current->inode;
    pending_offset_ = 0;
  }
  if (current->size < pending_offset_) pending_offset_ = 0;  // truncated in place
  DW_TRY(read, read_lines(*current, pending_offset_, false, budget, lines, journal_));
  pending_offset_ = read.offset;
  return lines;
}

Result<void> JournalTail::commit() {
  if (auto loaded = load(); !loaded) return std::unexpected(loaded.error());
  if (on_disk_ && pending_inode_ == inode_ && pending_offset_ == offset_) return {};
  if (auto written = write_offset_file(offset_file_, Position{pending_inode_, pending_offset_});
      !written) {
    return std::unexpected(written.error());
  }
  inode_ = pending_inode_;
  offset_ = pending_offset_;
  on_disk_ = true;
  return {};
}

}  // namespace driftwatch::ingest
