#include "ingest/ingestor.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/canonical_json.hpp"
#include "common/sha256.hpp"

using namespace driftwatch::ingest;
using driftwatch::canonical_json;
using driftwatch::Ed25519PrivateKey;
using driftwatch::sha256_hex;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kNow = 1795557600;  // 2026-11-24T22:00:00Z

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "driftwatch-ingest-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

Ed25519PrivateKey new_key() {
  auto key = Ed25519PrivateKey::generate();
  REQUIRE(key);
  return *key;
}

std::string sha256_of_config(const json& config) {
  auto canonical = canonical_json(config);
  REQUIRE(canonical);
  return sha256_hex(*canonical);
}

json oci_config(const std::string& arg = "sleep") {
  return json{{"ociVersion", "1.0.2"},
              {"process", {{"args", {"sh", "-c", arg}}, {"noNewPrivileges", true}}},
              {"root", {{"path", "rootfs"}, {"readonly", true}}}};
}

json launch_payload(const std::string& launch_id = "L-1", const std::string& sandbox_id = "agent-7",
                    int64_t issued_at = kNow) {
  const json config = oci_config();
  return json{{"launch_id", launch_id},
              {"sandbox_id", sandbox_id},
              {"runtime", "runc"},
              {"issued_at", format_rfc3339(issued_at)},
              {"requested_by", "oidc:alice@example.org"},
              {"config", config},
              {"config_sha256", sha256_of_config(config)}};
}

json grant_payload(const std::string& grant_id = "G-1", const std::string& launch_id = "L-1",
                   int64_t issued_at = kNow) {
  const json config = oci_config("sleep; with CAP_NET_RAW");
  return json{{"grant_id", grant_id},
              {"launch_id", launch_id},
              {"issued_at", format_rfc3339(issued_at)},
              {"requested_by", "oidc:alice@example.org"},
              {"approved_by", "oidc:bob@example.org"},
              {"reason", "ticket SEC-42: the agent needs raw sockets for ping"},
              {"config", config},
              {"config_sha256", sha256_of_config(config)}};
}

std::string sign(const json& payload, const Ed25519PrivateKey& key,
                 const char* type = kLaunchPayloadType) {
  auto body = canonical_json(payload);
  REQUIRE(body);
  return sign_envelope(type, *body, key);
}

std::string sign_grant(const json& payload, const Ed25519PrivateKey& key) {
  return sign(payload, key, kGrantPayloadType);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Everything a consumer of the ingestor can see, for "nothing changed" checks.
std::string visible_state(const Ingestor& ingestor) {
  std::string out;
  for (const char* sandbox : {"agent-7", "agent-8"}) {
    const LaunchRecord* r = ingestor.launch_for_sandbox(sandbox);
    out += std::string(sandbox) + "=" + (r ? r->launch_id + "/" + r->envelope_sha256 : "-") + ";";
  }
  for (const char* id : {"L-1", "L-2", "L-3"}) {
    const LaunchRecord* r = ingestor.launch(id);
    out += std::string(id) + "=" + (r ? r->envelope_sha256 : "-") + ";";
    const GrantRecord* g = ingestor.latest_grant(id);
    out += std::string("grant(") + id + ")=" + (g ? g->grant_id + "/" + g->envelope_sha256 : "-") +
           ";";
  }
  return out;
}

// What the daemon keeps in its evidence log: the accepted envelopes, in
// the order they were accepted.
using Store = std::vector<StoredEnvelope>;

// ingest(), and the envelope into `store` when it was accepted.
IngestOutcome ingest_into(Store& store, Ingestor& ingestor, const std::string& envelope,
                          std::optional<EnvelopeKind> expected = std::nullopt) {
  IngestOutcome outcome = ingestor.ingest(envelope, expected, kNow);
  if (outcome.result == IngestResult::accepted)
    store.push_back(
        StoredEnvelope{*outcome.kind, envelope, "entry " + std::to_string(store.size() + 1)});
  return outcome;
}

uint64_t total_count(const Ingestor& ingestor) {
  uint64_t total = 0;
  for (const auto kind : {EnvelopeKind::launch, EnvelopeKind::grant})
    for (const auto result : kAllIngestResults) total += ingestor.count(kind, result);
  return total;
}

// A trust store with control-plane keys cp-1, cp-2 and operator alice, and
// an ingestor on a fresh state directory.
struct Fixture {
  Ed25519PrivateKey cp1 = new_key();
  Ed25519PrivateKey cp2 = new_key();
  Ed25519PrivateKey alice = new_key();
  Ed25519PrivateKey stranger = new_key();

  TrustStore trust(bool with_control_plane = true) const {
    json doc = {{"operator",
                 json::array({{{"name", "alice"}, {"public_key_pem", alice.public_key().pem()}}})}};
    if (with_control_plane) {
      doc["control_plane"] =
          json::array({{{"name", "cp-1"}, {"public_key_pem", cp1.public_key().pem()}},
                       {{"name", "cp-2"}, {"public_key_pem", cp2.public_key().pem()}}});
    }
    auto store = TrustStore::parse(doc.dump(), "test trust");
    REQUIRE(store);
    return *store;
  }
  Ingestor ingestor(IngestOptions options = {}) const { return Ingestor(trust(), options); }
  Store store;
};

// Ingests an envelope that must be rejected with `result`, and checks that
// nothing but that one counter changed.
IngestOutcome require_rejected(Ingestor& ingestor, const Fixture& f, const std::string& envelope,
                               std::optional<EnvelopeKind> expected, IngestResult result,
                               EnvelopeKind counted_as) {
  const std::string before = visible_state(ingestor);
  const uint64_t total_before = total_count(ingestor);
  const uint64_t count_before = ingestor.count(counted_as, result);

  IngestOutcome outcome = ingestor.ingest(envelope, expected, kNow);
  INFO("reason: " << outcome.reason);
  CHECK(to_string(outcome.result) == to_string(result));
  CHECK_FALSE(outcome.reason.empty());
  CHECK(outcome.reason.find('\n') == std::string::npos);
  CHECK(visible_state(ingestor) == before);
  CHECK(total_count(ingestor) == total_before + 1);
  CHECK(ingestor.count(counted_as, result) == count_before + 1);
  return outcome;
}

}  // namespace

TEST_CASE("ingestor: a launch signed by a control-plane key is accepted", "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  const std::string envelope = sign(launch_payload(), f.cp1);
  const IngestOutcome outcome = ingestor.ingest(envelope, EnvelopeKind::launch, kNow);
  INFO(outcome.reason);
  REQUIRE(outcome.result == IngestResult::accepted);
  CHECK(outcome.id == "L-1");
  CHECK(outcome.kind == EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("L-1") && Catch::Contains("cp-1"));
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::accepted) == 1);
  CHECK(total_count(ingestor) == 1);

  const LaunchRecord* record = ingestor.launch_for_sandbox("agent-7");
  REQUIRE(record != nullptr);
  CHECK(record == ingestor.launch("L-1"));
  CHECK(record->sandbox_id == "agent-7");
  CHECK(record->runtime == "runc");
  CHECK(record->issued_at == "2026-11-24T22:00:00Z");
  CHECK(record->issued_at_unix == kNow);
  CHECK(record->requested_by == "oidc:alice@example.org");
  CHECK(record->config == oci_config());
  CHECK(record->config_sha256 == sha256_of_config(oci_config()));
  CHECK(record->signed_by == "cp-1");
  CHECK(record->signer_keyid == f.cp1.public_key().keyid());
  CHECK(record->envelope_sha256 == sha256_hex(envelope));
  CHECK(ingestor.launch_for_sandbox("agent-8") == nullptr);
  CHECK(ingestor.latest_grant("L-1") == nullptr);
}

TEST_CASE("ingestor: a grant signed by an operator key is accepted, the latest one counts",
          "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  // Issued before both grants: a grant can only change a launch that exists.
  REQUIRE(
      ingestor.ingest(sign(launch_payload("L-1", "agent-7", kNow - 100), f.cp1), std::nullopt, kNow)
          .result == IngestResult::accepted);
  const auto outcome =
      ingestor.ingest(sign_grant(grant_payload("G-2", "L-1", kNow), f.alice), std::nullopt, kNow);
  INFO(outcome.reason);
  REQUIRE(outcome.result == IngestResult::accepted);
  CHECK(outcome.kind == EnvelopeKind::grant);
  CHECK(outcome.id == "G-2");
  REQUIRE(ingestor
              .ingest(sign_grant(grant_payload("G-1", "L-1", kNow - 60), f.alice),
                      EnvelopeKind::grant, kNow)
              .result == IngestResult::accepted);
  CHECK(ingestor.count(EnvelopeKind::grant, IngestResult::accepted) == 2);

  // G-1 arrived later but was issued earlier: G-2 stays the latest.
  const GrantRecord* grant = ingestor.latest_grant("L-1");
  REQUIRE(grant != nullptr);
  CHECK(grant->grant_id == "G-2");
  CHECK(grant->launch_id == "L-1");
  CHECK(grant->approved_by == "oidc:bob@example.org");
  CHECK(grant->reason == "ticket SEC-42: the agent needs raw sockets for ping");
  CHECK(grant->signed_by == "alice");
  CHECK(grant->config == oci_config("sleep; with CAP_NET_RAW"));
}

TEST_CASE("ingestor: the latest launch of a sandbox by issued_at is its launch", "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  REQUIRE(
      ingestor.ingest(sign(launch_payload("L-1", "agent-7", kNow - 100), f.cp1), {}, kNow).result ==
      IngestResult::accepted);
  REQUIRE(ingestor.ingest(sign(launch_payload("L-2", "agent-7", kNow), f.cp2), {}, kNow).result ==
          IngestResult::accepted);
  REQUIRE(
      ingestor.ingest(sign(launch_payload("L-3", "agent-7", kNow - 50), f.cp1), {}, kNow).result ==
      IngestResult::accepted);
  REQUIRE(ingestor.launch_for_sandbox("agent-7") != nullptr);
  CHECK(ingestor.launch_for_sandbox("agent-7")->launch_id == "L-2");
  CHECK(ingestor.launch_for_sandbox("agent-7")->signed_by == "cp-2");
  CHECK(ingestor.launch("L-1") != nullptr);
  CHECK(ingestor.launch("L-3") != nullptr);
}

TEST_CASE("ingestor: too_large is decided on size alone, before parsing", "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  // Valid JSON padded with whitespace past 1 MiB.
  const std::string huge = sign(launch_payload(), f.cp1) + std::string(kMaxEnvelopeBytes, ' ');
  auto outcome = require_rejected(ingestor, f, huge, std::nullopt, IngestResult::too_large,
                                  EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("1 MiB"));
  CHECK(http_status(outcome.result) == 413);
  // An unknown kind counts under the endpoint that received it.
  require_rejected(ingestor, f, std::string(kMaxEnvelopeBytes + 1, 'x'), EnvelopeKind::grant,
                   IngestResult::too_large, EnvelopeKind::grant);
  // A body the HTTP server refused before reading it is counted the same way.
  const std::string state = visible_state(ingestor);
  outcome = ingestor.reject_too_large(EnvelopeKind::grant, uint64_t{5} << 20);
  CHECK(outcome.result == IngestResult::too_large);
  CHECK_THAT(outcome.reason, Catch::Contains("5242880 bytes"));
  CHECK(ingestor.count(EnvelopeKind::grant, IngestResult::too_large) == 2);
  CHECK(ingestor.reject_too_large(EnvelopeKind::launch, std::nullopt).result ==
        IngestResult::too_large);
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::too_large) == 2);
  CHECK(visible_state(ingestor) == state);
  // Exactly 1 MiB is not too large (it is malformed here).
  require_rejected(ingestor, f, std::string(kMaxEnvelopeBytes, ' '), std::nullopt,
                   IngestResult::malformed, EnvelopeKind::launch);
}

TEST_CASE("ingestor: envelopes and payloads of the wrong shape are malformed", "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  REQUIRE(ingestor.ingest(sign(launch_payload(), f.cp1), {}, kNow).result ==
          IngestResult::accepted);
  const auto malformed = [&](const std::string& envelope, const std::string& named,
                             std::optional<EnvelopeKind> expected = std::nullopt,
                             EnvelopeKind counted_as = EnvelopeKind::launch) {
    auto outcome =
        require_rejected(ingestor, f, envelope, expected, IngestResult::malformed, counted_as);
    CHECK_THAT(outcome.reason, Catch::Contains(named));
    CHECK(http_status(outcome.result) == 400);
  };

  malformed("not json", "envelope");
  malformed("not json", "envelope", EnvelopeKind::grant, EnvelopeKind::grant);
  malformed(sign(launch_payload(), f.cp1, "application/json"),
            "neither a launch event (application/vnd.driftwatch.launch.v1+json) nor a grant");
  // A launch sent to the grants endpoint, and the reverse.
  malformed(sign(launch_payload("L-9"), f.cp1), "POST /v1/grants", EnvelopeKind::grant,
            EnvelopeKind::grant);
  malformed(sign_grant(grant_payload(), f.alice), "POST /v1/launch-events", EnvelopeKind::launch,
            EnvelopeKind::launch);
  malformed(sign_envelope(kLaunchPayloadType, "[1,2]", f.cp1), "not an object");
  malformed(sign_envelope(kGrantPayloadType, "{\"grant_id\":", f.alice), "grant payload",
            std::nullopt, EnvelopeKind::grant);

  json payload = launch_payload("L-9");
  payload.erase("issued_at");
  malformed(sign(payload, f.cp1), "launch L-9 has no \"issued_at\"");
  payload = launch_payload("L-9");
  payload["issued_at"] = "yesterday";
  malformed(sign(payload, f.cp1), "RFC 3339");
  payload = launch_payload("L 9");
  malformed(sign(payload, f.cp1), "\"launch_id\" must be 1 to 256 characters");
  payload = launch_payload(std::string(257, 'L'));
  malformed(sign(payload, f.cp1), "\"launch_id\" must be 1 to 256 characters");
  payload = launch_payload("L-9", "");
  malformed(sign(payload, f.cp1), "\"sandbox_id\"");
  payload = launch_payload("L-9");
  payload["config"] = "{}";
  malformed(sign(payload, f.cp1), "\"config\" must be a JSON object");
  payload = launch_payload("L-9");
  payload["runtime"] = 1;
  malformed(sign(payload, f.cp1), "\"runtime\" must be a string");
  payload = launch_payload("L-9");
  payload["config_sha256"] = "ABCDEF";
  malformed(sign(payload, f.cp1), "64 lowercase hex digits");
  payload = launch_payload("L-9");
  payload["priority"] = "high";
  malformed(sign(payload, f.cp1), "unknown field \"priority\"");
  json grant = grant_payload();
  grant.erase("reason");
  malformed(sign_grant(grant, f.alice), "grant G-1 has no \"reason\"", std::nullopt,
            EnvelopeKind::grant);
  grant = grant_payload();
  grant["approved_by"] = "";
  malformed(sign_grant(grant, f.alice), "\"approved_by\" must not be empty", std::nullopt,
            EnvelopeKind::grant);
}

TEST_CASE("ingestor: signatures by unknown keys, bad signatures and wrong roles are refused",
          "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();

  auto outcome = require_rejected(ingestor, f, sign(launch_payload(), f.stranger), std::nullopt,
                                  IngestResult::unknown_key, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains(f.stranger.public_key().keyid().substr(0, 12)));
  CHECK(outcome.id == "L-1");
  CHECK(http_status(outcome.result) == 403);

  // A valid envelope whose payload was swapped after signing.
  json envelope = json::parse(sign(launch_payload(), f.cp1));
  auto other_body = canonical_json(launch_payload("L-1", "agent-8"));
  REQUIRE(other_body);
  envelope["payload"] = driftwatch::base64_encode(*other_body);
  outcome = require_rejected(ingestor, f, envelope.dump(), std::nullopt,
                             IngestResult::bad_signature, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("(cp-1)") && Catch::Contains("does not verify"));
  // A signature by one trusted key presented under another's key id.
  envelope = json::parse(sign(launch_payload(), f.cp1));
  envelope["signatures"][0]["keyid"] = f.cp2.public_key().keyid();
  outcome = require_rejected(ingestor, f, envelope.dump(), std::nullopt,
                             IngestResult::bad_signature, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("(cp-2)"));

  outcome = require_rejected(ingestor, f, sign(launch_payload(), f.alice), std::nullopt,
                             IngestResult::wrong_role, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("(alice) is valid but role operator may not sign "
                                             "launch events"));
  outcome = require_rejected(ingestor, f, sign_grant(grant_payload(), f.cp1), EnvelopeKind::grant,
                             IngestResult::wrong_role, EnvelopeKind::grant);
  CHECK_THAT(outcome.reason,
             Catch::Contains("(cp-1) is valid but role control_plane may not sign grants"));
  CHECK(http_status(outcome.result) == 403);
}

TEST_CASE("ingestor: an envelope signed by several trusted keys of the right role is accepted",
          "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  const json by_cp1 = json::parse(sign(launch_payload(), f.cp1));
  const json by_cp2 = json::parse(sign(launch_payload(), f.cp2));
  json both = by_cp1;
  both["signatures"] = {by_cp1["signatures"][0], by_cp2["signatures"][0]};
  const auto outcome = ingestor.ingest(both.dump(), std::nullopt, kNow);
  INFO(outcome.reason);
  CHECK(outcome.result == IngestResult::accepted);
  REQUIRE(ingestor.launch("L-1") != nullptr);
  CHECK(ingestor.launch("L-1")->signed_by == "cp-1");
}

TEST_CASE("ingestor: replays are duplicates, whatever the envelope looks like", "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  const std::string envelope = sign(launch_payload(), f.cp1);
  REQUIRE(ingestor.ingest(envelope, std::nullopt, kNow).result == IngestResult::accepted);

  auto outcome = require_rejected(ingestor, f, envelope, EnvelopeKind::launch,
                                  IngestResult::duplicate, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("byte-identical"));
  CHECK(http_status(outcome.result) == 200);
  // The same payload re-serialised, and the same event signed by another key.
  require_rejected(ingestor, f, json::parse(envelope).dump(2), std::nullopt,
                   IngestResult::duplicate, EnvelopeKind::launch);
  outcome = require_rejected(ingestor, f, sign(launch_payload(), f.cp2), std::nullopt,
                             IngestResult::duplicate, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("identical payload"));
  // Key order in the payload does not make a different event.
  const std::string reordered_body = launch_payload().dump(2);
  require_rejected(ingestor, f, sign_envelope(kLaunchPayloadType, reordered_body, f.cp1),
                   std::nullopt, IngestResult::duplicate, EnvelopeKind::launch);
  // A replay is a duplicate even once it is too old to be accepted afresh.
  CHECK(ingestor.ingest(envelope, std::nullopt, kNow + 10 * 86400).result ==
        IngestResult::duplicate);
}

TEST_CASE("ingestor: a config that does not match its config_sha256 is a hash_mismatch",
          "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  json payload = launch_payload();
  payload["config"]["process"]["noNewPrivileges"] = false;  // changed after hashing
  auto outcome = require_rejected(ingestor, f, sign(payload, f.cp1), std::nullopt,
                                  IngestResult::hash_mismatch, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("launch L-1") && Catch::Contains("RFC 8785"));
  CHECK(http_status(outcome.result) == 422);
  json grant = grant_payload();
  grant["config_sha256"] = sha256_of_config(oci_config());
  require_rejected(ingestor, f, sign_grant(grant, f.alice), std::nullopt,
                   IngestResult::hash_mismatch, EnvelopeKind::grant);
}

TEST_CASE("ingestor: an id reused with different content is a conflict", "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  REQUIRE(ingestor.ingest(sign(launch_payload("L-1", "agent-7"), f.cp1), {}, kNow).result ==
          IngestResult::accepted);
  REQUIRE(ingestor.ingest(sign_grant(grant_payload("G-1"), f.alice), {}, kNow).result ==
          IngestResult::accepted);
  auto outcome = require_rejected(ingestor, f, sign(launch_payload("L-1", "agent-8"), f.cp1),
                                  std::nullopt, IngestResult::conflict, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("launch L-1 is already accepted with different"));
  CHECK(http_status(outcome.result) == 409);
  require_rejected(ingestor, f, sign_grant(grant_payload("G-1", "L-2"), f.alice),
                   EnvelopeKind::grant, IngestResult::conflict, EnvelopeKind::grant);
  CHECK(ingestor.launch_for_sandbox("agent-8") == nullptr);
}

TEST_CASE("ingestor: issued_at outside the window is stale or future", "[ingest]") {
  Fixture f;
  IngestOptions options;
  options.event_max_age_seconds = 3600;
  options.max_clock_skew_seconds = 300;
  Ingestor ingestor = f.ingestor(options);

  auto outcome =
      require_rejected(ingestor, f, sign(launch_payload("L-1", "agent-7", kNow - 3601), f.cp1),
                       std::nullopt, IngestResult::stale, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("3601 seconds ago"));
  CHECK(http_status(outcome.result) == 422);
  outcome = require_rejected(ingestor, f, sign(launch_payload("L-2", "agent-7", kNow + 301), f.cp1),
                             std::nullopt, IngestResult::future, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("301 seconds in the future"));
  CHECK(http_status(outcome.result) == 422);
  // A grant is judged by the same window. Its launch was accepted two hours
  // ago (when it was fresh), so the grant is not an orphan_grant, only old.
  REQUIRE(
      ingestor.ingest(sign(launch_payload("L-0", "agent-9", kNow - 7300), f.cp1), {}, kNow - 7000)
          .result == IngestResult::accepted);
  require_rejected(ingestor, f, sign_grant(grant_payload("G-0", "L-0", kNow - 7200), f.alice),
                   std::nullopt, IngestResult::stale, EnvelopeKind::grant);

  // The edges of the window are inside it.
  CHECK(ingestor.ingest(sign(launch_payload("L-1", "agent-7", kNow - 3600), f.cp1), {}, kNow)
            .result == IngestResult::accepted);
  CHECK(
      ingestor.ingest(sign(launch_payload("L-2", "agent-8", kNow + 300), f.cp1), {}, kNow).result ==
      IngestResult::accepted);
}

TEST_CASE("ingestor: every call counts exactly one result", "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  const std::string launch = sign(launch_payload(), f.cp1);
  ingestor.ingest(launch, std::nullopt, kNow);                         // launch accepted
  ingestor.ingest(launch, std::nullopt, kNow);                         // launch duplicate
  ingestor.ingest("{", std::nullopt, kNow);                            // launch malformed
  ingestor.ingest("{", EnvelopeKind::grant, kNow);                     // grant malformed
  ingestor.ingest(sign_grant(grant_payload(), f.cp1), {}, kNow);       // grant wrong_role
  ingestor.ingest(sign_grant(grant_payload(), f.stranger), {}, kNow);  // grant unknown_key
  CHECK(total_count(ingestor) == 6);
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::accepted) == 1);
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::duplicate) == 1);
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::malformed) == 1);
  CHECK(ingestor.count(EnvelopeKind::grant, IngestResult::malformed) == 1);
  CHECK(ingestor.count(EnvelopeKind::grant, IngestResult::wrong_role) == 1);
  CHECK(ingestor.count(EnvelopeKind::grant, IngestResult::unknown_key) == 1);
}

TEST_CASE(
    "ingestor: an accept that cannot be stored is unavailable, changes nothing, and can be "
    "retried",
    "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  const std::string envelope = sign(launch_payload(), f.cp1);
  auto begun = ingestor.begin(envelope, std::nullopt, kNow);
  REQUIRE(std::holds_alternative<PendingAccept>(begun));
  // The daemon's evidence log could not take it, as on a full disk.
  const auto outcome = ingestor.finish(std::get<PendingAccept>(std::move(begun)),
                                       driftwatch::fail("No space left on device"));
  INFO(outcome.reason);
  CHECK(to_string(outcome.result) == "unavailable");
  CHECK(http_status(outcome.result) == 503);
  CHECK(outcome.id == "L-1");
  CHECK(outcome.kind == EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("launch L-1") &&
                                 Catch::Contains("could not be stored") &&
                                 Catch::Contains("retry later"));
  CHECK(ingestor.launch("L-1") == nullptr);
  CHECK(ingestor.launch_for_sandbox("agent-7") == nullptr);
  // Counted as unavailable, never as a rejection of the sender.
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::unavailable) == 1);
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::malformed) == 0);
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::accepted) == 0);
  CHECK(total_count(ingestor) == 1);

  // Nothing of the failed attempt is remembered: once the disk is back, the
  // same envelope is accepted (not a duplicate, not still "being stored").
  const auto retried = ingestor.ingest(envelope, std::nullopt, kNow);
  INFO(retried.reason);
  CHECK(retried.result == IngestResult::accepted);
  CHECK(ingestor.launch("L-1") != nullptr);
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::unavailable) == 1);
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::accepted) == 1);
}

TEST_CASE("ingestor: a config whose declared projection cannot be computed is malformed",
          "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  // A signed config like this one used to throw out of declared_projection
  // (an id mapping that is a number) and take the daemon down at its sweep.
  const json throwing = json::parse(
      R"({"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"user"}],"uidMappings":[5]}})");
  json payload = launch_payload();
  payload["config"] = throwing;
  payload["config_sha256"] = sha256_of_config(throwing);
  auto outcome = require_rejected(ingestor, f, sign(payload, f.cp1), std::nullopt,
                                  IngestResult::malformed, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("launch L-1") &&
                                 Catch::Contains("declared projection cannot be computed") &&
                                 Catch::Contains("uidMappings"));
  CHECK(outcome.id == "L-1");
  CHECK(http_status(outcome.result) == 400);

  // An rlimit the kernel does not have.
  json config = oci_config();
  config["process"]["rlimits"] = {{{"type", "RLIMIT_FLY"}, {"soft", 1}, {"hard", 1}}};
  payload = launch_payload("L-2");
  payload["config"] = config;
  payload["config_sha256"] = sha256_of_config(config);
  outcome = require_rejected(ingestor, f, sign(payload, f.cp1), std::nullopt,
                             IngestResult::malformed, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("declared projection cannot be computed") &&
                                 Catch::Contains("process.rlimits has an unknown type"));

  // A grant is held to the same rule, with its launch accepted.
  REQUIRE(ingestor.ingest(sign(launch_payload("L-3", "agent-8"), f.cp1), {}, kNow).result ==
          IngestResult::accepted);
  json grant = grant_payload("G-1", "L-3");
  grant["config"] = throwing;
  grant["config_sha256"] = sha256_of_config(throwing);
  outcome = require_rejected(ingestor, f, sign_grant(grant, f.alice), std::nullopt,
                             IngestResult::malformed, EnvelopeKind::grant);
  CHECK_THAT(outcome.reason,
             Catch::Contains("grant G-1") && Catch::Contains("declared projection cannot be"));
  CHECK(ingestor.latest_grant("L-3") == nullptr);
}

TEST_CASE("ingestor: a reason quoting text from the envelope stays on one line", "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  // Reasons go to logs line by line and into the evidence log: text quoted
  // from a signed envelope must not start a line of its own (a forged
  // "accepted" log line).
  const std::string forged = "x\nlaunch L-9 accepted, signed by key 3fa2 (cp-1)";
  std::vector<std::pair<std::string, std::string>> cases;

  json config = oci_config();
  config["process"]["capabilities"] = {{"bounding", {forged}}};
  json payload = launch_payload();
  payload["config"] = config;
  payload["config_sha256"] = sha256_of_config(config);
  cases.emplace_back("a capability name", sign(payload, f.cp1));

  config = oci_config();
  config["linux"] = {{"namespaces", {{{"type", forged}}}}};
  payload["config"] = config;
  payload["config_sha256"] = sha256_of_config(config);
  cases.emplace_back("a namespace type", sign(payload, f.cp1));

  payload = launch_payload();
  payload[forged] = 1;
  cases.emplace_back("an unknown payload field", sign(payload, f.cp1));

  json envelope = json::parse(sign(launch_payload(), f.cp1));
  envelope[forged] = 1;
  cases.emplace_back("an unknown envelope field", envelope.dump());

  envelope = json::parse(sign(launch_payload(), f.cp1));
  envelope["signatures"][0][forged] = 1;
  cases.emplace_back("an unknown signature field", envelope.dump());

  for (const auto& [what, bytes] : cases) {
    INFO("newline in " << what);
    // require_rejected checks that the reason holds no '\n'.
    require_rejected(ingestor, f, bytes, std::nullopt, IngestResult::malformed,
                     EnvelopeKind::launch);
  }
}

TEST_CASE("ingestor: an envelope that is not valid UTF-8 is malformed with a UTF-8 reason",
          "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  const std::string good = sign(launch_payload(), f.cp1);
  const std::string type = std::string("\"") + kLaunchPayloadType + "\"";
  REQUIRE(good.find(type) != std::string::npos);

  std::vector<std::pair<std::string, std::string>> cases;
  // Inside a string of the envelope.
  std::string in_type = good;
  in_type.replace(in_type.find(type), type.size(), "\"application/\xc3\x28json\"");
  cases.emplace_back("in payloadType", in_type);
  // A lone byte where a value belongs.
  std::string bare = good;
  bare.insert(bare.size() - 1, ",\"x\":\xff");
  cases.emplace_back("outside a string", bare);
  // A truncated sequence at the very end.
  cases.emplace_back("at the end", good + "\xe2\x82");
  // Inside the payload (the base64 decodes to bytes that are not UTF-8).
  json payload = launch_payload();
  auto body = canonical_json(payload);
  REQUIRE(body);
  std::string bad_body = *body;
  bad_body.replace(bad_body.find("agent-7"), 7, "agent-\xed\xa0\x80");  // a UTF-8 surrogate
  cases.emplace_back("in the payload", sign_envelope(kLaunchPayloadType, bad_body, f.cp1));

  for (const auto& [where, envelope] : cases) {
    INFO("invalid UTF-8 " << where);
    const auto outcome = require_rejected(ingestor, f, envelope, std::nullopt,
                                          IngestResult::malformed, EnvelopeKind::launch);
    CHECK_THAT(outcome.reason, Catch::Contains("UTF-8"));
    // The reason goes into a JSON answer and the evidence log: serialising
    // it strictly (no replacement) must work.
    std::string answer;
    CHECK_NOTHROW(answer = json{{"result", "malformed"}, {"reason", outcome.reason}}.dump());
    CHECK(canonical_json(json{{"reason", outcome.reason}}).has_value());
  }
}

TEST_CASE("ingestor: a byte order mark before the envelope or the payload is malformed",
          "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  const std::string bom = "\xEF\xBB\xBF";

  // Before the envelope: nlohmann alone would skip it and accept.
  auto outcome = require_rejected(ingestor, f, bom + sign(launch_payload(), f.cp1), std::nullopt,
                                  IngestResult::malformed, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("envelope") && Catch::Contains("byte order mark"));

  // Before the payload, inside the base64, correctly signed.
  auto body = canonical_json(launch_payload());
  REQUIRE(body);
  outcome = require_rejected(ingestor, f, sign_envelope(kLaunchPayloadType, bom + *body, f.cp1),
                             std::nullopt, IngestResult::malformed, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("payload") && Catch::Contains("byte order mark"));

  // A U+FEFF inside a string is an ordinary character.
  REQUIRE(
      ingestor.ingest(sign(launch_payload("L-1", "agent-7\xEF\xBB\xBF"), f.cp1), std::nullopt, kNow)
          .result == IngestResult::accepted);
}

TEST_CASE("ingestor: a corrupted signature next to a valid one is bad_signature, in any position",
          "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  const json by_cp1 = json::parse(sign(launch_payload(), f.cp1));
  const json by_cp2 = json::parse(sign(launch_payload(), f.cp2));
  json corrupted = by_cp2["signatures"][0];
  auto sig = driftwatch::base64_decode(corrupted["sig"].get<std::string>());
  REQUIRE(sig);
  (*sig)[17] = static_cast<char>((*sig)[17] ^ 0x20);
  corrupted["sig"] = driftwatch::base64_encode(*sig);
  const json valid = by_cp1["signatures"][0];

  json valid_first = by_cp1;
  valid_first["signatures"] = {valid, corrupted};
  auto outcome = require_rejected(ingestor, f, valid_first.dump(), std::nullopt,
                                  IngestResult::bad_signature, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("signatures[1]") && Catch::Contains("(cp-2)") &&
                                 Catch::Contains("does not verify"));
  CHECK(http_status(outcome.result) == 403);

  json corrupted_first = by_cp1;
  corrupted_first["signatures"] = {corrupted, valid};
  outcome = require_rejected(ingestor, f, corrupted_first.dump(), std::nullopt,
                             IngestResult::bad_signature, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("signatures[0]") && Catch::Contains("(cp-2)"));

  // The same key's valid signature and a corrupted copy of it.
  json same_key = by_cp1;
  json copy = valid;
  auto raw = driftwatch::base64_decode(copy["sig"].get<std::string>());
  REQUIRE(raw);
  (*raw)[0] = static_cast<char>((*raw)[0] ^ 0x01);
  copy["sig"] = driftwatch::base64_encode(*raw);
  same_key["signatures"] = {valid, copy};
  require_rejected(ingestor, f, same_key.dump(), std::nullopt, IngestResult::bad_signature,
                   EnvelopeKind::launch);
  CHECK(ingestor.launch("L-1") == nullptr);
}

TEST_CASE("ingestor: a signature by an unknown key next to a valid one is unknown_key",
          "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  const json by_cp1 = json::parse(sign(launch_payload(), f.cp1));
  const json by_stranger = json::parse(sign(launch_payload(), f.stranger));
  const json valid = by_cp1["signatures"][0];
  const json unknown = by_stranger["signatures"][0];
  const std::string stranger_id = f.stranger.public_key().keyid().substr(0, 12);

  for (const bool valid_first : {true, false}) {
    INFO("valid signature first: " << valid_first);
    json envelope = by_cp1;
    envelope["signatures"] =
        valid_first ? json::array({valid, unknown}) : json::array({unknown, valid});
    const auto outcome = require_rejected(ingestor, f, envelope.dump(), std::nullopt,
                                          IngestResult::unknown_key, EnvelopeKind::launch);
    CHECK_THAT(outcome.reason, Catch::Contains(stranger_id) &&
                                   Catch::Contains("every signature must be by a trusted key"));
  }

  // A forged signature by a trusted key outranks an unknown key, whatever
  // the order.
  json forged = valid;
  forged["sig"] = unknown["sig"];
  for (const bool forged_first : {true, false}) {
    INFO("forged signature first: " << forged_first);
    json envelope = by_cp1;
    envelope["signatures"] =
        forged_first ? json::array({forged, unknown}) : json::array({unknown, forged});
    require_rejected(ingestor, f, envelope.dump(), std::nullopt, IngestResult::bad_signature,
                     EnvelopeKind::launch);
  }
}

TEST_CASE("ingestor: every signer must have the role, even next to one that has it", "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  const json by_cp1 = json::parse(sign(launch_payload(), f.cp1));
  const json by_alice = json::parse(sign(launch_payload(), f.alice));
  json envelope = by_cp1;
  envelope["signatures"] = {by_cp1["signatures"][0], by_alice["signatures"][0]};
  const auto outcome = require_rejected(ingestor, f, envelope.dump(), std::nullopt,
                                        IngestResult::wrong_role, EnvelopeKind::launch);
  CHECK_THAT(outcome.reason, Catch::Contains("(alice) is valid but role operator"));
}

TEST_CASE("ingestor: a grant whose launch is not accepted is an orphan_grant", "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  auto outcome = require_rejected(ingestor, f, sign_grant(grant_payload("G-1", "L-1"), f.alice),
                                  std::nullopt, IngestResult::orphan_grant, EnvelopeKind::grant);
  CHECK(to_string(outcome.result) == "orphan_grant");
  CHECK(http_status(outcome.result) == 422);
  CHECK(outcome.id == "G-1");
  CHECK_THAT(outcome.reason, Catch::Contains("grant G-1") && Catch::Contains("launch L-1") &&
                                 Catch::Contains("not an accepted launch"));
  // A rejected launch is no launch either.
  require_rejected(ingestor, f, sign(launch_payload("L-1"), f.stranger), std::nullopt,
                   IngestResult::unknown_key, EnvelopeKind::launch);
  require_rejected(ingestor, f, sign_grant(grant_payload("G-1", "L-1"), f.alice), std::nullopt,
                   IngestResult::orphan_grant, EnvelopeKind::grant);

  // Once the launch is accepted, the same grant is.
  REQUIRE(ingestor.ingest(sign(launch_payload("L-1"), f.cp1), {}, kNow).result ==
          IngestResult::accepted);
  const auto accepted =
      ingestor.ingest(sign_grant(grant_payload("G-1", "L-1"), f.alice), std::nullopt, kNow);
  INFO(accepted.reason);
  CHECK(accepted.result == IngestResult::accepted);
  REQUIRE(ingestor.latest_grant("L-1") != nullptr);
  CHECK(ingestor.latest_grant("L-1")->grant_id == "G-1");
}

TEST_CASE("ingestor: a grant issued before its launch is an orphan_grant", "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  REQUIRE(
      ingestor.ingest(sign(launch_payload("L-1", "agent-7", kNow - 100), f.cp1), {}, kNow).result ==
      IngestResult::accepted);
  auto outcome =
      require_rejected(ingestor, f, sign_grant(grant_payload("G-1", "L-1", kNow - 101), f.alice),
                       std::nullopt, IngestResult::orphan_grant, EnvelopeKind::grant);
  CHECK_THAT(outcome.reason, Catch::Contains("before its launch L-1"));
  CHECK(ingestor.latest_grant("L-1") == nullptr);

  // Issued at the same second as its launch, or after it: accepted.
  auto same_second =
      ingestor.ingest(sign_grant(grant_payload("G-2", "L-1", kNow - 100), f.alice), {}, kNow);
  INFO(same_second.reason);
  CHECK(same_second.result == IngestResult::accepted);
  auto later =
      ingestor.ingest(sign_grant(grant_payload("G-3", "L-1", kNow - 50), f.alice), {}, kNow);
  INFO(later.reason);
  CHECK(later.result == IngestResult::accepted);
  REQUIRE(ingestor.latest_grant("L-1") != nullptr);
  CHECK(ingestor.latest_grant("L-1")->grant_id == "G-3");
}

TEST_CASE("ingestor: an event being stored is unavailable when it comes again, then a duplicate",
          "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  const std::string envelope = sign(launch_payload(), f.cp1);

  auto first = ingestor.begin(envelope, std::nullopt, kNow);
  REQUIRE(std::holds_alternative<PendingAccept>(first));
  PendingAccept pending = std::get<PendingAccept>(std::move(first));
  CHECK(pending.kind == EnvelopeKind::launch);
  CHECK(pending.id == "L-1");
  // Not visible, not counted until finish().
  CHECK(ingestor.launch("L-1") == nullptr);
  CHECK(total_count(ingestor) == 0);

  // The same bytes, the same payload signed by another key, and another
  // event with the same id, while the first is pending.
  for (const std::string& again :
       {envelope, sign(launch_payload(), f.cp2), sign(launch_payload("L-1", "agent-8"), f.cp1)}) {
    auto second = ingestor.begin(again, std::nullopt, kNow);
    REQUIRE(std::holds_alternative<IngestOutcome>(second));
    const auto& outcome = std::get<IngestOutcome>(second);
    INFO(outcome.reason);
    CHECK(to_string(outcome.result) == "unavailable");
    CHECK_THAT(outcome.reason, Catch::Contains("being stored right now"));
  }
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::unavailable) == 3);
  CHECK(total_count(ingestor) == 3);

  const auto finished = ingestor.finish(std::move(pending), driftwatch::Result<void>{});
  INFO(finished.reason);
  CHECK(finished.result == IngestResult::accepted);
  CHECK(finished.id == "L-1");
  REQUIRE(ingestor.launch("L-1") != nullptr);
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::accepted) == 1);

  auto replay = ingestor.begin(envelope, std::nullopt, kNow);
  REQUIRE(std::holds_alternative<IngestOutcome>(replay));
  CHECK(std::get<IngestOutcome>(replay).result == IngestResult::duplicate);
  auto other = ingestor.begin(sign(launch_payload("L-1", "agent-8"), f.cp1), std::nullopt, kNow);
  REQUIRE(std::holds_alternative<IngestOutcome>(other));
  CHECK(std::get<IngestOutcome>(other).result == IngestResult::conflict);

  // What finish() accepted is what restore() takes back.
  Ingestor restarted = f.ingestor();
  CHECK(restarted.restore({StoredEnvelope{EnvelopeKind::launch, envelope, "entry 1"}}).restored ==
        1);
  CHECK(restarted.launch("L-1") != nullptr);
}

TEST_CASE("ingestor: a pending accept whose write failed leaves nothing reserved", "[ingest]") {
  Fixture f;
  Ingestor ingestor = f.ingestor();
  const std::string envelope = sign(launch_payload(), f.cp1);
  auto begun = ingestor.begin(envelope, std::nullopt, kNow);
  REQUIRE(std::holds_alternative<PendingAccept>(begun));
  const auto failed = ingestor.finish(std::get<PendingAccept>(std::move(begun)),
                                      driftwatch::fail("no space left on device"));
  INFO(failed.reason);
  CHECK(to_string(failed.result) == "unavailable");
  CHECK_THAT(failed.reason,
             Catch::Contains("no space left on device") && Catch::Contains("retry later"));
  CHECK(ingestor.launch("L-1") == nullptr);
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::unavailable) == 1);
  CHECK(ingestor.count(EnvelopeKind::launch, IngestResult::malformed) == 0);

  // The retry is a fresh accept, not "being stored" and not a duplicate.
  auto retry = ingestor.begin(envelope, std::nullopt, kNow);
  REQUIRE(std::holds_alternative<PendingAccept>(retry));
}

TEST_CASE("ingestor: restore after a restart gives back every accepted launch and grant",
          "[ingest]") {
  Fixture f;
  std::string before;
  {
    Ingestor first = f.ingestor();
    const RestoreReport empty = first.restore({});
    CHECK(empty.restored == 0);
    CHECK(empty.clean());
    REQUIRE(ingest_into(f.store, first, sign(launch_payload("L-1", "agent-7", kNow - 10), f.cp1))
                .result == IngestResult::accepted);
    REQUIRE(ingest_into(f.store, first, sign(launch_payload("L-2", "agent-7"), f.cp2)).result ==
            IngestResult::accepted);
    REQUIRE(ingest_into(f.store, first, sign(launch_payload("L-3", "agent-8"), f.cp1)).result ==
            IngestResult::accepted);
    REQUIRE(ingest_into(f.store, first, sign_grant(grant_payload("G-1", "L-2"), f.alice)).result ==
            IngestResult::accepted);
    ingest_into(f.store, first, sign(launch_payload("L-1", "agent-9"), f.cp1));  // conflict
    before = visible_state(first);
  }
  REQUIRE(f.store.size() == 4);

  // Much later, and with a narrow window: staleness is not checked again.
  IngestOptions options;
  options.event_max_age_seconds = 1;
  Ingestor second(f.trust(), options);
  const RestoreReport report = second.restore(f.store);
  CHECK(report.restored == 4);
  CHECK(report.skipped.empty());
  CHECK(report.clean());
  CHECK(visible_state(second) == before);
  CHECK(total_count(second) == 0);
  const LaunchRecord* l2 = second.launch("L-2");
  REQUIRE(l2 != nullptr);
  CHECK(l2->signed_by == "cp-2");
  CHECK(l2->config == oci_config());
  CHECK(second.latest_grant("L-2")->approved_by == "oidc:bob@example.org");
  CHECK(second.id_of(l2->envelope_sha256) == "L-2");
  CHECK_FALSE(second.id_of(std::string(64, '0')));

  // What was accepted before the restart is still a duplicate or conflict.
  CHECK(second.ingest(sign(launch_payload("L-3", "agent-8"), f.cp1), {}, kNow).result ==
        IngestResult::duplicate);
  CHECK(second.ingest(sign(launch_payload("L-3", "agent-9"), f.cp1), {}, kNow).result ==
        IngestResult::conflict);
  // Restoring twice is the same as once.
  CHECK(second.restore(f.store).restored == 4);
  CHECK(visible_state(second) == before);
}

TEST_CASE("ingestor: restore skips what no ingest would accept, naming where it was stored",
          "[ingest]") {
  Fixture f;
  Ingestor first = f.ingestor();
  const std::string l1 = sign(launch_payload("L-1", "agent-7"), f.cp1);
  REQUIRE(ingest_into(f.store, first, l1).result == IngestResult::accepted);
  Store stored = f.store;
  stored.push_back(StoredEnvelope{EnvelopeKind::launch, "not an envelope", "entry 2"});
  stored.push_back(StoredEnvelope{EnvelopeKind::grant, l1, "entry 3"});   // the kind is wrong
  stored.push_back(StoredEnvelope{EnvelopeKind::launch, l1, "entry 4"});  // stored twice
  const std::string l2 = sign(launch_payload("L-2", "agent-8"), f.cp1);
  stored.push_back(StoredEnvelope{EnvelopeKind::launch, l2, "entry 5"});

  Ingestor second = f.ingestor();
  const RestoreReport report = second.restore(stored);
  CHECK(report.restored == 2);
  CHECK_FALSE(report.clean());
  REQUIRE(report.skipped.size() == 3);
  CHECK_THAT(report.skipped[0], Catch::StartsWith("entry 2 skipped: "));
  CHECK_THAT(report.skipped[1],
             Catch::StartsWith("entry 3 skipped: ") && Catch::Contains("the envelope is a launch"));
  CHECK_THAT(report.skipped[2],
             Catch::StartsWith("entry 4 skipped: ") && Catch::Contains("stored twice"));
  CHECK(second.launch("L-1") != nullptr);
  CHECK(second.launch("L-2") != nullptr);
}

TEST_CASE("ingestor: restore skips entries whose key is no longer trusted, and their grants",
          "[ingest]") {
  Fixture f;
  {
    Ingestor first = f.ingestor();
    REQUIRE(ingest_into(f.store, first, sign(launch_payload("L-1"), f.cp1)).result ==
            IngestResult::accepted);
    REQUIRE(ingest_into(f.store, first, sign_grant(grant_payload("G-1"), f.alice)).result ==
            IngestResult::accepted);
  }
  // The control-plane keys were removed from trust.json before the restart.
  // The grant's own key is still trusted, but the launch it changes is gone:
  // it would otherwise raise the privileges of a launch nobody vouches for.
  Ingestor second(f.trust(/*with_control_plane=*/false), {});
  const RestoreReport report = second.restore(f.store);
  CHECK(report.restored == 0);
  CHECK(second.launch("L-1") == nullptr);
  CHECK(second.launch_for_sandbox("agent-7") == nullptr);
  CHECK(second.latest_grant("L-1") == nullptr);
  REQUIRE(report.skipped.size() == 2);
  CHECK_THAT(report.skipped[0], Catch::Contains("entry 1 skipped") &&
                                    Catch::Contains("launch L-1") &&
                                    Catch::Contains("not in the trust store"));
  CHECK_THAT(report.skipped[1], Catch::Contains("entry 2 skipped") &&
                                    Catch::Contains("grant G-1") &&
                                    Catch::Contains("not an accepted launch"));
  // A skipped envelope stays where it was stored: trusting the key again
  // brings it back.
  Ingestor third = f.ingestor();
  const RestoreReport again = third.restore(f.store);
  CHECK(again.restored == 2);
  CHECK(again.clean());
  REQUIRE(third.latest_grant("L-1") != nullptr);
  CHECK(third.latest_grant("L-1")->grant_id == "G-1");
}

TEST_CASE("ingestor: restore skips a stored grant issued before its launch", "[ingest]") {
  Fixture f;
  {
    Ingestor first = f.ingestor();
    REQUIRE(ingest_into(f.store, first, sign(launch_payload("L-1", "agent-7", kNow - 100), f.cp1))
                .result == IngestResult::accepted);
  }
  // A grant that no ingest would accept, stored directly (an older monitor,
  // a hand edit).
  const std::string early = sign_grant(grant_payload("G-1", "L-1", kNow - 200), f.alice);
  f.store.push_back(StoredEnvelope{EnvelopeKind::grant, early, "entry 2"});

  Ingestor second = f.ingestor();
  const RestoreReport report = second.restore(f.store);
  CHECK(report.restored == 1);
  REQUIRE(report.skipped.size() == 1);
  CHECK_THAT(report.skipped[0], Catch::Contains("entry 2 skipped") &&
                                    Catch::Contains("grant G-1") &&
                                    Catch::Contains("before its launch"));
  CHECK(second.launch("L-1") != nullptr);
  CHECK(second.latest_grant("L-1") == nullptr);
}

TEST_CASE("ingestor: payload_problem names what makes a payload malformed, nothing for good ones",
          "[ingest]") {
  CHECK(payload_problem(EnvelopeKind::launch, launch_payload()) == "");
  CHECK(payload_problem(EnvelopeKind::grant, grant_payload()) == "");
  CHECK(payload_problem(EnvelopeKind::launch, json{{"hello", "world"}}) == "has no \"launch_id\"");
  CHECK(payload_problem(EnvelopeKind::grant, launch_payload()) == "has no \"grant_id\"");
  CHECK(payload_problem(EnvelopeKind::launch, json::array()) == "is a JSON array, not an object");
  json extra = launch_payload();
  extra["priority"] = 1;
  CHECK(payload_problem(EnvelopeKind::launch, extra) == "has an unknown field \"priority\"");
  json bad_id = launch_payload();
  bad_id["launch_id"] = "L 1";
  CHECK_THAT(payload_problem(EnvelopeKind::launch, bad_id),
             Catch::Contains("\"launch_id\" must be 1 to 256 characters"));
  json bad_config = launch_payload();
  bad_config["config"]["process"]["user"]["uid"] = "root";
  CHECK_THAT(payload_problem(EnvelopeKind::launch, bad_config),
             Catch::Contains("declared projection cannot be computed"));
}
