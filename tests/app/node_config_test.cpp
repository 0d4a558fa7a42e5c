#include "app/node_config.hpp"
#include "support/fifo_deadline.hpp"

using driftwatch::testing::within_deadline;

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <type_traits>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using Catch::Matchers::Contains;
using driftwatch::app::load_node_config;
using driftwatch::app::NodeConfig;
using driftwatch::app::parse_node_config;
using driftwatch::app::to_json;
using nlohmann::json;

namespace {

constexpr std::string_view kWhat = "config /etc/dw.json";

NodeConfig parsed(std::string_view text) {
  const auto result = parse_node_config(text, kWhat);
  INFO((result ? std::string() : result.error().message));
  REQUIRE(result.has_value());
  return *result;
}

std::string parse_error(std::string_view text) {
  const auto result = parse_node_config(text, kWhat);
  INFO(text);
  REQUIRE_FALSE(result.has_value());
  return result.error().message;
}

std::string host_name() {
  char buffer[256] = {};
  REQUIRE(::gethostname(buffer, sizeof buffer - 1) == 0);
  return buffer;
}

// A directory under the system temp dir, removed when the test ends.
struct TempDir {
  TempDir() {
    std::random_device random;
    path = std::filesystem::temp_directory_path() /
           ("driftwatch-node-config-test-" + std::to_string(random()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::filesystem::path path;
};

// The example of DESIGN.md "Node configuration", with the host name filled in.
const char* const kContractExample = R"({
  "node_name": "node-1.example",
  "listen": "127.0.0.1:9477",
  "state_dir": "/var/lib/driftwatch",
  "trust": "/etc/driftwatch/trust.json",
  "policy": null,
  "launch_journals": [],
  "discovery": {"runc_roots": ["/run/runc"], "crun_roots": ["/run/crun"],
                "containerd_roots": ["/run/containerd/runc"],
                "podman_storage": ["/var/lib/containers/storage"], "cgroup_globs": []},
  "sweep_interval_seconds": 10,
  "unattested_grace_seconds": 30,
  "event_max_age_seconds": 86400,
  "checkpoint_interval_seconds": 10,
  "probes": true,
  "syscall_probes": false
})";

}  // namespace

TEST_CASE("node config: no file means every default, named after the host", "[app]") {
  const auto loaded = load_node_config(std::nullopt);
  REQUIRE(loaded.has_value());
  CHECK(loaded->node_name == host_name());
  json expected = json::parse(kContractExample);
  expected["node_name"] = host_name();
  CHECK(to_json(*loaded) == expected);
}

TEST_CASE("node config: an empty document gives the contract's defaults", "[app]") {
  const NodeConfig config = parsed("{}");
  json expected = json::parse(kContractExample);
  expected["node_name"] = host_name();
  CHECK(to_json(config) == expected);
  CHECK(config.listen == "127.0.0.1:9477");
  CHECK(config.state_dir == "/var/lib/driftwatch");
  CHECK_FALSE(config.policy.has_value());
  CHECK(config.probes);
  CHECK_FALSE(config.syscall_probes);
}

TEST_CASE("node config: the contract's example document parses to itself", "[app]") {
  const NodeConfig config = parsed(kContractExample);
  CHECK(config.node_name == "node-1.example");
  CHECK(to_json(config) == json::parse(kContractExample));
}

TEST_CASE("node config: every key is read", "[app]") {
  const json document = {
      {"node_name", "gpu_node-7"},
      {"listen", "[::1]:9999"},
      {"state_dir", "/srv/dw"},
      {"trust", "/srv/dw/trust.json"},
      {"policy", "/etc/driftwatch/strict-agent.json"},
      {"launch_journals", {"/var/log/cp/launches.jsonl", "/var/log/cp/grants.jsonl"}},
      {"discovery",
       {{"runc_roots", {"/run/runc", "/run/containerd/runc/k8s.io"}},
        {"crun_roots", json::array()},
        {"containerd_roots", {"/run/k3s/containerd/runc"}},
        {"podman_storage", json::array()},
        {"cgroup_globs", {"/sys/fs/cgroup/agents/*"}}}},
      {"sweep_interval_seconds", 3},
      {"unattested_grace_seconds", 0},
      {"event_max_age_seconds", 600},
      {"checkpoint_interval_seconds", 60},
      {"probes", false},
      {"syscall_probes", true},
  };
  const NodeConfig config = parsed(document.dump());
  CHECK(config.node_name == "gpu_node-7");
  CHECK(config.listen == "[::1]:9999");
  CHECK(config.state_dir == "/srv/dw");
  CHECK(config.trust == "/srv/dw/trust.json");
  REQUIRE(config.policy.has_value());
  CHECK(*config.policy == "/etc/driftwatch/strict-agent.json");
  CHECK(config.launch_journals == std::vector<std::filesystem::path>{"/var/log/cp/launches.jsonl",
                                                                     "/var/log/cp/grants.jsonl"});
  CHECK(config.runc_roots ==
        std::vector<std::filesystem::path>{"/run/runc", "/run/containerd/runc/k8s.io"});
  CHECK(config.crun_roots.empty());
  CHECK(config.containerd_roots == std::vector<std::filesystem::path>{"/run/k3s/containerd/runc"});
  CHECK(config.podman_storage.empty());
  CHECK(config.cgroup_globs == std::vector<std::string>{"/sys/fs/cgroup/agents/*"});
  CHECK(config.sweep_interval_seconds == 3);
  CHECK(config.unattested_grace_seconds == 0);
  CHECK(config.event_max_age_seconds == 600);
  CHECK(config.checkpoint_interval_seconds == 60);
  CHECK_FALSE(config.probes);
  CHECK(config.syscall_probes);
  CHECK(to_json(config) == document);
}

TEST_CASE("node config: a discovery object with some keys keeps the other defaults", "[app]") {
  const NodeConfig config = parsed(R"({"discovery": {"cgroup_globs": ["/sys/fs/cgroup/a*"]}})");
  CHECK(config.runc_roots == std::vector<std::filesystem::path>{"/run/runc"});
  CHECK(config.crun_roots == std::vector<std::filesystem::path>{"/run/crun"});
  CHECK(config.containerd_roots == std::vector<std::filesystem::path>{"/run/containerd/runc"});
  CHECK(config.podman_storage == std::vector<std::filesystem::path>{"/var/lib/containers/storage"});
  CHECK(config.cgroup_globs == std::vector<std::string>{"/sys/fs/cgroup/a*"});
}

TEST_CASE("node config: an unknown key is named by its dotted path", "[app]") {
  CHECK_THAT(parse_error(R"({"discovery": {"runc_root": ["/run/runc"]}})"),
             Contains("config /etc/dw.json: unknown key 'discovery.runc_root'"));
  CHECK_THAT(parse_error(R"({"sweep_interval": 5})"),
             Contains("config /etc/dw.json: unknown key 'sweep_interval'"));
}

TEST_CASE("node config: a wrong type names the key and the expected type", "[app]") {
  CHECK(parse_error(R"({"sweep_interval_seconds": "10"})") ==
        "config /etc/dw.json: key 'sweep_interval_seconds' must be an integer number of seconds, "
        "not a string");
  CHECK_THAT(parse_error(R"({"sweep_interval_seconds": 2.5})"),
             Contains("'sweep_interval_seconds'") && Contains("not a fractional number"));
  CHECK_THAT(parse_error(R"({"probes": "yes"})"), Contains("key 'probes' must be a boolean"));
  CHECK_THAT(parse_error(R"({"syscall_probes": 1})"),
             Contains("key 'syscall_probes' must be a boolean"));
  CHECK_THAT(parse_error(R"({"listen": 9477})"), Contains("key 'listen' must be a string"));
  CHECK_THAT(parse_error(R"({"policy": 1})"),
             Contains("key 'policy' must be null (the embedded default) or a path string"));
  CHECK_THAT(parse_error(R"({"launch_journals": "/var/log/j"})"),
             Contains("key 'launch_journals' must be an array"));
  CHECK_THAT(parse_error(R"({"launch_journals": ["/a", 2]})"),
             Contains("key 'launch_journals[1]' must be a string, not an integer"));
  CHECK_THAT(parse_error(R"({"discovery": {"crun_roots": [null]}})"),
             Contains("key 'discovery.crun_roots[0]' must be a string, not null"));
  CHECK_THAT(parse_error(R"({"discovery": []})"),
             Contains("key 'discovery' must be an object, not an array"));
  CHECK_THAT(parse_error("[]"), Contains("must be a JSON object"));
}

TEST_CASE("node config: values are checked", "[app]") {
  CHECK_THAT(parse_error(R"({"listen": "9477"})"),
             Contains("key 'listen'") && Contains("HOST:PORT"));
  CHECK_THAT(parse_error(R"({"listen": "127.0.0.1:70000"})"), Contains("key 'listen'"));
  CHECK_THAT(parse_error(R"({"sweep_interval_seconds": 0})"),
             Contains("key 'sweep_interval_seconds' must be at least 1, not 0"));
  CHECK_THAT(parse_error(R"({"checkpoint_interval_seconds": -5})"),
             Contains("key 'checkpoint_interval_seconds' must be at least 1"));
  CHECK_THAT(parse_error(R"({"event_max_age_seconds": 0})"),
             Contains("key 'event_max_age_seconds' must be at least 1"));
  CHECK_THAT(parse_error(R"({"unattested_grace_seconds": -1})"),
             Contains("key 'unattested_grace_seconds' must be at least 0"));
  CHECK_THAT(parse_error(R"({"sweep_interval_seconds": 18446744073709551615})"),
             Contains("must be at most"));
  CHECK_THAT(parse_error(R"({"state_dir": "var/lib/driftwatch"})"),
             Contains("key 'state_dir' must be an absolute path"));
  CHECK_THAT(parse_error(R"({"trust": ""})"), Contains("key 'trust' must be a path"));
  CHECK_THAT(parse_error(R"({"state_dir": "/srv/a\u0000b"})"), Contains("NUL"));
  CHECK_THAT(parse_error(R"({"node_name": "node 1"})"), Contains("key 'node_name'"));
  CHECK_THAT(parse_error(R"({"node_name": ""})"), Contains("key 'node_name'"));
  CHECK_THAT(parse_error(R"({"node_name": "node/1"})"), Contains("key 'node_name'"));
  CHECK_THAT(parse_error(json{{"node_name", std::string(65, 'n')}}.dump()),
             Contains("key 'node_name'"));
  CHECK(parsed(json{{"node_name", std::string(64, 'n')}}.dump()).node_name == std::string(64, 'n'));
}

TEST_CASE("node config: JSON that does not parse strictly is refused naming the file", "[app]") {
  CHECK_THAT(parse_error(R"({"probes": true,})"), Contains("config /etc/dw.json"));
  CHECK_THAT(parse_error(R"({"probes": true, "probes": false})"), Contains("config /etc/dw.json"));
  CHECK_THAT(parse_error(R"({"probes": true} x)"), Contains("config /etc/dw.json"));
}

TEST_CASE("node config: load reads a file, and names a file it cannot read", "[app]") {
  TempDir dir;
  const auto file = dir.path / "dw.json";
  std::ofstream(file) << R"({"listen": "127.0.0.1:0", "probes": false})";
  const auto loaded = load_node_config(file);
  INFO((loaded ? std::string() : loaded.error().message));
  REQUIRE(loaded.has_value());
  CHECK(loaded->listen == "127.0.0.1:0");
  CHECK_FALSE(loaded->probes);

  const auto missing = load_node_config(dir.path / "absent.json");
  REQUIRE_FALSE(missing.has_value());
  CHECK_THAT(missing.error().message,
             Contains("cannot read config " + (dir.path / "absent.json").string()) &&
                 Contains("No such file"));

  const auto directory = load_node_config(dir.path);
  REQUIRE_FALSE(directory.has_value());
  CHECK_THAT(directory.error().message, Contains("config " + dir.path.string()));

  std::ofstream(dir.path / "bad.json") << R"({"discovery": {"runc_root": []}})";
  const auto bad = load_node_config(dir.path / "bad.json");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message.starts_with("config " + (dir.path / "bad.json").string() +
                                        ": unknown key 'discovery.runc_root'"));
}

namespace {}  // namespace

TEST_CASE("node config: load refuses a FIFO at once, a link and a directory, naming them",
          "[app]") {
  TempDir dir;
  const auto fifo = dir.path / "fifo.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const auto start = std::chrono::steady_clock::now();
  const auto from_fifo = within_deadline([&] { return load_node_config(fifo); }, fifo);
  INFO("load_node_config blocked in open(2) on the FIFO until a writer came");
  REQUIRE(from_fifo.has_value());
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  REQUIRE_FALSE(from_fifo->has_value());
  CHECK(from_fifo->error().message == "config " + fifo.string() + " is a FIFO, not a regular file");

  // A link to a valid config: refused all the same, not followed.
  const auto real = dir.path / "real.json";
  std::ofstream(real) << R"({"probes": false})";
  REQUIRE(load_node_config(real).has_value());
  const auto link = dir.path / "dw.json";
  std::filesystem::create_symlink(real, link);
  const auto linked = load_node_config(link);
  REQUIRE_FALSE(linked.has_value());
  CHECK(linked.error().message ==
        "config " + link.string() + " is a symbolic link; name the file itself");

  const auto directory = load_node_config(dir.path);
  REQUIRE_FALSE(directory.has_value());
  CHECK(directory.error().message ==
        "config " + dir.path.string() + " is a directory, not a regular file");
}

TEST_CASE("node config: the example in deploy/examples parses to itself, every key given",
          "[app]") {
  const auto path = std::filesystem::path(DRIFTWATCH_FIXTURES).parent_path().parent_path() /
                    "deploy" / "examples" / "node.json";
  auto config = load_node_config(path);
  INFO((config ? "" : config.error().message));
  REQUIRE(config);
  CHECK(config->node_name == "node-1");
  CHECK(config->state_dir == "/var/lib/driftwatch");
  CHECK_FALSE(config->policy);
  std::ifstream in(path);
  const json example = json::parse(in);
  // Every key of the effective config is written out in the example, with
  // the value it takes: nothing in it is ignored, nothing is left implicit.
  CHECK(to_json(*config) == example);
}
