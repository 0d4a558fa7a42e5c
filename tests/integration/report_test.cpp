// `driftwatch report` on the log of a real daemon that watched a real runc
// container drift (runc exec --cap CAP_SYS_ADMIN): the JSON report names the
// drift with its controls and verifies offline (and stops verifying when a
// byte of a cited entry changes), GET /v1/report gives the same report, the
// OSCAL form validates against NIST's schema with Ajv, and the HTML page
// printed by headless Chromium says what drifted.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include "common/file_io.hpp"
#include "integration/daemon_harness.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"

using namespace driftwatch::testing;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path kOscalFixtures = fs::path(DRIFTWATCH_FIXTURES) / "oscal";

std::string read_all(const fs::path& path) {
  auto text = driftwatch::read_file(path, 256 << 20);
  REQUIRE(text);
  return *text;
}

size_t lines(const std::string& text) {
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

// A daemon that saw launch `launch_id` of a runc container drift by an exec
// with CAP_SYS_ADMIN, with a checkpoint that covers the drift.
struct DriftedLaunch {
  std::string launch_id;
  OciBundle bundle = OciBundle::with_default_spec();
  Container container;
  DaemonUnderTest daemon{json{{"checkpoint_interval_seconds", 1}}};

  explicit DriftedLaunch(std::string id)
      : launch_id(std::move(id)),
        container(value_or_throw(Container::start("runc", bundle, unique_container_id("report")))) {
    daemon.start();
    auto accepted = daemon.post(
        "/v1/launch-events",
        daemon.sign("launch",
                    DaemonUnderTest::launch_payload(launch_id, container.id(), bundle.config()),
                    "cp-1"));
    INFO(accepted.body);
    REQUIRE(accepted.status == 202);
    daemon.wait_for_verdict(container.id(), "attested");
    value_or_throw(container.exec({"sleep", "30"}, {"--cap", "CAP_SYS_ADMIN"}));
    daemon.wait_for_verdict(container.id(), "drifted");
    // The checkpoint is written within a second of the drift's entries.
    for (int i = 0; i < 100; ++i) {
      auto report = run({"--format", "json"});
      if (report.exit_code == 0 &&
          json::parse(report.out)["launches"][0]["summary"]["drift"] == true)
        return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    FAIL("no checkpoint covers the drift of " << launch_id << " within 20 s\n" << daemon.log());
  }

  std::string log_dir() const { return (daemon.dir() / "state" / "evidence").string(); }
  std::string vkey() const { return (daemon.dir() / "state" / "node.vkey").string(); }

  CommandResult run(std::vector<std::string> extra) const {
    std::vector<std::string> args{"report", "--log",    log_dir(), "--key",
                                  vkey(),   "--launch", launch_id};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_driftwatch(args);
  }
};

}  // namespace

TEST_CASE(
    "report: the report of a launch whose runc container drifted names the drift with its "
    "controls, verifies offline until a byte of a cited entry changes, and GET /v1/report gives "
    "the same",
    "[root][runc][integration][daemon][evidence]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  DriftedLaunch story("L-report-json");

  auto made = story.run({"--format", "json"});
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  const json report = json::parse(made.out);
  CHECK(report["format"] == "driftwatch-report@v1");
  REQUIRE(report["launches"].size() == 1);
  const json& launch = report["launches"][0];
  const json& summary = launch["summary"];
  CHECK(summary["launch_id"] == "L-report-json");
  CHECK(summary["sandbox_id"] == story.container.id());
  CHECK(summary["requested_by"] == "oidc:ci@example.org");
  CHECK(summary["signed_by"] == "cp-1");
  CHECK(summary["verdict"] == "drifted");
  CHECK(summary["drift"] == true);
  CHECK(summary["consumed_config_sha256"].is_string());
  const auto& fields = summary["drifted_fields"];
  CHECK(std::find(fields.begin(), fields.end(), "capabilities.effective") != fields.end());
  for (const char* control : {"AC-6", "CM-3"})
    CHECK(std::find(summary["controls"].begin(), summary["controls"].end(), control) !=
          summary["controls"].end());
  bool escalation = false;
  for (const auto& finding : launch["findings"])
    escalation |=
        finding["field"] == "capabilities.effective" && finding["direction"] == "escalation";
  CHECK(escalation);
  CHECK(launch["denied_attempts"] == json::array());
  CHECK(launch["denied_attempts_note"].is_string());

  // Offline: passes as written; one byte of a cited entry changed fails,
  // naming the entry.
  const fs::path file = story.daemon.dir() / "report.json";
  REQUIRE(story.run({"--format", "json", "--output", file.string()}).exit_code == 0);
  auto verified = run_driftwatch({"verify", "--report", file.string(), "--key", story.vkey()});
  INFO(verified.out << verified.err);
  CHECK(verified.exit_code == 0);
  CHECK_THAT(verified.out, Catch::StartsWith("ok: report of 1 launch"));
  json changed = json::parse(read_all(file));
  json* target = nullptr;
  for (auto& entry : changed["entries"])
    if (entry["index"] == launch["findings"][0]["index"]) target = &entry;
  REQUIRE(target);
  std::string bytes = (*target)["entry"];
  const auto at = bytes.find("escalation");
  REQUIRE(at != std::string::npos);
  bytes[at] = 'E';
  (*target)["entry"] = bytes;
  const fs::path bad = story.daemon.dir() / "report-changed.json";
  std::ofstream(bad) << changed.dump(2);
  auto refused = run_driftwatch({"verify", "--report", bad.string(), "--key", story.vkey()});
  INFO(refused.out << refused.err);
  CHECK(refused.exit_code == 1);
  CHECK(lines(refused.err) == 1);
  CHECK_THAT(refused.err,
             Catch::Contains("entry " + std::to_string((*target)["index"].get<uint64_t>())));

  // Over HTTP from the daemon: the same report (retried if a checkpoint
  // came between the two).
  bool same = false;
  for (int i = 0; i < 5 && !same; ++i) {
    auto reply = http_request(story.daemon.port(), "GET", "/v1/report?launch=L-report-json");
    INFO(reply.body.substr(0, 400));
    REQUIRE(reply.status == 200);
    auto cli = story.run({"--format", "json"});
    same = reply.body == cli.out;
  }
  CHECK(same);
  CHECK(http_request(story.daemon.port(), "GET", "/v1/report?launch=L-nope").status == 404);
  for (const char* bad_query :
       {"/v1/report", "/v1/report?launch=", "/v1/report?launch=L-report-json&format=pdf",
        "/v1/report?launch=L-report-json&since=yesterday"})
    CHECK(http_request(story.daemon.port(), "GET", bad_query).status == 400);
  auto html =
      http_request(story.daemon.port(), "GET", "/v1/report?launch=L-report-json&format=html");
  CHECK(html.status == 200);
  CHECK_THAT(html.body, Catch::StartsWith("<!DOCTYPE html>"));

  // Bad input: one line, exit 2.
  auto unknown = run_driftwatch(
      {"report", "--log", story.log_dir(), "--key", story.vkey(), "--launch", "L-nope"});
  CHECK(unknown.exit_code == 2);
  CHECK(lines(unknown.err) == 1);
  CHECK(unknown.out.empty());
  auto not_a_log =
      run_driftwatch({"report", "--log", story.daemon.dir().string(), "--key", story.vkey()});
  CHECK(not_a_log.exit_code == 2);
  CHECK(lines(not_a_log.err) == 1);
  CHECK_THAT(not_a_log.err, Catch::Contains("not an evidence log"));
  REQUIRE(run_driftwatch(
              {"keygen", "--name", "other-node", "--out", (story.daemon.dir() / "other").string()})
              .exit_code == 0);
  const std::string other = (story.daemon.dir() / "other" / "other-node.vkey").string();
  auto wrong_key = run_driftwatch({"report", "--log", story.log_dir(), "--key", other});
  CHECK(wrong_key.exit_code == 2);
  CHECK(lines(wrong_key.err) == 1);
  auto wrong_key_verify = run_driftwatch({"verify", "--report", file.string(), "--key", other});
  CHECK(wrong_key_verify.exit_code == 2);
  CHECK(lines(wrong_key_verify.err) == 1);
}

TEST_CASE(
    "report: --format oscal of a drifted launch validates against the OSCAL 1.0.6 Assessment "
    "Results schema with Ajv, and every control id in it is in the NIST SP 800-53 rev5 catalog",
    "[root][runc][integration][daemon][evidence]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  const fs::path node_deps = DRIFTWATCH_NODE_DEPS;
  if (run_command({"node", "--version"}).exit_code != 0)
    DW_SKIP("needs node (scripts/install-deps.sh installs it)");
  if (!fs::exists(node_deps / "node_modules" / "ajv" / "package.json") ||
      !fs::exists(node_deps / "node_modules" / "ajv-formats" / "package.json"))
    DW_SKIP("needs ajv@8 and ajv-formats@3 in " << node_deps.string()
                                                << " (scripts/install-deps.sh installs them)");
  DriftedLaunch story("L-report-oscal");
  const fs::path file = story.daemon.dir() / "report.oscal.json";
  auto made = story.run({"--format", "oscal", "--output", file.string()});
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  auto validated = run_command(
      {"node", (fs::path(DRIFTWATCH_TESTS_DIR) / "integration" / "validate_oscal.js").string(),
       node_deps.string(), (kOscalFixtures / "oscal_assessment-results_schema-1.0.6.json").string(),
       (kOscalFixtures / "NIST_SP-800-53_rev5_HIGH-baseline-resolved-profile_catalog-min.json")
           .string(),
       file.string()});
  INFO(validated.out << validated.err);
  REQUIRE(validated.exit_code == 0);
  CHECK_THAT(validated.out, Catch::Contains("ac-6") && Catch::Contains("cm-3"));
  const json doc = json::parse(read_all(file));
  const json& result = doc["assessment-results"]["results"][0];
  bool not_satisfied = false;
  for (const auto& finding : result["findings"])
    not_satisfied |= finding["target"]["target-id"] == "ac-6_obj" &&
                     finding["target"]["status"]["state"] == "not-satisfied";
  CHECK(not_satisfied);
  bool names_sandbox = false;
  for (const auto& observation : result["observations"])
    for (const auto& subject : observation["subjects"])
      names_sandbox |= subject["title"] == "sandbox " + story.container.id();
  CHECK(names_sandbox);
}

TEST_CASE(
    "report: --format html of a drifted launch, printed to PDF by headless Chromium, shows the "
    "launch id, the verdict and the drifted field",
    "[root][runc][integration][daemon][evidence]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  if (run_command({"chromium", "--version"}).exit_code != 0)
    DW_SKIP("needs chromium (scripts/install-deps.sh installs it)");
  if (run_command({"pdftotext", "-v"}).exit_code != 0)
    DW_SKIP("needs pdftotext from poppler-utils (scripts/install-deps.sh installs it)");
  DriftedLaunch story("L-report-html");
  const fs::path html = story.daemon.dir() / "report.html";
  const fs::path pdf = story.daemon.dir() / "report.pdf";
  auto made = story.run({"--format", "html", "--output", html.string()});
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  auto printed = run_command({"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                              "--user-data-dir=" + (story.daemon.dir() / "chromium").string(),
                              "--print-to-pdf=" + pdf.string(), "file://" + html.string()},
                             std::nullopt, std::chrono::seconds(90));
  INFO(printed.out << printed.err);
  REQUIRE(fs::exists(pdf));
  auto text = run_command({"pdftotext", "-layout", pdf.string(), "-"});
  INFO(text.err);
  REQUIRE(text.exit_code == 0);
  INFO(text.out);
  CHECK_THAT(text.out, Catch::Contains("L-report-html"));
  CHECK_THAT(text.out, Catch::Contains("drifted"));
  CHECK_THAT(text.out, Catch::Contains("capabilities.effective"));
  CHECK_THAT(text.out, Catch::Contains("AC-6"));
}
