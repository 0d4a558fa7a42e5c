#pragma once
// Node policy: invariants that hold for every sandbox on the node whatever
// its launch config says (DESIGN.md "Node policy"). A violated rule is a
// finding of its own, with the rule's severity and controls, and makes the
// verdict `violating`.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "projection/diff.hpp"
#include "projection/observed.hpp"

namespace driftwatch::policy {

/// One requirement; exactly one kind per rule.
struct Requirement {
  enum class Kind {
    capabilities_absent,  // none of `capabilities` in any member's effective/permitted/ambient
    namespaces_not_host,  // each of `namespaces` private for every member
    no_new_privileges,    // every member has no_new_privs
    seccomp_at_least,     // every member's seccomp at least `seccomp`
    root_readonly,        // the root is read-only in every mount namespace
    memory_max_at_most,   // memory_max set and <= `limit`
    pids_max_set,         // pids_max set
    argv_forbidden,       // no argv element of any member is one of `flags` (or FLAG=…)
  };
  Kind kind;
  uint64_t capabilities = 0;
  std::vector<std::string> namespaces;
  std::string seccomp;
  int64_t limit = 0;
  // Literal flags, not regular expressions: argv is written by the sandbox,
  // and libstdc++'s std::regex recurses per character, so a 128 KiB argument
  // (the kernel's MAX_ARG_STRLEN) overflows the stack on a pattern like
  // "(=.*)?" (measured). Flags match exactly or as "FLAG=value".
  std::vector<std::string> flags;
  nlohmann::json as_declared;  // the requirement as written, for findings
};

struct Rule {
  std::string id;
  std::string description;
  std::string severity;  // critical | high | medium | low
  std::vector<std::string> controls;
  Requirement requirement;
};

struct Policy {
  std::string name;
  std::vector<Rule> rules;
  std::string sha256;  // hex SHA-256 of the document's bytes, for the evidence log
};

/// The policy compiled into the binary (policy/default.json).
std::string_view embedded_default_policy();

/// Parses a policy document; errors name the rule and key.
Result<Policy> parse_policy(std::string_view text, std::string_view what);
/// A policy file, or the embedded default when `path` is nullopt.
Result<Policy> load_policy(const std::optional<std::filesystem::path>& path);

/// The rules `observation` (reduced to `observed`) breaks, as findings on
/// field "policy.<rule id>" with direction escalation and the rule's
/// severity and controls. Members in nested user namespaces do not count
/// for capability rules: their capabilities do not reach the host's
/// namespace (the drift findings still report them).
std::vector<projection::Finding> evaluate(const Policy& policy,
                                          const projection::Projection& observed,
                                          const projection::Observation& observation);

}  // namespace driftwatch::policy
