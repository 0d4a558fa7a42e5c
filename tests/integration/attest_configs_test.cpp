// For each of eight OCI configs, under runc and under crun: `driftwatch diff`
// of the config against its own running container says `attested`, with
// equal hashes. This is the claim the whole tool rests on: the declared and
// observed projections agree byte for byte when the runtime honoured the
// config.

#include <functional>

#include <catch2/catch.hpp>

#include "integration/cli.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"

using namespace driftwatch::testing;
using nlohmann::json;

namespace {

struct ConfigCase {
  const char* name;
  std::function<void(OciBundle&)> apply;
};

const json kNoCaps = {{"bounding", json::array()},
                      {"effective", json::array()},
                      {"permitted", json::array()},
                      {"inheritable", json::array()},
                      {"ambient", json::array()}};

std::vector<ConfigCase> config_cases() {
  return {
      {"default spec", [](OciBundle&) {}},
      {"no capabilities and uid 1000",
       [](OciBundle& b) {
         b.config()["process"]["capabilities"] = kNoCaps;
         b.config()["process"]["user"] = {{"uid", 1000}, {"gid", 1000}};
       }},
      {"a seccomp profile",
       [](OciBundle& b) {
         b.config()["linux"]["seccomp"] = {
             {"defaultAction", "SCMP_ACT_ALLOW"},
             {"architectures", {"SCMP_ARCH_X86_64"}},
             {"syscalls", {{{"names", {"syslog", "kexec_load"}}, {"action", "SCMP_ACT_ERRNO"}}}}};
       }},
      {"memory, pids and cpu limits",
       [](OciBundle& b) {
         b.config()["linux"]["resources"] = {{"memory", {{"limit", 64 << 20}}},
                                             {"pids", {{"limit", 32}}},
                                             {"cpu", {{"quota", 50000}, {"period", 100000}}}};
       }},
      {"NNP off with extra capabilities",
       [](OciBundle& b) {
         b.config()["process"]["noNewPrivileges"] = false;
         auto& caps = b.config()["process"]["capabilities"];
         for (const char* set : {"bounding", "effective", "permitted", "inheritable", "ambient"}) {
           if (!caps.contains(set)) caps[set] = json::array();
           caps[set].push_back("CAP_NET_ADMIN");
           caps[set].push_back("CAP_SYS_TIME");
         }
       }},
      {"writable root with the host network",
       [](OciBundle& b) {
         b.config()["root"]["readonly"] = false;
         auto& ns = b.config()["linux"]["namespaces"];
         json kept = json::array();
         for (const auto& entry : ns)
           if (entry["type"] != "network") kept.push_back(entry);
         ns = kept;
       }},
      {"a user namespace with uid/gid mappings",
       [](OciBundle& b) { b.enable_user_namespace(100000, 65536); }},
      {"custom masked and read-only paths",
       [](OciBundle& b) {
         b.config()["linux"]["maskedPaths"] = {"/proc/kcore", "/proc/keys",
                                               "/etc/secret-that-does-not-exist", "/sys/firmware"};
         b.config()["linux"]["readonlyPaths"] = {"/proc/sys", "/etc", "/no/such/dir"};
       }},
  };
}

void expect_attested(const char* runtime, const ConfigCase& config_case) {
  auto bundle = OciBundle::with_default_spec();
  config_case.apply(bundle);
  bundle.write_config();
  auto container = value_or_throw(
      Container::start(runtime, bundle, unique_container_id(std::string(runtime) + "-attest")));
  auto diff =
      driftwatch_json({"diff", "--oci-config", bundle.config_path().string(), "--oci",
                       container.id(), "--runc-root", "/run/runc", "--crun-root", "/run/crun"},
                      0);
  INFO(runtime << " / " << config_case.name << ": " << diff.dump());
  CHECK(diff["verdict"] == "attested");
  CHECK(diff["findings"] == json::array());
  CHECK(diff["declared_sha256"] == diff["observed_sha256"]);
  CHECK(diff["declared_sha256"].get<std::string>().size() == 64);
}

}  // namespace

TEST_CASE("attestation: eight OCI configs run under runc each attest against their container",
          "[root][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) {
    DW_SKIP(*why);
  }
  for (const auto& c : config_cases()) {
    DYNAMIC_SECTION("runc: " << c.name) {
      expect_attested("runc", c);
    }
  }
}

TEST_CASE("attestation: eight OCI configs run under crun each attest against their container",
          "[root][crun][integration]") {
  if (auto why = missing_requirement({"root", "crun", "busybox"})) {
    DW_SKIP(*why);
  }
  for (const auto& c : config_cases()) {
    DYNAMIC_SECTION("crun: " << c.name) {
      expect_attested("crun", c);
    }
  }
}

TEST_CASE("attestation: the declared hash does not depend on the runtime that ran it",
          "[root][runc][crun][integration]") {
  if (auto why = missing_requirement({"root", "runc", "crun", "busybox"})) {
    DW_SKIP(*why);
  }
  auto bundle = OciBundle::with_default_spec();
  auto project = driftwatch_json({"project", "--oci-config", bundle.config_path().string()}, 0);
  auto runc = value_or_throw(Container::start("runc", bundle, unique_container_id("runc-same")));
  auto crun = value_or_throw(Container::start("crun", bundle, unique_container_id("crun-same")));
  auto a = driftwatch_json(
      {"diff", "--oci-config", bundle.config_path().string(), "--oci", runc.id()}, 0);
  auto b = driftwatch_json(
      {"diff", "--oci-config", bundle.config_path().string(), "--oci", crun.id()}, 0);
  CHECK(a["observed_sha256"] == b["observed_sha256"]);
  CHECK(a["declared_sha256"] == project["declared_sha256"]);
}
