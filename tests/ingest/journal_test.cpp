#include "ingest/journal.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using Catch::Matchers::Contains;
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
  CHECK(stored == nlohmann::json{{"inode", inode_of(journal)}, {"offset", 8}});
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
