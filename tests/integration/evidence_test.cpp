// The evidence log as the real daemon writes it: what is in it after a real
// runc container was launched and judged and a forgery was refused, that it
// verifies (and stops verifying once a byte changes), the proof endpoint,
// and that nothing acknowledged is lost to a kill -9 in a burst of POSTs.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/canonical_json.hpp"
#include "common/file_io.hpp"
#include "common/sha256.hpp"
#include "evidence/log.hpp"
#include "evidence/merkle.hpp"
#include "evidence/note.hpp"
#include "evidence/proof.hpp"
#include "integration/daemon_harness.hpp"
#include "integration/evidence_entries.hpp"
#include "policy/policy.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"
#include "support/wait.hpp"

using namespace driftwatch::testing;
using nlohmann::json;
namespace fs = std::filesystem;
namespace ev = driftwatch::evidence;

namespace {

CommandResult verify(const DaemonUnderTest& daemon) {
  return run_driftwatch({"verify", "--log", (daemon.dir() / "state" / "evidence").string(), "--key",
                         (daemon.dir() / "state" / "node.vkey").string()});
}

}  // namespace

TEST_CASE(
    "evidence: the daemon logs its start, an accepted launch with its envelope, a refused forgery, "
    "the sandbox's verdicts and its stop, and the log verifies until a byte is flipped",
    "[root][runc][integration][daemon][evidence]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  if (!fs::exists("/usr/bin/python3")) DW_SKIP("needs python3 for a static file server");
  auto bundle = OciBundle::with_default_spec();
  auto container =
      value_or_throw(Container::start("runc", bundle, unique_container_id("evidence")));
  DaemonUnderTest daemon;
  daemon.start();
  const std::string envelope = daemon.sign(
      "launch", DaemonUnderTest::launch_payload("L-evidence-1", container.id(), bundle.config()),
      "cp-1");
  auto accepted = daemon.post("/v1/launch-events", envelope);
  REQUIRE(accepted.status == 202);
  // The same launch with its signature corrupted: a forgery, refused.
  std::string forged = envelope;
  const auto sig = forged.find("\"sig\":\"");
  REQUIRE(sig != std::string::npos);
  forged[sig + 8] = forged[sig + 8] == 'A' ? 'B' : 'A';
  auto refused = daemon.post("/v1/launch-events", forged);
  INFO(refused.body);
  REQUIRE(refused.status == 403);
  daemon.wait_for_verdict(container.id(), "attested");

  // A proof of the accepted launch's entry, from the running daemon.
  auto health = daemon.get("/healthz");
  CHECK(daemon.stop() == 0);
  INFO(daemon.log());

  const auto entries = entries_of(daemon);
  const auto docs = documents_of(entries);
  std::map<std::string, std::vector<json>> by_type;
  for (size_t i = 0; i < docs.size(); ++i) {
    CHECK(docs[i]["seq"] == i);
    by_type[docs[i]["type"].get<std::string>()].push_back(docs[i]);
  }
  REQUIRE(by_type["monitor_started"].size() == 1);
  CHECK(docs.front()["type"] == "monitor_started");
  CHECK(docs.front()["binary_sha256"].get<std::string>().size() == 64);
  CHECK(docs.front()["config_sha256"] == health["config_sha256"]);
  // The policy judging the sandboxes: the embedded default, byte for byte.
  CHECK(docs.front()["policy"]["name"] == health["policy"]);
  CHECK(docs.front()["policy"]["sha256"] ==
        driftwatch::sha256_hex(driftwatch::policy::embedded_default_policy()));
  CHECK(docs.front()["policy"]["rules"].size() > 0);
  CHECK(docs.back()["type"] == "monitor_stopped");
  CHECK(docs.back()["reason"] == "signal 15");

  REQUIRE(by_type["launch_accepted"].size() == 1);
  const json& launch = by_type["launch_accepted"].front();
  CHECK(launch["id"] == "L-evidence-1");
  CHECK(launch["sandbox_id"] == container.id());
  CHECK(launch["signed_by"] == "cp-1");
  CHECK(launch["requested_by"] == "oidc:ci@example.org");
  CHECK(launch["envelope_sha256"] == driftwatch::sha256_hex(envelope));
  const fs::path blobs = daemon.dir() / "state" / "evidence" / "blob";
  CHECK(read_all(blobs / launch["envelope_sha256"].get<std::string>()) == envelope);

  REQUIRE(by_type["launch_rejected"].size() == 1);
  const json& rejected = by_type["launch_rejected"].front();
  CHECK(rejected["result"] == "bad_signature");
  CHECK(rejected["envelope_sha256"] == driftwatch::sha256_hex(forged));
  CHECK(read_all(blobs / rejected["envelope_sha256"].get<std::string>()) == forged);

  // The container's story: discovered, then attested once its launch came.
  bool discovered = false, attested = false;
  for (const auto& doc : docs) {
    if (doc.value("sandbox_id", "") != container.id()) continue;
    if (doc["type"] == "sandbox_discovered") discovered = true;
    if (doc["type"] == "observation" && doc["verdict"] == "attested") {
      attested = true;
      CHECK(doc["launch_id"] == "L-evidence-1");
      CHECK(doc["observed_sha256"].is_string());
    }
    if (doc["type"] == "sandbox_discovered" && doc["verdict"] == "attested") attested = true;
  }
  CHECK(discovered);
  CHECK(attested);

  auto intact = verify(daemon);
  INFO(intact.out << intact.err);
  CHECK(intact.exit_code == 0);
  CHECK_THAT(intact.out, Catch::Contains("ok: " + std::to_string(entries.size()) + " entries"));

  // The same directory from a plain static file server, as an auditor's
  // copy would be served.
  const fs::path served_log = daemon.dir() / "http-server.log";
  SpawnOptions options;
  options.output_path = served_log;
  auto server = ChildProcess::start({"python3", "-u", "-m", "http.server", "--bind", "127.0.0.1",
                                     "-d", (daemon.dir() / "state" / "evidence").string(), "0"},
                                    options);
  std::string url;
  wait_until("python3's http.server to listen", std::chrono::seconds(10), [&] {
    std::smatch m;
    const std::string text = std::filesystem::exists(served_log) ? read_all(served_log) : "";
    if (!std::regex_search(text, m, std::regex(R"(Serving HTTP on \S+ port (\d+))"))) return false;
    url = "http://127.0.0.1:" + m[1].str() + "/";
    return true;
  });
  const std::string vkey = (daemon.dir() / "state" / "node.vkey").string();
  auto over_http = run_driftwatch({"verify", "--url", url, "--key", vkey});
  INFO(over_http.out << over_http.err);
  CHECK(over_http.exit_code == 0);
  CHECK_THAT(over_http.out, Catch::Contains("ok: " + std::to_string(entries.size()) + " entries"));

  // One byte of the accepted launch's entry changed in its bundle.
  const fs::path bundle_path =
      daemon.dir() / "state" / "evidence" /
      ev::tile_path(ev::Tile{ev::kEntriesLevel, 0, static_cast<uint32_t>(entries.size())});
  std::string bytes = read_all(bundle_path);
  const auto at = bytes.find("L-evidence-1");
  REQUIRE(at != std::string::npos);
  bytes[at] = 'M';
  std::ofstream(bundle_path, std::ios::binary | std::ios::trunc) << bytes;
  auto tampered = verify(daemon);
  INFO(tampered.out << tampered.err);
  CHECK(tampered.exit_code == 1);
  CHECK_THAT(tampered.err, Catch::Contains("tile/entries/000"));
  auto tampered_over_http = run_driftwatch({"verify", "--url", url, "--key", vkey});
  INFO(tampered_over_http.out << tampered_over_http.err);
  CHECK(tampered_over_http.exit_code == 1);
  server.kill();
}

TEST_CASE(
    "evidence: GET /v1/evidence/proof gives a tlog-proof that verifies offline with the node's "
    "key alone, and refuses what is not an entry",
    "[root][integration][daemon][evidence]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  auto reply = http_request(daemon.port(), "GET", "/v1/evidence/proof?index=0");
  INFO(reply.body << "\n" << daemon.log());
  REQUIRE(reply.status == 200);
  CHECK_THAT(reply.body, Catch::StartsWith("c2sp.org/tlog-proof@v1\nindex 0\n"));
  for (const char* bad : {"/v1/evidence/proof", "/v1/evidence/proof?index=x",
                          "/v1/evidence/proof?index=01", "/v1/evidence/proof?index=-1"})
    CHECK(http_request(daemon.port(), "GET", bad).status == 400);
  CHECK(http_request(daemon.port(), "GET", "/v1/evidence/proof?index=999999").status == 404);
  CHECK(daemon.stop() == 0);

  const auto entries = entries_of(daemon);
  REQUIRE_FALSE(entries.empty());
  auto verified = ev::verify_tlog_proof(reply.body, entries[0], verifier_of(daemon));
  INFO((verified ? "" : verified.error().message));
  REQUIRE(verified);
  CHECK(verified->index == 0);
  // Another entry's bytes do not verify against entry 0's proof.
  CHECK_FALSE(ev::verify_tlog_proof(reply.body, entries.back(), verifier_of(daemon)));
}

TEST_CASE(
    "evidence: kill -9 in a burst of POSTed launches, then a restart: every launch answered 202 "
    "is in the log, the log verifies, and the restart is in it",
    "[root][integration][daemon][evidence]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  json config = json::parse(R"({"ociVersion": "1.0.2", "process": {"args": ["sleep", "1"]},
                                "root": {"path": "rootfs"}})");
  std::vector<std::string> envelopes;
  for (int i = 0; i < 300; ++i)
    envelopes.push_back(daemon.sign_as_is(
        driftwatch::ingest::kLaunchPayloadType,
        [&] {
          json p = DaemonUnderTest::launch_payload("L-burst-" + std::to_string(i),
                                                   "sb-burst-" + std::to_string(i), config);
          p["config_sha256"] = driftwatch::sha256_hex(*driftwatch::canonical_json(config));
          return p;
        }(),
        "cp-1"));
  std::mutex mutex;
  std::set<std::string> acknowledged;
  std::atomic<size_t> next{0};
  std::atomic<size_t> answered{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t)
    clients.emplace_back([&] {
      for (size_t i = next++; i < envelopes.size(); i = next++) {
        try {
          auto reply = http_request(daemon.port(), "POST", "/v1/launch-events", envelopes[i]);
          if (reply.status == 202) {
            std::lock_guard lock(mutex);
            acknowledged.insert("L-burst-" + std::to_string(i));
          }
        } catch (const std::exception&) {
          // The daemon was killed mid-request: no answer, nothing acknowledged.
        }
        ++answered;
      }
    });
  wait_until("a third of the burst answered", std::chrono::seconds(60),
             [&] { return answered >= envelopes.size() / 3; });
  daemon.kill_hard();
  for (auto& client : clients) client.join();
  INFO(acknowledged.size() << " acknowledged before the kill");
  REQUIRE(acknowledged.size() >= envelopes.size() / 4);

  daemon.start();
  CHECK(daemon.stop() == 0);
  auto intact = verify(daemon);
  INFO(intact.out << intact.err << "\n" << daemon.log());
  REQUIRE(intact.exit_code == 0);
  std::set<std::string> logged;
  size_t starts = 0;
  for (const auto& doc : documents_of(entries_of(daemon))) {
    if (doc["type"] == "launch_accepted") logged.insert(doc["id"].get<std::string>());
    if (doc["type"] == "monitor_started") ++starts;
  }
  CHECK(starts == 2);
  std::vector<std::string> lost;
  for (const auto& id : acknowledged)
    if (!logged.contains(id)) lost.push_back(id);
  CHECK(lost.empty());
}

TEST_CASE(
    "evidence: driftwatch verify says in one line, exit 2, when the directory is not a log or the "
    "key is not the node's",
    "[root][integration][daemon][evidence]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  CHECK(daemon.stop() == 0);
  const std::string log = (daemon.dir() / "state" / "evidence").string();
  const std::string vkey = (daemon.dir() / "state" / "node.vkey").string();

  auto not_a_log = run_driftwatch({"verify", "--log", daemon.dir().string(), "--key", vkey});
  INFO(not_a_log.err);
  CHECK(not_a_log.exit_code == 2);
  CHECK(std::count(not_a_log.err.begin(), not_a_log.err.end(), '\n') == 1);
  CHECK_THAT(not_a_log.err, Catch::Contains("not an evidence log"));

  auto made = run_driftwatch(
      {"keygen", "--name", "other-node", "--out", (daemon.dir() / "other").string()});
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  fs::path other;
  for (const auto& entry : fs::directory_iterator(daemon.dir() / "other"))
    if (entry.path().extension() == ".vkey") other = entry.path();
  REQUIRE_FALSE(other.empty());
  auto wrong_key = run_driftwatch({"verify", "--log", log, "--key", other.string()});
  INFO(wrong_key.err);
  CHECK(wrong_key.exit_code == 2);
  CHECK(std::count(wrong_key.err.begin(), wrong_key.err.end(), '\n') == 1);

  auto not_a_key = run_driftwatch({"verify", "--log", log, "--key", log + "/checkpoint"});
  INFO(not_a_key.err);
  CHECK(not_a_key.exit_code == 2);
  CHECK_THAT(not_a_key.err, Catch::Contains("not a verifier key"));

  CHECK(run_driftwatch({"verify", "--log", log, "--key", vkey}).exit_code == 0);
}
