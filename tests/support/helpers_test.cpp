// The test helpers of support/: the skip marker (skip.hpp, tests/main.cpp),
// waits that fail on timeout (wait.hpp) and temporary directories
// (temp_dir.hpp). What must fail a test is checked by running this very
// binary on hidden test cases and reading what it prints and returns; the
// skip marker, too, is printed after a test case ends, where the test itself
// cannot see it.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "support/skip.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

extern char** environ;

namespace {

struct Run {
  int exit_code = -1;
  std::string output;
};

// This binary with `args`, stdout and stderr captured (no shell).
Run run_self(const std::vector<std::string>& args) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  // The compact reporter: one line per result, never wrapped.
  std::vector<std::string> argv{self, "--reporter", "compact"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> c_argv;
  for (auto& arg : argv) c_argv.push_back(arg.data());
  c_argv.push_back(nullptr);

  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, self.c_str(), &actions, nullptr, c_argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  Run run;
  std::array<char, 4096> buffer{};
  for (ssize_t n; (n = ::read(fds[0], buffer.data(), buffer.size())) > 0;)
    run.output.append(buffer.data(), static_cast<size_t>(n));
  ::close(fds[0]);
  REQUIRE(spawned == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

// The output with the marker defanged, for INFO: if this test printed the
// marker itself when it fails, CTest would report it skipped instead.
std::string shown(std::string output) {
  const std::string marker = driftwatch::testing::kSkipMarker;
  for (size_t at; (at = output.find(marker)) != std::string::npos;)
    output.replace(at, marker.size(), "<skip marker> ");
  return output;
}

bool has_marker_line(const std::string& output, const std::string& reason) {
  return output.find(std::string("\n") + driftwatch::testing::kSkipMarker + reason + "\n") !=
         std::string::npos;
}

bool mentions_marker(const std::string& output) {
  return output.find(driftwatch::testing::kSkipMarker) != std::string::npos;
}

}  // namespace

// Hidden ([.]) cases, run only by the test below.
TEST_CASE("skip self-test: DW_SKIP", "[.][skip-selftest]") {
  CHECK(true);
  DW_SKIP("self-test reason " << 42);
  FAIL("DW_SKIP did not return");
}

TEST_CASE("skip self-test: a failure before DW_SKIP", "[.][skip-selftest]") {
  CHECK(1 == 2);
  DW_SKIP("self-test after a failure");
}

TEST_CASE("skip self-test: output that mentions skipping", "[.][skip-selftest]") {
  WARN("3 lines were not skipped; SKIPPED: appears in this sentence too");
  std::cout << "skipped: printed to stdout, not a warning\nSKIPPED: so is this\n";
  CHECK(true);
}

TEST_CASE("skip self-test: the older WARN form", "[.][skip-selftest]") {
  WARN("skipped: legacy reason");
  return;
}

TEST_CASE("skip marker: printed for a skipped test only, never for a failed one", "[support]") {
  SECTION("DW_SKIP prints the marker with its reason and the run passes") {
    Run run = run_self({"skip self-test: DW_SKIP"});
    INFO(shown(run.output));
    CHECK(run.exit_code == 0);
    CHECK(has_marker_line(run.output, "self-test reason 42"));
  }
  SECTION("a test that failed before it skipped fails, without the marker") {
    Run run = run_self({"skip self-test: a failure before DW_SKIP"});
    INFO(shown(run.output));
    CHECK(run.exit_code != 0);
    CHECK_FALSE(mentions_marker(run.output));
  }
  SECTION("output that only mentions the word does not skip") {
    Run run = run_self({"skip self-test: output that mentions skipping"});
    INFO(shown(run.output));
    CHECK(run.exit_code == 0);
    CHECK_FALSE(mentions_marker(run.output));
  }
  SECTION("a warning that begins with \"skipped\" is a skip") {
    Run run = run_self({"skip self-test: the older WARN form"});
    INFO(shown(run.output));
    CHECK(run.exit_code == 0);
    CHECK(has_marker_line(run.output, "legacy reason"));
  }
}

TEST_CASE("wait self-test: a wait that times out", "[.][wait-selftest]") {
  int polls = 0;
  driftwatch::testing::wait_until(
      "the moon to turn blue", std::chrono::milliseconds(100), [&] { return ++polls < 0; },
      [&] { return std::to_string(polls) + " polls, still grey"; });
}

TEST_CASE("wait self-test: a wait for a value that times out", "[.][wait-selftest]") {
  (void)driftwatch::testing::wait_for_value("a value", std::chrono::milliseconds(100),
                                            [] { return std::optional<int>(); });
}

TEST_CASE("wait helpers: a wait that times out fails the test, saying what it waited for",
          "[support]") {
  SECTION("wait_until") {
    Run run = run_self({"wait self-test: a wait that times out"});
    INFO(shown(run.output));
    CHECK(run.exit_code != 0);
    CHECK_THAT(run.output, Catch::Contains("timed out after 100 ms waiting for the moon to turn "
                                           "blue; last seen:") &&
                               Catch::Contains("polls, still grey"));
  }
  SECTION("wait_for_value") {
    Run run = run_self({"wait self-test: a wait for a value that times out"});
    INFO(shown(run.output));
    CHECK(run.exit_code != 0);
    CHECK_THAT(run.output, Catch::Contains("timed out after 100 ms waiting for a value"));
  }
}

TEST_CASE("wait helpers: a wait that succeeds returns at once with the value", "[support]") {
  int polls = 0;
  driftwatch::testing::wait_until(
      "three polls", std::chrono::seconds(10), [&] { return ++polls == 3; },
      &driftwatch::testing::wait_detail::no_description, std::chrono::milliseconds(1));
  CHECK(polls == 3);
  int calls = 0;
  const int value = driftwatch::testing::wait_for_value(
      "a value", std::chrono::seconds(10),
      [&]() -> std::optional<int> { return ++calls == 2 ? std::optional<int>(42) : std::nullopt; },
      &driftwatch::testing::wait_detail::no_description, std::chrono::milliseconds(1));
  CHECK(value == 42);
  CHECK(calls == 2);
}

TEST_CASE("temp dir: removed with its contents when the test ends, also by an exception",
          "[support]") {
  driftwatch::testing::TempDir outside("helpers-test-outside");
  outside.write("keep", "kept");
  std::filesystem::path removed;
  try {
    driftwatch::testing::TempDir dir("helpers-test");
    removed = dir.path();
    dir.write("a/b/file", "text");
    dir.symlink("a/link", outside.path());
    REQUIRE(std::filesystem::is_regular_file(removed / "a/b/file"));
    throw std::runtime_error("a test failing midway");
  } catch (const std::runtime_error&) {
  }
  CHECK_FALSE(removed.empty());
  CHECK_FALSE(std::filesystem::exists(removed));
  // A link inside is removed, never followed.
  CHECK(std::filesystem::is_regular_file(outside / "keep"));
}
