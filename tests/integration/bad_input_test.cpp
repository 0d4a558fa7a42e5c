// Bad input gets a one-line error naming the input, exit code 2, and no
// partial output on stdout.

#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <catch2/catch.hpp>

#include "integration/cli.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"

using namespace driftwatch::testing;

namespace {

void require_bad_input(const std::vector<std::string>& args, const std::string& named) {
  auto result = run_driftwatch(args);
  INFO("driftwatch " << describe_command(args) << "\nstdout: " << result.out
                     << "\nstderr: " << result.err);
  CHECK(result.exit_code == 2);
  CHECK(result.out.empty());
  REQUIRE_FALSE(result.err.empty());
  CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
  CHECK(result.err.back() == '\n');
  CHECK_THAT(result.err, Catch::Contains(named));
}

// One directory for the whole test binary's bad inputs, removed at exit.
std::string write_temp(const std::string& name, const std::string& content) {
  static const TempDir dir("bad-input");
  auto path = dir / name;
  std::ofstream(path) << content;
  return path.string();
}

// A PID that existed a moment ago and has been reaped.
pid_t reaped_pid() {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status = 0;
  waitpid(pid, &status, 0);
  return pid;
}

}  // namespace

TEST_CASE("bad input: a config that is not JSON is refused naming the file", "[integration]") {
  auto path = write_temp("garbage.json", "{ this is not json");
  require_bad_input({"project", "--oci-config", path}, path);
  require_bad_input({"diff", "--oci-config", path, "--pid", "1"}, path);
}

TEST_CASE("bad input: JSON that is not an OCI config is refused naming the file and field",
          "[integration]") {
  auto array = write_temp("array.json", "[1, 2, 3]");
  require_bad_input({"project", "--oci-config", array}, array);
  auto no_version = write_temp("no-version.json", R"({"process": {"args": ["sh"]}})");
  require_bad_input({"project", "--oci-config", no_version}, "ociVersion");
  auto bad_caps = write_temp(
      "bad-caps.json",
      R"({"ociVersion": "1.0.2", "process": {"capabilities": {"bounding": ["CAP_FLY"]}}})");
  require_bad_input({"project", "--oci-config", bad_caps}, "CAP_FLY");
  require_bad_input({"project", "--oci-config", "/nonexistent/config.json"},
                    "/nonexistent/config.json");
}

TEST_CASE("bad input: a PID that does not exist is refused naming the PID", "[integration]") {
  pid_t gone = reaped_pid();
  require_bad_input({"inspect", "--pid", std::to_string(gone)}, std::to_string(gone));
  require_bad_input({"inspect", "--pid", "0"}, "pid 0");
  require_bad_input({"inspect", "--pid", "-5"}, "-5");
}

TEST_CASE("bad input: an unknown or malformed container id is refused naming the id",
          "[integration]") {
  require_bad_input({"inspect", "--oci", "no-such-container-here"}, "no-such-container-here");
  require_bad_input({"inspect", "--oci", "../../etc"}, "../../etc");
  auto bundle_free_config = write_temp("ok.json", R"({"ociVersion": "1.0.2"})");
  require_bad_input({"diff", "--oci-config", bundle_free_config, "--oci", "no-such-container"},
                    "no-such-container");
}

TEST_CASE("bad input: usage errors exit 2 with one line", "[integration]") {
  require_bad_input({"inspect", "--pid", "1", "--oci", "x"}, "");
  require_bad_input({"diff", "--pid", "1"}, "oci-config");
  require_bad_input({"frobnicate"}, "frobnicate");
}

TEST_CASE("bad input: a process that exits mid-sample gives a clean error or a whole sample",
          "[root][integration]") {
  if (auto why = missing_requirement({"root"})) {
    DW_SKIP(*why);
  }
  // Processes that live about as long as a sample takes: each run either
  // samples the process whole (exit 0, valid JSON) or reports it gone (exit 2,
  // one line, nothing on stdout). Never a crash, never half a document.
  int whole = 0, gone = 0;
  for (int i = 0; i < 40; ++i) {
    auto child = ChildProcess::start({"sleep", i % 2 ? "0.002" : "0.001"});
    auto result = run_driftwatch({"inspect", "--pid", std::to_string(child.pid())});
    INFO("run " << i << " stdout: " << result.out << " stderr: " << result.err);
    REQUIRE((result.exit_code == 0 || result.exit_code == 2));
    if (result.exit_code == 0) {
      auto doc = nlohmann::json::parse(result.out, nullptr, false);
      REQUIRE_FALSE(doc.is_discarded());
      CHECK(doc["members"].size() >= 1);
      ++whole;
    } else {
      CHECK(result.out.empty());
      CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
      CHECK_THAT(result.err, Catch::Contains(std::to_string(child.pid())));
      ++gone;
    }
    child.kill();
  }
  WARN("mid-sample exits: " << whole << " sampled whole, " << gone << " reported gone");
  CHECK(whole + gone == 40);
}

TEST_CASE("bad input: members that exit mid-sample are dropped, never half-read",
          "[root][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) {
    DW_SKIP(*why);
  }
  auto bundle = OciBundle::with_default_spec();
  // A container whose shell forks short-lived processes without pause.
  bundle.config()["process"]["args"] = {"sh", "-c", "while :; do /bin/true; done"};
  bundle.write_config();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("churn")));
  int dropped = 0;
  for (int i = 0; i < 30; ++i) {
    auto doc = driftwatch_json({"inspect", "--oci", container.id()}, 0);
    for (const auto& member : doc["members"]) {
      // A member is reported whole: its identity and its credentials.
      CHECK(member["start_time_ticks"].get<uint64_t>() > 0);
      CHECK(member.contains("euid"));
    }
    dropped += static_cast<int>(doc["vanished_members"].size());
  }
  WARN("members dropped because they exited mid-sample: " << dropped);
}
