#pragma once
// The daemon's HTTP API (DESIGN.md "HTTP API"): which route answers what, and
// how an ingest outcome maps to a status and a body. The daemon's state stays
// the daemon's: routes see it only through the callbacks of DaemonView,
// which run on the loop.

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api/http_server.hpp"
#include "evidence/note.hpp"
#include "ingest/ingestor.hpp"

namespace driftwatch::api {

using IngestDone = std::function<void(const ingest::IngestOutcome&)>;
/// A tlog-proof@v1 text, or why there is none.
using ProofDone = std::function<void(Result<std::string>)>;

struct DaemonView {
  /// GET /healthz: the health document.
  std::function<nlohmann::json()> health;
  /// GET /metrics: the text exposition format.
  std::function<std::string()> metrics;
  /// GET /v1/sandboxes: every sandbox, a JSON array.
  std::function<nlohmann::json()> sandboxes;
  /// GET /v1/sandboxes/{id}: one sandbox, nullopt when unknown.
  std::function<std::optional<nlohmann::json>(std::string_view id)> sandbox;
  /// POST /v1/launch-events and /v1/grants: ingests `body` (of `kind`);
  /// `done` is called once the outcome is final (for an accept: durable).
  std::function<void(ingest::EnvelopeKind kind, std::string_view body, std::string source,
                     IngestDone done)>
      ingest;
  /// A body over the limit that was never read: counted and answered 413.
  std::function<ingest::IngestOutcome(ingest::EnvelopeKind kind,
                                      std::optional<uint64_t> declared_length)>
      reject_too_large;
  /// GET /v1/evidence/proof?index=N: the tlog-proof of entry N against the
  /// latest checkpoint; `done` is called on the loop.
  std::function<void(uint64_t index, ProofDone done)> evidence_proof;
  /// GET /evidence/…: the evidence log's directory (state_dir/evidence),
  /// served as it lies (api/evidence_files.hpp); nullopt: every such GET is
  /// a 404 saying this daemon serves none.
  std::optional<std::filesystem::path> evidence_dir;
  /// The key the evidence log's checkpoints are signed with, for GET
  /// /v1/report (which reads evidence_dir as any copy of the log is read);
  /// unset or nullopt: no reports.
  std::function<std::optional<evidence::NoteVerifier>()> evidence_verifier;
  /// Runs `work`, which blocks on the disk (reading an entry bundle or a
  /// blob of up to a few MiB), off the loop, and answers with what it
  /// returns through `respond` on the loop. Unset: `work` runs on the loop.
  std::function<void(std::function<HttpResponse()> work, Respond respond)> off_loop;
};

/// The contract's answer to an ingest outcome: `{"result", "id"}` or
/// `{"result", "reason"}` with the result's status (202, 200, 400, 403, 409,
/// 413, 422, 503).
HttpResponse ingest_response(const ingest::IngestOutcome& outcome);

/// Registers every route of the API on `http`.
void add_routes(HttpServer& http, DaemonView view);

}  // namespace driftwatch::api
