#include "sandbox/engines.hpp"

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/canonical_json.hpp"
#include "common/file_io.hpp"
#include "observe/proc_reader.hpp"
#include "sandbox/discovery.hpp"
#include "support/temp_dir.hpp"

// Who launched a container and by which names, from what the engines write:
// fixtures copied from this machine's real Podman 4.3 (a `podman run --name
// agent-7` container: its containers.json, bundle config.json and crun
// status) and containerd 1.6 (a `ctr run --annotation …` container with the
// CRI annotations: its runc state.json and bundle config.json).

using driftwatch::testing::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;
namespace sandbox = driftwatch::sandbox;

namespace {

const fs::path kFixtures = fs::path(DRIFTWATCH_FIXTURES) / "engines";
constexpr const char* kPodmanId =
    "92e3c6a2b27866f34714af8f9009fd0bd5a16ad1e309cb8b4e82ad8dd709da98";

std::string fixture(const fs::path& relative) {
  auto text = driftwatch::read_regular_file(kFixtures / relative, 1 << 20, "fixture");
  REQUIRE(text.has_value());
  return *text;
}

json fixture_json(const fs::path& relative) {
  return json::parse(fixture(relative));
}

}  // namespace

TEST_CASE("engines: Podman's containers.json names a container by what --name gave", "[sandbox]") {
  const auto names = sandbox::parse_podman_containers(fixture("podman/containers.json"), "f");
  REQUIRE(names.has_value());
  REQUIRE(names->size() == 1);
  CHECK(names->at(kPodmanId) == std::vector<std::string>{"agent-7"});
}

TEST_CASE("engines: containers.json entries that are not well formed contribute what is valid",
          "[sandbox]") {
  const auto names = sandbox::parse_podman_containers(R"([
    {"id": "a", "names": ["z", "b", "z", "a", "bad name", "", 7, "ok\u0001"]},
    {"id": 5, "names": ["x"]}, {"names": ["y"]}, {"id": "c", "names": "c1"},
    {"id": "d", "names": []}, 17, null, "e"])",
                                                      "f");
  REQUIRE(names.has_value());
  // "a" itself is its id, not a name; "bad name" has a space; 7 is not text.
  CHECK(*names == sandbox::NamesById{{"a", {"b", "z"}}});
}

TEST_CASE("engines: a containers.json that is not an array of containers is an error naming it",
          "[sandbox]") {
  for (const char* text : {"{}", "\"x\"", "[", "", "\xef\xbb\xbf[]"}) {
    const auto names =
        sandbox::parse_podman_containers(text, "/s/overlay-containers/containers.json");
    REQUIRE_FALSE(names.has_value());
    CHECK_THAT(names.error().message, Catch::Contains("containers.json"));
  }
}

TEST_CASE("engines: a Podman bundle says libpod, and has no Kubernetes name", "[sandbox]") {
  const auto identity = sandbox::bundle_identity(fixture_json("podman/config.json"));
  CHECK(identity.podman);
  CHECK_FALSE(identity.cri_sandbox);
  CHECK_FALSE(identity.kubernetes_name.has_value());
}

TEST_CASE("engines: a CRI container is named <namespace>/<pod>/<container>", "[sandbox]") {
  const auto identity = sandbox::bundle_identity(fixture_json("containerd/config.json"));
  CHECK_FALSE(identity.podman);
  CHECK_FALSE(identity.cri_sandbox);
  REQUIRE(identity.kubernetes_name.has_value());
  CHECK(*identity.kubernetes_name == "agents/pod-7/agent");
}

TEST_CASE("engines: a pod's pause container is a CRI sandbox and gets no name", "[sandbox]") {
  json config = fixture_json("containerd/config.json");
  config["annotations"]["io.kubernetes.cri.container-type"] = "sandbox";
  const auto identity = sandbox::bundle_identity(config);
  CHECK(identity.cri_sandbox);
  CHECK_FALSE(identity.kubernetes_name.has_value());
}

TEST_CASE(
    "engines: annotations of the wrong type or with a slash in a part give no Kubernetes name",
    "[sandbox]") {
  const auto kube = [](json annotations) {
    return sandbox::bundle_identity(json{{"annotations", std::move(annotations)}}).kubernetes_name;
  };
  const json good = {{"io.kubernetes.cri.sandbox-namespace", "ns"},
                     {"io.kubernetes.cri.sandbox-name", "pod"},
                     {"io.kubernetes.cri.container-name", "c"}};
  CHECK(kube(good) == std::optional<std::string>("ns/pod/c"));
  for (const char* key : {"io.kubernetes.cri.sandbox-namespace", "io.kubernetes.cri.sandbox-name",
                          "io.kubernetes.cri.container-name"}) {
    for (const json& bad :
         {json(7), json(nullptr), json(""), json("a/b"), json("a b"), json::array({"x"})}) {
      json annotations = good;
      annotations[key] = bad;
      CHECK_FALSE(kube(annotations).has_value());
    }
    json missing = good;
    missing.erase(key);
    CHECK_FALSE(kube(missing).has_value());
  }
  CHECK_FALSE(sandbox::bundle_identity(json::array()).podman);
  CHECK_FALSE(sandbox::bundle_identity(json{{"annotations", "libpod"}}).podman);
  CHECK_FALSE(
      sandbox::bundle_identity(json{{"annotations", {{"io.container.manager", 1}}}}).podman);
}

TEST_CASE("engines: apply_identity makes a libpod container in a runc or crun root Podman's",
          "[sandbox]") {
  const sandbox::NamesById podman_names{{kPodmanId, {"agent-7"}}};
  const auto identity = sandbox::bundle_identity(fixture_json("podman/config.json"));
  for (const char* runtime : {"crun", "runc"}) {
    sandbox::SandboxRef ref;
    ref.sandbox_id = kPodmanId;
    ref.runtime = ref.engine = runtime;
    sandbox::apply_identity(ref, identity, podman_names);
    CHECK(ref.engine == "podman");
    CHECK(ref.names == std::vector<std::string>{"agent-7"});
  }
  // Not in containers.json (another storage, or not written yet): Podman's,
  // by its id only.
  sandbox::SandboxRef unnamed;
  unnamed.sandbox_id = "other";
  unnamed.runtime = unnamed.engine = "crun";
  sandbox::apply_identity(unnamed, identity, podman_names);
  CHECK(unnamed.engine == "podman");
  CHECK(unnamed.names.empty());
  // A bare runc container keeps its engine, even when an id matches.
  sandbox::SandboxRef bare;
  bare.sandbox_id = kPodmanId;
  bare.runtime = bare.engine = "runc";
  sandbox::apply_identity(bare, sandbox::BundleIdentity{}, podman_names);
  CHECK(bare.engine == "runc");
  CHECK(bare.names.empty());
}

TEST_CASE("engines: read_podman_names reads each storage driver's containers.json", "[sandbox]") {
  TempDir storage("podman-storage");
  storage.write("overlay-containers/containers.json", fixture("podman/containers.json"));
  storage.write("vfs-containers/containers.json", R"([{"id": "v", "names": ["vfs-box"]}])");
  storage.write("overlay-images/images.json", R"([{"id": "i", "names": ["img"]}])");
  std::vector<std::string> problems;
  const auto names =
      sandbox::read_podman_names({storage.path(), storage.path() / "missing"}, problems);
  CHECK(problems.empty());
  CHECK(names == sandbox::NamesById{{kPodmanId, {"agent-7"}}, {"v", {"vfs-box"}}});
}

TEST_CASE("engines: a containers.json that is a link, a FIFO or damaged is a problem, not names",
          "[sandbox]") {
  TempDir storage("podman-storage");
  storage.write("elsewhere.json", R"([{"id": "x", "names": ["linked"]}])");
  fs::create_directories(storage.path() / "overlay-containers");
  fs::create_symlink(storage.path() / "elsewhere.json",
                     storage.path() / "overlay-containers" / "containers.json");
  storage.write("vfs-containers/containers.json", "[{");
  std::vector<std::string> problems;
  const auto names = sandbox::read_podman_names({storage.path()}, problems);
  CHECK(names.empty());
  REQUIRE(problems.size() == 2);
}

TEST_CASE("engines: containerd's namespaces under its runc root are found, engine containerd",
          "[sandbox]") {
  // The fixture /proc has `sleep` as pid 4321, started at tick 65097.
  TempDir roots("containerd-roots");
  json state = fixture_json("containerd/state.json");
  state["init_process_pid"] = 4321;
  state["init_process_start"] = 65097;
  roots.write("containerd/dwtest/ctr-agent/state.json", state.dump());
  fs::create_directories(roots.path() / "containerd" / "empty-namespace");
  sandbox::DiscoveryRoots where;
  where.runc_roots = {roots.path() / "runc"};
  where.crun_roots = {};
  where.containerd_roots = {roots.path() / "containerd"};
  const driftwatch::observe::ProcReader proc(fs::path(DRIFTWATCH_FIXTURES) / "proc");
  const auto found = sandbox::find_container(where, "ctr-agent", proc);
  REQUIRE(found.has_value());
  CHECK(found->engine == "containerd");
  CHECK(found->runtime == "runc");
  CHECK(found->first_process.pid == 4321);
  REQUIRE(found->bundle.has_value());
  CHECK(*found->bundle == "/tmp/ctd/state/io.containerd.runtime.v2.task/dwtest/ctr-agent");
  const auto listed = sandbox::list_containers(where, proc);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].sandbox_id == "ctr-agent");
  CHECK(listed[0].engine == "containerd");
  const auto missing = sandbox::find_container(where, "nope", proc);
  REQUIRE_FALSE(missing.has_value());
  CHECK_THAT(missing.error().message,
             Catch::Contains((roots.path() / "containerd" / "*").string()));
}
