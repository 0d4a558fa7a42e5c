#include "correlate/sweep.hpp"

#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <exception>

#include "common/canonical_json.hpp"
#include "common/file_io.hpp"
#include "common/sha256.hpp"
#include "projection/observed.hpp"
#include "sandbox/engines.hpp"

namespace driftwatch::correlate {
namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A sandbox found, with what its bundle's config.json said.
struct Discovered {
  sandbox::SandboxRef ref;
  std::optional<std::string> consumed_config_sha256;  // bundle config.json, JCS hashed
};

// The one read of a container's bundle per sample: who launched it (its
// engine and names) and the hash of the config the runtime consumed. The
// bundle is written by the runtime's caller on the host, never by the
// sandbox; still, it is outside input: bounded and strictly parsed. nullopt
// for a pod's pause container, which is Kubernetes' plumbing, not a
// sandbox of its own.
std::optional<Discovered> identify(sandbox::SandboxRef ref, const SweepOptions& options,
                                   const sandbox::NamesById& podman_names) {
  Discovered found;
  if (ref.bundle) {
    auto text = read_regular_file(*ref.bundle / "config.json", 4u << 20, "bundle config");
    auto doc = text ? parse_json(*text, "config.json") : std::unexpected(text.error());
    if (doc) {
      const auto identity = sandbox::bundle_identity(*doc);
      if (identity.cri_sandbox) return std::nullopt;
      sandbox::apply_identity(ref, identity, podman_names);
      if (options.hash_bundle_config) {
        auto bytes = canonical_json(*doc);
        if (bytes) found.consumed_config_sha256 = sha256_hex(*bytes);
      }
    }
  }
  found.ref = std::move(ref);
  return found;
}

std::vector<Discovered> discover(const SweepOptions& options, const observe::ProcReader& proc,
                                 const observe::CgroupReader& cgroups,
                                 std::vector<std::string>& problems) {
  std::vector<Error> errors;
  auto refs = sandbox::list_containers(options.roots, proc, &errors);
  for (const auto& error : errors) problems.push_back(error.message);
  std::vector<Discovered> found;
  const bool any_podman = std::any_of(refs.begin(), refs.end(), [](const auto& ref) {
    return ref.engine == "runc" || ref.engine == "crun";
  });
  const auto podman_names = any_podman
                                ? sandbox::read_podman_names(options.roots.podman_storage, problems)
                                : sandbox::NamesById{};
  for (auto& ref : refs)
    if (auto item = identify(std::move(ref), options, podman_names))
      found.push_back(std::move(*item));
  for (const auto& pattern : options.cgroup_globs) {
    glob_t matches{};
    if (::glob(pattern.c_str(), GLOB_ONLYDIR | GLOB_NOSORT, nullptr, &matches) == 0) {
      for (size_t i = 0; i < matches.gl_pathc; ++i) {
        auto ref = sandbox::sandbox_for_cgroup(proc, cgroups, matches.gl_pathv[i]);
        if (ref) found.push_back(Discovered{std::move(*ref), std::nullopt});
      }
    }
    ::globfree(&matches);
  }
  return found;
}

bool is_named(const sandbox::SandboxRef& ref, std::string_view name) {
  return ref.sandbox_id == name ||
         std::find(ref.names.begin(), ref.names.end(), name) != ref.names.end();
}

// The sample of one discovered sandbox, in the scope of its declared side.
Result<SweepItem> sample_ref(const SweepOptions& options, const Discovered& found,
                             const ScopesBySandbox& scopes, const sandbox::Sampler& sampler,
                             const sandbox::ProcessTable* table) {
  const auto& ref = found.ref;
  const auto scope = scope_in(scopes, ref);
  const auto started = std::chrono::steady_clock::now();
  auto observation = sampler.sample(ref, scope, table);
  if (!observation) return std::unexpected(observation.error());
  auto observed = projection::observed_projection(*observation, scope);
  if (!observed) return std::unexpected(observed.error());
  SweepItem item;
  item.ref = ref;
  item.observation = std::move(*observation);
  item.observed = std::move(*observed);
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  item.started_at =
      options.boot_time + static_cast<int64_t>(ref.first_process.start_time_ticks / ticks);
  item.sampled_at = unix_now();
  item.sample_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  item.consumed_config_sha256 = found.consumed_config_sha256;
  return item;
}

sandbox::Sampler make_sampler(const SweepOptions& options, const observe::ProcReader& proc,
                              const observe::CgroupReader& cgroups) {
  auto host = options.host_namespaces ? *options.host_namespaces
                                      : sandbox::Sampler::read_host_namespaces(proc);
  return sandbox::Sampler(proc, cgroups, std::move(host), options.ptrace_reads);
}

}  // namespace

ScopesBySandbox scopes_of(const DeclaredBySandbox& declared) {
  ScopesBySandbox scopes;
  for (const auto& [id, projection] : declared)
    scopes.emplace(id, projection::scope_for(projection));
  return scopes;
}

projection::ObservationScope scope_in(const ScopesBySandbox& scopes, std::string_view sandbox_id) {
  const auto it = scopes.find(sandbox_id);
  return it != scopes.end() ? it->second : projection::default_scope();
}

projection::ObservationScope scope_in(const ScopesBySandbox& scopes,
                                      const sandbox::SandboxRef& ref) {
  if (scopes.contains(ref.sandbox_id)) return scope_in(scopes, ref.sandbox_id);
  for (const auto& name : ref.names)
    if (scopes.contains(name)) return scope_in(scopes, name);
  return projection::default_scope();
}

SweepResult sweep(const SweepOptions& options, const DeclaredBySandbox& declared) {
  return sweep(options, scopes_of(declared));
}

Result<SweepItem> sample_one(const SweepOptions& options, std::string_view sandbox_id,
                             const DeclaredBySandbox& declared) {
  return sample_one(options, sandbox_id, scopes_of(declared));
}

SweepResult sweep(const SweepOptions& options, const ScopesBySandbox& scopes) {
  SweepResult result;
  try {
    observe::ProcReader proc(options.proc_root);
    observe::CgroupReader cgroups(options.cgroup_root);
    sandbox::Sampler sampler = make_sampler(options, proc, cgroups);
    const auto refs = discover(options, proc, cgroups, result.problems);
    const auto table = sampler.scan_processes();
    for (const auto& found : refs) {
      const auto& ref = found.ref;
      // One sandbox's sample must never stop the sweep of the others: every
      // error is a Result, and an exception (a bug) costs only this sandbox.
      try {
        auto item = sample_ref(options, found, scopes, sampler, &table);
        if (item) {
          result.items.push_back(std::move(*item));
        } else if (!item.error().vanished) {
          result.problems.push_back("sandbox " + ref.sandbox_id +
                                    ": not sampled: " + item.error().message);
        }
      } catch (const std::exception& e) {
        result.problems.push_back("sandbox " + ref.sandbox_id +
                                  ": not sampled: internal error: " + e.what());
      }
    }
  } catch (const std::exception& e) {
    result.problems.push_back(std::string("sweep stopped early: internal error: ") + e.what());
  }
  return result;
}

Result<SweepItem> sample_one(const SweepOptions& options, std::string_view sandbox_id,
                             const ScopesBySandbox& scopes) {
  try {
    observe::ProcReader proc(options.proc_root);
    observe::CgroupReader cgroups(options.cgroup_root);
    sandbox::Sampler sampler = make_sampler(options, proc, cgroups);
    std::optional<Discovered> found;
    auto ref = sandbox::find_container(options.roots, sandbox_id, proc);
    if (ref) {
      sandbox::NamesById podman_names;
      if (ref->engine == "runc" || ref->engine == "crun") {
        std::vector<std::string> ignored;
        podman_names = sandbox::read_podman_names(options.roots.podman_storage, ignored);
      }
      found = identify(std::move(*ref), options, podman_names);
      if (!found) return fail("sandbox ", sandbox_id, " is a pod's pause container, not watched");
    } else {
      // Not a container id: a container's name, or one of the cgroup
      // globs, found by discovery.
      std::vector<std::string> ignored;
      for (auto& candidate : discover(options, proc, cgroups, ignored)) {
        if (candidate.ref.sandbox_id == sandbox_id) {
          found = std::move(candidate);
          break;
        }
        if (!found && is_named(candidate.ref, sandbox_id)) found = std::move(candidate);
      }
    }
    if (!found) return std::unexpected(ref.error());
    return sample_ref(options, *found, scopes, sampler, nullptr);
  } catch (const std::exception& e) {
    return fail("sandbox ", sandbox_id, ": not sampled: internal error: ", e.what());
  }
}

}  // namespace driftwatch::correlate
