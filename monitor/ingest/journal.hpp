#pragma once
// Tails a JSON-lines journal of envelopes from its last committed offset.
// The offset (with the file's inode) is persisted, so a restart reads on
// where it stopped; rotation (rename + new file) and truncation are handled:
// the rest of a rotated file is read (found by its inode in the same
// directory) before the new file is read from its start.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace driftwatch::ingest {

class JournalTail {
 public:
  /// `offset_file` persists {"inode", "offset"} of `journal`.
  JournalTail(std::filesystem::path journal, std::filesystem::path offset_file);

  /// Complete lines (without '\n') after those the previous poll() returned
  /// (the first poll of an instance: after the last commit); a partial last
  /// line is left for later. A missing journal is no error (no lines). A line
  /// over 1 MiB comes back cut to 1 MiB + 1 byte, so the ingestor rejects it
  /// as too_large; one call returns about 16 MiB at most (poll again).
  Result<std::vector<std::string>> poll();
  /// Persists that every line returned by poll() so far is consumed
  /// (atomic rename, fsync'd).
  Result<void> commit();

  const std::filesystem::path& path() const { return journal_; }
  uint64_t offset() const { return offset_; }

 private:
  /// Reads the offset file once (a missing one: start of the journal).
  Result<void> load();

  std::filesystem::path journal_;
  std::filesystem::path offset_file_;
  ino_t inode_ = 0;
  uint64_t offset_ = 0;          // committed
  uint64_t pending_offset_ = 0;  // after the lines poll() returned
  ino_t pending_inode_ = 0;
  bool loaded_ = false;
  bool on_disk_ = false;  // the committed position is what the offset file holds
};

}  // namespace driftwatch::ingest
