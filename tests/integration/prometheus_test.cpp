// A real Prometheus scraping a real `driftwatch run` that watches real runc
// containers, loaded with the repository's dashboards/alerts.yml: the alerts
// an SRE pages on fire for the right sandbox and launch, and every query of
// dashboards/driftwatch.json returns data. (The same files offline:
// scripts/check-dashboards.sh.)

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "integration/daemon_harness.hpp"
#include "support/http_client.hpp"
#include "support/oci_bundle.hpp"
#include "support/process_guard.hpp"
#include "support/skip.hpp"

using namespace driftwatch::testing;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// tests/integration/prometheus_test.cpp → the repository's dashboards/.
fs::path dashboards_dir() {
  return fs::weakly_canonical(fs::path(__FILE__).parent_path() / ".." / ".." / "dashboards");
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

std::string tail(const std::string& text, size_t bytes = 4000) {
  return text.size() <= bytes ? text : "…" + text.substr(text.size() - bytes);
}

/// A loopback port nobody listened on a moment ago. Prometheus binds it
/// itself, so another process may take it first: the caller retries.
uint16_t free_loopback_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    std::string why = std::strerror(errno);
    close(fd);
    throw std::runtime_error("cannot bind a loopback port: " + why);
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string url_encode(std::string_view text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

/// A real Prometheus on a free loopback port, scraping `target` every second
/// and evaluating `rule_file` every second, its config and TSDB under `dir`.
/// The destructor (ChildProcess) kills and reaps it.
class PrometheusUnderTest {
 public:
  PrometheusUnderTest(const fs::path& dir, const std::string& target, const fs::path& rule_file)
      : dir_(dir) {
    // JSON is YAML: no quoting to get wrong.
    json config{{"global", {{"scrape_interval", "1s"}, {"evaluation_interval", "1s"}}},
                {"rule_files", {rule_file.string()}},
                {"scrape_configs",
                 {{{"job_name", "driftwatch"}, {"static_configs", {{{"targets", {target}}}}}}}}};
    std::ofstream(config_path()) << config.dump(2);
    std::string why;
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_loopback_port();
      SpawnOptions options;
      options.output_path = log_path();
      child_.emplace(ChildProcess::start(
          {"prometheus", "--config.file=" + config_path().string(),
           "--storage.tsdb.path=" + (dir_ / "prometheus-data").string(),
           "--web.listen-address=127.0.0.1:" + std::to_string(port_), "--log.level=warn"},
          options));
      if (wait_ready()) return;
      why = tail(log());
      child_.reset();  // exited (port taken?) or never ready: try another port
    }
    throw std::runtime_error("prometheus did not become ready on 5 ports; its log:\n" + why);
  }

  uint16_t port() const { return port_; }
  std::string log() const { return read_file(log_path()); }

  /// GET an API path; the parsed answer (Prometheus answers errors as JSON too).
  json get(const std::string& path) const {
    auto reply = http_request(port_, "GET", path);
    auto body = json::parse(reply.body, nullptr, false);
    if (body.is_discarded())
      throw std::runtime_error("GET " + path + " -> " + std::to_string(reply.status) +
                               ", not JSON: " + tail(reply.body, 300));
    return body;
  }
  json query(const std::string& promql) const {
    return get("/api/v1/query?query=" + url_encode(promql));
  }

 private:
  fs::path config_path() const { return dir_ / "prometheus.yml"; }
  fs::path log_path() const { return dir_ / "prometheus.log"; }

  bool wait_ready() {
    for (int i = 0; i < 300; ++i) {
      if (child_->poll()) return false;
      try {
        if (http_request(port_, "GET", "/-/ready").status == 200) return true;
      } catch (const std::runtime_error&) {
        // not listening yet
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  fs::path dir_;
  uint16_t port_ = 0;
  std::optional<ChildProcess> child_;
};

/// The alert named `name` in state "firing" whose `label` is `value`.
std::optional<json> firing(const json& alerts, const std::string& name, const std::string& label,
                           const std::string& value) {
  for (const auto& alert : alerts.value("/data/alerts"_json_pointer, json::array()))
    if (alert["labels"].value("alertname", "") == name && alert["state"] == "firing" &&
        alert["labels"].value(label, "") == value)
      return alert;
  return std::nullopt;
}

/// Every query of the dashboard: panel targets (rows nest panels) and
/// annotation queries, each with where it comes from.
std::vector<std::pair<std::string, std::string>> dashboard_queries(const json& dashboard) {
  std::vector<std::pair<std::string, std::string>> queries;
  std::function<void(const json&)> walk = [&](const json& panels) {
    for (const auto& panel : panels) {
      for (const auto& target : panel.value("targets", json::array()))
        queries.emplace_back(
            "panel \"" + panel.value("title", "") + "\" target " + target.value("refId", "?"),
            target.value("expr", ""));
      walk(panel.value("panels", json::array()));
    }
  };
  walk(dashboard.value("panels", json::array()));
  for (const auto& annotation : dashboard["annotations"].value("list", json::array()))
    if (annotation.contains("expr"))
      queries.emplace_back("annotation \"" + annotation.value("name", "") + "\"",
                           annotation["expr"].get<std::string>());
  return queries;
}

/// Grafana's variables as the dashboard is used on this node: `node` is the
/// instance Prometheus gave the daemon (a literal, so that a panel filtering
/// on a label that does not exist comes back empty instead of matching ""),
/// `sandbox` the multi-value regex Grafana builds, and the intervals fixed.
std::string substitute(std::string expr, const std::string& node, const std::string& sandboxes) {
  const std::pair<std::string, std::string> substitutions[] = {
      {"$__rate_interval", "1m"}, {"$__interval", "1m"}, {"$__range", "5m"},
      {"${node}", node},          {"$node", node},       {"${sandbox}", sandboxes},
      {"$sandbox", sandboxes}};
  for (const auto& [variable, value] : substitutions)
    for (size_t at = expr.find(variable); at != std::string::npos;
         at = expr.find(variable, at + value.size()))
      expr.replace(at, variable.size(), value);
  return expr;
}

}  // namespace

TEST_CASE(
    "prometheus: a real Prometheus with the repo's alert rules pages on a drifted, an unattested "
    "and a violating runc sandbox, and every dashboard query returns data",
    "[root][runc][prometheus][integration]") {
  SKIP_WITHOUT("root", "runc", "busybox");
  if (have_tool("prometheus").empty()) {
    DW_SKIP("prometheus not found (Debian package prometheus; scripts/install-deps.sh)");
  }
  const fs::path rules = dashboards_dir() / "alerts.yml";
  const fs::path dashboard_path = dashboards_dir() / "driftwatch.json";
  REQUIRE(fs::exists(rules));
  REQUIRE(fs::exists(dashboard_path));

  // Three sandboxes: `honest` launched as configured, then given
  // CAP_SYS_ADMIN by `runc exec --cap` (drifted); `stray` never launched
  // (unattested after the 2 s grace); `privileged` launched, signed and all,
  // with CAP_SYS_MODULE, which the node's default policy forbids (violating).
  auto honest_bundle = OciBundle::with_default_spec();
  auto stray_bundle = OciBundle::with_default_spec();
  auto privileged_bundle = OciBundle::with_default_spec();
  for (const char* set : {"bounding", "effective", "permitted"})
    privileged_bundle.config()["process"]["capabilities"][set].push_back("CAP_SYS_MODULE");
  privileged_bundle.write_config();
  auto honest =
      value_or_throw(Container::start("runc", honest_bundle, unique_container_id("p-drift")));
  auto stray =
      value_or_throw(Container::start("runc", stray_bundle, unique_container_id("p-stray")));
  auto privileged =
      value_or_throw(Container::start("runc", privileged_bundle, unique_container_id("p-priv")));

  DaemonUnderTest daemon;
  daemon.start();
  const std::string honest_launch = "L-prom-drift-1";
  const std::string privileged_launch = "L-prom-policy-1";
  for (const auto& [launch, container, bundle] :
       {std::tuple{honest_launch, &honest, &honest_bundle},
        std::tuple{privileged_launch, &privileged, &privileged_bundle}}) {
    auto reply = daemon.post(
        "/v1/launch-events",
        daemon.sign("launch",
                    DaemonUnderTest::launch_payload(launch, container->id(), bundle->config()),
                    "cp-1"));
    INFO(launch << ": " << reply.status << " " << reply.body);
    REQUIRE(reply.status == 202);
  }
  REQUIRE(daemon.wait_for_verdict(honest.id(), "attested")["verdict"] == "attested");
  value_or_throw(honest.exec({"sleep", "3600"}, {"--cap", "CAP_SYS_ADMIN"}));
  for (const auto& [container, verdict] :
       {std::pair{&honest, "drifted"}, {&stray, "unattested"}, {&privileged, "violating"}}) {
    auto state = daemon.wait_for_verdict(container->id(), verdict);
    INFO(state.dump() << "\n" << tail(daemon.log()));
    REQUIRE(state["verdict"] == verdict);
  }

  const std::string instance = "127.0.0.1:" + std::to_string(daemon.port());
  PrometheusUnderTest prometheus(daemon.dir(), instance, rules);

  // The alerts, as Alertmanager would receive them.
  const std::vector<std::tuple<std::string, std::string, std::string>> expected = {
      {"DriftwatchSandboxDrifted", "sandbox", honest.id()},
      {"DriftwatchSandboxUnattested", "sandbox", stray.id()},
      {"DriftwatchPolicyViolated", "sandbox", privileged.id()},
      {"DriftwatchPolicyViolated", "rule", "no-cap-sys-module"},
  };
  json alerts;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    alerts = prometheus.get("/api/v1/alerts");
    bool all = true;
    for (const auto& [name, label, value] : expected)
      all = all && firing(alerts, name, label, value).has_value();
    if (all || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  {
    INFO("alerts: " << alerts.dump(1) << "\ntargets: " << prometheus.get("/api/v1/targets").dump()
                    << "\nprometheus log: " << tail(prometheus.log()));
    for (const auto& [name, label, value] : expected) {
      INFO(name << " firing for " << label << "=" << value);
      CHECK(firing(alerts, name, label, value).has_value());
    }

    if (auto drifted = firing(alerts, "DriftwatchSandboxDrifted", "sandbox", honest.id())) {
      CHECK(drifted->at("labels") == json({{"alertname", "DriftwatchSandboxDrifted"},
                                           {"severity", "critical"},
                                           {"instance", instance},
                                           {"job", "driftwatch"},
                                           {"sandbox", honest.id()},
                                           {"launch_id", honest_launch}}));
      std::string summary = drifted->at("/annotations/summary"_json_pointer);
      CHECK(summary == "Sandbox " + honest.id() + " (launch " + honest_launch + ") on " + instance +
                           " has drifted from its signed launch config");
      std::string description = drifted->at("/annotations/description"_json_pointer);
      CHECK_THAT(description,
                 Catch::Contains("curl -s http://" + instance + "/v1/sandboxes/" + honest.id()));
      CHECK_THAT(description,
                 Catch::Contains("driftwatch report --url http://" + instance +
                                 "/evidence --key node.vkey --launch " + honest_launch));
    }
    if (auto unattested = firing(alerts, "DriftwatchSandboxUnattested", "sandbox", stray.id())) {
      // No launch: the launch_id label is empty, so Prometheus drops it.
      CHECK(unattested->at("labels") == json({{"alertname", "DriftwatchSandboxUnattested"},
                                              {"severity", "warning"},
                                              {"instance", instance},
                                              {"job", "driftwatch"},
                                              {"sandbox", stray.id()},
                                              {"runtime", "runc"},
                                              {"engine", "runc"}}));
      CHECK(unattested->at("/annotations/summary"_json_pointer) ==
            "Sandbox " + stray.id() + " on " + instance + " runs with no signed launch event");
    }
    if (auto violating = firing(alerts, "DriftwatchPolicyViolated", "sandbox", privileged.id())) {
      CHECK(violating->at("/labels/launch_id"_json_pointer) == privileged_launch);
      CHECK(violating->at("/labels/severity"_json_pointer) == "critical");
    }
    // Quiet where nothing is wrong: no drift page for the stray or the
    // privileged sandbox, no unattested page for the launched ones, no forgery
    // page (every envelope was good), the monitor is up and sweeping.
    for (const auto& alert : alerts.value("/data/alerts"_json_pointer, json::array())) {
      std::string name = alert["labels"].value("alertname", "");
      std::string sandbox = alert["labels"].value("sandbox", "");
      INFO("unexpected alert: " << alert.dump());
      CHECK_FALSE((name == "DriftwatchSandboxDrifted" && sandbox != honest.id()));
      CHECK_FALSE((name == "DriftwatchSandboxUnattested" && sandbox != stray.id()));
      CHECK_FALSE((name == "DriftwatchRejectedLaunchEvents" || name == "DriftwatchRejectedGrants" ||
                   name == "DriftwatchMonitorDown" || name == "DriftwatchSweepStale" ||
                   name == "DriftwatchProbeEventsLost" ||
                   name == "DriftwatchEscalationAttemptsDenied"));
    }
  }

  // What Prometheus stored is what the daemon says.
  {
    auto api_view = daemon.get("/v1/sandboxes/" + honest.id());
    auto info = prometheus.query("driftwatch_sandbox_info{sandbox=\"" + honest.id() + "\"}");
    INFO(info.dump() << "\n" << api_view.dump());
    REQUIRE(info["status"] == "success");
    REQUIRE(info["data"]["result"].size() == 1);
    auto labels = info["data"]["result"][0]["metric"];
    CHECK(labels["launch_id"] == honest_launch);
    CHECK(labels["verdict"] == "drifted");
    CHECK(labels["runtime"] == "runc");
    CHECK(labels["declared_sha256"] == api_view["declared_sha256"]);
    CHECK(labels["observed_sha256"] == api_view["observed_sha256"]);
  }

  // The dashboard's variables resolve to this node and these sandboxes.
  {
    auto nodes = prometheus.get("/api/v1/label/instance/values?match[]=" +
                                url_encode("driftwatch_build_info"));
    INFO(nodes.dump());
    CHECK(nodes["data"] == json::array({instance}));
    auto sandbox_values = prometheus.get(
        "/api/v1/label/sandbox/values?match[]=" +
        url_encode("driftwatch_sandbox_info{instance=~\"" + instance + "\"}"))["data"];
    INFO(sandbox_values.dump());
    for (const auto* container : {&honest, &stray, &privileged})
      CHECK(std::find(sandbox_values.begin(), sandbox_values.end(), container->id()) !=
            sandbox_values.end());
  }

  // Every panel's every query returns data.
  auto dashboard = json::parse(read_file(dashboard_path));
  auto queries = dashboard_queries(dashboard);
  REQUIRE(queries.size() >= 10);
  const std::string sandboxes = "(" + honest.id() + "|" + stray.id() + "|" + privileged.id() + ")";
  for (const auto& [where, expr] : queries) {
    std::string promql = substitute(expr, instance, sandboxes);
    auto answer = prometheus.query(promql);
    INFO(where << ": " << promql << "\n-> " << answer.dump());
    CHECK(!expr.empty());
    CHECK(answer["status"] == "success");
    CHECK(!answer["data"]["result"].empty());
  }
}
