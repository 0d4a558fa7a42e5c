#include "api/routes.hpp"

#include <charconv>
#include "api/evidence_files.hpp"

#include <memory>
#include <utility>

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
}

}  // namespace driftwatch::api
