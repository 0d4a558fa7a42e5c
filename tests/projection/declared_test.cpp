#include <catch2/catch.hpp>

#include "projection/declared.hpp"

using driftwatch::projection::declared_projection;
using driftwatch::projection::to_json;
using nlohmann::json;

namespace {

// The config `runc spec` (runc 1.1) writes, trimmed to what the projection reads.
json runc_spec_config() {
  return json::parse(R"({
    "ociVersion": "1.0.2-dev",
    "process": {
      "user": {"uid": 0, "gid": 0},
      "capabilities": {
        "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
      },
      "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
      "noNewPrivileges": true
    },
    "root": {"path": "rootfs", "readonly": true},
    "linux": {
      "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                     {"type": "mount"}, {"type": "cgroup"}],
      "maskedPaths": ["/proc/kcore", "/sys/firmware"],
      "readonlyPaths": ["/proc/sys", "/proc/kcore"]
    }
  })");
}

}  // namespace

TEST_CASE("declared projection: runc spec's ambient list without inheritable ends up empty",
          "[projection]") {
  auto p = declared_projection(runc_spec_config());
  REQUIRE(p);
  auto doc = to_json(*p);
  CHECK(doc["capabilities"]["ambient"] == json::array());
  CHECK(doc["capabilities"]["effective"] ==
        json({"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}));
  CHECK(doc["no_new_privileges"] == true);
  CHECK(doc["root_readonly"] == true);
  CHECK(doc["namespaces"]["network"] == "private");
  CHECK(doc["namespaces"]["user"] == "host");
  CHECK(doc["namespaces"]["time"] == "host");
  CHECK(doc["rlimits"]["RLIMIT_NOFILE"] == json({1024, 1024}));
  CHECK(doc["resources"]["memory_max"].is_null());
  CHECK(doc["seccomp"] == "disabled");
}

TEST_CASE("declared projection: a masked path is not also listed read-only", "[projection]") {
  auto p = declared_projection(runc_spec_config());
  REQUIRE(p);
  CHECK(p->masked_paths.contains("/proc/kcore"));
  CHECK_FALSE(p->readonly_paths.contains("/proc/kcore"));
  CHECK(p->readonly_paths.contains("/proc/sys"));
}

TEST_CASE("declared projection: a non-root user keeps only ambient capabilities after execve",
          "[projection]") {
  auto config = runc_spec_config();
  config["process"]["user"] = {{"uid", 1000}, {"gid", 1000}};
  config["process"]["capabilities"]["inheritable"] = {"CAP_KILL"};
  auto p = declared_projection(config);
  REQUIRE(p);
  auto doc = to_json(*p);
  CHECK(doc["user"]["uid"] == 1000);
  CHECK(doc["capabilities"]["ambient"] == json({"CAP_KILL"}));
  CHECK(doc["capabilities"]["effective"] == json({"CAP_KILL"}));
  CHECK(doc["capabilities"]["permitted"] == json({"CAP_KILL"}));
  CHECK(doc["capabilities"]["bounding"].size() == 3);
}

TEST_CASE("declared projection: uids are mapped through the user namespace", "[projection]") {
  auto config = runc_spec_config();
  config["linux"]["namespaces"].push_back({{"type", "user"}});
  config["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}};
  config["linux"]["gidMappings"] = {{{"containerID", 0}, {"hostID", 200000}, {"size", 65536}}};
  config["process"]["user"] = {{"uid", 5}, {"gid", 7}, {"additionalGids", {9}}};
  auto p = declared_projection(config);
  REQUIRE(p);
  CHECK(p->uid == 100005);
  CHECK(p->gid == 200007);
  CHECK(p->additional_gids == std::set<uint32_t>{200009});
  CHECK(p->namespaces["user"] == "private");

  config["process"]["user"]["uid"] = 70000;
  auto unmapped = declared_projection(config);
  REQUIRE_FALSE(unmapped);
  CHECK_THAT(unmapped.error().message, Catch::Contains("uid 70000"));
}

TEST_CASE("declared projection: resources are rounded as the kernel stores them", "[projection]") {
  auto config = runc_spec_config();
  config["linux"]["resources"] = {
      {"memory", {{"limit", 67108865}}}, {"pids", {{"limit", 32}}}, {"cpu", {{"quota", 50000}}}};
  auto p = declared_projection(config);
  REQUIRE(p);
  CHECK(p->memory_max == 67108864);
  CHECK(p->pids_max == 32);
  CHECK(p->cpu_max == "50000 100000");

  config["linux"]["resources"] = {{"memory", {{"limit", -1}}}, {"pids", {{"limit", 0}}}};
  auto unlimited = declared_projection(config);
  REQUIRE(unlimited);
  CHECK_FALSE(unlimited->memory_max);
  CHECK_FALSE(unlimited->pids_max);
}

TEST_CASE("declared projection: a seccomp section means a filter", "[projection]") {
  auto config = runc_spec_config();
  config["linux"]["seccomp"] = {{"defaultAction", "SCMP_ACT_ALLOW"}};
  auto p = declared_projection(config);
  REQUIRE(p);
  CHECK(p->seccomp == "filter");
}

TEST_CASE("declared projection: documents that are not OCI configs are refused by field",
          "[projection]") {
  CHECK_FALSE(declared_projection(json::array()));
  auto no_version = declared_projection(json{{"process", json::object()}});
  REQUIRE_FALSE(no_version);
  CHECK_THAT(no_version.error().message, Catch::Contains("ociVersion"));

  auto config = runc_spec_config();
  config["process"]["capabilities"]["bounding"].push_back("CAP_FLY");
  auto bad_cap = declared_projection(config);
  REQUIRE_FALSE(bad_cap);
  CHECK_THAT(bad_cap.error().message, Catch::Contains("CAP_FLY"));

  config = runc_spec_config();
  config["process"]["noNewPrivileges"] = "yes";
  auto bad_type = declared_projection(config);
  REQUIRE_FALSE(bad_type);
  CHECK_THAT(bad_type.error().message, Catch::Contains("process.noNewPrivileges"));

  config = runc_spec_config();
  config["linux"]["namespaces"].push_back({{"type", "moon"}});
  CHECK_FALSE(declared_projection(config));
}

TEST_CASE("declared projection: id mappings that are not objects are an error, not an exception",
          "[projection]") {
  // This config used to throw out of declared_projection (nlohmann's
  // value() on a number) and take the daemon down.
  const json crashing = json::parse(
      R"({"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"user"}],"uidMappings":[5]}})");
  driftwatch::Result<driftwatch::projection::Projection> p;
  REQUIRE_NOTHROW(p = declared_projection(crashing));
  REQUIRE_FALSE(p);
  CHECK_THAT(p.error().message, Catch::Contains("uidMappings") && Catch::Contains("number"));

  auto config = runc_spec_config();
  config["linux"]["namespaces"].push_back({{"type", "user"}});
  config["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}};
  for (const json& entry :
       {json("0 100000 65536"), json::array({0, 100000, 65536}), json(nullptr), json(true)}) {
    INFO("gidMappings entry: " << entry.dump());
    config["linux"]["gidMappings"] = json::array({entry});
    REQUIRE_NOTHROW(p = declared_projection(config));
    REQUIRE_FALSE(p);
    CHECK_THAT(p.error().message, Catch::Contains("gidMappings"));
  }
  // Fields of the wrong type inside an object entry.
  config["linux"]["gidMappings"] = {{{"containerID", "0"}, {"hostID", 200000}, {"size", 65536}}};
  REQUIRE_NOTHROW(p = declared_projection(config));
  REQUIRE_FALSE(p);
  CHECK_THAT(p.error().message, Catch::Contains("gidMappings[].containerID"));
  config["linux"]["gidMappings"] = {{{"hostID", 200000}, {"size", 65536}}};
  REQUIRE_NOTHROW(p = declared_projection(config));
  CHECK_FALSE(p);
}

TEST_CASE("declared projection: an rlimit type the kernel does not have is refused",
          "[projection]") {
  auto config = runc_spec_config();
  for (const char* type : {"RLIMIT_FLY", "rlimit_nofile", "NOFILE", "", "RLIMIT_NOFILE "}) {
    INFO("rlimit type: \"" << type << "\"");
    // Unsigned, as parsed from JSON text.
    config["process"]["rlimits"] = {{{"type", type}, {"hard", 1024u}, {"soft", 1024u}}};
    auto p = declared_projection(config);
    REQUIRE_FALSE(p);
    CHECK_THAT(p.error().message, Catch::Contains("process.rlimits has an unknown type") &&
                                      Catch::Contains("RLIMIT_"));
  }
  // Every kernel name is accepted.
  for (const char* type :
       {"RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
        "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
        "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK"}) {
    INFO("rlimit type: " << type);
    config["process"]["rlimits"] = {{{"type", type}, {"hard", 1024u}, {"soft", 512u}}};
    auto p = declared_projection(config);
    REQUIRE(p);
    CHECK(to_json(*p)["rlimits"][type] == json({512, 1024}));
  }
}

TEST_CASE("declared projection: never throws, whatever the types in the config", "[projection]") {
  // Every field the projection reads, set to each JSON type in turn.
  const std::vector<std::vector<std::string>> paths = {
      {"ociVersion"},
      {"process"},
      {"process", "user"},
      {"process", "user", "uid"},
      {"process", "user", "gid"},
      {"process", "user", "additionalGids"},
      {"process", "capabilities"},
      {"process", "capabilities", "bounding"},
      {"process", "capabilities", "ambient"},
      {"process", "noNewPrivileges"},
      {"process", "rlimits"},
      {"process", "apparmorProfile"},
      {"process", "selinuxLabel"},
      {"root"},
      {"root", "readonly"},
      {"linux"},
      {"linux", "namespaces"},
      {"linux", "uidMappings"},
      {"linux", "gidMappings"},
      {"linux", "seccomp"},
      {"linux", "maskedPaths"},
      {"linux", "readonlyPaths"},
      {"linux", "resources"},
      {"linux", "resources", "memory"},
      {"linux", "resources", "memory", "limit"},
      {"linux", "resources", "pids", "limit"},
      {"linux", "resources", "cpu", "quota"},
      {"linux", "resources", "cpu", "period"},
  };
  const std::vector<json> values = {json(nullptr),      json(true),
                                    json(-1),           json(uint64_t{18446744073709551615ull}),
                                    json(1.5),          json("x"),
                                    json::array(),      json::array({5}),
                                    json::array({"x"}), json::array({json::object()}),
                                    json::object(),     json{{"type", 5}}};
  auto base = runc_spec_config();
  base["linux"]["namespaces"].push_back({{"type", "user"}});
  for (const auto& path : paths) {
    for (const auto& value : values) {
      json config = base;
      json* at = &config;
      for (const auto& key : path) at = &(*at)[key];
      *at = value;
      INFO("config: " << config.dump());
      CHECK_NOTHROW(declared_projection(config));
    }
  }
}
