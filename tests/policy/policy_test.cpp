#include <fstream>

#include <catch2/catch.hpp>

#include "policy/policy.hpp"

using namespace driftwatch;
using nlohmann::json;

namespace {

std::string source_file(const std::string& relative) {
  std::ifstream in(std::string(DRIFTWATCH_FIXTURES) + "/../../" + relative);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

projection::Observation one_member(uint64_t effective, std::vector<std::string> argv) {
  projection::Observation obs;
  projection::MemberObservation m;
  m.pid = 42;
  m.status.cap_effective = effective;
  m.argv = std::move(argv);
  obs.members.push_back(m);
  return obs;
}

projection::Projection quiet_projection() {
  projection::Projection p;
  for (const auto& kind : projection::kNamespaces) p.namespaces[kind.projection_key] = "private";
  p.no_new_privileges = true;
  p.seccomp = "filter";
  p.root_readonly = true;
  p.memory_max = 64 << 20;
  p.pids_max = 64;
  return p;
}

}  // namespace

TEST_CASE("policy: the embedded default is policy/default.json and parses", "[policy]") {
  CHECK(policy::embedded_default_policy() == source_file("policy/default.json"));
  auto p = policy::load_policy(std::nullopt);
  REQUIRE(p);
  CHECK(p->name == "default");
  CHECK(p->rules.size() == 3);
}

TEST_CASE("policy: the default policy is quiet for an ordinary container", "[policy]") {
  auto p = policy::load_policy(std::nullopt);
  REQUIRE(p);
  auto obs = one_member(0x20000420, {"sleep", "3600"});  // runc spec's caps
  CHECK(policy::evaluate(*p, quiet_projection(), obs).empty());
}

TEST_CASE("policy: default rules fire on CAP_SYS_MODULE, the host PID namespace and the flag",
          "[policy]") {
  auto p = policy::load_policy(std::nullopt);
  REQUIRE(p);
  auto projection = quiet_projection();
  projection.namespaces["pid"] = "mixed";
  auto obs = one_member(1ull << 16, {"agent", "--allow-security-exceptions=yes"});
  auto findings = policy::evaluate(*p, projection, obs);
  REQUIRE(findings.size() == 3);
  CHECK(findings[0].field == "policy.no-cap-sys-module");
  CHECK(findings[0].observed == json({"CAP_SYS_MODULE"}));
  CHECK(findings[0].severity == "critical");
  CHECK(findings[0].controls == std::vector<std::string>{"AC-6", "CM-7"});
  CHECK(findings[1].field == "policy.no-host-pid-namespace");
  CHECK(findings[2].field == "policy.no-security-exception-flags");
  CHECK(findings[2].direction == projection::Direction::escalation);
}

TEST_CASE("policy: capabilities held only in a nested user namespace do not break the rule",
          "[policy]") {
  auto p = policy::load_policy(std::nullopt);
  REQUIRE(p);
  auto obs = one_member(~0ull >> 23, {"sleep"});
  obs.members[0].nested_user_namespace = true;
  CHECK(policy::evaluate(*p, quiet_projection(), obs).empty());
}

TEST_CASE("policy: strict-agent parses and catches a loose sandbox rule by rule", "[policy]") {
  auto p = policy::parse_policy(source_file("policy/strict-agent.json"), "strict-agent.json");
  REQUIRE(p);
  CHECK(p->name == "strict-agent");
  CHECK(policy::evaluate(*p, quiet_projection(), one_member(0, {"agent"})).empty());

  projection::Projection loose;  // nothing private, no NNP, no seccomp, no limits
  auto findings =
      policy::evaluate(*p, loose, one_member(1ull << 21, {"agent", "--debug", "--privileged=1"}));
  std::set<std::string> fired;
  for (const auto& f : findings) fired.insert(f.field);
  CHECK(fired == std::set<std::string>{"policy.no-dangerous-capabilities",
                                       "policy.no-new-privileges", "policy.seccomp-filter",
                                       "policy.no-host-network-or-pid", "policy.read-only-root",
                                       "policy.memory-at-most-128mib", "policy.pids-limit-set",
                                       "policy.no-debug-or-exception-flags"});
}

TEST_CASE("policy: a flag matches exactly or with a value, never as a substring", "[policy]") {
  auto p = policy::load_policy(std::nullopt);
  REQUIRE(p);
  auto hit = [&](std::string arg) {
    return !policy::evaluate(*p, quiet_projection(), one_member(0, {"agent", std::move(arg)}))
                .empty();
  };
  CHECK(hit("--allow-security-exceptions"));
  CHECK(hit("--allow-security-exceptions=all"));
  CHECK_FALSE(hit("--allow-security-exceptionsX"));
  CHECK_FALSE(hit("x--allow-security-exceptions"));
  // A huge argument (the kernel allows 128 KiB) is handled without trouble.
  CHECK(hit("--allow-security-exceptions=" + std::string(128 << 10, 'a')));
}

TEST_CASE("policy: bad policy documents are refused naming the rule and key", "[policy]") {
  auto err = [](const std::string& text) {
    auto p = policy::parse_policy(text, "p.json");
    REQUIRE_FALSE(p);
    return p.error().message;
  };
  std::string head = R"({"schema": "driftwatch.policy/v1", "rules": [)";
  std::string rule =
      R"({"id": "r1", "description": "d", "severity": "high", "controls": ["AC-6"], )";
  CHECK_THAT(err(head + rule + R"("require": {"capabilities_absent": ["CAP_FLY"]}}]})"),
             Catch::Contains("CAP_FLY"));
  CHECK_THAT(err(head + rule + R"("require": {"teleport": true}}]})"), Catch::Contains("teleport"));
  CHECK_THAT(err(head + rule + R"("require": {"pids_max_set": true}, "colour": 1}]})"),
             Catch::Contains("colour"));
  CHECK_THAT(err(head + rule + R"("require": {"argv_forbidden": ["--x=1"]}}]})"),
             Catch::Contains("--x=1"));
  CHECK_THAT(err(R"({"schema": "other", "rules": []})"), Catch::Contains("schema"));
  CHECK_THAT(err(head + rule + R"("require": {"pids_max_set": true}}, )" + rule +
                 R"("require": {"pids_max_set": true}}]})"),
             Catch::Contains("twice"));
}
