// The engines people run, on the real thing, watched by `driftwatch run` on
// its default discovery: Podman (rootful, its default runtime crun) and
// containerd (started by the test, with its own state dir and socket; its
// runc root is containerd's fixed /run/containerd/runc/<namespace>). Each
// container is found, named as its engine names it, attested against a
// launch event that uses that name, and drifted by the engine's own tools.
//
// No image registry is reachable: images are made here from the busybox
// rootfs of an OciBundle (`podman import` of its tar; a docker-archive of
// it for `ctr image import`). On this machine Podman's default rlimits
// (nofile 1048576) exceed the hard limit the test runs under (20000), and
// crun then refuses to start the container: `podman run` is given
// `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`.

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/file_io.hpp"
#include "common/sha256.hpp"
#include "integration/cli.hpp"
#include "integration/daemon_harness.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"
#include "support/wait.hpp"

using namespace driftwatch::testing;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr auto kCommandTimeout = std::chrono::seconds(120);
// The image both engines run, made here from a busybox rootfs.
constexpr const char* kImage = "localhost/driftwatch-test:busybox";

std::string read_text(const fs::path& path) {
  auto text = driftwatch::read_regular_file(path, 64u << 20, "test file");
  if (!text) throw std::runtime_error(text.error().message);
  return *text;
}

// Runs argv to completion with its output in `log` (a file, not a pipe: the
// engines leave detached processes, conmon and shims, that inherit it).
// Throws, with the output, unless it exits 0.
void run_logged(const std::vector<std::string>& argv, const fs::path& log) {
  auto child = ChildProcess::start(argv, {.output_path = log});
  auto status = child.wait_for(kCommandTimeout);
  if (!status) {
    child.kill();
    throw std::runtime_error("`" + describe_command(argv) + "` did not finish within 120 s");
  }
  if (*status != 0)
    throw std::runtime_error("`" + describe_command(argv) + "` exited with " +
                             std::to_string(*status) + ": " + read_text(log));
}

std::string run_ok(const std::vector<std::string>& argv) {
  auto result = run_command(argv, std::string(), kCommandTimeout);
  if (result.exit_code != 0)
    throw std::runtime_error("`" + describe_command(argv) + "` exited with " +
                             std::to_string(result.exit_code) + ": " + result.err);
  while (!result.out.empty() && result.out.back() == '\n') result.out.pop_back();
  return result.out;
}

// The busybox rootfs of an OciBundle as a tar file beside it.
fs::path rootfs_tar(const OciBundle& bundle) {
  const fs::path tar = bundle.dir() / "rootfs.tar";
  run_ok({"tar", "-C", bundle.rootfs().string(), "-cf", tar.string(), "."});
  return tar;
}

// A docker-archive image (`docker save` format) of one layer, `layer_tar`,
// tagged `tag`: what `ctr image import` reads.
fs::path docker_archive(const fs::path& layer_tar, const std::string& tag, const fs::path& dir) {
  const fs::path image = dir / "image";
  fs::create_directories(image);
  fs::copy_file(layer_tar, image / "layer.tar", fs::copy_options::overwrite_existing);
  const std::string layer_sha = driftwatch::sha256_hex(read_text(layer_tar));
  const std::string config =
      json{{"architecture", "amd64"},
           {"os", "linux"},
           {"config", {{"Cmd", {"sh"}}}},
           {"rootfs", {{"type", "layers"}, {"diff_ids", {"sha256:" + layer_sha}}}}}
          .dump();
  const std::string config_name = driftwatch::sha256_hex(config) + ".json";
  std::ofstream(image / config_name) << config;
  std::ofstream(image / "manifest.json")
      << json::array({{{"Config", config_name}, {"RepoTags", {tag}}, {"Layers", {"layer.tar"}}}})
             .dump();
  const fs::path archive = dir / "image.tar";
  run_ok({"tar", "-C", image.string(), "-cf", archive.string(), "."});
  return archive;
}

// A Podman container, removed (with its storage) however the test ends.
class PodmanContainer {
 public:
  PodmanContainer(std::string name, const std::string& image, const fs::path& log)
      : name_(std::move(name)) {
    run_command({"podman", "rm", "-f", "--time", "0", name_}, std::string(), kCommandTimeout);
    run_logged({"podman", "run", "-d", "--name", name_, "--network", "none", "--ulimit",
                "nofile=1024:1024", "--ulimit", "nproc=1024:1024", image, "sleep", "3600"},
               log);
    id_ = run_ok({"podman", "inspect", "--format", "{{.Id}}", name_});
  }
  PodmanContainer(const PodmanContainer&) = delete;
  PodmanContainer& operator=(const PodmanContainer&) = delete;
  ~PodmanContainer() {
    try {
      run_command({"podman", "rm", "-f", "--time", "0", name_}, std::string(), kCommandTimeout);
    } catch (const std::exception& e) {
      WARN("cannot remove podman container " << name_ << ": " << e.what());
    }
  }
  const std::string& name() const { return name_; }
  const std::string& id() const { return id_; }
  /// The config Podman handed its runtime: what its control plane logs.
  json config() const {
    return json::parse(read_text("/var/lib/containers/storage/overlay-containers/" + id_ +
                                 "/userdata/config.json"));
  }

 private:
  std::string name_;
  std::string id_;
};

// A containerd of the test's own (state, root and socket under `dir`), and
// a containerd namespace of its own; the destructor kills and deletes every
// task and container of that namespace, then stops containerd. Its runc
// root is containerd's fixed /run/containerd/runc/<namespace>: the
// daemon's default containerd_roots.
class Containerd {
 public:
  /// Started in `bundle`'s directory, with kImage made from its rootfs.
  explicit Containerd(const OciBundle& bundle)
      : dir_(bundle.dir() / "containerd"), namespace_("dwtest-" + std::to_string(::getpid())) {
    fs::create_directories(dir_);
    std::ofstream(dir_ / "config.toml")
        << "version = 2\n"
        << "root = \"" << (dir_ / "root").string() << "\"\n"
        << "state = \"" << (dir_ / "state").string() << "\"\n"
        << "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
        << "[grpc]\n  address = \"" << socket().string() << "\"\n"
        << "[ttrpc]\n  address = \"" << socket().string() << ".ttrpc\"\n";
    daemon_.emplace(ChildProcess::start({"containerd", "--config", (dir_ / "config.toml").string()},
                                        {.output_path = dir_ / "containerd.log"}));
    for (int i = 0;; ++i) {
      if (run_command(ctr({"version"}), std::string(), kCommandTimeout).exit_code == 0) break;
      if (daemon_->poll())
        throw std::runtime_error("containerd exited: " + read_text(dir_ / "containerd.log"));
      if (i == 100)
        throw std::runtime_error("containerd did not answer within 10 s: " +
                                 read_text(dir_ / "containerd.log"));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    run_logged(ctr({"image", "import", docker_archive(rootfs_tar(bundle), kImage, dir_).string()}),
               dir_ / "import.log");
  }
  Containerd(const Containerd&) = delete;
  Containerd& operator=(const Containerd&) = delete;
  ~Containerd() {
    try {
      for (const auto& id : containers_) {
        run_command(ctr({"task", "kill", "-s", "KILL", id}), std::string(), kCommandTimeout);
        for (int i = 0; i < 50; ++i) {
          if (run_command(ctr({"task", "rm", id}), std::string(), kCommandTimeout).exit_code != 0 &&
              run_command(ctr({"task", "ls", "-q"}), std::string(), kCommandTimeout).out.find(id) !=
                  std::string::npos) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            continue;
          }
          break;
        }
        run_command(ctr({"container", "rm", id}), std::string(), kCommandTimeout);
      }
      run_command(ctr({"image", "rm", "--sync", kImage}), std::string(), kCommandTimeout);
      run_command(ctr({"namespace", "rm", namespace_}), std::string(), kCommandTimeout);
    } catch (const std::exception& e) {
      WARN("cannot clean up containerd namespace " << namespace_ << ": " << e.what());
    }
    if (daemon_) {
      ::kill(daemon_->pid(), SIGTERM);
      if (!daemon_->wait_for(std::chrono::seconds(10))) daemon_->kill();
    }
    std::error_code ec;
    fs::remove(runc_root(), ec);
  }

  std::vector<std::string> ctr(std::vector<std::string> args) const {
    args.insert(args.begin(), {"ctr", "--address", socket().string(), "-n", namespace_});
    return args;
  }
  /// `ctr run -d` with these annotations, `sleep 3600`.
  void run(const std::string& id, const std::vector<std::string>& annotations,
           const std::vector<std::string>& flags = {}) {
    std::vector<std::string> argv = ctr({"run", "-d"});
    for (const auto& a : annotations) argv.insert(argv.end(), {"--annotation", a});
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.insert(argv.end(), {kImage, id, "sleep", "3600"});
    containers_.push_back(id);
    run_logged(argv, dir_ / ("run-" + id + ".log"));
  }
  fs::path runc_root() const { return fs::path("/run/containerd/runc") / namespace_; }
  json config(const std::string& id) const {
    return json::parse(read_text(dir_ / "state" / "io.containerd.runtime.v2.task" / namespace_ /
                                 id / "config.json"));
  }

 private:
  fs::path socket() const { return dir_ / "containerd.sock"; }
  fs::path dir_;
  std::string namespace_;
  std::optional<ChildProcess> daemon_;
  std::vector<std::string> containers_;
};

// The launch event for a sandbox named `name`, with `config` as launched.
std::string launch_for(const DaemonUnderTest& daemon, const std::string& launch_id,
                       const std::string& name, const json& config, const char* runtime) {
  json payload = DaemonUnderTest::launch_payload(launch_id, name, config);
  payload["runtime"] = runtime;
  return daemon.sign("launch", payload, "cp-1");
}

bool has_escalation(const json& sandbox, const std::string& field) {
  for (const auto& f : sandbox["findings"])
    if (f["field"] == field && f["direction"] == "escalation") return true;
  return false;
}

bool has_metric_line(const std::string& metrics, const std::string& line) {
  return ("\n" + metrics).find("\n" + line + "\n") != std::string::npos;
}

}  // namespace

TEST_CASE("engines: a Podman container is found by default, named by --name, attested, drifted",
          "[root][podman][integration][daemon]") {
  SKIP_WITHOUT("root", "podman", "busybox");
  OciBundle bundle;
  run_logged({"podman", "import", rootfs_tar(bundle).string(), kImage},
             bundle.dir() / "import.log");
  const std::string name = "dw-agent-" + std::to_string(::getpid());
  PodmanContainer container(name, kImage, bundle.dir() / "run.log");
  DaemonUnderTest daemon;
  daemon.start();

  // Seen by its id, with its engine and its name, before any launch.
  const auto seen = daemon.wait_for_verdict(container.id(), "unattested");
  CHECK(seen["sandbox_id"] == container.id());
  CHECK(seen["engine"] == "podman");
  CHECK(seen["runtime"] == "crun");
  CHECK(seen["names"] == json::array({name}));

  // The launch names it as the operator did; the daemon answers to both.
  auto accepted = daemon.post("/v1/launch-events",
                              launch_for(daemon, "L-podman-1", name, container.config(), "crun"));
  INFO(accepted.body);
  REQUIRE(accepted.status == 202);
  const auto attested = daemon.wait_for_verdict(name, "attested");
  INFO(attested.dump());
  CHECK(attested["sandbox_id"] == container.id());
  CHECK(attested["launch_id"] == "L-podman-1");
  CHECK(attested["findings"] == json::array());
  CHECK(daemon.get("/v1/sandboxes/" + container.id())["verdict"] == "attested");
  // `inspect` finds it by the same name, and says what the daemon says.
  const auto inspected = driftwatch_json({"inspect", "--oci", name}, 0);
  CHECK(inspected["sandbox_id"] == container.id());
  CHECK(inspected["engine"] == "podman");
  CHECK(inspected["names"] == json::array({name}));
  // `diff` by name against the config Podman handed crun: what the daemon
  // holds, in the same scope.
  const fs::path launched = bundle.dir() / "launched.json";
  std::ofstream(launched) << container.config().dump();
  const auto diffed =
      driftwatch_json({"diff", "--oci-config", launched.string(), "--oci", name}, 0);
  CHECK(diffed["verdict"] == "attested");
  CHECK(diffed["observed_sha256"] == attested["observed_sha256"]);

  const auto health = daemon.get("/healthz");
  CHECK(health["engines"]["podman"]["live"] == 1);
  const auto metrics = http_request(daemon.port(), "GET", "/metrics").body;
  CHECK(has_metric_line(metrics, "driftwatch_sandboxes{engine=\"podman\",verdict=\"attested\"} 1"));
  CHECK(has_metric_line(metrics,
                        "driftwatch_sandboxes{engine=\"containerd\",verdict=\"attested\"} 0"));

  // Podman's own way to raise a process's privileges in a container.
  run_logged({"podman", "exec", "-d", "--privileged", name, "sleep", "3600"},
             bundle.dir() / "exec.log");
  const auto drifted = daemon.wait_for_verdict(name, "drifted");
  INFO(drifted.dump());
  CHECK(drifted["sandbox_id"] == container.id());
  CHECK(has_escalation(drifted, "capabilities.effective"));
}

TEST_CASE(
    "engines: a containerd container is found by default, named by its CRI annotations, "
    "attested, drifted, and a pod's pause container is not watched",
    "[root][containerd][integration][daemon]") {
  SKIP_WITHOUT("root", "containerd", "busybox");
  OciBundle bundle;
  Containerd containerd(bundle);
  const std::string id = unique_container_id("ctd");
  const std::string pause_id = unique_container_id("ctd-pause");
  const std::string pod = "pod-" + std::to_string(::getpid());
  const std::string kube_name = "agents/" + pod + "/agent";
  containerd.run(pause_id, {"io.kubernetes.cri.container-type=sandbox",
                            "io.kubernetes.cri.sandbox-namespace=agents",
                            "io.kubernetes.cri.sandbox-name=" + pod});
  containerd.run(
      id,
      {"io.kubernetes.cri.container-type=container", "io.kubernetes.cri.sandbox-namespace=agents",
       "io.kubernetes.cri.sandbox-name=" + pod, "io.kubernetes.cri.container-name=agent"},
      {"--memory-limit", "67108864"});
  DaemonUnderTest daemon;
  daemon.start();

  const auto seen = daemon.wait_for_verdict(id, "unattested");
  CHECK(seen["engine"] == "containerd");
  CHECK(seen["runtime"] == "runc");
  CHECK(seen["names"] == json::array({kube_name}));

  auto accepted = daemon.post(
      "/v1/launch-events", launch_for(daemon, "L-ctd-1", kube_name, containerd.config(id), "runc"));
  INFO(accepted.body);
  REQUIRE(accepted.status == 202);
  const auto attested = daemon.wait_for_verdict(kube_name, "attested");
  INFO(attested.dump());
  CHECK(attested["sandbox_id"] == id);
  CHECK(attested["launch_id"] == "L-ctd-1");
  CHECK(attested["findings"] == json::array());
  const auto inspected = driftwatch_json({"inspect", "--oci", kube_name}, 0);
  CHECK(inspected["sandbox_id"] == id);
  CHECK(inspected["engine"] == "containerd");
  CHECK(inspected["names"] == json::array({kube_name}));
  const fs::path launched = bundle.dir() / "launched.json";
  std::ofstream(launched) << containerd.config(id).dump();
  const auto diffed =
      driftwatch_json({"diff", "--oci-config", launched.string(), "--oci", kube_name}, 0);
  CHECK(diffed["verdict"] == "attested");
  CHECK(diffed["observed_sha256"] == attested["observed_sha256"]);

  // The pause container: never listed, never a sandbox.
  daemon.wait_sweeps();
  CHECK(http_request(daemon.port(), "GET", "/v1/sandboxes/" + pause_id).status == 404);
  for (const auto& sandbox : daemon.get("/v1/sandboxes")) CHECK(sandbox["sandbox_id"] != pause_id);
  CHECK(daemon.get("/healthz")["engines"]["containerd"]["live"] == 1);
  const auto metrics = http_request(daemon.port(), "GET", "/metrics").body;
  CHECK(has_metric_line(metrics,
                        "driftwatch_sandboxes{engine=\"containerd\",verdict=\"attested\"} 1"));

  // What kubelet does through CRI's UpdateContainerResources, done by hand:
  // runc update on containerd's runc root.
  run_ok(
      {"runc", "--root", containerd.runc_root().string(), "update", "--memory", "134217728", id});
  const auto drifted = daemon.wait_for_verdict(kube_name, "drifted");
  INFO(drifted.dump());
  CHECK(drifted["sandbox_id"] == id);
  CHECK(has_escalation(drifted, "resources.memory_max"));
}

TEST_CASE(
    "engines: with a 60 s sweep, a containerd container in a namespace made after the "
    "daemon started is seen within a second",
    "[root][containerd][inotify][integration][daemon]") {
  SKIP_WITHOUT("root", "containerd", "busybox");
  OciBundle bundle;
  Containerd containerd(bundle);
  // The namespace's runc root appears only with its first task.
  REQUIRE_FALSE(fs::exists(containerd.runc_root()));
  DaemonUnderTest daemon(json{{"sweep_interval_seconds", 60}});
  daemon.start();
  wait_until("the first sweep", std::chrono::seconds(10),
             [&] { return !daemon.get("/healthz")["last_sweep"].is_null(); });
  const std::string id = unique_container_id("ctd-late");
  const auto before = std::chrono::steady_clock::now();
  containerd.run(id, {});
  const auto started = std::chrono::steady_clock::now();
  bool seen = false;
  while (std::chrono::steady_clock::now() - started < std::chrono::seconds(5)) {
    if (http_request(daemon.port(), "GET", "/v1/sandboxes/" + id).status == 200) {
      seen = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  INFO("ctr run took " << std::chrono::duration<double>(started - before).count()
                       << " s; seen after " << took << " s\n"
                       << daemon.log());
  REQUIRE(seen);
  CHECK(took < 1.0);
  CHECK(daemon.get("/v1/sandboxes/" + id)["engine"] == "containerd");
}
