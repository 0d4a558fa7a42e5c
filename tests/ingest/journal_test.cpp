#include "ingest/journal.hpp"
#include "support/fifo_deadline.hpp"

using driftwatch::testing::within_deadline;

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using Catch::Matchers::Contains;
using driftwatch::ingest::JournalBatch;
using driftwatch::ingest::JournalLine;
using driftwatch::ingest::JournalTail;
using Lines = std::vector<std::string>;

namespace {

// A directory under the system temp dir, removed when the test ends.
struct TempDir {
  TempDir() {
    std::random_device random;
    path = std::filesystem::temp_directory_path() /
           ("driftwatch-journal-test-" + std::to_string(random()) + "-" + std::to_string(random()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::filesystem::path path;
};

void append(const std::filesystem::path& file, std::string_view text) {
  std::ofstream out(file, std::ios::app | std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

Lines polled(JournalTail& tail) {
  const auto lines = tail.poll();
  INFO((lines ? std::string() : lines.error().message));
  REQUIRE(lines.has_value());
  return *lines;
}

void committed(JournalTail& tail) {
  const auto done = tail.commit();
  INFO((done ? std::string() : done.error().message));
  REQUIRE(done.has_value());
}

ino_t inode_of(const std::filesystem::path& file) {
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  return st.st_ino;
}

JournalBatch polled_batch(JournalTail& tail) {
  auto batch = tail.poll_lines();
  INFO((batch ? std::string() : batch.error().message));
  REQUIRE(batch.has_value());
  return std::move(*batch);
}

Lines texts(const JournalBatch& batch) {
  Lines lines;
  for (const auto& line : batch.lines) lines.push_back(line.text);
  return lines;
}

void write_file(const std::filesystem::path& file, std::string_view text) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

nlohmann::json offset_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

}  // namespace

TEST_CASE("journal: a missing journal yields no lines and no error", "[ingest]") {
  TempDir dir;
  JournalTail tail(dir.path / "journal.jsonl", dir.path / "offsets" / "journal.offset");
  CHECK(polled(tail).empty());
  committed(tail);
  CHECK(polled(tail).empty());
}

TEST_CASE("journal: returns complete lines in order and holds back a partial one", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  JournalTail tail(journal, dir.path / "journal.offset");

  append(journal, "{\"a\":1}\n{\"b\":2}\n{\"c\":");
  CHECK(polled(tail) == Lines{"{\"a\":1}", "{\"b\":2}"});
  CHECK(polled(tail).empty());  // the partial line waits

  append(journal, "3}\n\n  \n{\"d\":4}\n");
  CHECK(polled(tail) == Lines{"{\"c\":3}", "{\"d\":4}"});  // blank lines skipped
  CHECK(polled(tail).empty());
}

TEST_CASE("journal: a new instance resumes after the last commit", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  const auto offsets = dir.path / "state" / "journal.offset";
  append(journal, "one\ntwo\n");
  {
    JournalTail tail(journal, offsets);
    CHECK(polled(tail) == Lines{"one", "two"});
    committed(tail);
    CHECK(tail.offset() == 8);
    append(journal, "three\n");
    CHECK(polled(tail) == Lines{"three"});  // polled, never committed
  }
  const auto stored = nlohmann::json::parse(std::ifstream(offsets));
  // The bytes before the offset, "one\ntwo\n", as hex.
  CHECK(stored == nlohmann::json{{"inode", inode_of(journal)},
                                 {"offset", 8},
                                 {"preceding_hex", "6f6e650a74776f0a"}});
  CHECK_FALSE(std::filesystem::exists(offsets.string() + ".tmp"));

  append(journal, "four\n");
  JournalTail restarted(journal, offsets);
  CHECK(polled(restarted) == Lines{"three", "four"});  // at least once
  committed(restarted);
  JournalTail again(journal, offsets);
  CHECK(polled(again).empty());
}

TEST_CASE("journal: after rotation the rest of the old file is read, then the new", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  const auto offsets = dir.path / "journal.offset";
  append(journal, "old-1\n");
  {
    JournalTail tail(journal, offsets);
    CHECK(polled(tail) == Lines{"old-1"});
    committed(tail);
  }
  // Rotated while the monitor was down: more lines went to the old file
  // first, then it was renamed and a new one started.
  append(journal, "old-2\nold-3\n");
  std::filesystem::rename(journal, dir.path / "journal.jsonl.1");
  append(journal, "new-1\nnew-2\n");

  JournalTail tail(journal, offsets);
  CHECK(polled(tail) == Lines{"old-2", "old-3", "new-1", "new-2"});
  committed(tail);
  append(journal, "new-3\n");
  CHECK(polled(tail) == Lines{"new-3"});
}

TEST_CASE("journal: the old file is read on while the new one is still empty", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  JournalTail tail(journal, dir.path / "journal.offset");
  append(journal, "old-1\n");
  CHECK(polled(tail) == Lines{"old-1"});

  // logrotate `create`: rename, create an empty file, and only then the
  // writer reopens; until it does, it still appends to the old file.
  std::filesystem::rename(journal, dir.path / "journal.jsonl.1");
  append(journal, "");
  append(dir.path / "journal.jsonl.1", "old-2\nold-");
  CHECK(polled(tail) == Lines{"old-2"});
  append(dir.path / "journal.jsonl.1", "3\n");
  CHECK(polled(tail) == Lines{"old-3"});

  append(journal, "new-1\n");
  CHECK(polled(tail) == Lines{"new-1"});
}

TEST_CASE("journal: an unfinished last line of a rotated file is returned as it is", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  JournalTail tail(journal, dir.path / "journal.offset");
  append(journal, "old-1\nold-torn");
  CHECK(polled(tail) == Lines{"old-1"});
  std::filesystem::rename(journal, dir.path / "journal.jsonl.1");
  append(journal, "new-1\n");
  CHECK(polled(tail) == Lines{"old-torn", "new-1"});
}

TEST_CASE("journal: a rotated file that is gone is skipped for the new one", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  const auto offsets = dir.path / "journal.offset";
  append(journal, "old-1\n");
  {
    JournalTail tail(journal, offsets);
    CHECK(polled(tail) == Lines{"old-1"});
    committed(tail);
  }
  std::filesystem::rename(journal, dir.path / "journal.jsonl.1");
  append(journal, "new-1\n");  // created while the old one still exists: a new inode
  std::filesystem::remove(dir.path / "journal.jsonl.1");
  JournalTail tail(journal, offsets);
  CHECK(polled(tail) == Lines{"new-1"});
}

TEST_CASE("journal: a truncated journal is read again from its start", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  const auto offsets = dir.path / "journal.offset";
  append(journal, "first-line\nsecond-line\n");
  {
    JournalTail tail(journal, offsets);
    CHECK(polled(tail) == Lines{"first-line", "second-line"});
    committed(tail);
  }
  std::filesystem::resize_file(journal, 0);  // copytruncate
  append(journal, "after\n");
  JournalTail tail(journal, offsets);
  CHECK(polled(tail) == Lines{"after"});

  std::filesystem::resize_file(journal, 0);
  append(journal, "x\n");
  CHECK(polled(tail) == Lines{"x"});
}

TEST_CASE("journal: a line over 1 MiB comes back cut to 1 MiB + 1 byte", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  JournalTail tail(journal, dir.path / "journal.offset");
  const std::string huge(3 << 20, 'x');
  append(journal, "before\n" + huge);
  CHECK(polled(tail) == Lines{"before"});  // the long line is not complete yet
  append(journal, "\nafter\n");
  const Lines lines = polled(tail);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].size() == (size_t{1} << 20) + 1);
  CHECK(lines[1] == "after");
}

TEST_CASE("journal: a damaged offset file is an error naming it", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  const auto offsets = dir.path / "journal.offset";
  append(journal, "line\n");
  std::ofstream(offsets) << R"({"inode": "x", "offset": 3})";
  JournalTail tail(journal, offsets);
  const auto lines = tail.poll();
  REQUIRE_FALSE(lines.has_value());
  CHECK_THAT(lines.error().message,
             Contains("journal offset file " + offsets.string()) && Contains("delete it"));
}

TEST_CASE("journal: a FIFO as the journal is an error at once, not a hang", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  REQUIRE(::mkfifo(journal.c_str(), 0600) == 0);
  JournalTail tail(journal, dir.path / "journal.offset");
  for (int round = 0; round < 2; ++round) {  // every poll, not only the first
    const auto start = std::chrono::steady_clock::now();
    const auto lines = within_deadline([&] { return tail.poll_lines(); }, journal);
    INFO("poll blocked in open(2) on the FIFO until a writer came");
    REQUIRE(lines.has_value());
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
    REQUIRE_FALSE(lines->has_value());
    CHECK(lines->error().message ==
          "launch journal " + journal.string() + " is a FIFO, not a regular file");
  }
}

TEST_CASE("journal: a symbolic link as the journal is refused, its target never read", "[ingest]") {
  TempDir dir;
  const auto target = dir.path / "shadow";
  write_file(target, "root:$6$secret-hash:19000:0:99999:7:::\n");
  const auto journal = dir.path / "journal.jsonl";
  std::filesystem::create_symlink(target, journal);
  JournalTail tail(journal, dir.path / "journal.offset");
  const auto lines = tail.poll();
  REQUIRE_FALSE(lines.has_value());
  CHECK(lines.error().message ==
        "launch journal " + journal.string() + " is a symbolic link; name the file itself");
  CHECK_FALSE(std::filesystem::exists(dir.path / "journal.offset"));
}

TEST_CASE("journal: a directory as the journal is refused naming it", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  std::filesystem::create_directories(journal);
  JournalTail tail(journal, dir.path / "journal.offset");
  const auto lines = tail.poll();
  REQUIRE_FALSE(lines.has_value());
  CHECK(lines.error().message ==
        "launch journal " + journal.string() + " is a directory, not a regular file");
}

TEST_CASE("journal: truncated and regrown past the old offset between polls loses no line",
          "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  const auto offsets = dir.path / "journal.offset";
  const Lines fresh{
      "{\"new\":\"first-line-after-copytruncate\"}", "{\"new\":\"second-line-after-copytruncate\"}",
      "{\"new\":\"third-line-after-copytruncate\"}", "{\"new\":\"fourth-line-after-copytruncate\"}",
      "{\"new\":\"fifth-line-after-copytruncate\"}"};
  std::string regrown;
  for (const auto& line : fresh) regrown += line + "\n";

  SECTION("in one instance") {
    JournalTail tail(journal, offsets);
    append(journal, "{\"old\":1}\n{\"old\":2}\n{\"old\":3}\n");
    CHECK(texts(polled_batch(tail)) == Lines{"{\"old\":1}", "{\"old\":2}", "{\"old\":3}"});
    committed(tail);
    CHECK_FALSE(polled_batch(tail).rewound.has_value());

    std::filesystem::resize_file(journal, 0);  // copytruncate, then the writer goes on
    append(journal, regrown);
    REQUIRE(regrown.size() > tail.offset());
    const JournalBatch batch = polled_batch(tail);
    CHECK(texts(batch) == fresh);
    REQUIRE(batch.rewound.has_value());
    CHECK_THAT(*batch.rewound, Contains(journal.string()) && Contains("from its start"));
    CHECK(tail.rewinds() == 1);

    // From there on it is an ordinary journal again.
    committed(tail);
    append(journal, "{\"new\":6}\n");
    const JournalBatch next = polled_batch(tail);
    CHECK(texts(next) == Lines{"{\"new\":6}"});
    CHECK_FALSE(next.rewound.has_value());
    CHECK(tail.rewinds() == 1);
  }
  SECTION("polled but not committed") {
    JournalTail tail(journal, offsets);
    append(journal, "{\"old\":1}\n{\"old\":2}\n{\"old\":3}\n");
    CHECK(polled(tail).size() == 3);
    std::filesystem::resize_file(journal, 0);
    append(journal, regrown);
    CHECK(polled(tail) == fresh);
    CHECK(tail.rewinds() == 1);
  }
  SECTION("across a restart") {
    {
      JournalTail tail(journal, offsets);
      append(journal, "{\"old\":1}\n{\"old\":2}\n{\"old\":3}\n");
      CHECK(polled(tail).size() == 3);
      committed(tail);
    }
    std::filesystem::resize_file(journal, 0);  // while the monitor was down
    append(journal, regrown);
    JournalTail restarted(journal, offsets);
    CHECK(polled(restarted) == fresh);
    CHECK(restarted.rewinds() == 1);
    committed(restarted);
    JournalTail again(journal, offsets);
    const JournalBatch batch = polled_batch(again);
    CHECK(batch.lines.empty());
    CHECK_FALSE(batch.rewound.has_value());
  }
}

TEST_CASE("journal: an offset file of the older format is read and then rewritten in the new",
          "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  const auto offsets = dir.path / "journal.offset";
  append(journal, "one\ntwo\n");
  const nlohmann::json legacy{{"inode", inode_of(journal)}, {"offset", 4}};

  SECTION("resumes at its offset and writes the bytes before it on commit") {
    std::ofstream(offsets) << legacy.dump();
    JournalTail tail(journal, offsets);
    CHECK(polled(tail) == Lines{"two"});
    CHECK(tail.rewinds() == 0);
    committed(tail);
    CHECK(offset_file(offsets) == nlohmann::json{{"inode", inode_of(journal)},
                                                 {"offset", 8},
                                                 {"preceding_hex", "6f6e650a74776f0a"}});
  }
  SECTION("nothing new: the first commit still records the bytes before the offset") {
    std::ofstream(offsets) << nlohmann::json{{"inode", inode_of(journal)}, {"offset", 8}}.dump();
    JournalTail tail(journal, offsets);
    CHECK(polled(tail).empty());
    committed(tail);
    CHECK(offset_file(offsets)["preceding_hex"] == "6f6e650a74776f0a");
  }
  SECTION("rewritten so that its offset falls inside a line: read again from the start") {
    std::ofstream(offsets) << legacy.dump();
    write_file(journal, "{\"rewritten\":1}\n");  // same inode, longer than 4 bytes
    JournalTail tail(journal, offsets);
    CHECK(polled(tail) == Lines{"{\"rewritten\":1}"});
    CHECK(tail.rewinds() == 1);
  }
}

TEST_CASE("journal: lines carry the file and the offset just past them", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  JournalTail tail(journal, dir.path / "journal.offset");
  append(journal, "ab\n\n  \ncdef\n");
  const JournalBatch batch = polled_batch(tail);
  REQUIRE(batch.lines.size() == 2);
  CHECK(batch.lines[0].text == "ab");
  CHECK(batch.lines[0].end_offset == 3);
  CHECK(batch.lines[0].inode == inode_of(journal));
  CHECK(batch.lines[1].text == "cdef");
  CHECK(batch.lines[1].end_offset == 12);
}

TEST_CASE("journal: commit_through commits that line and no more", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  const auto offsets = dir.path / "journal.offset";
  append(journal, "one\ntwo\nthree\n");

  SECTION("a new instance reads the lines after it again") {
    {
      JournalTail tail(journal, offsets);
      const JournalBatch batch = polled_batch(tail);
      REQUIRE(texts(batch) == Lines{"one", "two", "three"});
      const auto done = tail.commit_through(batch.lines[0]);
      INFO((done ? std::string() : done.error().message));
      REQUIRE(done.has_value());
      CHECK(tail.offset() == 4);
    }
    JournalTail restarted(journal, offsets);
    CHECK(polled(restarted) == Lines{"two", "three"});
  }
  SECTION("the same instance returns the lines after it again") {
    JournalTail tail(journal, offsets);
    const JournalBatch batch = polled_batch(tail);
    REQUIRE(tail.commit_through(batch.lines[1]).has_value());
    append(journal, "four\n");
    const JournalBatch again = polled_batch(tail);
    CHECK(texts(again) == Lines{"three", "four"});
    // A line of the batch before is no longer one that may be committed.
    const auto stale = tail.commit_through(batch.lines[2]);
    REQUIRE_FALSE(stale.has_value());
    CHECK_THAT(stale.error().message, Contains(journal.string()) && Contains("not polled"));
    CHECK(tail.offset() == 8);
    REQUIRE(tail.commit_through(again.lines[1]).has_value());
    CHECK(tail.offset() == 19);
    CHECK(polled(tail).empty());
  }
  SECTION("a default line was never polled") {
    JournalTail tail(journal, offsets);
    CHECK_FALSE(tail.commit_through(JournalLine{}).has_value());
    CHECK_FALSE(std::filesystem::exists(offsets));
  }
}

TEST_CASE("journal: commit_through a line of a rotated file resumes in it after a restart",
          "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  const auto offsets = dir.path / "journal.offset";
  append(journal, "old-1\nold-2\n");
  {
    JournalTail tail(journal, offsets);
    const JournalBatch before = polled_batch(tail);
    REQUIRE(texts(before) == Lines{"old-1", "old-2"});
    std::filesystem::rename(journal, dir.path / "journal.jsonl.1");
    append(journal, "new-1\n");
    const JournalBatch after = polled_batch(tail);
    REQUIRE(texts(after) == Lines{"new-1"});
    CHECK(before.lines[0].inode == inode_of(dir.path / "journal.jsonl.1"));
    CHECK(after.lines[0].inode == inode_of(journal));
    REQUIRE(tail.commit_through(before.lines[0]).has_value());
  }
  JournalTail restarted(journal, offsets);
  CHECK(polled(restarted) == Lines{"old-2", "new-1"});
}

TEST_CASE("journal: reread_uncommitted returns every uncommitted line again", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  JournalTail tail(journal, dir.path / "journal.offset");
  append(journal, "one\n");
  CHECK(polled(tail) == Lines{"one"});
  committed(tail);
  append(journal, "two\nthree\n");
  CHECK(polled(tail) == Lines{"two", "three"});
  tail.reread_uncommitted();
  CHECK(polled(tail) == Lines{"two", "three"});
  CHECK(tail.offset() == 4);
}

TEST_CASE("journal: offset files of every wrong shape are errors naming them, never throws",
          "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  const auto offsets = dir.path / "journal.offset";
  append(journal, "line\n");
  const char* const damaged[] = {
      "",
      "[]",
      "[1, 2]",
      "null",
      "7",
      R"({"inode": 1})",
      R"({"inode": -1, "offset": 0})",
      R"({"inode": 1, "offset": 1.5})",
      R"({"inode": 1, "offset": 1e30})",
      R"({"inode": 1, "offset": 18446744073709551616})",
      R"({"inode": 1, "offset": 0, "extra": 0})",
      R"({"inode": 1, "offset": 4, "preceding_hex": 5})",
      R"({"inode": 1, "offset": 4, "preceding_hex": ["0a"]})",
      R"({"inode": 1, "offset": 4, "preceding_hex": "0"})",
      R"({"inode": 1, "offset": 4, "preceding_hex": "zz"})",
      R"({"inode": 1, "offset": 4, "preceding_hex": "0A"})",
      R"({"inode": 1, "offset": 1, "preceding_hex": "0a0a"})",
      R"({"inode": 1, "offset": 4, "offset": 4})",
      "{\"inode\": 1, \"offset\": 4, \"preceding_hex\": \"\xff\"}",
  };
  for (const char* text : damaged) {
    INFO("offset file: " << text);
    write_file(offsets, text);
    JournalTail tail(journal, offsets);
    driftwatch::Result<Lines> lines = Lines{};
    REQUIRE_NOTHROW(lines = tail.poll());
    REQUIRE_FALSE(lines.has_value());
    CHECK_THAT(lines.error().message,
               Contains("journal offset file " + offsets.string()) && Contains("delete it"));
  }
  write_file(offsets, std::string(5000, ' '));
  JournalTail tail(journal, offsets);
  const auto big = tail.poll();
  REQUIRE_FALSE(big.has_value());
  CHECK_THAT(big.error().message, Contains("larger than 4096 bytes") && Contains("delete it"));
}

TEST_CASE("journal: an offset file that is a link or a FIFO is refused naming it", "[ingest]") {
  TempDir dir;
  const auto journal = dir.path / "journal.jsonl";
  const auto offsets = dir.path / "journal.offset";
  append(journal, "line\n");
  SECTION("a link") {
    write_file(dir.path / "elsewhere", R"({"inode": 1, "offset": 0})");
    std::filesystem::create_symlink(dir.path / "elsewhere", offsets);
    JournalTail tail(journal, offsets);
    const auto lines = tail.poll();
    REQUIRE_FALSE(lines.has_value());
    CHECK_THAT(lines.error().message,
               Contains("journal offset file " + offsets.string() + " is a symbolic link"));
  }
  SECTION("a FIFO") {
    REQUIRE(::mkfifo(offsets.c_str(), 0600) == 0);
    JournalTail tail(journal, offsets);
    const auto lines = within_deadline([&] { return tail.poll(); }, offsets);
    INFO("poll blocked in open(2) on the FIFO offset file");
    REQUIRE(lines.has_value());
    REQUIRE_FALSE(lines->has_value());
    CHECK_THAT(lines->error().message,
               Contains("journal offset file " + offsets.string() + " is a FIFO"));
  }
}
