#include "ingest/journal.hpp"

// How the position moves:
//
// - poll_lines() reads on from where the previous poll stopped (pending
//   position); commit() persists that position, commit_through(line) the
//   one just after `line` (and moves the pending position back there, so
//   the lines after it come again). After a restart the tail resumes at the
//   last commit, so lines polled but not committed are read again (at least
//   once; replays are idempotent `duplicate`s downstream).
// - The journal's inode changed (rename + new file): the old file is found
//   by its inode in the same directory and read to its end first. While the
//   new file is still empty the writer may not have reopened yet (logrotate's
//   `create` makes the new file before the writer is told), so the tail keeps
//   reading the old file until the new one has data. Once it does, the
//   writer has moved on: an unterminated last line of the old file will never
//   be finished and is returned as it is (the ingestor then reports it
//   `malformed`, visibly, instead of it vanishing).
// - The same inode, rewritten in place: read again from 0. Shorter than the
//   position is the plain case (truncated). copytruncate followed by new
//   lines past the old offset before the next poll leaves the size no hint,
//   so the position carries the up to 64 bytes before it (the end of the
//   last consumed line; an envelope ends in its signature, so two lines
//   alike there are not expected) and every poll compares them with the
//   file. Different bytes: rewritten, read again from 0.
// - A rotated file that is gone from the directory (deleted, compressed,
//   moved elsewhere) cannot be finished; the tail goes on with the new file.
//   Likewise only the one rotated file holding the position is read: a file
//   rotated twice between polls loses the middle one.
// - When a rotated file is deleted and its inode reused by the new journal,
//   that looks like the same file; the bytes before the position tell it
//   apart unless the new file holds the same bytes there.
//
// Lines: only complete ('\n'-terminated) lines, without the '\n'; lines of
// only whitespace are skipped. A line longer than kMaxLineBytes is returned
// cut to its first kMaxLineBytes bytes (one more than the ingest limit), so
// the ingestor answers `too_large` for it without the tail holding the whole
// line in memory. One poll returns about kMaxBytesPerPoll at most (the bytes
// kept per line for its position counted too); the rest comes with the next.

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
#include "common/file_io.hpp"
#include "common/posix.hpp"
#include "common/sha256.hpp"
#include "ingest/envelope.hpp"

namespace driftwatch::ingest {
namespace {

using Position = JournalTail::Position;

constexpr size_t kMaxLineBytes = kMaxEnvelopeBytes + 1;
constexpr size_t kMaxBytesPerPoll = size_t{16} << 20;
constexpr size_t kReadChunk = size_t{64} * 1024;
constexpr size_t kMaxOffsetFileBytes = 4096;
// How many bytes before the position are kept and compared.
constexpr size_t kPrecedingBytes = 64;

constexpr std::string_view kRemedy =
    " (delete it to read the journal again from its start; replayed envelopes are duplicates)";

int open_retrying(int dirfd, const char* path, int flags, mode_t mode = 0) {
  int fd;
  do {
    fd = ::openat(dirfd, path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// Keeps `window` the last kPrecedingBytes bytes of what it was followed by
// `bytes`.
void slide(std::string& window, std::string_view bytes) {
  if (bytes.size() >= kPrecedingBytes) {
    window.assign(bytes.substr(bytes.size() - kPrecedingBytes));
    return;
  }
  window.append(bytes);
  if (window.size() > kPrecedingBytes) window.erase(0, window.size() - kPrecedingBytes);
}

// Up to `length` bytes at `offset` (fewer at end of file).
Result<std::string> read_at(int fd, uint64_t offset, size_t length, const std::string& name) {
  std::string bytes(length, '\0');
  size_t used = 0;
  while (used < length) {
    const ssize_t n =
        ::pread(fd, bytes.data() + used, length - used, static_cast<off_t>(offset + used));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot read ", name, ": ", describe_errno(errno));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  bytes.resize(used);
  return bytes;
}

// Whether `position` still fits `file`: nullopt if so (and then the bytes
// before it are known: an old offset file's are taken from the file), or why
// the file counts as rewritten in place.
Result<std::optional<std::string>> check_position(const RegularFile& file, Position& position,
                                                  const std::string& name) {
  if (position.offset == 0) {
    position.preceding = std::string();
    return std::nullopt;
  }
  const std::string at = " position " + std::to_string(position.offset);
  if (file.size < position.offset) {
    return name + " is shorter (" + std::to_string(file.size) + " bytes) than the" + at +
           ": truncated";
  }
  const size_t length =
      position.preceding
          ? position.preceding->size()
          : static_cast<size_t>(std::min<uint64_t>(kPrecedingBytes, position.offset));
  DW_TRY(bytes, read_at(file.fd.get(), position.offset - length, length, name));
  if (bytes.size() < length) return name + " is shorter than the" + at + ": truncated";
  if (position.preceding) {
    if (bytes != *position.preceding) {
      return "the bytes before" + at + " of " + name +
             " are not those read there: rewritten in place";
    }
    return std::nullopt;
  }
  // An old offset file: it never held a position other than just after a '\n'.
  if (bytes.empty() || bytes.back() != '\n') {
    return "the byte before" + at + " of " + name + " does not end a line: rewritten in place";
  }
  position.preceding = std::move(bytes);
  return std::nullopt;
}

// The regular file with `inode` in `directory` (on the directory's device),
// if any: where a rotated journal went.
Result<std::optional<RegularFile>> find_by_inode(const std::filesystem::path& directory,
                                                 ino_t inode) {
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
  // fdopendir takes the descriptor over; keep ours for fstatat.
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

  // Opened as any outside input: it may have been replaced meanwhile by a
  // link or a FIFO as well as by another file.
  DW_TRY(file, open_regular_file_if_exists(dir / *match, "rotated launch journal"));
  if (!file || file->inode != inode || file->device != dir_st.st_dev) return std::nullopt;
  return file;
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

struct ReadLine {
  std::string text;
  uint64_t end_offset = 0;
  std::string preceding;
};

// Appends the complete lines of `file` from `position` (whose preceding
// bytes are known) to `lines` and moves `position` past the last consumed
// one, until end of file or until the byte budget is spent. With
// `take_unterminated_tail` a last line without '\n' counts as complete (a
// rotated file whose writer has moved on). True when everything up to the
// end of the file is consumed (no partial line held back).
Result<bool> read_lines(const RegularFile& file, Position& position, bool take_unterminated_tail,
                        size_t& budget, std::vector<ReadLine>& lines, const std::string& name) {
  std::array<char, kReadChunk> chunk;
  std::string line;
  std::string window = position.preceding.value_or(std::string());  // before `offset`
  uint64_t offset = position.offset;                                // of the next byte to read
  Position consumed{file.inode, position.offset, window};
  while (true) {
    const ssize_t n =
        ::pread(file.fd.get(), chunk.data(), chunk.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot read ", name, ": ", describe_errno(errno));
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
        slide(window, data);
        offset += data.size();
        break;
      }
      slide(window, data.substr(0, newline + 1));
      offset += newline + 1;
      data.remove_prefix(newline + 1);
      consumed.offset = offset;
      consumed.preceding = window;
      if (!is_blank(line)) {
        budget -= std::min(budget, line.size() + 1 + window.size());
        lines.push_back(ReadLine{std::move(line), offset, window});
      }
      line.clear();
      if (budget == 0) {
        position = std::move(consumed);
        return false;
      }
    }
  }
  if (consumed.offset == offset) {
    position = std::move(consumed);
    return true;
  }
  if (take_unterminated_tail) {
    if (!is_blank(line)) {
      budget -= std::min(budget, line.size() + window.size());
      lines.push_back(ReadLine{std::move(line), offset, window});
    }
    position = Position{file.inode, offset, std::move(window)};
    return true;
  }
  position = std::move(consumed);
  return false;
}

// nullopt when the offset file does not exist yet.
Result<std::optional<Position>> read_offset_file(const std::filesystem::path& path) {
  const std::string what = "journal offset file " + path.string();
  auto text = read_regular_file_if_exists(path, kMaxOffsetFileBytes, "journal offset file");
  if (!text) return fail(text.error().message, kRemedy);
  if (!*text) return std::nullopt;
  auto document = parse_json(**text, what);
  if (!document) return fail(document.error().message, kRemedy);
  const auto shape_error = [&] {
    return fail(what,
                " must be {\"inode\": N, \"offset\": N, \"preceding_hex\": \"…\"} with "
                "non-negative integers and the lowercase hex of at most ",
                std::to_string(kPrecedingBytes), " bytes, no more than the offset", kRemedy);
  };
  if (!document->is_object()) return shape_error();
  const auto inode = document->find("inode");
  const auto offset = document->find("offset");
  const auto preceding_hex = document->find("preceding_hex");
  const size_t expected_keys = preceding_hex == document->end() ? 2 : 3;
  if (document->size() != expected_keys || inode == document->end() || offset == document->end() ||
      !inode->is_number_unsigned() || !offset->is_number_unsigned()) {
    return shape_error();
  }
  Position position{static_cast<ino_t>(inode->get<uint64_t>()), offset->get<uint64_t>(),
                    std::nullopt};
  if (preceding_hex != document->end()) {
    if (!preceding_hex->is_string()) return shape_error();
    auto bytes = from_hex(preceding_hex->get_ref<const std::string&>());
    if (!bytes || bytes->size() > kPrecedingBytes || bytes->size() > position.offset) {
      return shape_error();
    }
    position.preceding = std::move(*bytes);
  }
  return position;
}

// Temp file + fsync + rename + fsync of the directory: after a crash the
// offset file is the old one or the new one, never a torn one.
Result<void> write_offset_file(const std::filesystem::path& path, const Position& position) {
  nlohmann::json document{{"inode", static_cast<uint64_t>(position.inode)},
                          {"offset", position.offset}};
  // Unknown only for an old offset file's position, never polled from.
  if (position.preceding) document["preceding_hex"] = to_hex(*position.preceding);
  const std::string text = document.dump() + "\n";  // ASCII only: dump() cannot throw
  return replace_file_durably(path, text, 0644, "journal offset file");
}

}  // namespace

JournalTail::JournalTail(std::filesystem::path journal, std::filesystem::path offset_file)
    : journal_(std::move(journal)), offset_file_(std::move(offset_file)) {}

Result<void> JournalTail::load() {
  if (loaded_) return {};
  DW_TRY(stored, read_offset_file(offset_file_));
  if (stored) {
    committed_ = std::move(*stored);
    on_disk_ = true;
  }
  pending_ = committed_;
  loaded_ = true;
  return {};
}

Result<JournalBatch> JournalTail::poll_lines() {
  if (auto loaded = load(); !loaded) return std::unexpected(loaded.error());
  JournalBatch batch;
  std::vector<ReadLine> read;
  size_t budget = kMaxBytesPerPoll;
  const std::string name = "launch journal " + journal_.string();
  const auto rewind_if_rewritten = [&](const RegularFile& file,
                                       const std::string& file_name) -> Result<void> {
    DW_TRY(rewritten, check_position(file, pending_, file_name));
    if (rewritten) {
      pending_ = Position{file.inode, 0, std::string()};
      ++rewinds_;
      batch.rewound = *rewritten + "; reading it again from its start";
    }
    return {};
  };
  const auto take = [&](ino_t inode) {
    for (auto& line : read) {
      JournalLine out;
      out.text = std::move(line.text);
      out.inode = inode;
      out.end_offset = line.end_offset;
      out.preceding_ = std::move(line.preceding);
      out.sequence_ = next_sequence_++;
      batch.lines.push_back(std::move(out));
    }
    read.clear();
  };

  DW_TRY(current, open_regular_file_if_exists(journal_, "launch journal"));
  if (pending_.inode != 0 && (!current || current->inode != pending_.inode)) {
    // The file we were reading was rotated away (or the journal removed).
    DW_TRY(rotated, find_by_inode(journal_.parent_path(), pending_.inode));
    if (rotated) {
      const std::string rotated_name = "rotated " + name;
      if (auto checked = rewind_if_rewritten(*rotated, rotated_name); !checked) {
        return std::unexpected(checked.error());
      }
      const bool writer_moved_on = current && current->size > 0;
      DW_TRY(at_end, read_lines(*rotated, pending_, writer_moved_on, budget, read, rotated_name));
      take(rotated->inode);
      if (!writer_moved_on || !at_end) return batch;
    }
    if (!current) return batch;  // nothing to switch to yet
    pending_ = Position{current->inode, 0, std::string()};
  }
  if (!current) return batch;
  if (pending_.inode == 0) pending_ = Position{current->inode, 0, std::string()};
  if (auto checked = rewind_if_rewritten(*current, name); !checked) {
    return std::unexpected(checked.error());
  }
  DW_TRY(at_end, read_lines(*current, pending_, false, budget, read, name));
  (void)at_end;
  take(current->inode);
  return batch;
}

Result<std::vector<std::string>> JournalTail::poll() {
  DW_TRY(batch, poll_lines());
  std::vector<std::string> texts;
  texts.reserve(batch.lines.size());
  for (auto& line : batch.lines) texts.push_back(std::move(line.text));
  return texts;
}

Result<bool> JournalTail::keep_position_in_log(std::optional<Position> from_log) {
  in_log_ = true;
  loaded_ = true;
  if (from_log) {
    committed_ = std::move(*from_log);
    pending_ = committed_;
    return false;
  }
  committed_ = Position{};
  pending_ = committed_;
  DW_TRY(stored, read_offset_file(offset_file_));
  if (!stored) return false;
  committed_ = std::move(*stored);
  pending_ = committed_;
  return true;
}

Result<void> JournalTail::persist(const Position& position) {
  if (in_log_) {
    committed_ = position;
    return {};
  }
  if (on_disk_ && position == committed_) return {};
  if (auto written = write_offset_file(offset_file_, position); !written) {
    return std::unexpected(written.error());
  }
  committed_ = position;
  on_disk_ = true;
  return {};
}

Result<void> JournalTail::commit() {
  if (auto loaded = load(); !loaded) return std::unexpected(loaded.error());
  if (auto persisted = persist(pending_); !persisted) return persisted;
  first_uncommitted_sequence_ = next_sequence_;
  return {};
}

Result<void> JournalTail::commit_through(const JournalLine& line) {
  if (auto loaded = load(); !loaded) return std::unexpected(loaded.error());
  if (line.sequence_ < first_uncommitted_sequence_ || line.sequence_ >= next_sequence_) {
    return fail("launch journal ", journal_.string(),
                ": commit_through() of a line not polled since the last commit (or reread)");
  }
  Position through{line.inode, line.end_offset, line.preceding_};
  if (auto persisted = persist(through); !persisted) return persisted;
  pending_ = std::move(through);
  first_uncommitted_sequence_ = next_sequence_;
  return {};
}

void JournalTail::reread_uncommitted() {
  pending_ = committed_;
  first_uncommitted_sequence_ = next_sequence_;
}

}  // namespace driftwatch::ingest
