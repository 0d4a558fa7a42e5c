#include <filesystem>

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
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("dw-correlator-" + std::to_string(getpid()));
  ingest::Ingestor ingestor{ingest::TrustStore{}, {}, dir};
  policy::Policy policy = *policy::load_policy(std::nullopt);
  ~Fixture() { std::filesystem::remove_all(dir); }
};

}  // namespace

TEST_CASE(
    "correlator: an unlaunched sandbox has no verdict within the grace period, then is "
    "unattested",
    "[correlate]") {
  Fixture f;
  auto within = correlate::evaluate(item("a", 1000), f.ingestor, f.policy, 1010, 30);
  CHECK_FALSE(within.verdict);
  auto after = correlate::evaluate(item("a", 1000), f.ingestor, f.policy, 1031, 30);
  CHECK(after.verdict == "unattested");
  CHECK_FALSE(after.launch_id);
  CHECK(after.observed_sha256->size() == 64);
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
