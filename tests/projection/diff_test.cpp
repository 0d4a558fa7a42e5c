#include <catch2/catch.hpp>

#include "observe/capabilities.hpp"
#include "projection/diff.hpp"

using namespace driftwatch::projection;

namespace {

Projection baseline() {
  Projection p;
  p.uid = 1000;
  p.gid = 1000;
  p.capabilities.bounding = 1ull << 5;  // CAP_KILL
  p.no_new_privileges = true;
  p.seccomp = "filter";
  for (const auto& kind : kNamespaces) p.namespaces[kind.projection_key] = "private";
  p.namespaces["time"] = "host";
  p.root_readonly = true;
  p.masked_paths = {"/proc/kcore"};
  p.readonly_paths = {"/proc/sys"};
  p.memory_max = 64 << 20;
  p.pids_max = 32;
  p.cpu_max = "50000 100000";
  p.rlimits["RLIMIT_NOFILE"] = {1024, 1024};
  return p;
}

Finding only(const std::vector<Finding>& findings) {
  REQUIRE(findings.size() == 1);
  return findings.front();
}

}  // namespace

TEST_CASE("diff: equal projections have no findings and equal hashes", "[projection]") {
  CHECK(diff(baseline(), baseline()).empty());
  CHECK(projection_sha256(baseline()) == projection_sha256(baseline()));
  CHECK(comparison_verdict({}) == "attested");
}

TEST_CASE("diff: an added capability is an escalation on that set", "[projection]") {
  auto observed = baseline();
  observed.capabilities.effective |= 1ull << 21;  // CAP_SYS_ADMIN
  const auto f = only(diff(baseline(), observed));
  CHECK(f.field == "capabilities.effective");
  CHECK(f.direction == Direction::escalation);
  CHECK(f.severity == "critical");
  CHECK(f.observed == nlohmann::json({"CAP_SYS_ADMIN"}));
  CHECK_FALSE(f.namespaced);
  CHECK(std::find(f.controls.begin(), f.controls.end(), "AC-6") != f.controls.end());
  CHECK(projection_sha256(baseline()) != projection_sha256(observed));
}

TEST_CASE("diff: capabilities gained only in a nested user namespace are marked namespaced",
          "[projection]") {
  auto observed = baseline();
  observed.capabilities.effective = ~0ull >> 23;
  CapabilitySets nested;
  nested.effective = observed.capabilities.effective;
  const auto f = only(diff(baseline(), observed, nested));
  CHECK(f.direction == Direction::escalation);
  CHECK(f.namespaced);
}

TEST_CASE("diff: raised and removed limits are escalations, lowered ones narrowing",
          "[projection]") {
  auto raised = baseline();
  raised.memory_max = 128 << 20;
  CHECK(only(diff(baseline(), raised)).direction == Direction::escalation);
  CHECK(only(diff(baseline(), raised)).field == "resources.memory_max");

  auto removed = baseline();
  removed.pids_max.reset();
  CHECK(only(diff(baseline(), removed)).direction == Direction::escalation);

  auto lowered = baseline();
  lowered.cpu_max = "25000 100000";
  CHECK(only(diff(baseline(), lowered)).direction == Direction::narrowing);
  CHECK(comparison_verdict(diff(baseline(), lowered)) == "narrowed");
}

TEST_CASE("diff: host namespaces, lost NNP, weaker seccomp and visible masked paths escalate",
          "[projection]") {
  auto observed = baseline();
  observed.namespaces["network"] = "host";
  observed.no_new_privileges = false;
  observed.seccomp = "disabled";
  observed.masked_paths.clear();
  observed.root_readonly = false;
  observed.uid = 0;
  auto findings = diff(baseline(), observed);
  REQUIRE(findings.size() == 6);
  for (const auto& f : findings) {
    INFO(f.field);
    CHECK(f.direction == Direction::escalation);
  }
  CHECK(comparison_verdict(findings) == "drifted");
}

TEST_CASE("diff: a different non-root uid is a change", "[projection]") {
  auto observed = baseline();
  observed.uid = 1001;
  const auto f = only(diff(baseline(), observed));
  CHECK(f.field == "user.uid");
  CHECK(f.direction == Direction::change);
  CHECK(comparison_verdict({f}) == "drifted");
}

TEST_CASE("diff: a raised hard rlimit is an escalation", "[projection]") {
  auto observed = baseline();
  observed.rlimits["RLIMIT_NOFILE"].hard = std::nullopt;
  const auto f = only(diff(baseline(), observed));
  CHECK(f.field == "rlimits.RLIMIT_NOFILE");
  CHECK(f.direction == Direction::escalation);
}
