#pragma once
// Discovery and sampling of every sandbox on the node, as one function that
// the daemon (its sweep and its per-sandbox resample), `driftwatch inspect`
// and the benchmarks share. Blocking (it reads /proc and cgroupfs): the
// daemon runs it on its worker thread, never on the event loop.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "correlate/correlator.hpp"
#include "observe/cgroupfs.hpp"
#include "observe/proc_reader.hpp"
#include "projection/projection.hpp"
#include "sandbox/discovery.hpp"
#include "sandbox/sampler.hpp"

namespace driftwatch::correlate {

struct SweepOptions {
  sandbox::DiscoveryRoots roots;
  /// Directory globs of cgroups that are sandboxes of their own.
  std::vector<std::string> cgroup_globs;
  /// Unix time of boot (btime), to date each sandbox's first process.
  int64_t boot_time = 0;
  std::filesystem::path proc_root = "/proc";
  std::filesystem::path cgroup_root = "/sys/fs/cgroup";
  /// Hash the bundle's config.json (consumed_config_sha256).
  bool hash_bundle_config = true;
  /// The host namespaces to compare with, read before the daemon confined
  /// itself into a mount namespace of its own; nullopt: read them now.
  std::optional<sandbox::Sampler::HostNamespaces> host_namespaces;
  /// Who does the ptrace-mode reads (namespace and exe links, sandbox
  /// roots): the daemon's sampler has its proc peer do them; null: this
  /// process. Not sent to the sampler process: it starts its own peer.
  std::shared_ptr<const sandbox::PtraceReads> ptrace_reads;
};

/// The declared projection each sandbox with a launch is held to: its scope
/// (masked paths, rlimits) decides what is observed. Others get the
/// runtime's default scope.
using DeclaredBySandbox = std::map<std::string, projection::Projection, std::less<>>;
/// The same as scopes: what the daemon's sampler process is sent.
using ScopesBySandbox = std::map<std::string, projection::ObservationScope, std::less<>>;
ScopesBySandbox scopes_of(const DeclaredBySandbox& declared);
/// The scope of `sandbox_id`: its own, or projection::default_scope().
projection::ObservationScope scope_in(const ScopesBySandbox& scopes, std::string_view sandbox_id);
/// The scope of the sandbox `ref`: its id's, else the first of its names
/// that has one, else projection::default_scope().
projection::ObservationScope scope_in(const ScopesBySandbox& scopes,
                                      const sandbox::SandboxRef& ref);

struct SweepResult {
  std::vector<SweepItem> items;
  /// One sentence per sandbox that could not be sampled (not those that
  /// exited meanwhile), and per runtime state that could not be read.
  std::vector<std::string> problems;
};

/// Every sandbox under the roots and globs, sampled. Never throws: a sandbox
/// whose sample fails (or throws, a bug) is a problem line, and the others
/// are still sampled.
SweepResult sweep(const SweepOptions& options, const ScopesBySandbox& scopes);
SweepResult sweep(const SweepOptions& options, const DeclaredBySandbox& declared);

/// One sandbox by id or name (a resample): found again under the roots and
/// globs, then sampled (a sandbox whose id is `sandbox_id` before one that
/// has it as a name). An error when it is gone or cannot be sampled.
Result<SweepItem> sample_one(const SweepOptions& options, std::string_view sandbox_id,
                             const ScopesBySandbox& scopes);
Result<SweepItem> sample_one(const SweepOptions& options, std::string_view sandbox_id,
                             const DeclaredBySandbox& declared);

}  // namespace driftwatch::correlate
