#include <algorithm>
#include <filesystem>
#include <iterator>
#include <string_view>

#include <catch2/catch.hpp>

#include "correlate/correlator.hpp"

using namespace driftwatch;

namespace {

correlate::SweepItem item(const std::string& id, int64_t started_at, uint64_t effective = 0) {
  correlate::SweepItem i;
  i.ref.sandbox_id = id;
  i.ref.runtime = "runc";
  projection::MemberObservation m;
  m.pid = 100;
  m.status.cap_effective = effective;
  i.observation.members.push_back(m);
  for (const auto& kind : projection::kNamespaces)
    i.observed.namespaces[kind.projection_key] = "private";
  i.observed.capabilities.effective = effective;
  i.started_at = started_at;
  i.sampled_at = started_at + 100;
  return i;
}

struct Fixture {
  ingest::Ingestor ingestor{ingest::TrustStore{}, {}};
  policy::Policy policy = *policy::load_policy(std::nullopt);
};

}  // namespace

TEST_CASE("correlator: an unlaunched sandbox is pending within the grace period, then unattested",
          "[correlate]") {
  Fixture f;
  auto within = correlate::evaluate(item("a", 1000), f.ingestor, f.policy, 1010, 30);
  CHECK(within.verdict == "pending");
  CHECK_FALSE(within.launch_id);
  // The last second of the grace period is still inside it.
  CHECK(correlate::evaluate(item("a", 1000), f.ingestor, f.policy, 1029, 30).verdict == "pending");
  auto after = correlate::evaluate(item("a", 1000), f.ingestor, f.policy, 1031, 30);
  CHECK(after.verdict == "unattested");
  CHECK_FALSE(after.launch_id);
  CHECK(after.observed_sha256->size() == 64);
  CHECK(std::find(std::begin(correlate::kVerdicts), std::end(correlate::kVerdicts),
                  std::string_view("pending")) != std::end(correlate::kVerdicts));
}

TEST_CASE("correlator: the verdict changes of a sweep say pending, then unattested",
          "[correlate]") {
  Fixture f;
  correlate::Correlator c;
  auto changes = c.apply_sweep({item("a", 1000)}, f.ingestor, f.policy, 1010, 30);
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].sandbox_id == "a");
  CHECK_FALSE(changes[0].from);  // first seen
  CHECK(changes[0].to == "pending");
  REQUIRE(changes[0].status.observed_sha256);
  CHECK(changes[0].status.observed_sha256->size() == 64);
  CHECK(changes[0].status.findings.empty());
  REQUIRE(c.find("a"));
  CHECK(c.find("a")->verdict == "pending");

  // Still inside the grace period, nothing changed: no change reported.
  CHECK(c.apply_sweep({item("a", 1000)}, f.ingestor, f.policy, 1020, 30).empty());

  changes = c.apply_sweep({item("a", 1000)}, f.ingestor, f.policy, 1031, 30);
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].sandbox_id == "a");
  CHECK(changes[0].from == "pending");
  CHECK(changes[0].to == "unattested");
  CHECK(c.find("a")->verdict == "unattested");

  // Gone is a change too.
  changes = c.apply_sweep({}, f.ingestor, f.policy, 1040, 30);
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].from == "unattested");
  CHECK(changes[0].to == "gone");
}

TEST_CASE("correlator: one sandbox's sample changes only that sandbox", "[correlate]") {
  Fixture f;
  correlate::Correlator c;
  c.apply_sweep({item("a", 1000), item("b", 1000)}, f.ingestor, f.policy, 1010, 30);
  // b gains CAP_SYS_MODULE: a node policy violation, seen by a resample.
  auto changes = c.apply_sample(item("b", 1000, 1ull << 16), f.ingestor, f.policy, 1015, 30);
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].sandbox_id == "b");
  CHECK(changes[0].from == "pending");
  CHECK(changes[0].to == "violating");
  CHECK(changes[0].status.findings.size() == 1);
  CHECK(changes[0].new_findings.size() == 1);
  CHECK(c.find("b")->verdict == "violating");
  CHECK(c.find("a")->verdict == "pending");
  // The same sample again changes nothing.
  CHECK(c.apply_sample(item("b", 1000, 1ull << 16), f.ingestor, f.policy, 1016, 30).empty());
}

TEST_CASE("correlator: a node policy violation makes a sandbox violating even without a launch",
          "[correlate]") {
  Fixture f;
  auto s = correlate::evaluate(item("b", 1000, 1ull << 16), f.ingestor, f.policy, 5000, 30);
  CHECK(s.verdict == "violating");
  REQUIRE(s.findings.size() == 1);
  CHECK(s.findings[0].field == "policy.no-cap-sys-module");
}

TEST_CASE("correlator: sandboxes missing from a sweep become gone and keep their record",
          "[correlate]") {
  Fixture f;
  correlate::Correlator c;
  c.apply_sweep({item("a", 1000), item("b", 1000)}, f.ingestor, f.policy, 2000, 30);
  REQUIRE(c.find("a"));
  CHECK(c.find("a")->verdict == "unattested");
  c.apply_sweep({item("b", 1000)}, f.ingestor, f.policy, 2010, 30);
  REQUIRE(c.find("a"));
  CHECK(c.find("a")->verdict == "gone");
  CHECK(c.find("a")->members.empty());
  CHECK(c.find("b")->verdict == "unattested");
  // An hour later the gone record is dropped.
  c.apply_sweep({item("b", 1000)}, f.ingestor, f.policy, 2000 + 100 + 3601, 30);
  CHECK_FALSE(c.find("a"));
}

TEST_CASE("correlator: a sandbox is found by its id or by any of its names, a live one first",
          "[correlate]") {
  Fixture f;
  correlate::Correlator correlator;
  auto old = item("aaaa", 1000);
  old.ref.engine = "podman";
  old.ref.names = {"agent-7"};
  correlator.apply_sweep({old}, f.ingestor, f.policy, 1100, 30);
  // agent-7 removed and run again: a new container with the same name.
  auto fresh = item("bbbb", 1200);
  fresh.ref.engine = "podman";
  fresh.ref.names = {"agent-7", "agents/pod/agent"};
  correlator.apply_sweep({fresh}, f.ingestor, f.policy, 1300, 30);
  REQUIRE(correlator.find("aaaa") != nullptr);
  CHECK(correlator.find("aaaa")->verdict == "gone");
  REQUIRE(correlator.find("agent-7") != nullptr);
  CHECK(correlator.find("agent-7")->sandbox_id == "bbbb");
  REQUIRE(correlator.find("agents/pod/agent") != nullptr);
  CHECK(correlator.find("agents/pod/agent")->sandbox_id == "bbbb");
  CHECK(correlator.find("agent-8") == nullptr);
  const auto shown = correlate::to_json(*correlator.find("bbbb"));
  CHECK(shown["engine"] == "podman");
  CHECK(shown["names"] == nlohmann::json::array({"agent-7", "agents/pod/agent"}));
}
