// A real `driftwatch run` fed what an attacker, a buggy control plane or a
// full disk feeds it: a signed config that cannot be projected, bytes that
// are not UTF-8, a journal that is a FIFO or a symlink, a disk that fills up,
// a damaged accepted store. Each answer must be the contract's, and the
// daemon must go on sweeping.

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>

#include "integration/daemon_harness.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"
#include "support/wait.hpp"

using namespace driftwatch::testing;
using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

json minimal_config() {
  return {{"ociVersion", "1.0.2"},
          {"process", {{"args", {"sleep", "1000"}}, {"noNewPrivileges", true}}},
          {"root", {{"path", "rootfs"}, {"readonly", true}}}};
}

int64_t ingest_count(const DaemonUnderTest& daemon, const char* result) {
  return daemon.get("/healthz")["ingest"]["launch_events"][result].get<int64_t>();
}

// A small tmpfs mounted on a fresh directory (never over /tmp), unmounted
// by the destructor.
class TinyTmpfs {
 public:
  TinyTmpfs(const fs::path& where, const char* size) : where_(where) {
    fs::create_directories(where_);
    const std::string options = std::string("size=") + size + ",mode=0700";
    mounted_ =
        ::mount("tmpfs", where_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) == 0;
  }
  ~TinyTmpfs() {
    if (mounted_) ::umount2(where_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  fs::path where_;
  bool mounted_ = false;
};

// Fills the file system holding `path` to the last byte; returns the filler.
fs::path fill_up(const fs::path& dir) {
  const fs::path filler = dir / "filler";
  const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  std::string block(4096, 'x');
  while (::write(fd, block.data(), block.size()) > 0) {
  }
  for (;;) {  // the last partial page
    if (::write(fd, "x", 1) <= 0) break;
  }
  ::close(fd);
  return filler;
}

}  // namespace

TEST_CASE(
    "hostile input: a signed launch whose config cannot be projected is malformed, and "
    "the daemon goes on sweeping",
    "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();

  json config = minimal_config();
  config["linux"] = {{"namespaces", {{{"type", "user"}}}}, {"uidMappings", {5}}};
  auto envelope =
      daemon.sign("launch", DaemonUnderTest::launch_payload("L-bad-1", "box-1", config), "cp-1");
  auto reply = daemon.post("/v1/launch-events", envelope);
  INFO(reply.body);
  CHECK(reply.status == 400);
  auto body = json::parse(reply.body);
  CHECK(body["result"] == "malformed");
  CHECK_THAT(body["reason"].get<std::string>(),
             Catch::Contains("declared projection") && Catch::Contains("uidMappings"));
  CHECK(ingest_count(daemon, "accepted") == 0);

  // The loop and its sweeps live on; a restart is clean and starts again.
  daemon.wait_sweeps(2);
  CHECK(daemon.get("/healthz")["status"] == "ok");
  CHECK(daemon.stop() == 0);
  daemon.start();
  daemon.wait_sweeps(1);
  CHECK(daemon.stop() == 0);

  // The CLI says what is wrong instead of aborting.
  const fs::path file = daemon.dir() / "bad-config.json";
  std::ofstream(file) << config.dump();
  auto projected = run_driftwatch({"project", "--oci-config", file.string()});
  INFO(projected.err);
  CHECK(projected.exit_code == 2);
  CHECK_THAT(projected.err, Catch::Contains("uidMappings"));
}

TEST_CASE(
    "hostile input: bytes that are not UTF-8, or begin with a BOM, are 400 malformed, "
    "never a 5xx",
    "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  const auto good = daemon.sign(
      "launch", DaemonUnderTest::launch_payload("L-u-1", "box-u", minimal_config()), "cp-1");
  for (const std::string& bytes :
       {std::string("{\"payloadType\":\"\xff\xfe\",\"payload\":\"e30=\",\"signatures\":[]}"),
        std::string("\xc3\x28") + good, std::string("\xEF\xBB\xBF") + good}) {
    auto reply = daemon.post("/v1/launch-events", bytes);
    INFO(reply.body);
    CHECK(reply.status == 400);
    auto body = json::parse(reply.body, nullptr, false);
    REQUIRE_FALSE(body.is_discarded());
    CHECK(body["result"] == "malformed");
  }
  CHECK(ingest_count(daemon, "malformed") == 3);
  // The envelope itself is fine without the BOM.
  CHECK(daemon.post("/v1/launch-events", good).status == 202);
}

TEST_CASE("hostile input: a grant for a launch that does not exist is an orphan_grant",
          "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  json wider = minimal_config();
  wider["process"]["capabilities"] = {{"bounding", {"CAP_SYS_ADMIN"}},
                                      {"effective", {"CAP_SYS_ADMIN"}},
                                      {"permitted", {"CAP_SYS_ADMIN"}}};
  auto grant =
      daemon.sign("grant", DaemonUnderTest::grant_payload("G-o-1", "L-o-1", wider), "alice");
  auto reply = daemon.post("/v1/grants", grant);
  INFO(reply.body);
  CHECK(reply.status == 422);
  CHECK(json::parse(reply.body)["result"] == "orphan_grant");
  // The launch arriving later is not widened by the refused grant: the
  // grant has to be sent again, after it.
  CHECK(daemon
            .post("/v1/launch-events",
                  daemon.sign("launch",
                              DaemonUnderTest::launch_payload("L-o-1", "box-o", minimal_config()),
                              "cp-1"))
            .status == 202);
  CHECK(daemon.get("/healthz")["ingest"]["grants"]["accepted"] == 0);
}

TEST_CASE(
    "hostile input: a FIFO or a symlink as launch journal is refused, and the daemon "
    "still answers and stops",
    "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  const fs::path secret = daemon.dir() / "secret.txt";
  std::ofstream(secret) << "root:SECRET-HASH-DO-NOT-ECHO:19000:0:99999:7:::\n";
  SECTION("a FIFO") {
    REQUIRE(::mkfifo(daemon.journal().c_str(), 0600) == 0);
  }
  SECTION("a symlink") {
    fs::create_symlink(secret, daemon.journal());
  }
  daemon.start();
  daemon.wait_sweeps(2);
  CHECK(daemon.get("/healthz")["status"] == "ok");
  const auto started = std::chrono::steady_clock::now();
  CHECK(daemon.stop() == 0);
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
  const std::string log = daemon.log();
  CHECK_THAT(log, Catch::Contains("journal.jsonl") &&
                      (Catch::Contains("FIFO") || Catch::Contains("symbolic link")));
  CHECK_THAT(log, !Catch::Contains("SECRET-HASH"));
}

TEST_CASE(
    "hostile input: a full disk answers 503 unavailable, not malformed, and a journal line "
    "is retried until it is stored",
    "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  TinyTmpfs disk(daemon.dir() / "state", "512k");
  if (!disk.mounted()) DW_SKIP("cannot mount a tmpfs: " << std::strerror(errno));
  daemon.start();
  daemon.wait_sweeps(1);
  const fs::path filler = fill_up(daemon.dir() / "state");

  auto posted = daemon.sign(
      "launch", DaemonUnderTest::launch_payload("L-full-1", "box-f1", minimal_config()), "cp-1");
  auto reply = daemon.post("/v1/launch-events", posted);
  INFO(reply.body);
  CHECK(reply.status == 503);
  CHECK(json::parse(reply.body)["result"] == "unavailable");
  CHECK(ingest_count(daemon, "unavailable") == 1);
  CHECK(ingest_count(daemon, "malformed") == 0);
  CHECK(ingest_count(daemon, "accepted") == 0);
  auto metrics = http_request(daemon.port(), "GET", "/metrics").body;
  CHECK_THAT(metrics, Catch::Contains("driftwatch_launch_events_total{result=\"unavailable\"} 1"));
  CHECK_THAT(metrics, Catch::Contains("driftwatch_launch_events_total{result=\"malformed\"} 0"));

  // The same from the journal: not committed past, retried each poll.
  auto journaled = daemon.sign(
      "launch", DaemonUnderTest::launch_payload("L-full-2", "box-f2", minimal_config()), "cp-1");
  std::ofstream(daemon.journal(), std::ios::app) << journaled << "\n";
  wait_until("the journal line to be tried (and refused) twice", 15s,
             [&] { return ingest_count(daemon, "unavailable") >= 3; });
  CHECK(ingest_count(daemon, "accepted") == 0);

  fs::remove(filler);
  wait_until("the journal line to be accepted once there is room", 15s,
             [&] { return ingest_count(daemon, "accepted") == 1; });
  CHECK(daemon.post("/v1/launch-events", posted).status == 202);
  // Nothing was lost, and nothing was stored twice: a restart restores both.
  CHECK(daemon.stop() == 0);
  daemon.start();
  CHECK(daemon.post("/v1/launch-events", posted).status == 200);
  CHECK(daemon.post("/v1/launch-events", journaled).status == 200);
  CHECK(daemon.get("/healthz")["restore"]["skipped_lines"] == 0);
  CHECK(daemon.stop() == 0);
}

TEST_CASE(
    "hostile input: a restart over a damaged accepted store says what it skipped, keeps "
    "it, and records the recovery",
    "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  std::vector<std::string> envelopes;
  for (const char* id : {"L-r-1", "L-r-2"}) {
    envelopes.push_back(daemon.sign(
        "launch", DaemonUnderTest::launch_payload(id, std::string("box-") + id, minimal_config()),
        "cp-1"));
    REQUIRE(daemon.post("/v1/launch-events", envelopes.back()).status == 202);
  }
  REQUIRE(daemon.stop() == 0);

  // A damaged line between the two, and a torn tail.
  const fs::path store = daemon.dir() / "state" / "ingest" / "accepted.jsonl";
  std::string text;
  {
    std::ifstream in(store);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t first_end = text.find('\n');
  REQUIRE(first_end != std::string::npos);
  text.insert(first_end + 1, "{\"kind\":\"launch\",\"envelope\":\"DAMAGED-LINE\"}\n");
  text += "{\"kind\":\"launch\",\"env";
  std::ofstream(store, std::ios::trunc) << text;

  daemon.start();
  auto restore = daemon.get("/healthz")["restore"];
  CHECK(restore["skipped_lines"] == 1);
  CHECK(restore["truncated_bytes"].get<int64_t>() > 0);
  REQUIRE(restore["quarantine"].is_string());
  std::ifstream quarantine(restore["quarantine"].get<std::string>());
  const std::string kept((std::istreambuf_iterator<char>(quarantine)), {});
  CHECK_THAT(kept, Catch::Contains("DAMAGED-LINE") && Catch::Contains("\"env"));
  CHECK_THAT(daemon.log(), Catch::Contains("RECOVERY") && Catch::Contains("line 2"));
  // Both launches survived; the damaged line stays in the store, and the
  // recovery is recorded there.
  for (const auto& envelope : envelopes)
    CHECK(daemon.post("/v1/launch-events", envelope).status == 200);
  REQUIRE(daemon.stop() == 0);
  std::ifstream in(store);
  const std::string after((std::istreambuf_iterator<char>(in)), {});
  CHECK_THAT(after, Catch::Contains("DAMAGED-LINE") && Catch::Contains("\"kind\":\"recovered\""));
}
