#pragma once
// The correlation report of a launch (DESIGN.md "Evidence log"): what the
// evidence log says about one launch, with everything needed to check it
// offline with the node's verifier key alone.
//
// Built from a copy of the log read through a ResourceReader (a directory
// or a URL), never from the live Log: two sequential passes over the entry
// bundles (the first finds the launches, the second keeps only the entries
// the selected launches cite), then one tlog-proof@v1 per cited entry,
// computed from the hash tiles against the log's latest checkpoint.
//
// Per launch (a `launch_accepted` entry), the entries it cites:
//   launch event   the launch_accepted entry (who asked, which key signed,
//                  the config hash) and its envelope blob
//   timeline       sandbox_discovered / observation / sandbox_gone of its
//                  sandbox: verdicts, declared and observed hashes, the
//                  consumed config hash
//   findings       finding entries, with their NIST SP 800-53 controls
//   grants         grant_accepted entries naming it
//   rejections     launch_rejected / grant_rejected entries whose kept
//                  envelope's payload names its launch_id or sandbox_id (or
//                  whose id is the launch's)
//   denied         escalation_attempt entries of its sandbox (written by the
//                  probes; none until they are attached)
// An entry about a sandbox belongs to the launch it names; one that names
// no launch (seen before its launch event arrived) to the launch of its
// sandbox id. With a `since` time, entries before it are left out, except
// the launch event itself.
//
// Every part of a launch's section but its list of cited entries is a pure
// function of those entries (describe_launch), so `verify --report`
// recomputes it and trusts nothing the report says of itself.

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "evidence/merkle.hpp"
#include "evidence/note.hpp"

namespace driftwatch::evidence {

/// The `format` field of a report document (`--format json`).
inline constexpr std::string_view kReportFormat = "driftwatch-report@v1";
/// A report document larger than this is refused before it is parsed.
inline constexpr size_t kMaxReportBytes = 256u << 20;
/// What the report says while no probe writes escalation_attempt entries.
inline constexpr std::string_view kNoDeniedAttemptsNote =
    "no escalation_attempt entries: no attempt was denied in the sandbox, or the probes that "
    "count them were not attached (driftwatch_probe_attached, /healthz probes)";

enum class ReportFailure {
  kBadInput,       // not a log, wrong key, a malformed report (exit 2)
  kUnknownLaunch,  // no such launch in the log (exit 2; HTTP 404)
  kTooLarge,       // past ReportOptions::deadline (HTTP 503)
  kTampered,       // the log or the report does not check out (exit 1)
};

struct ReportError {
  ReportFailure failure = ReportFailure::kBadInput;
  std::string message;  // one line
};

template <class T>
using ReportResult = std::expected<T, ReportError>;

struct ReportOptions {
  std::optional<std::string> launch_id;  // nullopt: every launch in the log
  std::optional<int64_t> since;          // unix seconds: entries at or after it
  /// Give up (kTooLarge) when the scan is still running at this time.
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

/// One cited entry: its exact bytes (JCS) and its proof against the
/// report's checkpoint.
struct CitedEntry {
  std::string bytes;
  std::string proof;  // tlog-proof@v1 text
};

/// One launch's section.
struct LaunchSection {
  std::vector<uint64_t> cites;  // ascending entry indexes
  nlohmann::json view;          // describe_launch of the cited entries
};

struct Report {
  std::string checkpoint;  // the signed checkpoint note, verbatim
  Checkpoint tree;         // what it says (origin, size, root)
  std::optional<std::string> launch_filter;
  std::optional<int64_t> since;
  std::vector<LaunchSection> launches;
  std::map<uint64_t, CitedEntry> entries;
  std::map<std::string, std::string> blobs;  // hex sha256 -> bytes
};

/// Reads the log through `reader`, opens its latest checkpoint with
/// `verifier` (origin: the key's name) and builds the report. Bad input: no
/// log, a checkpoint by another key, an unknown launch; tampered: a
/// checkpoint signature that does not verify, entries or tiles that do not
/// give the checkpoint's root.
ReportResult<Report> build_report(const ResourceReader& reader, const NoteVerifier& verifier,
                                  const ReportOptions& options);

/// A blob by its hex sha256, nullopt when it is not at hand.
using BlobLookup = std::function<std::optional<std::string>(const std::string& sha256)>;

/// The section of launch `launch_id` from its cited entries (index, bytes),
/// ascending: summary (sandbox id, who requested, which key signed, config
/// and consumed config hashes, verdict now, drift, drifted fields, controls),
/// timeline, findings, grants, rejections, denied attempts. An error names
/// the first entry that does not concern the launch.
Result<nlohmann::json> describe_launch(const std::string& launch_id,
                                       const std::vector<std::pair<uint64_t, std::string>>& entries,
                                       const BlobLookup& blobs);

/// The report as a `--format json` document.
nlohmann::json report_to_json(const Report& report);
/// The inverse, strict: every field's type checked; an error for anything
/// else (it does not check signatures or proofs: verify_report does).
Result<Report> parse_report(std::string_view text);

/// `verify --report`: the checkpoint with `verifier` (origin: the key's
/// name), each cited entry's proof against it, each blob's hash and that an
/// entry cites it, and each launch section recomputed from its entries.
/// Bad input: the checkpoint is by another key; tampered: anything else,
/// naming the first bad entry, blob or launch and why.
ReportResult<void> verify_report(const Report& report, const NoteVerifier& verifier);

/// One self-contained HTML page (no scripts, no remote assets), every
/// string from the log escaped.
std::string report_html(const Report& report);

/// An OSCAL 1.0.6 Assessment Results document: one result for the report,
/// an observation per cited entry, a finding per drift finding targeting
/// its NIST SP 800-53 rev5 controls (lowercase catalog ids), subjects naming
/// the launch and its sandbox, uuids derived from content.
nlohmann::json report_oscal(const Report& report);

/// The report in `format`: "json" (report_to_json, indented), "html" or
/// "oscal"; an error for another format.
Result<std::string> render_report(const Report& report, std::string_view format);

/// A `--since` / `since=` time: RFC 3339 ("2026-11-24T22:00:00Z") or unix
/// seconds ("1795644000").
Result<int64_t> parse_report_time(std::string_view text);

/// A UUID (version 5 layout, RFC 4122 variant) from the SHA-256 of `name`:
/// the same content always gets the same uuid.
std::string content_uuid(std::string_view name);

}  // namespace driftwatch::evidence
