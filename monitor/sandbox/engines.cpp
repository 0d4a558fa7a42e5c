#include "sandbox/engines.hpp"

#include <algorithm>
#include <system_error>

#include "common/canonical_json.hpp"
#include "common/file_io.hpp"
#include "sandbox/discovery.hpp"

namespace driftwatch::sandbox {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// containers.json holds one entry per container of the storage (about half
// a kilobyte each): 64 MiB is well over 100,000 containers.
constexpr std::size_t kMaxContainersJsonBytes = std::size_t{64} << 20;
// Names per container: Podman gives one; more is a damaged file.
constexpr std::size_t kMaxNamesPerContainer = 64;
constexpr std::size_t kMaxNameBytes = 253;

// The string value of `key` in the object `object`, if it has one.
std::optional<std::string_view> string_at(const json& object, const char* key) {
  if (!object.is_object()) return std::nullopt;
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return std::nullopt;
  return std::string_view(it->get_ref<const std::string&>());
}

// One part of a Kubernetes name: a namespace, pod or container name (DNS
// labels and subdomains: no '/').
bool is_name_part(std::string_view part) {
  return !part.empty() && part.find('/') == std::string_view::npos && is_sandbox_name(part);
}

}  // namespace

void add_names(std::vector<std::string>& names, const std::vector<std::string>& more) {
  names.insert(names.end(), more.begin(), more.end());
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
}

bool is_sandbox_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte > 0x20 && byte < 0x7F;
  });
}

Result<NamesById> parse_podman_containers(std::string_view text, std::string_view what) {
  DW_TRY(doc, parse_json(text, what, kMaxContainersJsonBytes));
  if (!doc.is_array()) return fail(what, " is not a JSON array of containers");
  NamesById names;
  for (const auto& entry : doc) {
    const auto id = string_at(entry, "id");
    if (!id || id->empty()) continue;
    const auto list = entry.find("names");
    if (list == entry.end() || !list->is_array()) continue;
    std::vector<std::string> valid;
    for (const auto& name : *list) {
      if (valid.size() == kMaxNamesPerContainer) break;
      if (!name.is_string()) continue;
      const auto& text_name = name.get_ref<const std::string&>();
      if (is_sandbox_name(text_name) && text_name != *id) valid.push_back(text_name);
    }
    if (valid.empty()) continue;
    auto& into = names[std::string(*id)];
    add_names(into, valid);
    if (into.size() > kMaxNamesPerContainer) into.resize(kMaxNamesPerContainer);
  }
  return names;
}

BundleIdentity bundle_identity(const json& config) {
  BundleIdentity identity;
  if (!config.is_object()) return identity;
  const auto annotations = config.find("annotations");
  if (annotations == config.end() || !annotations->is_object()) return identity;
  const json& a = *annotations;
  identity.podman =
      string_at(a, "io.container.manager") == std::optional<std::string_view>("libpod");
  identity.cri_sandbox = string_at(a, "io.kubernetes.cri.container-type") ==
                         std::optional<std::string_view>("sandbox");
  const auto pod_namespace = string_at(a, "io.kubernetes.cri.sandbox-namespace");
  const auto pod = string_at(a, "io.kubernetes.cri.sandbox-name");
  const auto container = string_at(a, "io.kubernetes.cri.container-name");
  if (!identity.cri_sandbox && pod_namespace && pod && container && is_name_part(*pod_namespace) &&
      is_name_part(*pod) && is_name_part(*container)) {
    std::string name =
        std::string(*pod_namespace) + "/" + std::string(*pod) + "/" + std::string(*container);
    if (is_sandbox_name(name)) identity.kubernetes_name = std::move(name);
  }
  return identity;
}

void apply_identity(SandboxRef& ref, const BundleIdentity& identity,
                    const NamesById& podman_names) {
  if (identity.podman && ref.engine != "containerd") {
    ref.engine = "podman";
    if (const auto it = podman_names.find(ref.sandbox_id); it != podman_names.end())
      add_names(ref.names, it->second);
  }
  if (identity.kubernetes_name && *identity.kubernetes_name != ref.sandbox_id)
    add_names(ref.names, {*identity.kubernetes_name});
}

NamesById read_podman_names(const std::vector<fs::path>& storage_roots,
                            std::vector<std::string>& problems) {
  NamesById all;
  for (const auto& root : storage_roots) {
    // One <driver>-containers directory per storage driver used (overlay,
    // vfs, btrfs, …); increment(ec): entries may vanish while listed.
    std::error_code ec;
    for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string dir = it->path().filename().string();
      if (!dir.ends_with("-containers")) continue;
      const fs::path file = it->path() / "containers.json";
      auto text =
          read_regular_file_if_exists(file, kMaxContainersJsonBytes + 1, "podman containers file");
      if (!text) {
        problems.push_back(text.error().message);
        continue;
      }
      if (!*text) continue;
      auto names = parse_podman_containers(**text, file.string());
      if (!names) {
        problems.push_back(names.error().message);
        continue;
      }
      for (const auto& [id, list] : *names) add_names(all[id], list);
    }
  }
  return all;
}

}  // namespace driftwatch::sandbox
