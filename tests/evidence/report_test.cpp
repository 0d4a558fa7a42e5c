// The correlation report from a small log: what it cites for a launch, that
// it verifies offline, that a changed byte or summary does not, and its
// HTML and OSCAL forms.

#include "evidence/report.hpp"

#include <regex>
#include <string>

#include <catch2/catch.hpp>

#include "common/crypto.hpp"
#include "common/sha256.hpp"
#include "evidence/entries.hpp"
#include "evidence/proof.hpp"
#include "evidence/test_log.hpp"
#include "ingest/envelope.hpp"
#include "policy/policy.hpp"
#include "support/temp_dir.hpp"

using namespace driftwatch;
using namespace driftwatch::evidence;
using namespace driftwatch::testing;
using nlohmann::json;

namespace {

constexpr int64_t kT0 = 1795644000;  // 2026-11-25T22:00:00Z
const std::string kHostileSandbox = "<script>alert(1)</script>";

struct SmallLog {
  TempDir dir{"evidence-report"};
  Log log = open_test_log(dir / "evidence");
  NoteVerifier verifier = NoteVerifier::parse(log.verifier().vkey()).value();
  DirectoryReader reader{(dir / "evidence").string()};
  std::vector<std::string> entries;

  void add(json entry, const std::optional<std::string>& blob = std::nullopt) {
    if (blob) REQUIRE(log.put_blob(*blob));
    entry["time"] = ingest::format_rfc3339(kT0 + static_cast<int64_t>(entries.size()));
    auto sealed = seal(std::move(entry), entries.size());
    REQUIRE(sealed);
    entries.push_back(*sealed);
  }
  void commit() {
    REQUIRE(log.append(entries));
    REQUIRE(log.checkpoint());
  }
};

std::string envelope_for(const json& payload) {
  auto key = Ed25519PrivateKey::from_raw(std::string(32, '\x09'));
  REQUIRE(key);
  return ingest::sign_envelope(ingest::kLaunchPayloadType, payload.dump(), *key);
}

json sandbox_state(const char* type, const std::string& sandbox, const std::string& launch,
                   const char* verdict, const char* observed) {
  return {{"type", type},
          {"sandbox_id", sandbox},
          {"runtime", "runc"},
          {"verdict", verdict},
          {"launch_id", launch},
          {"grant_id", nullptr},
          {"declared_sha256", "d1"},
          {"observed_sha256", observed},
          {"consumed_config_sha256", "cc1"},
          {"members", 1},
          {"trigger", "change"},
          {"from", nullptr}};
}

// 0 monitor_started, 1 launch L-1, 2 discovered attested, 3 launch L-2 (a
// hostile sandbox id), 4 a forgery aimed at sb-1, 5 drifted, 6 its finding,
// 7 a grant, 8 L-2 observed, 9 a rejection of nothing in particular.
void fill(SmallLog& s) {
  s.add(monitor_started(kT0, "test-node", "0.1", "rev", std::string(64, 'a'), std::string(64, 'b'),
                        *policy::load_policy(std::nullopt))
            .entry);
  const std::string launch_envelope = envelope_for({{"launch_id", "L-1"}, {"sandbox_id", "sb-1"}});
  s.add({{"type", "launch_accepted"},
         {"id", "L-1"},
         {"sandbox_id", "sb-1"},
         {"runtime", "runc"},
         {"issued_at", "2026-11-24T21:59:00Z"},
         {"requested_by", "oidc:ci@example.org"},
         {"config_sha256", "c1"},
         {"signed_by", "cp-1"},
         {"signer_keyid", "k1"},
         {"envelope_sha256", sha256_hex(launch_envelope)},
         {"source", "POST /v1/launch-events"}},
        launch_envelope);
  s.add(sandbox_state("sandbox_discovered", "sb-1", "L-1", "attested", "d1"));
  const std::string other_envelope =
      envelope_for({{"launch_id", "L-2"}, {"sandbox_id", kHostileSandbox}});
  s.add({{"type", "launch_accepted"},
         {"id", "L-2"},
         {"sandbox_id", kHostileSandbox},
         {"requested_by", "oidc:<b>x</b>"},
         {"envelope_sha256", sha256_hex(other_envelope)}},
        other_envelope);
  const std::string forged = envelope_for({{"launch_id", "L-9"}, {"sandbox_id", "sb-1"}});
  s.add({{"type", "launch_rejected"},
         {"result", "bad_signature"},
         {"reason", "signature by <img src=x> does not verify"},
         {"id", nullptr},
         {"source", "POST /v1/launch-events"},
         {"envelope_bytes", forged.size()},
         {"envelope_sha256", sha256_hex(forged)},
         {"envelope_kept", true}},
        forged);
  json drifted = sandbox_state("observation", "sb-1", "L-1", "drifted", "o2");
  drifted["from"] = "attested";
  s.add(drifted);
  s.add({{"type", "finding"},
         {"sandbox_id", "sb-1"},
         {"launch_id", "L-1"},
         {"verdict", "drifted"},
         {"field", "capabilities.effective"},
         {"declared", json::array({"CAP_CHOWN"})},
         {"observed", json::array({"CAP_CHOWN", "CAP_SYS_ADMIN"})},
         {"direction", "escalation"},
         {"severity", "critical"},
         {"controls", json::array({"AC-6", "CM-2", "CM-3", "CM-6"})},
         {"namespaced", false}});
  const std::string grant = envelope_for({{"grant_id", "G-1"}, {"launch_id", "L-1"}});
  s.add({{"type", "grant_accepted"},
         {"id", "G-1"},
         {"launch_id", "L-1"},
         {"requested_by", "oidc:owner@example.org"},
         {"approved_by", "oidc:alice@example.org"},
         {"reason", "CHG-1"},
         {"envelope_sha256", sha256_hex(grant)}},
        grant);
  s.add(sandbox_state("observation", kHostileSandbox, "L-2", "attested", "d1"));
  s.add({{"type", "grant_rejected"},
         {"result", "malformed"},
         {"reason", "not JSON"},
         {"id", nullptr},
         {"envelope_bytes", 3},
         {"envelope_sha256", nullptr},
         {"envelope_kept", false}});
  s.commit();
}

std::vector<uint64_t> indexes(const json& rows) {
  std::vector<uint64_t> out;
  for (const auto& row : rows) out.push_back(row["index"].get<uint64_t>());
  return out;
}

}  // namespace

TEST_CASE(
    "report: a launch's report cites its launch event, verdicts, finding, grant and the forgery "
    "aimed at its sandbox, and nothing of another launch",
    "[evidence]") {
  SmallLog s;
  fill(s);
  auto report = build_report(s.reader, s.verifier, {.launch_id = "L-1"});
  INFO((report ? std::string() : report.error().message));
  REQUIRE(report);
  REQUIRE(report->launches.size() == 1);
  const json& view = report->launches[0].view;
  CHECK(report->launches[0].cites == std::vector<uint64_t>{1, 2, 4, 5, 6, 7});
  CHECK(view["launch_event"]["index"] == 1);
  CHECK(indexes(view["timeline"]) == std::vector<uint64_t>{2, 5});
  CHECK(indexes(view["findings"]) == std::vector<uint64_t>{6});
  CHECK(indexes(view["grants"]) == std::vector<uint64_t>{7});
  CHECK(indexes(view["rejections"]) == std::vector<uint64_t>{4});
  CHECK(view["denied_attempts"] == json::array());
  CHECK(view["denied_attempts_note"] == std::string(kNoDeniedAttemptsNote));
  const json& summary = view["summary"];
  CHECK(summary["requested_by"] == "oidc:ci@example.org");
  CHECK(summary["signed_by"] == "cp-1");
  CHECK(summary["signer_keyid"] == "k1");
  CHECK(summary["config_sha256"] == "c1");
  CHECK(summary["consumed_config_sha256"] == "cc1");
  CHECK(summary["verdict"] == "drifted");
  CHECK(summary["drift"] == true);
  CHECK(summary["drifted_fields"] == json::array({"capabilities.effective"}));
  CHECK(summary["controls"] == json::array({"AC-6", "CM-2", "CM-3", "CM-6"}));
  // Exact bytes, a proof per entry, the three envelopes it cites.
  for (const uint64_t index : report->launches[0].cites) {
    REQUIRE(report->entries.contains(index));
    CHECK(report->entries.at(index).bytes == s.entries[index]);
    CHECK(verify_tlog_proof(report->entries.at(index).proof, s.entries[index], s.verifier));
  }
  CHECK(report->entries.size() == 6);
  CHECK(report->blobs.size() == 3);

  // Every launch; --since leaves out what is older, but not the launch event.
  auto all = build_report(s.reader, s.verifier, {});
  REQUIRE(all);
  CHECK(all->launches.size() == 2);
  auto since = build_report(s.reader, s.verifier, {.launch_id = "L-1", .since = kT0 + 5});
  REQUIRE(since);
  CHECK(since->launches[0].cites == std::vector<uint64_t>{1, 5, 6, 7});
  CHECK(since->launches[0].view["summary"]["verdict"] == "drifted");
  CHECK(verify_report(*since, s.verifier));
}

TEST_CASE(
    "report: the JSON report verifies offline, and stops verifying when a cited entry's byte, a "
    "blob or a summary field is changed",
    "[evidence]") {
  SmallLog s;
  fill(s);
  auto report = build_report(s.reader, s.verifier, {.launch_id = "L-1"});
  REQUIRE(report);
  const std::string text = report_to_json(*report).dump(2);
  auto parsed = parse_report(text);
  INFO((parsed ? std::string() : parsed.error().message));
  REQUIRE(parsed);
  REQUIRE(verify_report(*parsed, s.verifier));
  CHECK(report_to_json(*parsed) == report_to_json(*report));

  const auto fails = [&](const json& doc, const std::string& why) {
    auto bad = parse_report(doc.dump());
    REQUIRE(bad);
    auto verified = verify_report(*bad, s.verifier);
    REQUIRE_FALSE(verified);
    CHECK(verified.error().failure == ReportFailure::kTampered);
    CHECK_THAT(verified.error().message, Catch::Contains(why));
  };
  {
    json doc = json::parse(text);
    std::string entry = doc["entries"][3]["entry"];
    const auto at = entry.find("drifted");
    REQUIRE(at != std::string::npos);
    entry[at] = 'D';
    doc["entries"][3]["entry"] = entry;
    fails(doc, "entry 5:");
  }
  {
    json doc = json::parse(text);
    doc["launches"][0]["summary"]["verdict"] = "attested";
    fails(doc, "its summary says verdict is \"attested\", but its entries say \"drifted\"");
  }
  {
    json doc = json::parse(text);
    doc["launches"][0]["summary"]["drift"] = false;
    fails(doc, "drift");
  }
  {
    json doc = json::parse(text);
    doc["launches"][0]["cites"] = json::array({1, 2, 4, 7});  // the drift left out
    doc["launches"][0]["summary"]["verdict"] = "attested";
    fails(doc, "launch L-1:");
  }
  {
    json doc = json::parse(text);
    const std::string b64 = doc["blobs"][0]["base64"];
    auto bytes = base64_decode(b64);
    REQUIRE(bytes);
    (*bytes)[0] = static_cast<char>((*bytes)[0] ^ 1);
    doc["blobs"][0]["base64"] = base64_encode(*bytes);
    fails(doc, "the blob was changed");
  }
  // Another key: bad input.
  auto other = Ed25519PrivateKey::generate();
  REQUIRE(other);
  auto other_verifier = NoteVerifier::make(kTestOrigin, other->public_key());
  REQUIRE(other_verifier);
  auto wrong = verify_report(*parsed, *other_verifier);
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().failure == ReportFailure::kBadInput);
  // Not a report.
  for (const std::string& bad : {std::string("[]"), std::string("{}"),
                                 std::string("{\"format\":1}"), text.substr(0, text.size() / 2)})
    CHECK_FALSE(parse_report(bad));
}

TEST_CASE("report: an unknown launch, a directory that is not a log and another key are refused",
          "[evidence]") {
  SmallLog s;
  fill(s);
  auto unknown = build_report(s.reader, s.verifier, {.launch_id = "L-404"});
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().failure == ReportFailure::kUnknownLaunch);
  CHECK_THAT(unknown.error().message, Catch::Contains("no launch L-404"));
  const DirectoryReader not_a_log(s.dir.path().string());
  auto empty = build_report(not_a_log, s.verifier, {});
  REQUIRE_FALSE(empty);
  CHECK(empty.error().failure == ReportFailure::kBadInput);
  auto other = Ed25519PrivateKey::generate();
  REQUIRE(other);
  auto other_verifier = NoteVerifier::make(kTestOrigin, other->public_key());
  auto wrong = build_report(s.reader, *other_verifier, {});
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().failure == ReportFailure::kBadInput);
}

TEST_CASE("report: the HTML page escapes what the log holds and has no script or remote asset",
          "[evidence]") {
  SmallLog s;
  fill(s);
  auto report = build_report(s.reader, s.verifier, {});
  REQUIRE(report);
  const std::string html = report_html(*report);
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("<img") == std::string::npos);
  CHECK(html.find("<b>x") == std::string::npos);
  CHECK(html.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  CHECK(html.find("http://") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  CHECK(html.find("capabilities.effective") != std::string::npos);
  CHECK(html.find("No escalation_attempt entries") == std::string::npos);
  CHECK(html.find("no attempt was denied in the sandbox, or the probes") != std::string::npos);
}

TEST_CASE("report: the OSCAL form has content-derived uuids and lowercase catalog control ids",
          "[evidence]") {
  SmallLog s;
  fill(s);
  auto report = build_report(s.reader, s.verifier, {.launch_id = "L-1"});
  REQUIRE(report);
  const json doc = report_oscal(*report);
  CHECK(doc == report_oscal(*build_report(s.reader, s.verifier, {.launch_id = "L-1"})));
  const std::regex uuid("^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  const json& result = doc["assessment-results"]["results"][0];
  CHECK(std::regex_match(doc["assessment-results"]["uuid"].get<std::string>(), uuid));
  CHECK(result["observations"].size() == report->entries.size());
  std::vector<std::string> not_satisfied;
  for (const auto& finding : result["findings"]) {
    CHECK(std::regex_match(finding["uuid"].get<std::string>(), uuid));
    if (finding["target"]["status"]["state"] == "not-satisfied")
      not_satisfied.push_back(finding["target"]["target-id"]);
  }
  CHECK(not_satisfied == std::vector<std::string>{"ac-6_obj", "cm-2_obj", "cm-3_obj", "cm-6_obj"});
  CHECK(result["start"] == ingest::format_rfc3339(kT0 + 1));  // the launch event
  CHECK(content_uuid("x") == content_uuid("x"));
  CHECK(content_uuid("x") != content_uuid("y"));
}
