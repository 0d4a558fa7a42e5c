// Time to serve GET /metrics with 1,000 live sandboxes, through the
// daemon's own HTTP server and metrics families, and the number of series
// exposed. Goal (issue): <= 20 ms.
//
//   build/bench/metrics_bench [--sandboxes N] [--requests N]

// Boost 1.74's asio uses std::exchange without including <utility>.
#include <utility>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>

#include "api/http_server.hpp"
#include "metrics/metrics.hpp"
#include "support/http_client.hpp"

using namespace driftwatch;
using Clock = std::chrono::steady_clock;

namespace {

// A fleet as a node might hold it: most attested, some drifted with
// findings, some unattested, a few violating.
std::map<std::string, correlate::SandboxStatus> fleet(int count) {
  std::map<std::string, correlate::SandboxStatus> out;
  for (int i = 0; i < count; ++i) {
    correlate::SandboxStatus s;
    s.sandbox_id = "agent-" + std::to_string(i);
    s.runtime = i % 2 ? "runc" : "crun";
    s.launch_id = "L-2026-11-24-" + std::to_string(100000 + i);
    s.declared_sha256 = std::string(64, 'a' + i % 6);
    s.observed_sha256 = *s.declared_sha256;
    s.last_observed = 1000;
    s.verdict = "attested";
    if (i % 20 == 1) {
      s.verdict = "drifted";
      s.observed_sha256 = std::string(64, '0' + i % 10);
      for (const char* field : {"capabilities.effective", "resources.memory_max"}) {
        projection::Finding f;
        f.field = field;
        f.direction = projection::Direction::escalation;
        f.severity = "critical";
        s.findings.push_back(f);
      }
    } else if (i % 20 == 2) {
      s.verdict = "unattested";
      s.launch_id.reset();
      s.declared_sha256.reset();
    } else if (i % 50 == 3) {
      s.verdict = "violating";
      projection::Finding f;
      f.field = "policy.no-cap-sys-module";
      f.direction = projection::Direction::escalation;
      f.severity = "critical";
      s.findings.push_back(f);
    }
    out[s.sandbox_id] = s;
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int sandboxes = 1000, requests = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--sandboxes")) sandboxes = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--requests")) requests = std::atoi(argv[i + 1]);
  }
  metrics::Metrics m("bench", "bench", std::string(64, 'c'));
  auto statuses = fleet(sandboxes);
  // Every sandbox appears at once, as on the daemon's first sweep.
  std::vector<correlate::VerdictChange> changes;
  for (const auto& [id, status] : statuses)
    changes.push_back(
        {id, std::nullopt, status.verdict.value_or("pending"), status, status.findings, 0});
  m.apply_changes(changes, statuses, 1000);
  for (int i = 0; i < sandboxes; ++i) m.observe_sample_duration(0.0002);

  std::string text = m.serialize();
  size_t series = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    if (end > pos && text[pos] != '#') ++series;
    pos = end + 1;
  }

  std::vector<double> serialize_ms;
  for (int i = 0; i < requests; ++i) {
    auto start = Clock::now();
    auto body = m.serialize();
    serialize_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    if (body.size() != text.size()) return 1;
  }

  boost::asio::io_context io;
  api::HttpServer server(io);
  server.route("GET", "/metrics", [&m](const api::HttpRequest&) {
    return api::HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", m.serialize()};
  });
  if (auto listening = server.listen("127.0.0.1:0"); !listening) {
    std::fprintf(stderr, "metrics_bench: %s\n", listening.error().message.c_str());
    return 2;
  }
  std::thread loop([&io] { io.run(); });
  std::vector<double> serve_ms;
  for (int i = 0; i < requests; ++i) {
    auto start = Clock::now();
    auto reply = testing::http_request(server.port(), "GET", "/metrics");
    serve_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    if (reply.status != 200 || reply.body.size() != text.size()) {
      std::fprintf(stderr, "metrics_bench: bad reply %d (%zu bytes)\n", reply.status,
                   reply.body.size());
      return 1;
    }
  }
  boost::asio::post(io, [&server] { server.stop(); });
  loop.join();

  std::printf("| /metrics with %d sandboxes | median | max |\n| --- | --- | --- |\n", sandboxes);
  std::printf("| serialize (in process) | %.2f ms | %.2f ms |\n", median(serialize_ms),
              *std::max_element(serialize_ms.begin(), serialize_ms.end()));
  std::printf("| GET /metrics over loopback (%d requests) | %.2f ms | %.2f ms |\n", requests,
              median(serve_ms), *std::max_element(serve_ms.begin(), serve_ms.end()));
  std::printf("| series exposed | %zu | (%zu bytes) |\n", series, text.size());
  return 0;
}
