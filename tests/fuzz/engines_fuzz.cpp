// libFuzzer target: what the container engines write that the sampler reads
// to tell who launched a container and by which names (sandbox/engines.hpp):
// Podman's containers.json (parse_podman_containers, and read_podman_names
// on a scratch storage root holding the file) and the annotations of a
// bundle's config.json (bundle_identity, apply_identity).
//
// The first byte picks the file (even: containers.json, odd: config.json);
// the rest is the file. Checks: an error says something; every name given
// is a valid sandbox name, never the container's id, and each container's
// names are sorted and once each; the file read from disk gives what its
// text parses to; a pod's pause container gets no name; a Kubernetes name
// has exactly three parts; only a libpod bundle makes a container Podman's.
// All of this also for the file with one node replaced by a value of each
// JSON type in turn (type flips, fuzz_support.hpp).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "common/canonical_json.hpp"
#include "fuzz_support.hpp"
#include "sandbox/discovery.hpp"
#include "sandbox/engines.hpp"

namespace sandbox = driftwatch::sandbox;
namespace fs = std::filesystem;

namespace {

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("engines_fuzz", what, detail);
}

void check_names(const std::string& id, const std::vector<std::string>& names,
                 std::string_view text) {
  if (!std::is_sorted(names.begin(), names.end()) ||
      std::adjacent_find(names.begin(), names.end()) != names.end())
    report("names not sorted and once each", text);
  for (const auto& name : names) {
    if (!sandbox::is_sandbox_name(name)) report("an invalid name was given", text);
    if (name == id) report("a container was named by its own id", text);
  }
}

void check_containers(std::string_view text) {
  auto parsed = sandbox::parse_podman_containers(text, "containers.json");
  if (!parsed) {
    if (parsed.error().message.empty()) report("parse failed without a message", text);
  } else {
    for (const auto& [id, names] : *parsed) {
      if (id.empty()) report("an empty container id was kept", text);
      if (names.empty()) report("a container without names was kept", text);
      check_names(id, names, text);
    }
  }
  // The same file on disk, as the sampler reads it.
  static const driftwatch::fuzz::ScratchDir scratch{"engines-fuzz"};
  const fs::path file = scratch.path() / "overlay-containers" / "containers.json";
  fs::create_directories(file.parent_path());
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out) report("cannot write a scratch file", file.string());
  }
  std::vector<std::string> problems;
  const auto read = sandbox::read_podman_names({scratch.path()}, problems);
  fs::remove(file);
  if (parsed && (read != *parsed || !problems.empty()))
    report("the file on disk read otherwise than its text", text);
  if (!parsed && (problems.empty() || !read.empty()))
    report("a file that does not parse was read without a problem", text);
}

void check_config(std::string_view text) {
  auto doc = driftwatch::parse_json(text, "config.json");
  if (!doc) {
    if (doc.error().message.empty()) report("parse failed without a message", text);
    return;
  }
  const auto identity = sandbox::bundle_identity(*doc);
  if (identity.cri_sandbox && identity.kubernetes_name)
    report("a pause container got a Kubernetes name", text);
  if (identity.kubernetes_name) {
    const auto& name = *identity.kubernetes_name;
    if (!sandbox::is_sandbox_name(name) || std::count(name.begin(), name.end(), '/') != 2)
      report("a Kubernetes name is not <namespace>/<pod>/<container>", text);
  }
  for (const char* engine : {"runc", "crun", "containerd"}) {
    sandbox::SandboxRef ref;
    ref.sandbox_id = "fuzz-ctr";
    ref.engine = engine;
    const sandbox::NamesById podman_names{{"fuzz-ctr", {"agent-7"}}};
    sandbox::apply_identity(ref, identity, podman_names);
    if (ref.engine == "podman" && (!identity.podman || std::string_view(engine) == "containerd"))
      report("a container was made Podman's without a libpod bundle", text);
    if (ref.engine != "podman" && ref.engine != engine) report("the engine changed", text);
    check_names(ref.sandbox_id, ref.names, text);
  }
}

void check(bool containers, std::string_view text) {
  if (containers)
    check_containers(text);
  else
    check_config(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool containers = data[0] % 2 == 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  check(containers, text);
  driftwatch::fuzz::for_each_type_flip(
      text, [containers](const std::string& flipped) { check(containers, flipped); });
  return 0;
}
