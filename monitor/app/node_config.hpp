#pragma once
// The node configuration of `driftwatch run` (DESIGN.md "Node
// configuration"). Every key is optional; an unknown key or a wrong type is
// an error naming the key.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace driftwatch::app {

struct NodeConfig {
  std::string node_name;  // default: the host name
  std::string listen = "127.0.0.1:9477";
  std::filesystem::path state_dir = "/var/lib/driftwatch";
  std::filesystem::path trust = "/etc/driftwatch/trust.json";
  std::optional<std::filesystem::path> policy;  // nullopt: embedded default
  std::vector<std::filesystem::path> launch_journals;
  std::vector<std::filesystem::path> runc_roots{"/run/runc"};
  std::vector<std::filesystem::path> crun_roots{"/run/crun"};
  /// Each subdirectory (a containerd namespace) is a runc root.
  std::vector<std::filesystem::path> containerd_roots{"/run/containerd/runc"};
  /// Podman's storage roots, for the names of its containers.
  std::vector<std::filesystem::path> podman_storage{"/var/lib/containers/storage"};
  std::vector<std::string> cgroup_globs;
  int64_t sweep_interval_seconds = 10;
  int64_t unattested_grace_seconds = 30;
  int64_t event_max_age_seconds = 86400;
  int64_t checkpoint_interval_seconds = 10;
  bool probes = true;
  // The unshare and setns syscall tracepoints (with `probes`): enabling any
  // syscall tracepoint slows every syscall of every task on the node
  // (README, "The probes"): off by default, and then those namespace
  // changes wait for a fork, an exec or the sweep.
  bool syscall_probes = false;
};

/// Parses config text; `what` names the file in errors.
Result<NodeConfig> parse_node_config(std::string_view text, std::string_view what);
/// Reads and parses a config file; nullopt path: all defaults.
Result<NodeConfig> load_node_config(const std::optional<std::filesystem::path>& path);
/// The effective configuration as the contract's JSON document (every key),
/// whose canonical SHA-256 is `driftwatch_config_info{sha256}`.
nlohmann::json to_json(const NodeConfig& config);

}  // namespace driftwatch::app
