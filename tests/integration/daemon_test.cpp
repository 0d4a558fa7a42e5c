// `driftwatch run` against real runc containers: signed launch events and
// grants over HTTP and from a journal, verdicts, rejections, restarts and
// startup errors.

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include <catch2/catch.hpp>

#include "common/sha256.hpp"
#include "integration/daemon_harness.hpp"
#include "integration/evidence_entries.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"

using namespace driftwatch::testing;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

uint64_t inode_of(const fs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_ino;
}

bool has_finding(const json& sandbox, const std::string& field, const std::string& direction) {
  for (const auto& f : sandbox["findings"])
    if (f["field"] == field && f["direction"] == direction) return true;
  return false;
}

// The container's config with CAP_SYS_ADMIN added the way `runc exec --cap`
// adds it: to the bounding, effective and permitted sets.
json with_sys_admin(json config) {
  for (const char* set : {"bounding", "effective", "permitted"})
    config["process"]["capabilities"][set].push_back("CAP_SYS_ADMIN");
  return config;
}

// The fields a rejected envelope must not change.
json verdict_state(const json& sandbox) {
  return {{"verdict", sandbox["verdict"]},
          {"launch_id", sandbox["launch_id"]},
          {"grant_id", sandbox["grant_id"]},
          {"declared_sha256", sandbox["declared_sha256"]},
          {"observed_sha256", sandbox["observed_sha256"]},
          {"findings", sandbox["findings"]}};
}

}  // namespace

TEST_CASE("daemon: honest launch attests, exec --cap drifts, only an operator's grant re-attests",
          "[root][runc][integration][daemon]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  auto bundle = OciBundle::with_default_spec();
  auto container =
      value_or_throw(Container::start("runc", bundle, unique_container_id("d-honest")));
  DaemonUnderTest daemon;
  daemon.start();

  auto launch = daemon.sign(
      "launch", DaemonUnderTest::launch_payload("L-honest-1", container.id(), bundle.config()),
      "cp-1");
  auto accepted = daemon.post("/v1/launch-events", launch);
  INFO(accepted.body);
  REQUIRE(accepted.status == 202);
  CHECK(json::parse(accepted.body) == json({{"result", "accepted"}, {"id", "L-honest-1"}}));

  auto attested = daemon.wait_for_verdict(container.id(), "attested");
  INFO(attested.dump());
  REQUIRE(attested["verdict"] == "attested");
  CHECK(attested["launch_id"] == "L-honest-1");
  CHECK(attested["declared_sha256"] == attested["observed_sha256"]);
  CHECK(attested["consumed_config_sha256"].is_string());
  CHECK(attested["findings"] == json::array());

  // A byte-identical replay is idempotent.
  auto replay = daemon.post("/v1/launch-events", launch);
  CHECK(replay.status == 200);
  CHECK(json::parse(replay.body)["result"] == "duplicate");

  value_or_throw(container.exec({"sleep", "3600"}, {"--cap", "CAP_SYS_ADMIN"}));
  auto drifted = daemon.wait_for_verdict(container.id(), "drifted");
  INFO(drifted.dump());
  REQUIRE(drifted["verdict"] == "drifted");
  CHECK(has_finding(drifted, "capabilities.effective", "escalation"));

  // The same grant by the wrong role and by an unknown key: rejected, and
  // the sandbox stays drifted.
  auto grant_payload =
      DaemonUnderTest::grant_payload("G-1", "L-honest-1", with_sys_admin(bundle.config()));
  auto by_control_plane = daemon.post("/v1/grants", daemon.sign("grant", grant_payload, "cp-1"));
  CHECK(by_control_plane.status == 403);
  CHECK(json::parse(by_control_plane.body)["result"] == "wrong_role");
  auto by_stranger = daemon.post("/v1/grants", daemon.sign("grant", grant_payload, "mallory"));
  CHECK(by_stranger.status == 403);
  CHECK(json::parse(by_stranger.body)["result"] == "unknown_key");
  daemon.wait_sweeps();
  CHECK(daemon.get("/v1/sandboxes/" + container.id())["verdict"] == "drifted");

  // Signed by the operator: the declared side now includes CAP_SYS_ADMIN.
  auto by_operator = daemon.post("/v1/grants", daemon.sign("grant", grant_payload, "alice"));
  INFO(by_operator.body);
  CHECK(by_operator.status == 202);
  auto regranted = daemon.wait_for_verdict(container.id(), "attested");
  INFO(regranted.dump());
  CHECK(regranted["verdict"] == "attested");
  CHECK(regranted["grant_id"] == "G-1");
}

TEST_CASE("daemon: a launch whose config differs from what the runtime consumed is drifted",
          "[root][runc][integration][daemon]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("d-cons")));
  DaemonUnderTest daemon;
  daemon.start();
  // The control plane logs "no capabilities"; the runtime got the default set.
  json logged = bundle.config();
  for (const char* set : {"bounding", "effective", "permitted", "inheritable", "ambient"})
    logged["process"]["capabilities"][set] = json::array();
  auto reply = daemon.post(
      "/v1/launch-events",
      daemon.sign("launch", DaemonUnderTest::launch_payload("L-cons-1", container.id(), logged),
                  "cp-1"));
  REQUIRE(reply.status == 202);
  auto drifted = daemon.wait_for_verdict(container.id(), "drifted");
  INFO(drifted.dump());
  REQUIRE(drifted["verdict"] == "drifted");
  CHECK(has_finding(drifted, "consumed_config", "change"));
  CHECK(has_finding(drifted, "capabilities.effective", "escalation"));
  CHECK(drifted["consumed_config_sha256"] != nullptr);
}

TEST_CASE("daemon: a sandbox nobody launched is unattested after the grace period",
          "[root][runc][integration][daemon]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("d-unatt")));
  DaemonUnderTest daemon;
  daemon.start();
  auto state = daemon.wait_for_verdict(container.id(), "unattested");
  INFO(state.dump());
  CHECK(state["verdict"] == "unattested");
  CHECK(state["launch_id"] == nullptr);
  CHECK(daemon.get("/healthz")["sandboxes"]["unattested"].get<int>() >= 1);
}

TEST_CASE("daemon: every rejection class changes nothing but its counter",
          "[root][runc][integration][daemon]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("d-rej")));
  DaemonUnderTest daemon;
  daemon.start();
  auto payload = DaemonUnderTest::launch_payload("L-rej-1", container.id(), bundle.config());
  REQUIRE(daemon.post("/v1/launch-events", daemon.sign("launch", payload, "cp-1")).status == 202);
  auto before = daemon.wait_for_verdict(container.id(), "attested");
  REQUIRE(before["verdict"] == "attested");

  auto tampered = json::parse(daemon.sign("launch", payload, "cp-1"));
  std::string sig = tampered["signatures"][0]["sig"];
  sig[5] = sig[5] == 'A' ? 'B' : 'A';
  tampered["signatures"][0]["sig"] = sig;

  auto other_content = payload;
  other_content["requested_by"] = "oidc:someone-else@example.org";
  auto wrong_hash = payload;
  wrong_hash["launch_id"] = "L-rej-2";
  wrong_hash["config_sha256"] = std::string(64, 'a');
  auto stale = DaemonUnderTest::launch_payload("L-rej-3", container.id(), bundle.config(),
                                               unix_now() - 3 * 86400);
  auto future = DaemonUnderTest::launch_payload("L-rej-4", container.id(), bundle.config(),
                                                unix_now() + 86400);
  auto grant_as_launch =
      DaemonUnderTest::launch_payload("L-rej-5", container.id(), bundle.config());

  struct Rejection {
    std::string result;
    int status;
    std::string body;
  };
  std::vector<Rejection> rejections = {
      {"malformed", 400, "{ not an envelope"},
      {"bad_signature", 403, tampered.dump()},
      {"unknown_key", 403, daemon.sign("launch", payload, "mallory")},
      {"wrong_role", 403, daemon.sign("launch", grant_as_launch, "alice")},
      {"hash_mismatch", 422,
       daemon.sign_as_is(driftwatch::ingest::kLaunchPayloadType, wrong_hash, "cp-1")},
      {"conflict", 409, daemon.sign("launch", other_content, "cp-1")},
      {"stale", 422, daemon.sign("launch", stale, "cp-1")},
      {"future", 422, daemon.sign("launch", future, "cp-1")},
      {"too_large", 413, std::string(2 << 20, ' ')},
  };
  for (const auto& r : rejections) {
    auto reply = daemon.post("/v1/launch-events", r.body);
    INFO(r.result << ": " << reply.status << " " << reply.body);
    CHECK(reply.status == r.status);
    auto body = json::parse(reply.body, nullptr, false);
    REQUIRE_FALSE(body.is_discarded());
    CHECK(body["result"] == r.result);
    CHECK(body["reason"].is_string());
  }
  daemon.wait_sweeps();
  auto after = daemon.get("/v1/sandboxes/" + container.id());
  CHECK(verdict_state(after) == verdict_state(before));
  auto counts = daemon.get("/healthz")["ingest"]["launch_events"];
  INFO(counts.dump());
  CHECK(counts["accepted"] == 1);
  for (const auto& r : rejections) CHECK(counts[r.result] == 1);
}

TEST_CASE(
    "daemon: verdicts and grants survive a restart, and the journal is read on where it stopped",
    "[root][runc][integration][daemon]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("d-rst")));
  DaemonUnderTest daemon;
  // The launch and a grant arrive through the journal, before the start.
  value_or_throw(container.exec({"sleep", "3600"}, {"--cap", "CAP_SYS_ADMIN"}));
  {
    std::ofstream journal(daemon.journal());
    journal << daemon.sign(
                   "launch",
                   DaemonUnderTest::launch_payload("L-rst-1", container.id(), bundle.config()),
                   "cp-1")
            << "\n"
            << daemon.sign("grant",
                           DaemonUnderTest::grant_payload("G-rst-1", "L-rst-1",
                                                          with_sys_admin(bundle.config())),
                           "alice")
            << "\n";
  }
  daemon.start();
  auto first = daemon.wait_for_verdict(container.id(), "attested");
  INFO(first.dump() << "\n" << daemon.log());
  REQUIRE(first["verdict"] == "attested");
  CHECK(first["grant_id"] == "G-rst-1");
  CHECK(daemon.stop() == 0);
  // How far the journal was read is in the evidence log, not in a file of
  // its own: the last journal_position entry is at the journal's end.
  CHECK_FALSE(fs::exists(daemon.dir() / "state" / "journals"));
  std::optional<json> position;
  for (const auto& entry : evidence_documents(daemon))
    if (entry["type"] == "journal_position") position = entry;
  REQUIRE(position);
  CHECK((*position)["journal"] == fs::absolute(daemon.journal()).lexically_normal().string());
  CHECK((*position)["offset"] == fs::file_size(daemon.journal()));
  CHECK((*position)["inode"] == inode_of(daemon.journal()));

  daemon.start();
  auto second = daemon.wait_for_verdict(container.id(), "attested");
  INFO(second.dump() << "\n" << daemon.log());
  CHECK(verdict_state(second) == verdict_state(first));
  // Nothing was read from the journal again.
  auto counts = daemon.get("/healthz")["ingest"];
  for (const char* kind : {"launch_events", "grants"})
    for (const auto& [result, count] : counts[kind].items()) {
      INFO(kind << " " << result);
      CHECK(count == 0);
    }

  // A line appended now is read.
  auto other = value_or_throw(Container::start("runc", bundle, unique_container_id("d-rst2")));
  {
    std::ofstream journal(daemon.journal(), std::ios::app);
    journal << daemon.sign("launch",
                           DaemonUnderTest::launch_payload("L-rst-2", other.id(), bundle.config()),
                           "cp-1")
            << "\n";
  }
  auto appended = daemon.wait_for_verdict(other.id(), "attested");
  CHECK(appended["launch_id"] == "L-rst-2");
  CHECK(daemon.get("/healthz")["ingest"]["launch_events"]["accepted"] == 1);
  CHECK(daemon.stop() == 0);
}

TEST_CASE(
    "daemon: a journal offset file of an earlier version is read once, recorded in the log and "
    "renamed",
    "[root][runc][integration][daemon]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("d-off")));
  DaemonUnderTest daemon;
  {
    std::ofstream journal(daemon.journal());
    journal << daemon.sign(
                   "launch",
                   DaemonUnderTest::launch_payload("L-off-1", container.id(), bundle.config()),
                   "cp-1")
            << "\n";
  }
  // The earlier version had read the line: its offset file says so.
  const std::string name = fs::absolute(daemon.journal()).lexically_normal().string();
  const fs::path offsets = daemon.dir() / "state" / "journals";
  fs::create_directories(offsets);
  fs::permissions(daemon.dir() / "state", fs::perms::owner_all);
  const fs::path offset_file = offsets / (driftwatch::sha256_hex(name).substr(0, 16) + ".offset");
  std::ofstream(offset_file) << json{{"inode", inode_of(daemon.journal())},
                                     {"offset", fs::file_size(daemon.journal())}}
                                    .dump();
  daemon.start();
  daemon.wait_sweeps(1);
  // Not read again: nothing ingested, the sandbox without its launch.
  CHECK(daemon.get("/healthz")["ingest"]["launch_events"]["accepted"] == 0);
  CHECK(daemon.get("/v1/sandboxes/" + container.id())["launch_id"].is_null());
  CHECK_FALSE(fs::exists(offset_file));
  CHECK(fs::exists(offset_file.string() + ".migrated"));
  // A line appended now is read.
  auto other = value_or_throw(Container::start("runc", bundle, unique_container_id("d-off2")));
  std::ofstream(daemon.journal(), std::ios::app)
      << daemon.sign("launch",
                     DaemonUnderTest::launch_payload("L-off-2", other.id(), bundle.config()),
                     "cp-1")
      << "\n";
  CHECK(daemon.wait_for_verdict(other.id(), "attested")["launch_id"] == "L-off-2");
  CHECK(daemon.stop() == 0);
  std::vector<json> positions;
  for (const auto& entry : evidence_documents(daemon))
    if (entry["type"] == "journal_position") positions.push_back(entry);
  REQUIRE(positions.size() == 2);
  CHECK_THAT(positions[0]["source"].get<std::string>(), Catch::StartsWith("migrated from "));
  CHECK(positions[1]["offset"] == fs::file_size(daemon.journal()));

  // And the restart after goes on from the log alone.
  daemon.start();
  daemon.wait_for_verdict(other.id(), "attested");
  // Held in a local: items() of a temporary dangles once the range-for
  // starts (g++ 12 has no lifetime extension of range-init temporaries).
  const json counts = daemon.get("/healthz")["ingest"]["launch_events"];
  for (const auto& [result, count] : counts.items()) CHECK(count == 0);
  CHECK(daemon.stop() == 0);
}

TEST_CASE("daemon: an envelope signed by an independent implementation is accepted",
          "[root][runc][integration][daemon][interop]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  auto python = run_command({"python3", "-c", "import cryptography"});
  if (python.exit_code != 0) {
    DW_SKIP("python3 with the cryptography module is missing (python3-cryptography)");
  }
  auto script = std::filesystem::path(__FILE__).parent_path() / "sign_envelope.py";
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("d-py")));
  DaemonUnderTest daemon;
  // Python's key replaces cp-1's in the trust file.
  auto made = run_command({"python3", script.string(), "keygen", daemon.dir().string(), "py-cp"});
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  std::ifstream pub(daemon.dir() / "py-cp.pub");
  std::string pem((std::istreambuf_iterator<char>(pub)), {});
  json trust{{"control_plane", {{{"name", "py-cp"}, {"public_key_pem", pem}}}},
             {"operator", json::array()}};
  std::ofstream(daemon.dir() / "trust.json") << trust.dump();
  daemon.start();

  auto payload_path = daemon.dir() / "py-payload.json";
  std::ofstream(payload_path)
      << DaemonUnderTest::launch_payload("L-py-1", container.id(), bundle.config()).dump();
  auto signed_ = run_command({"python3", script.string(), "sign", "--key",
                              (daemon.dir() / "py-cp.key").string(), "--type", "launch",
                              payload_path.string()});
  INFO(signed_.err);
  REQUIRE(signed_.exit_code == 0);
  auto reply = daemon.post("/v1/launch-events", signed_.out);
  INFO(reply.body);
  CHECK(reply.status == 202);
  CHECK(daemon.wait_for_verdict(container.id(), "attested")["verdict"] == "attested");
}

TEST_CASE("daemon: configuration errors stop startup naming the key or file",
          "[integration][daemon]") {
  SECTION("unknown key") {
    DaemonUnderTest daemon(json{{"discovery", {{"runc_root", {"/run/runc"}}}}});
    auto result = run_driftwatch({"run", "--config", daemon.config_path().string()});
    CHECK(result.exit_code == 2);
    CHECK_THAT(result.err, Catch::Contains("runc_root"));
  }
  SECTION("wrong type") {
    DaemonUnderTest daemon(json{{"sweep_interval_seconds", "often"}});
    auto result = run_driftwatch({"run", "--config", daemon.config_path().string()});
    CHECK(result.exit_code == 2);
    CHECK_THAT(result.err, Catch::Contains("sweep_interval_seconds"));
  }
  SECTION("unreadable trust file") {
    DaemonUnderTest daemon;
    std::ofstream(daemon.dir() / "trust.json") << "{ this is not json";
    auto result = run_driftwatch({"run", "--config", daemon.config_path().string()});
    CHECK(result.exit_code == 2);
    CHECK_THAT(result.err, Catch::Contains((daemon.dir() / "trust.json").string()));
  }
  SECTION("missing config file") {
    auto result = run_driftwatch({"run", "--config", "/nonexistent/driftwatch.json"});
    CHECK(result.exit_code == 2);
    CHECK_THAT(result.err, Catch::Contains("/nonexistent/driftwatch.json"));
  }
}

TEST_CASE("daemon: without a trust file it runs, says so loudly, and nothing is attested",
          "[root][runc][integration][daemon]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("d-notr")));
  DaemonUnderTest daemon(json::object(), /*with_trust=*/false);
  daemon.start();
  CHECK_THAT(daemon.log(), Catch::Contains("NO TRUST FILE"));
  auto reply = daemon.post(
      "/v1/launch-events",
      daemon.sign("launch",
                  DaemonUnderTest::launch_payload("L-notr-1", container.id(), bundle.config()),
                  "cp-1"));
  CHECK(reply.status == 403);
  CHECK(json::parse(reply.body)["result"] == "unknown_key");
  auto state = daemon.wait_for_verdict(container.id(), "unattested");
  CHECK(state["verdict"] == "unattested");
}

TEST_CASE("daemon: it keeps only the capabilities it needs and stops cleanly on SIGTERM",
          "[root][integration][daemon]") {
  SKIP_WITHOUT("root");
  DaemonUnderTest daemon;
  daemon.start();
  auto health = daemon.get("/healthz");
  // The sampler's; CAP_SYS_PTRACE is its proc peer's alone.
  CHECK(health["capabilities"] == json({"CAP_DAC_READ_SEARCH"}));
  CHECK(health["confinement"]["proc_peer"]["capabilities"] == json({"CAP_SYS_PTRACE"}));
  CHECK(health["status"] == "ok");
  CHECK(daemon.stop() == 0);
  CHECK_THAT(daemon.log(), Catch::Contains("stopped"));
}

TEST_CASE(
    "daemon: at start it says in one line what it watches, how often, where its state is and "
    "where its API answers",
    "[root][integration][daemon]") {
  SKIP_WITHOUT("root");
  // One root that exists and one that does not: each is named, the absent
  // one marked so.
  const fs::path absent = fs::path("/run/driftwatch-test-absent-") += std::to_string(::getpid());
  DaemonUnderTest daemon(
      json{{"discovery", {{"runc_roots", {"/run/runc"}}, {"crun_roots", {absent.string()}}}}});
  fs::create_directories("/run/runc");
  daemon.start();
  const std::string log = daemon.log();
  INFO(log);
  const std::string state = (daemon.dir() / "state").string();
  std::string line;
  std::istringstream lines(log);
  for (std::string each; std::getline(lines, each);)
    if (each.find(" info watching ") != std::string::npos) line = each;
  REQUIRE_FALSE(line.empty());
  CHECK_THAT(line,
             Catch::Contains("watching runc /run/runc; crun " + absent.string() + " (absent)"));
  CHECK_THAT(line, Catch::Contains("; containerd "));
  CHECK_THAT(line, Catch::Contains("; podman storage "));
  CHECK_THAT(line, Catch::Contains("a full sweep every 1 s"));
  CHECK_THAT(line, Catch::Contains("state dir " + state));
  CHECK_THAT(line, Catch::Contains("API http://127.0.0.1:" + std::to_string(daemon.port()) + " "));
  CHECK_THAT(line, Catch::Contains("2 trust keys from " + (daemon.dir() / "trust.json").string()));
  // ... before the line scripts wait for.
  CHECK(log.find(" info watching ") < log.find(" info running\n"));
  CHECK(daemon.stop() == 0);
}

TEST_CASE(
    "daemon: a sandbox whose init's main thread exits stays sampled through its thread, attested, "
    "and the sweeps go on",
    "[root][runc][integration][daemon]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  auto bundle = OciBundle::with_default_spec();
  bundle.add_program(DRIFTWATCH_ATTEMPT_HELPER, "attempt");
  bundle.config()["process"]["args"] = {"/bin/attempt", "hold-thread", "sleep:2", "leader-exit"};
  bundle.config()["linux"]["resources"]["memory"] = {{"limit", 64 << 20}};
  bundle.write_config();
  auto container =
      value_or_throw(Container::start("runc", bundle, unique_container_id("d-initexit")));
  const pid_t init = container.init_pid();
  DaemonUnderTest daemon{json{{"sweep_interval_seconds", 1}}};
  daemon.start();
  REQUIRE(daemon.post_launch("L-initexit", container.id(), bundle.config()).status == 202);
  daemon.wait_for_verdict(container.id(), "attested");

  // The main thread exits (runc now calls the container stopped); the
  // thread runs on, in the sandbox's cgroups, with its credentials.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string state;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream stat("/proc/" + std::to_string(init) + "/stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    state = close == std::string::npos ? "" : line.substr(close + 2, 1);
    if (state == "Z") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(state == "Z");
  daemon.wait_sweeps(3);
  const auto sandbox = daemon.get("/v1/sandboxes/" + container.id());
  INFO(sandbox.dump() << "\n" << daemon.log());
  CHECK(sandbox["verdict"] == "attested");
  REQUIRE(sandbox["members"].size() == 1);
  CHECK(sandbox["members"][0] != init);  // the thread, standing for the init
  CHECK(daemon.get("/healthz")["status"] == "ok");
  CHECK_THAT(daemon.log(), !Catch::Contains("sampler process:"));
}
