#include "api/routes.hpp"

#include <charconv>
#include "api/evidence_files.hpp"

#include <chrono>
#include <memory>
#include <utility>

#include "evidence/merkle.hpp"
#include "evidence/report.hpp"

namespace driftwatch::api {
namespace {

using nlohmann::json;

// Sandbox ids and reasons are printable, but an answer must never fail to
// serialise: replace, do not throw.
std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

constexpr const char* kSandboxPrefix = "/v1/sandboxes/";
constexpr std::string_view kEvidencePrefix = "/evidence/";

// GET /v1/report: at most this long and this large, or 503; a report of
// a launch is a few entries, but the scan reads the whole log.
constexpr std::chrono::seconds kReportTime{30};
constexpr size_t kMaxReportResponse = 64u << 20;

HttpResponse json_error(int status, const std::string& message) {
  return HttpResponse{status, "application/json", dump(json{{"error", message}})};
}

// The report of `launch` from the log in `dir`, run off the loop.
HttpResponse report_response(const std::filesystem::path& dir,
                             const evidence::NoteVerifier& verifier,
                             const evidence::ReportOptions& options, const std::string& format) {
  const evidence::DirectoryReader reader(dir.string());
  auto report = evidence::build_report(reader, verifier, options);
  if (!report) {
    const auto& error = report.error();
    switch (error.failure) {
      case evidence::ReportFailure::kUnknownLaunch:
        return json_error(404, error.message);
      case evidence::ReportFailure::kTooLarge:
        return json_error(503, error.message);
      case evidence::ReportFailure::kBadInput:
      case evidence::ReportFailure::kTampered:
        return json_error(500, "the evidence log does not check out: " + error.message);
    }
  }
  auto body = evidence::render_report(*report, format);
  if (!body) return json_error(400, body.error().message);
  if (body->size() > kMaxReportResponse)
    return json_error(503, "the report is larger than " + std::to_string(kMaxReportResponse) +
                               " bytes; use driftwatch report on a copy of the log");
  return HttpResponse{200, format == "html" ? "text/html; charset=utf-8" : "application/json",
                      std::move(*body)};
}

}  // namespace

HttpResponse ingest_response(const ingest::IngestOutcome& outcome) {
  json body{{"result", ingest::to_string(outcome.result)}};
  if (outcome.result == ingest::IngestResult::accepted) body["id"] = outcome.id;
  if (outcome.result != ingest::IngestResult::accepted &&
      outcome.result != ingest::IngestResult::duplicate)
    body["reason"] = outcome.reason;
  return {ingest::http_status(outcome.result), "application/json", dump(body)};
}

void add_routes(HttpServer& http, DaemonView view) {
  auto shared = std::make_shared<DaemonView>(std::move(view));
  http.route("GET", "/healthz", [shared](const HttpRequest&) {
    return HttpResponse{200, "application/json", dump(shared->health())};
  });
  http.route("GET", "/metrics", [shared](const HttpRequest&) {
    return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", shared->metrics()};
  });
  http.route("GET", "/v1/sandboxes", [shared](const HttpRequest&) {
    return HttpResponse{200, "application/json", dump(shared->sandboxes())};
  });
  http.route("GET", kSandboxPrefix, [shared](const HttpRequest& request) {
    const std::string id = request.path.substr(std::string_view(kSandboxPrefix).size());
    auto sandbox = shared->sandbox(id);
    if (!sandbox)
      return HttpResponse{404, "application/json",
                          dump(json{{"error", "no sandbox '" + id + "' on this node"}})};
    return HttpResponse{200, "application/json", dump(*sandbox)};
  });
  // The static tlog-tiles API. Checkpoints and hash tiles (at most 16 and 8
  // KiB) are read on the loop; entry bundles and blobs (up to 16 and 4 MiB)
  // by `off_loop`, so the loop never waits for more than one small read.
  http.route_async(
      "GET", std::string(kEvidencePrefix), [shared](const HttpRequest& request, Respond respond) {
        auto file = evidence_request(std::string_view(request.path).substr(kEvidencePrefix.size()));
        if (!file) return respond(std::move(file.error()));
        if (!shared->evidence_dir) return respond(no_evidence_log_response());
        if (read_on_loop(*file) || !shared->off_loop)
          return respond(serve_evidence_file(*shared->evidence_dir, *file));
        shared->off_loop([dir = *shared->evidence_dir,
                          file = std::move(*file)] { return serve_evidence_file(dir, file); },
                         std::move(respond));
      });
  // Answered once the outcome is final: for an accept, once it is durable.
  const auto ingest_route = [shared](ingest::EnvelopeKind kind, std::string source) {
    return [shared, kind, source](const HttpRequest& request, Respond respond) {
      if (request.body_too_large) {
        respond(ingest_response(shared->reject_too_large(kind, request.declared_length)));
        return;
      }
      shared->ingest(kind, request.body, source, [respond](const ingest::IngestOutcome& outcome) {
        respond(ingest_response(outcome));
      });
    };
  };
  http.route_async("POST", "/v1/launch-events",
                   ingest_route(ingest::EnvelopeKind::launch, "POST /v1/launch-events"));
  http.route_async("POST", "/v1/grants",
                   ingest_route(ingest::EnvelopeKind::grant, "POST /v1/grants"));
  http.route_async(
      "GET", "/v1/evidence/proof", [shared](const HttpRequest& request, Respond respond) {
        const auto it = request.query.find("index");
        uint64_t index = 0;
        const std::string text = it == request.query.end() ? std::string() : it->second;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), index);
        if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
            (text.size() > 1 && text.front() == '0'))
          return respond(HttpResponse{
              400, "application/json",
              dump(json{{"error", "index must be an entry number: /v1/evidence/proof?index=N"}})});
        if (!shared->evidence_proof)
          return respond(HttpResponse{404, "application/json",
                                      dump(json{{"error", "this daemon keeps no evidence log"}})});
        shared->evidence_proof(index, [respond](Result<std::string> proof) {
          if (!proof)
            return respond(HttpResponse{404, "application/json",
                                        dump(json{{"error", proof.error().message}})});
          respond(HttpResponse{200, "text/plain; charset=utf-8", std::move(*proof)});
        });
      });
  // The correlation report of one launch, from the daemon's own log read
  // as a copy of it would be (evidence/report.hpp), off the loop.
  http.route_async("GET", "/v1/report", [shared](const HttpRequest& request, Respond respond) {
    const auto param = [&](const char* name) -> std::optional<std::string> {
      const auto it = request.query.find(name);
      if (it == request.query.end()) return std::nullopt;
      return it->second;
    };
    const auto launch = param("launch");
    if (!launch || launch->empty() || launch->size() > 256)
      return respond(json_error(
          400,
          "launch must be a launch id: /v1/report?launch=ID[&since=T][&format=json|html|oscal]"));
    const std::string format = param("format").value_or("json");
    if (format != "json" && format != "html" && format != "oscal")
      return respond(json_error(400, "format must be json, html or oscal"));
    evidence::ReportOptions options;
    options.launch_id = *launch;
    if (const auto since = param("since")) {
      auto seconds = evidence::parse_report_time(*since);
      if (!seconds) return respond(json_error(400, "since: " + seconds.error().message));
      options.since = *seconds;
    }
    const auto verifier = shared->evidence_verifier ? shared->evidence_verifier()
                                                    : std::optional<evidence::NoteVerifier>();
    if (!shared->evidence_dir || !verifier)
      return respond(json_error(404, "this daemon keeps no evidence log"));
    auto work = [dir = *shared->evidence_dir, verifier = *verifier, options, format]() mutable {
      options.deadline = std::chrono::steady_clock::now() + kReportTime;
      return report_response(dir, verifier, options, format);
    };
    if (!shared->off_loop) return respond(work());
    shared->off_loop(std::move(work), std::move(respond));
  });
}

}  // namespace driftwatch::api
