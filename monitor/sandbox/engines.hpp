#pragma once
// Which container engine launched a container, and the names it gave it.
//
// runc and crun only know a container by its id. The engines above them
// know more, and write it where the sampler can read it:
//
// - Podman (rootful) runs crun or runc with their default roots
//   (/run/crun, /run/runc), a bundle under its storage
//   (<storage>/overlay-containers/<id>/userdata/), the annotation
//   `io.container.manager: libpod` in the bundle's config.json, and the
//   names the operator gave (`podman run --name agent-7`) in its storage's
//   `<driver>-containers/containers.json` ("names" of the entry whose "id"
//   is the container's).
// - containerd runs runc with the root /run/containerd/runc/<namespace>
//   and a bundle under /run/containerd/io.containerd.runtime.v2.task/
//   <namespace>/<id>/. For Kubernetes, the CRI plugin writes the pod's
//   namespace and name and the container's name as annotations of the
//   bundle's config.json (`io.kubernetes.cri.sandbox-namespace`,
//   `…sandbox-name`, `…container-name`), and marks each pod's pause
//   container `io.kubernetes.cri.container-type: sandbox`.
//
// Everything here is outside input (written on the host by the engines,
// never by a sandbox, but parsed as hostile all the same): every field's
// type is checked, sizes are bounded, nothing throws.

#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace driftwatch::sandbox {

/// The engines a sandbox can come from, a closed list (the `engine` label
/// of driftwatch_sandboxes): runc and crun run directly, Podman,
/// containerd, a cgroup glob, a process named by PID (inspect only).
inline constexpr const char* kEngines[] = {"runc",       "crun",   "podman",
                                           "containerd", "cgroup", "process"};

/// A name a launch event may use for a sandbox besides its id: 1 to 253
/// bytes of printable ASCII other than space (Podman's names are
/// [a-zA-Z0-9][a-zA-Z0-9_.-]*; Kubernetes' are DNS labels and subdomains,
/// joined by '/').
bool is_sandbox_name(std::string_view name);

/// Adds `more` to `names`, which stays sorted and without repeats.
void add_names(std::vector<std::string>& names, const std::vector<std::string>& more);

/// The names each container of one Podman storage has, by container id,
/// from containers.json: a JSON array of objects whose "id" is a string and
/// "names" an array of strings. Entries without an id, or with names that
/// are not is_sandbox_name(), contribute what is valid; a document that is
/// not such an array is an error naming `what`.
using NamesById = std::map<std::string, std::vector<std::string>, std::less<>>;
Result<NamesById> parse_podman_containers(std::string_view text, std::string_view what);

/// What a bundle's config.json says of the engine that wrote it.
struct BundleIdentity {
  bool podman = false;       // io.container.manager: libpod
  bool cri_sandbox = false;  // io.kubernetes.cri.container-type: sandbox (a pod's pause)
  /// "<pod namespace>/<pod name>/<container name>" from the CRI annotations
  /// of a Kubernetes container, when all three are there and valid.
  std::optional<std::string> kubernetes_name;
};

/// From the "annotations" of an OCI config (any JSON value: what is not an
/// object of strings is ignored, field by field).
BundleIdentity bundle_identity(const nlohmann::json& config);

struct SandboxRef;
/// Sets `ref`'s engine and names from its bundle's identity and the Podman
/// names: a container in a runc or crun root whose bundle says libpod is
/// Podman's (named by `podman_names`); a Kubernetes container gets its
/// "<namespace>/<pod>/<container>" name.
void apply_identity(SandboxRef& ref, const BundleIdentity& identity, const NamesById& podman_names);

/// The containers.json files of the Podman storage roots
/// (`<root>/<driver>-containers/containers.json`, one per storage driver
/// that has one), read as outside input, merged. A root or file that does
/// not exist contributes nothing; one that cannot be read or parsed is a
/// line in `problems`.
NamesById read_podman_names(const std::vector<std::filesystem::path>& storage_roots,
                            std::vector<std::string>& problems);

}  // namespace driftwatch::sandbox
