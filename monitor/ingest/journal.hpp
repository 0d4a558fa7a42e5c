#pragma once
// Tails a JSON-lines journal of envelopes from its last committed offset.
// The position (the file's inode, the offset, and the bytes just before the
// offset) is persisted, so a restart reads on where it stopped; rotation
// (rename + new file) and rewriting in place (truncation, copytruncate) are
// handled: the rest of a rotated file is read (found by its inode in the same
// directory) before the new file is read from its start, and a file whose
// bytes before the position changed is read again from its start.
//
// Offset file, one JSON object (written by temp file + fsync + rename):
//   {"inode": N, "offset": N, "preceding_hex": "0a1b…"}
// `inode` and `offset` (non-negative integers) say where reading goes on;
// `preceding_hex` is the lowercase hex of the up to 64 bytes of the journal
// just before `offset` (the end of the last consumed line; "" at offset 0),
// compared with the file at every poll. Files written before it existed
// hold only inode and offset: they are read as they are, and the bytes
// before the offset are taken from the journal at the first poll (if the
// byte just before it is the '\n' a consumed line ends with).

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace driftwatch::ingest {

class JournalTail;

/// One line of the journal, as JournalTail::poll_lines() returns it.
struct JournalLine {
  /// Without its '\n'; a line over 1 MiB is cut to 1 MiB + 1 byte.
  std::string text;
  /// The file it was read from (a rotated journal's, while that is finished).
  ino_t inode = 0;
  /// In that file, just past the line's '\n'.
  uint64_t end_offset = 0;

 private:
  friend class JournalTail;
  std::string preceding_;  // the up to 64 bytes before end_offset
  uint64_t sequence_ = 0;  // the JournalTail's count of lines returned; 0: none
};

/// What one poll_lines() returns.
struct JournalBatch {
  std::vector<JournalLine> lines;
  /// Set when the journal was found rewritten in place (shorter than the
  /// position, or other bytes just before it: copytruncate, then new lines
  /// past the old offset) and is read again from its start: one sentence
  /// naming the file, for the log. The replayed lines that were accepted
  /// before come out of the ingestor as `duplicate`s.
  std::optional<std::string> rewound;
};

class JournalTail {
 public:
  /// `offset_file` persists the position in `journal` (format above).
  JournalTail(std::filesystem::path journal, std::filesystem::path offset_file);

  /// Complete lines after those the previous poll returned (the first poll
  /// of an instance: after the last commit); a partial last line is left for
  /// later. A missing journal is no error (no lines). A journal that is a
  /// symbolic link, a FIFO, a directory or anything else but a regular file
  /// is an error naming it (never followed, never waited on). A line over
  /// 1 MiB comes back cut to 1 MiB + 1 byte, so the ingestor rejects it as
  /// too_large; one call returns about 16 MiB at most (poll again).
  Result<JournalBatch> poll_lines();
  /// poll_lines(), the texts only (a rewind shows in rewinds()).
  Result<std::vector<std::string>> poll();

  /// Persists that every line polled so far is consumed (atomic rename,
  /// fsync'd).
  Result<void> commit();
  /// Persists that the lines up to and including `line` are consumed, and
  /// no more: the lines polled after it are returned again by the next poll
  /// (a caller commits through the last line whose outcome is durable and
  /// has the rest retried). `line` must come from a poll since the last
  /// commit(), commit_through() or reread_uncommitted() of this instance;
  /// any other is an error and changes nothing.
  Result<void> commit_through(const JournalLine& line);
  /// Nothing polled since the last commit was consumed: the next poll
  /// returns it all again. Nothing is written.
  void reread_uncommitted();

  const std::filesystem::path& path() const { return journal_; }
  /// The committed offset (in the file of the committed inode).
  uint64_t offset() const { return committed_.offset; }
  /// How many times this instance found the journal rewritten in place and
  /// read it again from its start (see JournalBatch::rewound).
  uint64_t rewinds() const { return rewinds_; }

  /// Where reading goes on: a file, an offset in it, and the bytes just
  /// before that offset (nullopt: not known yet, an old offset file).
  struct Position {
    ino_t inode = 0;
    uint64_t offset = 0;
    std::optional<std::string> preceding = std::string();
    bool operator==(const Position&) const = default;
  };

  /// Keeps the position in the evidence log instead of the offset file (the
  /// daemon's way since the log became its one durable store): commits then
  /// change only this instance's position, which the caller records
  /// (committed_position()). Reading starts at `from_log`, or, when the log
  /// has none, at the offset file an earlier version wrote, read now.
  /// Returns whether that file was read (the caller records its position
  /// and renames the file); an unreadable one is an error, and reading then
  /// starts at the journal's start (its lines come out as duplicates).
  Result<bool> keep_position_in_log(std::optional<Position> from_log);
  const Position& committed_position() const { return committed_; }
  const std::filesystem::path& offset_file() const { return offset_file_; }

 private:
  /// Reads the offset file once (a missing one: start of the journal).
  Result<void> load();
  Result<void> persist(const Position& position);

  std::filesystem::path journal_;
  std::filesystem::path offset_file_;
  Position committed_;
  Position pending_;  // after the lines polled so far
  uint64_t next_sequence_ = 1;
  uint64_t first_uncommitted_sequence_ = 1;  // lines before it may not be committed
  uint64_t rewinds_ = 0;
  bool loaded_ = false;
  bool on_disk_ = false;  // the committed position is what the offset file holds
  bool in_log_ = false;   // keep_position_in_log: no offset file is written
};

}  // namespace driftwatch::ingest
