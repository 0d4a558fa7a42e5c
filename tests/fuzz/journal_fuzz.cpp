// libFuzzer target: a launch journal and its offset file on disk, both
// outside input (the journal is written by the control plane; the offset
// file lives in the state directory and may be left torn or hand-edited),
// through JournalTail's poll, commit and restart.
//
// Input: byte 0 is a set of flags, byte 1 where the journal's bytes are split
// into a first and a second part, then (flag 1) the offset file's text up to
// a NUL byte, then the journal's bytes. "INODE" in the offset text is
// replaced by the journal's inode number, so that positions in the real file
// are reachable.
//   flags & 1  write the offset file before the first poll
//   flags & 2  between the parts, rotate: rename the journal to journal.1
//              and write the second part to a new journal
//   flags & 4  between the parts, rewrite in place: truncate the journal and
//              write the second part (copytruncate)
//   flags & 8  commit only through the first line of the first poll, then
//              go on with reread_uncommitted()
// Otherwise the second part is appended.
//
// Steps: write the first part, poll and commit; apply the change; poll until
// nothing comes, commit; then a new JournalTail (a restart) must have
// nothing to return.
//
// Checks: errors say something; no line holds a '\n', is blank or is longer
// than 1 MiB + 1; after a full commit a restart returns nothing; and when no
// offset file was given and the journal was appended to or rotated, the
// lines returned are exactly the journal's non-blank lines in order (for a
// rotation, the old file's unterminated last line too, once the new file has
// data), each returned once.

#include <sys/stat.h>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "ingest/journal.hpp"

namespace ingest = driftwatch::ingest;
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxLineBytes = (size_t{1} << 20) + 1;
constexpr int kMaxPolls = 8;

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("journal_fuzz", what, detail);
}

const driftwatch::fuzz::ScratchDir& scratch() {
  static const driftwatch::fuzz::ScratchDir dir("journal-fuzz");
  return dir;
}

void write(const fs::path& path, std::string_view bytes, bool append = false) {
  std::ofstream out(path, std::ios::binary | (append ? std::ios::app : std::ios::trunc));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) report("cannot write a scratch file", path.string());
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

// The non-blank '\n'-terminated lines of `bytes`; with `tail`, also an
// unterminated last one.
std::vector<std::string> lines_of(std::string_view bytes, bool tail) {
  std::vector<std::string> lines;
  while (!bytes.empty()) {
    const size_t newline = bytes.find('\n');
    if (newline == std::string_view::npos && !tail) break;
    const std::string_view line = bytes.substr(0, newline);
    if (!is_blank(line)) lines.emplace_back(line.substr(0, kMaxLineBytes));
    bytes = newline == std::string_view::npos ? std::string_view() : bytes.substr(newline + 1);
  }
  return lines;
}

std::string describe(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += "[" + line.substr(0, 80) + "]";
  return out;
}

template <class R>
bool ok_or_says_why(const R& result, const char* what) {
  if (result) return true;
  if (result.error().message.empty()) report(what);
  return false;
}

void check_lines(const std::vector<std::string>& lines) {
  for (const auto& line : lines) {
    if (line.find('\n') != std::string::npos) report("a line holds a newline", line);
    if (is_blank(line)) report("a blank line was returned", line);
    if (line.size() > kMaxLineBytes) report("a line longer than the cut was returned");
  }
}

// Polls until nothing more comes; false on an error.
bool poll_all(ingest::JournalTail& tail, std::vector<std::string>& out) {
  for (int i = 0; i < kMaxPolls; ++i) {
    auto lines = tail.poll();
    if (!ok_or_says_why(lines, "poll failed without a message")) return false;
    check_lines(*lines);
    if (lines->empty()) return true;
    out.insert(out.end(), lines->begin(), lines->end());
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const uint8_t split_at = data[1];
  std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::string offset_text;
  if (flags & 1) {
    const size_t nul = rest.find('\0');
    offset_text = std::string(rest.substr(0, nul));
    rest = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  }
  const size_t split = rest.size() * split_at / 255;
  const std::string_view first = rest.substr(0, split);
  const std::string_view second = rest.substr(split);
  const bool rotate = flags & 2;
  const bool rewrite = !rotate && (flags & 4);
  const bool commit_first_only = flags & 8;

  scratch().clear();
  const fs::path journal = scratch().path() / "launches.jsonl";
  const fs::path offsets = scratch().path() / "state" / "launches.offset";
  write(journal, first);
  if (flags & 1) {
    struct stat st {};
    if (::stat(journal.c_str(), &st) != 0) report("cannot stat the scratch journal");
    for (size_t at; (at = offset_text.find("INODE")) != std::string::npos;)
      offset_text.replace(at, 5, std::to_string(st.st_ino));
    fs::create_directories(offsets.parent_path());
    write(offsets, offset_text);
  }

  std::vector<std::string> returned;
  ingest::JournalTail tail(journal, offsets);
  auto batch = tail.poll_lines();
  if (!ok_or_says_why(batch, "poll_lines failed without a message")) return 0;
  for (const auto& line : batch->lines) returned.push_back(line.text);
  check_lines(returned);
  if (commit_first_only && !batch->lines.empty()) {
    if (!ok_or_says_why(tail.commit_through(batch->lines.front()), "commit_through failed"))
      return 0;
    tail.reread_uncommitted();
    // The lines after the first come again.
    std::vector<std::string> again;
    if (!poll_all(tail, again)) return 0;
    if (again.size() + 1 != returned.size() ||
        !std::equal(again.begin(), again.end(), returned.begin() + 1))
      report("reread_uncommitted did not return the uncommitted lines again",
             describe(returned) + " then " + describe(again));
  }
  if (!ok_or_says_why(tail.commit(), "commit failed without a message")) return 0;

  if (rotate) {
    fs::rename(journal, scratch().path() / "launches.jsonl.1");
    write(journal, second);
  } else if (rewrite) {
    write(journal, second);
  } else {
    write(journal, second, /*append=*/true);
  }
  if (!poll_all(tail, returned)) return 0;
  if (!ok_or_says_why(tail.commit(), "commit failed without a message")) return 0;

  ingest::JournalTail restarted(journal, offsets);
  auto after_restart = restarted.poll();
  if (!ok_or_says_why(after_restart, "poll after a restart failed without a message")) return 0;
  if (!after_restart->empty())
    report("a restart after a full commit returned lines again", describe(*after_restart));

  if (!(flags & 1) && !rewrite) {
    std::vector<std::string> expected;
    if (rotate) {
      expected = lines_of(first, /*tail=*/!second.empty());
      const auto more = lines_of(second, false);
      expected.insert(expected.end(), more.begin(), more.end());
    } else {
      expected = lines_of(std::string(first) + std::string(second), false);
    }
    if (returned != expected)
      report("the lines returned are not the journal's lines",
             "returned " + describe(returned) + ", expected " + describe(expected));
  }
  return 0;
}
