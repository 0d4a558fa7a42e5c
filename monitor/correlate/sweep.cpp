#include "correlate/sweep.hpp"

#include <glob.h>
#include <unistd.h>

#include <chrono>
#include <exception>

#include "common/canonical_json.hpp"
#include "common/file_io.hpp"
#include "common/sha256.hpp"
#include "projection/observed.hpp"

namespace driftwatch::correlate {
namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<sandbox::SandboxRef> discover(const SweepOptions& options,
                                          const observe::ProcReader& proc,
                                          const observe::CgroupReader& cgroups,
                                          std::vector<std::string>& problems) {
  std::vector<Error> errors;
  auto refs = sandbox::list_containers(options.roots, proc, &errors);
  for (const auto& error : errors) problems.push_back(error.message);
  for (const auto& pattern : options.cgroup_globs) {
    glob_t matches{};
    if (::glob(pattern.c_str(), GLOB_ONLYDIR | GLOB_NOSORT, nullptr, &matches) == 0) {
      for (size_t i = 0; i < matches.gl_pathc; ++i) {
        auto ref = sandbox::sandbox_for_cgroup(proc, cgroups, matches.gl_pathv[i]);
        if (ref) refs.push_back(std::move(*ref));
      }
    }
    ::globfree(&matches);
  }
  return refs;
}

// The sample of one discovered sandbox, in the scope of its declared side.
Result<SweepItem> sample_ref(const SweepOptions& options, const sandbox::SandboxRef& ref,
                             const ScopesBySandbox& scopes, const sandbox::Sampler& sampler,
                             const sandbox::ProcessTable* table) {
  const auto scope = scope_in(scopes, ref.sandbox_id);
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
  if (ref.bundle && options.hash_bundle_config) {
    // The bundle is written by the runtime's caller on the host, never by
    // the sandbox; still, it is outside input: bounded and strictly parsed.
    auto text = read_regular_file(*ref.bundle / "config.json", 4u << 20, "bundle config");
    auto doc = text ? parse_json(*text, "config.json") : std::unexpected(text.error());
    if (doc) {
      auto bytes = canonical_json(*doc);
      if (bytes) item.consumed_config_sha256 = sha256_hex(*bytes);
    }
  }
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
    for (const auto& ref : refs) {
      // One sandbox's sample must never stop the sweep of the others: every
      // error is a Result, and an exception (a bug) costs only this sandbox.
      try {
        auto item = sample_ref(options, ref, scopes, sampler, &table);
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
    auto ref = sandbox::find_container(options.roots, sandbox_id, proc);
    if (!ref) {
      // Not a container: one of the cgroup globs, found by discovery.
      SweepOptions globs_only = options;
      globs_only.roots.runc_roots.clear();
      globs_only.roots.crun_roots.clear();
      std::vector<std::string> ignored;
      for (auto& candidate : discover(globs_only, proc, cgroups, ignored))
        if (candidate.sandbox_id == sandbox_id) ref = std::move(candidate);
    }
    if (!ref) return std::unexpected(ref.error());
    return sample_ref(options, *ref, scopes, sampler, nullptr);
  } catch (const std::exception& e) {
    return fail("sandbox ", sandbox_id, ": not sampled: internal error: ", e.what());
  }
}

}  // namespace driftwatch::correlate
