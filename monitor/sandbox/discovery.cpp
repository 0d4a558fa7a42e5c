#include "sandbox/discovery.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <system_error>

#include "common/canonical_json.hpp"
#include "common/file_io.hpp"

namespace driftwatch::sandbox {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Container ids as runc accepts them (^[\w+-\.]+$): no slash, so an id can
// never walk out of the state root.
bool valid_container_id(std::string_view id) {
  if (id.empty() || id.size() > 1024 || id == "." || id == "..") return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '+' || c == '-' ||
           c == '.';
  });
}

Result<uint64_t> json_u64(const json& doc, const char* key, std::string_view what) {
  auto it = doc.find(key);
  if (it == doc.end()) return fail(what, ": no field ", key);
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer() && it->get<int64_t>() >= 0) return it->get<uint64_t>();
  // runc has written init_process_start as a decimal string in some versions.
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && end == s.data() + s.size()) return v;
  }
  return fail(what, ": field ", key, " is not a non-negative integer");
}

// Fills in the cgroup membership from the first process and checks that the
// recorded start time still matches (a reused PID is a gone container).
Result<SandboxRef> resolve(SandboxRef ref, const observe::ProcReader& proc) {
  auto pinned = PinnedProcess::pin(proc, ref.first_process.pid, ref.first_process.start_time_ticks);
  if (!pinned)
    return wrap(pinned.error(), ref.runtime, " container '", ref.sandbox_id, "' is not running: ");
  auto cgroups = proc.cgroup(ref.first_process.pid);
  if (!cgroups) return wrap(cgroups.error(), "container '", ref.sandbox_id, "': ");
  ref.cgroups = std::move(*cgroups);
  return ref;
}

// containerd's namespace roots under `root` (/run/containerd/runc/k8s.io,
// …/default), in name order.
std::vector<fs::path> containerd_namespaces(const fs::path& root) {
  std::vector<fs::path> namespaces;
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_directory(type_ec) && valid_container_id(it->path().filename().string()))
      namespaces.push_back(it->path());
  }
  std::sort(namespaces.begin(), namespaces.end());
  return namespaces;
}

}  // namespace

Result<SandboxRef> parse_runc_state(std::string_view text, std::string_view id) {
  std::string what = "runc state of '" + std::string(id) + "'";
  DW_TRY(doc, parse_json(text, what));
  if (!doc.is_object()) return fail(what, " is not a JSON object");
  SandboxRef ref;
  ref.sandbox_id = std::string(id);
  ref.runtime = "runc";
  ref.engine = "runc";
  DW_TRY(pid, json_u64(doc, "init_process_pid", what));
  DW_TRY(start, json_u64(doc, "init_process_start", what));
  if (pid == 0 || pid > 0x3fffffff) return fail(what, ": init_process_pid out of range");
  ref.first_process = {static_cast<pid_t>(pid), start};
  // The bundle is recorded as a "bundle=/path" label of the config.
  if (auto config = doc.find("config"); config != doc.end() && config->is_object()) {
    if (auto labels = config->find("labels"); labels != config->end() && labels->is_array()) {
      for (const auto& label : *labels) {
        if (label.is_string() && label.get<std::string>().starts_with("bundle="))
          ref.bundle = label.get<std::string>().substr(7);
      }
    }
  }
  return ref;
}

Result<SandboxRef> parse_crun_status(std::string_view text, std::string_view id) {
  std::string what = "crun status of '" + std::string(id) + "'";
  DW_TRY(doc, parse_json(text, what));
  if (!doc.is_object()) return fail(what, " is not a JSON object");
  SandboxRef ref;
  ref.sandbox_id = std::string(id);
  ref.runtime = "crun";
  ref.engine = "crun";
  DW_TRY(pid, json_u64(doc, "pid", what));
  DW_TRY(start, json_u64(doc, "process-start-time", what));
  if (pid == 0 || pid > 0x3fffffff) return fail(what, ": pid out of range");
  ref.first_process = {static_cast<pid_t>(pid), start};
  if (auto bundle = doc.find("bundle"); bundle != doc.end() && bundle->is_string())
    ref.bundle = bundle->get<std::string>();
  return ref;
}

Result<SandboxRef> find_container(const DiscoveryRoots& roots, std::string_view id,
                                  const observe::ProcReader& proc) {
  if (!valid_container_id(id)) return fail("'", std::string(id), "' is not a valid container id");
  auto try_root = [&](const fs::path& root, bool is_runc) -> std::optional<Result<SandboxRef>> {
    fs::path file = root / std::string(id) / (is_runc ? "state.json" : "status");
    auto text = read_regular_file_if_exists(file, 4u << 20, "container state");
    if (!text) return std::unexpected(text.error());
    if (!*text) return std::nullopt;
    auto ref = is_runc ? parse_runc_state(**text, id) : parse_crun_status(**text, id);
    if (!ref) return ref;
    return resolve(std::move(*ref), proc);
  };
  std::string searched;
  for (const auto& root : roots.runc_roots) {
    if (auto found = try_root(root, true)) return *found;
    searched += (searched.empty() ? "" : ", ") + root.string();
  }
  for (const auto& root : roots.crun_roots) {
    if (auto found = try_root(root, false)) return *found;
    searched += (searched.empty() ? "" : ", ") + root.string();
  }
  // containerd runs runc (state.json), or crun (status) when configured to.
  for (const auto& root : roots.containerd_roots) {
    for (const auto& ns : containerd_namespaces(root)) {
      for (const bool is_runc : {true, false}) {
        if (auto found = try_root(ns, is_runc)) {
          if (*found) (*found)->engine = "containerd";
          return *found;
        }
      }
    }
    searched += (searched.empty() ? "" : ", ") + (root / "*").string();
  }
  return fail("no runc or crun container '", std::string(id), "' under ", searched);
}

std::vector<SandboxRef> list_containers(const DiscoveryRoots& roots,
                                        const observe::ProcReader& proc,
                                        std::vector<Error>* problems) {
  std::vector<SandboxRef> found;
  std::vector<std::string> seen;
  auto scan = [&](const std::vector<fs::path>& list) {
    for (const auto& root : list) {
      // increment(ec), not a range-for: the range-for's ++ throws when an
      // entry vanishes mid-listing, and containers come and go all the time.
      std::error_code ec;
      for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
        const fs::directory_entry& entry = *it;
        std::string id = entry.path().filename().string();
        if (!entry.is_directory(ec) || !valid_container_id(id)) continue;
        if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;
        auto ref = find_container(roots, id, proc);
        if (ref) {
          seen.push_back(id);
          found.push_back(std::move(*ref));
        } else if (problems) {
          problems->push_back(ref.error());
        }
      }
    }
  };
  scan(roots.runc_roots);
  scan(roots.crun_roots);
  for (const auto& root : roots.containerd_roots) scan(containerd_namespaces(root));
  return found;
}

Result<SandboxRef> sandbox_for_pid(const observe::ProcReader& proc, pid_t pid) {
  if (pid <= 0) return fail("pid ", std::to_string(pid), " is not a process id");
  auto pinned = PinnedProcess::pin(proc, pid);
  if (!pinned) return std::unexpected(pinned.error());
  SandboxRef ref;
  ref.sandbox_id = "pid-" + std::to_string(pid);
  ref.runtime = "process";
  ref.engine = "process";
  ref.first_process = pinned->identity();
  ref.membership = Membership::descendants;
  return ref;
}

Result<SandboxRef> sandbox_for_cgroup(const observe::ProcReader& proc,
                                      const observe::CgroupReader& cgroups, const fs::path& path) {
  std::string text = path.lexically_normal().string();
  if (text.empty() || text.front() != '/') return fail("cgroup path '", text, "' is not absolute");
  while (text.size() > 1 && text.back() == '/') text.pop_back();
  std::string root = cgroups.root().lexically_normal().string();
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  observe::CgroupMembership membership;
  std::string name;
  if (text.starts_with(root + "/")) {
    // A cgroupfs directory: which hierarchy is it in?
    std::string rest = text.substr(root.size());
    if (cgroups.layout() == observe::CgroupLayout::unified) {
      membership.unified = rest;
    } else if (rest == "/unified" || rest.starts_with("/unified/")) {
      membership.unified = rest.size() > 8 ? rest.substr(8) : "/";
    } else {
      auto slash = rest.find('/', 1);
      std::string controller = rest.substr(1, slash == std::string::npos ? rest.npos : slash - 1);
      std::string sub = slash == std::string::npos ? "/" : rest.substr(slash);
      membership.v1.emplace_back(controller, sub);
    }
  } else if (cgroups.layout() != observe::CgroupLayout::legacy) {
    membership.unified = text;
  } else {
    return fail("cgroup path '", text, "' is not under ", root,
                " and this host has no cgroup v2 hierarchy");
  }
  std::string cgroup_path = membership.unified ? *membership.unified : membership.v1[0].second;
  if (cgroup_path == "/") return fail("cgroup '", text, "' is the root cgroup, not a sandbox");
  DW_TRY(procs, cgroups.procs(membership));
  if (procs.empty()) return fail("cgroup '", text, "' has no processes");
  SandboxRef ref;
  ref.sandbox_id = cgroup_path.substr(cgroup_path.rfind('/') + 1);
  ref.runtime = "cgroup";
  ref.engine = "cgroup";
  ref.membership = Membership::cgroup;
  ref.cgroups = std::move(membership);
  // The first process is the oldest member: the sandbox's reference for
  // "its" user namespace.
  std::optional<ProcessIdentity> oldest;
  for (pid_t member : procs) {
    auto stat = proc.stat(member);
    if (!stat) continue;
    if (!oldest || stat->start_time_ticks < oldest->start_time_ticks)
      oldest = ProcessIdentity{member, stat->start_time_ticks};
  }
  if (!oldest) return fail("cgroup '", text, "': every member exited while it was read");
  ref.first_process = *oldest;
  return ref;
}

}  // namespace driftwatch::sandbox
