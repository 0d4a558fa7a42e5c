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

#include "common/canonical_json.hpp"
#include "common/sha256.hpp"
#include "integration/daemon_harness.hpp"
#include "integration/evidence_entries.hpp"
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
  // `driftwatch sign` refuses to sign such a payload (it would be malformed
  // everywhere), so it is signed through the library, its hash filled in.
  auto payload = DaemonUnderTest::launch_payload("L-bad-1", "box-1", config);
  payload["config_sha256"] = driftwatch::sha256_hex(*driftwatch::canonical_json(config));
  auto envelope = daemon.sign_as_is(driftwatch::ingest::kLaunchPayloadType, payload, "cp-1");
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
  const auto restore = daemon.get("/healthz")["restore"];
  INFO(restore.dump());
  CHECK(restore["restored"] == 2);
  CHECK(restore["not_restored"] == 0);
  CHECK(daemon.stop() == 0);
}

TEST_CASE(
    "hostile input: a restart over an evidence log that lost an envelope says what it could not "
    "restore, and records it in the log",
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
  const fs::path blob =
      daemon.dir() / "state" / "evidence" / "blob" / driftwatch::sha256_hex(envelopes[0]);
  REQUIRE(fs::remove(blob));

  daemon.start();
  auto restore = daemon.get("/healthz")["restore"];
  INFO(restore.dump() << "\n" << daemon.log());
  CHECK(restore["restored"] == 1);
  CHECK(restore["not_restored"] == 1);
  CHECK_THAT(daemon.log(), Catch::Contains("RECOVERY: evidence entry") &&
                               Catch::Contains("(launch L-r-1)") &&
                               Catch::Contains("missing from the log"));
  // The one restored is still a duplicate; the lost one can be sent again.
  CHECK(daemon.post("/v1/launch-events", envelopes[1]).status == 200);
  CHECK(daemon.post("/v1/launch-events", envelopes[0]).status == 202);
  REQUIRE(daemon.stop() == 0);
  size_t recovered = 0;
  for (const auto& doc : evidence_documents(daemon))
    if (doc["type"] == "recovered" && doc["summary"] == "1 accepted envelopes not restored")
      ++recovered;
  CHECK(recovered == 1);
}

TEST_CASE(
    "hostile input: the accepted store of an earlier version is entered into the evidence log "
    "once, its damaged lines named, and the file kept under a new name",
    "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  REQUIRE(daemon.stop() == 0);
  const std::string envelope = daemon.sign(
      "launch", DaemonUnderTest::launch_payload("L-old-1", "box-old", minimal_config()), "cp-1");
  const fs::path store = daemon.dir() / "state" / "ingest" / "accepted.jsonl";
  fs::create_directories(store.parent_path());
  const std::string text =
      json{{"kind", "launch"}, {"envelope", envelope}, {"accepted_at", 1}}.dump() +
      "\n{\"kind\":\"launch\",\"envelope\":\"DAMAGED-LINE\"}\n";
  std::ofstream(store, std::ios::binary) << text;

  daemon.start();
  auto restore = daemon.get("/healthz")["restore"];
  INFO(restore.dump() << "\n" << daemon.log());
  CHECK(restore["restored"] == 1);
  CHECK(restore["migrated"] == 1);
  CHECK(restore["not_restored"] == 1);
  CHECK_THAT(daemon.log(), Catch::Contains("accepted.jsonl line 2 skipped"));
  CHECK(daemon.post("/v1/launch-events", envelope).status == 200);
  CHECK_FALSE(fs::exists(store));
  std::ifstream kept(store.string() + ".migrated", std::ios::binary);
  CHECK(std::string(std::istreambuf_iterator<char>(kept), {}) == text);
  REQUIRE(daemon.stop() == 0);
  size_t migrated = 0;
  for (const auto& doc : evidence_documents(daemon))
    if (doc["type"] == "launch_accepted" && doc["source"] == "migrated from " + store.string())
      ++migrated;
  CHECK(migrated == 1);

  // From now on it comes from the log: through the restore point written at
  // shutdown, which names it, so only that entry and the few after the
  // point (this start's own) are read.
  const auto point = json::parse(std::ifstream(daemon.dir() / "state" / "restore-point.json"));
  CHECK(point["accepted"].size() == 1);
  daemon.start();
  restore = daemon.get("/healthz")["restore"];
  INFO(restore.dump());
  CHECK_THAT(restore["how"].get<std::string>(),
             Catch::Contains("from the restore point at tree size " +
                             std::to_string(point["tree_size"].get<uint64_t>())));
  CHECK(restore["entries_read"].get<uint64_t>() <= 3);
  CHECK(restore["restored"] == 1);
  CHECK(restore["migrated"] == 0);
  CHECK(restore["not_restored"] == 0);
  CHECK(daemon.post("/v1/launch-events", envelope).status == 200);
  CHECK(daemon.stop() == 0);
}

TEST_CASE(
    "hostile input: a restart over a log that lost 60 envelopes starts, names all 60 in its log "
    "and lists the first 50 in one bounded recovered entry",
    "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  std::vector<std::string> envelopes;
  for (int i = 0; i < 60; ++i) {
    const std::string id = "L-many-" + std::to_string(i);
    envelopes.push_back(daemon.sign(
        "launch",
        DaemonUnderTest::launch_payload(id, "box-many-" + std::to_string(i), minimal_config()),
        "cp-1"));
    REQUIRE(daemon.post("/v1/launch-events", envelopes.back()).status == 202);
  }
  REQUIRE(daemon.stop() == 0);
  for (const auto& envelope : envelopes)
    REQUIRE(fs::remove(daemon.dir() / "state" / "evidence" / "blob" /
                       driftwatch::sha256_hex(envelope)));

  daemon.start();
  const auto restore = daemon.get("/healthz")["restore"];
  INFO(restore.dump());
  CHECK(restore["not_restored"] == 60);
  CHECK(restore["restored"] == 0);
  REQUIRE(daemon.stop() == 0);
  const std::string log = daemon.log();
  size_t named = 0;
  for (size_t at = 0; (at = log.find("RECOVERY: evidence entry", at)) != std::string::npos; ++at)
    ++named;
  CHECK(named == 60);
  size_t recovered = 0;
  for (const auto& doc : evidence_documents(daemon))
    if (doc["type"] == "recovered" && doc["store"] == "accepted") {
      ++recovered;
      CHECK(doc["details"]["not_restored"].size() == 50);
      CHECK(doc["details"]["not_restored_total"] == 60);
    }
  CHECK(recovered == 1);
}
