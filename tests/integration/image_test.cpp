// The container image (deploy/container/Containerfile, built by
// scripts/build-image.sh) run under a real Podman the way the DaemonSet runs
// it (deploy/kubernetes/daemonset.yaml): the host's PID and cgroup
// namespaces, the start-up capabilities only, a read-only root, and the
// host's cgroupfs, BTF and runc root mounted read-only. It must watch a real
// runc container on the host, attest it against its signed launch and see
// it drift.
#include <unistd.h>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "integration/daemon_harness.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"

using namespace driftwatch::testing;
using nlohmann::json;

namespace {

// The image of this build, removed again at the end.
struct Image {
  std::string tag = "localhost/driftwatch:test-" + std::to_string(::getpid());
  Image() {
    auto built = run_command({std::string(DRIFTWATCH_SOURCE_DIR) + "/scripts/build-image.sh",
                              "--binary", DRIFTWATCH_BINARY, "--tag", tag},
                             std::nullopt, std::chrono::seconds(300));
    INFO(built.out << built.err);
    REQUIRE(built.exit_code == 0);
  }
  ~Image() { run_command({"podman", "rmi", "-f", tag}); }
};

}  // namespace

TEST_CASE(
    "image: run under podman with the host's PID and cgroup namespaces, it attests a runc "
    "container on the host and sees it drift",
    "[root][runc][podman][integration][daemon]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  if (run_command({"sh", "-c", "command -v podman"}).exit_code != 0)
    DW_SKIP("no podman (scripts/install-deps.sh installs it)");
  Image image;

  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("img")));
  DaemonUnderTest daemon(json{{"sweep_interval_seconds", 60}});
  const std::string name = "driftwatch-test-" + std::to_string(::getpid());
  // The daemon's directory (config, trust, state, journal) and the bundle
  // at the same paths inside, so that every path in the config and in
  // runc's state resolves the same; podman's default rlimits exceed this
  // machine's hard limits, hence --ulimit.
  std::vector<std::string> command = {
      "podman",
      "run",
      "--rm",
      "--name",
      name,
      "--read-only",
      "--pid=host",
      "--cgroupns=host",
      "--network=host",
      "--cap-drop=all",
      "--cap-add=CAP_BPF,CAP_PERFMON,CAP_SYS_ADMIN,CAP_SETUID,CAP_SETGID,CAP_CHOWN,CAP_SETPCAP,"
      "CAP_SYS_PTRACE,CAP_DAC_READ_SEARCH",
      "--ulimit",
      "nofile=4096:4096",
      "--ulimit",
      "nproc=4096:4096",
      "-v",
      "/sys/fs/cgroup:/sys/fs/cgroup:ro",
      "-v",
      "/sys/kernel/btf:/sys/kernel/btf:ro",
      "-v",
      "/run/runc:/run/runc:ro",
      "-v",
      daemon.dir().string() + ":" + daemon.dir().string(),
      "-v",
      bundle.dir().string() + ":" + bundle.dir().string() + ":ro",
      image.tag};
  for (const auto& arg : daemon.run_arguments()) command.push_back(arg);
  struct Remove {
    std::string name;
    ~Remove() { run_command({"podman", "rm", "-f", name}); }
  } remove{name};
  daemon.start_as(command);
  INFO(daemon.log());

  const auto health = daemon.get("/healthz");
  CHECK(health["probes"]["cap_capable"]["attached"] == true);
  CHECK(health["processes"]["sampler"]["pid"].is_number());

  auto launch = DaemonUnderTest::launch_payload("L-img-1", container.id(), bundle.config());
  auto accepted = daemon.post("/v1/launch-events", daemon.sign("launch", launch, "cp-1"));
  INFO(accepted.body);
  REQUIRE(accepted.status == 202);
  auto attested = daemon.wait_for_verdict(container.id(), "attested");
  CHECK(attested["declared_sha256"] == attested["observed_sha256"]);

  REQUIRE(container.exec({"sleep", "3600"}, {"--cap", "CAP_SYS_ADMIN"}));
  auto drifted = daemon.wait_for_verdict(container.id(), "drifted", std::chrono::seconds(5));
  bool escalation = false;
  for (const auto& finding : drifted["findings"])
    escalation = escalation || (finding["field"] == "capabilities.effective" &&
                                finding["direction"] == "escalation");
  CHECK(escalation);
  CHECK(daemon.stop() == 0);
}
