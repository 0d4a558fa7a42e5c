#pragma once
// A real `driftwatch run` for integration tests: its own state dir, keys
// made with `driftwatch keygen`, a trust file, a launch journal, and an
// ephemeral port read from its log. Stopped with SIGTERM (and reaped) by the
// destructor, whatever the test did.

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/crypto.hpp"
#include "ingest/envelope.hpp"
#include "integration/cli.hpp"
#include "support/http_client.hpp"
#include "support/process_guard.hpp"

namespace driftwatch::testing {

inline int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class DaemonUnderTest {
 public:
  /// Makes keys cp-1 (control plane), alice (operator) and mallory (not
  /// trusted), and a config with a 1 s sweep and a 2 s grace period;
  /// `overrides` are merged into it. `with_trust` false leaves no trust file.
  explicit DaemonUnderTest(nlohmann::json overrides = nlohmann::json::object(),
                           bool with_trust = true) {
    static int counter = 0;
    dir_ = std::filesystem::path("/run/driftwatch-test") /
           ("daemon-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "keys");
    for (const char* name : {"cp-1", "alice", "mallory"}) {
      auto made = run_driftwatch({"keygen", "--name", name, "--out", (dir_ / "keys").string()});
      if (made.exit_code != 0) throw std::runtime_error("keygen failed: " + made.err);
    }
    if (with_trust) {
      nlohmann::json trust{
          {"control_plane", {{{"name", "cp-1"}, {"public_key_pem", read(key("cp-1", ".pub"))}}}},
          {"operator", {{{"name", "alice"}, {"public_key_pem", read(key("alice", ".pub"))}}}}};
      std::ofstream(dir_ / "trust.json") << trust.dump(2);
    }
    config_ = {{"node_name", "test-node"},
               {"listen", "127.0.0.1:0"},
               {"state_dir", (dir_ / "state").string()},
               {"trust", (dir_ / "trust.json").string()},
               {"launch_journals", {journal().string()}},
               {"sweep_interval_seconds", 1},
               {"unattested_grace_seconds", 2}};
    config_.merge_patch(overrides);
    std::ofstream(dir_ / "config.json") << config_.dump(2);
  }
  DaemonUnderTest(const DaemonUnderTest&) = delete;
  DaemonUnderTest& operator=(const DaemonUnderTest&) = delete;
  ~DaemonUnderTest() {
    if (child_) stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::filesystem::path dir() const { return dir_; }
  std::filesystem::path journal() const { return dir_ / "journal.jsonl"; }
  std::filesystem::path config_path() const { return dir_ / "config.json"; }
  std::filesystem::path key(const std::string& name, const char* suffix = ".key") const {
    return dir_ / "keys" / (name + suffix);
  }

  /// Starts the daemon and waits until it runs: it listens, it has
  /// confined itself and its loops have started ("running"). Fails the test
  /// if it exits instead. `wrapper` runs it, as a service manager would:
  /// {"setpriv", "--bounding-set", …} starts `wrapper… driftwatch run …`.
  void start(const std::vector<std::string>& wrapper = {}) {
    log_offset_ = std::filesystem::exists(log_path()) ? std::filesystem::file_size(log_path()) : 0;
    SpawnOptions options;
    options.output_path = log_path();
    std::vector<std::string> argv = wrapper;
    for (const std::string arg : {std::string(DRIFTWATCH_BINARY), std::string("run"),
                                  std::string("--config"), config_path().string()})
      argv.push_back(arg);
    start_as(argv, options);
  }

  /// Starts the daemon by `command` (e.g. `podman run … IMAGE` followed by
  /// run_arguments(), in the foreground, its output the daemon's; SIGTERM
  /// must stop it) and waits as start() does.
  void start_as(const std::vector<std::string>& command) {
    log_offset_ = std::filesystem::exists(log_path()) ? std::filesystem::file_size(log_path()) : 0;
    SpawnOptions options;
    options.output_path = log_path();
    start_as(command, options);
  }

  /// Spawns `command` with `options` and waits until the daemon runs.
  void start_as(const std::vector<std::string>& command, const SpawnOptions& options) {
    child_.emplace(ChildProcess::start(command, options));
    std::regex port_line(R"(listening on \S+ \(port (\d+)\))");
    for (int i = 0; i < 200; ++i) {
      std::smatch m;
      std::string text = log().substr(std::min(log().size(), log_offset_));
      if (std::regex_search(text, m, port_line) &&
          text.find(" info running\n", static_cast<size_t>(m.position(0))) != std::string::npos) {
        port_ = static_cast<uint16_t>(std::stoi(m[1]));
        return;
      }
      if (auto status = child_->poll()) {
        child_.reset();
        FAIL("driftwatch run exited with " << *status << " before listening:\n" << log());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL("driftwatch run did not start running within 10 s:\n" << log());
  }

  /// `run --config CONFIG`: what start() runs the binary with.
  std::vector<std::string> run_arguments() const {
    return {"run", "--config", config_path().string()};
  }

  /// SIGTERM, then the exit code (SIGKILL after 10 s: a failure).
  int stop() {
    if (!child_) return -1;
    ::kill(child_->pid(), SIGTERM);
    auto status = child_->wait_for(std::chrono::seconds(10));
    int code = status ? *status : child_->kill() + 1000;
    child_.reset();
    return code;
  }

  /// SIGKILL, as a crash would: nothing of the teardown runs.
  void kill_hard() {
    if (!child_) return;
    child_->kill();
    child_.reset();
  }

  std::string log() const { return read(log_path()); }
  uint16_t port() const { return port_; }
  /// The daemon's pid (the front), 0 when it is not running.
  pid_t pid() const { return child_ ? child_->pid() : 0; }

  nlohmann::json get(const std::string& path) const {
    auto reply = http_request(port_, "GET", path);
    INFO("GET " << path << " -> " << reply.status << " " << reply.body);
    REQUIRE(reply.status == 200);
    return nlohmann::json::parse(reply.body);
  }
  HttpReply post(const std::string& path, const std::string& body) const {
    return http_request(port_, "POST", path, body);
  }

  /// Polls /v1/sandboxes/ID until its verdict is `verdict`; fails the test
  /// (with the last state seen) when the time is up.
  nlohmann::json wait_for_verdict(const std::string& id, const std::string& verdict,
                                  std::chrono::seconds timeout = std::chrono::seconds(20)) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    nlohmann::json last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto reply = http_request(port_, "GET", "/v1/sandboxes/" + id);
      if (reply.status == 200) {
        last = nlohmann::json::parse(reply.body);
        if (last["verdict"] == verdict) return last;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    FAIL("sandbox " << id << " did not become " << verdict << " within " << timeout.count()
                    << " s; last seen: " << last.dump() << "\ndaemon log:\n"
                    << log());
    return last;
  }

  /// Waits until `count` more sweeps have completed; fails the test when a
  /// sweep does not complete within 10 s.
  void wait_sweeps(int count = 2) const {
    for (int i = 0; i < count; ++i) {
      auto before = get("/healthz")["last_sweep"];
      int polls = 0;
      while (get("/healthz")["last_sweep"] == before) {
        if (++polls > 100) FAIL("no sweep completed within 10 s\ndaemon log:\n" << log());
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }

  /// `driftwatch sign --key KEY --type TYPE payload`: one envelope line.
  std::string sign(const std::string& type, const nlohmann::json& payload,
                   const std::string& signer) const {
    static int counter = 0;
    auto path = dir_ / ("payload-" + std::to_string(counter++) + ".json");
    std::ofstream(path) << payload.dump();
    auto signed_ =
        run_driftwatch({"sign", "--key", key(signer).string(), "--type", type, path.string()});
    if (signed_.exit_code != 0) throw std::runtime_error("sign failed: " + signed_.err);
    std::string line = signed_.out;
    while (!line.empty() && line.back() == '\n') line.pop_back();
    return line;
  }

  /// POST /v1/launch-events of launch_payload(launch_id, sandbox_id, config)
  /// signed by cp-1 with `driftwatch sign`.
  HttpReply post_launch(const std::string& launch_id, const std::string& sandbox_id,
                        const nlohmann::json& config) const {
    return post("/v1/launch-events",
                sign("launch", launch_payload(launch_id, sandbox_id, config), "cp-1"));
  }

  /// Signs `payload` exactly as given (no config_sha256 filled in or
  /// checked), through the library: for envelopes `driftwatch sign` refuses
  /// to make, such as one with a wrong config hash.
  std::string sign_as_is(const char* payload_type, const nlohmann::json& payload,
                         const std::string& signer) const {
    auto key = Ed25519PrivateKey::from_pem(read(key_path(signer)));
    if (!key) throw std::runtime_error(key.error().message);
    return ingest::sign_envelope(payload_type, payload.dump(), *key);
  }

  static nlohmann::json launch_payload(const std::string& launch_id, const std::string& sandbox_id,
                                       const nlohmann::json& config, int64_t issued_at = 0) {
    return {{"launch_id", launch_id},
            {"sandbox_id", sandbox_id},
            {"runtime", "runc"},
            {"issued_at", ingest::format_rfc3339(issued_at ? issued_at : unix_now())},
            {"requested_by", "oidc:ci@example.org"},
            {"config", config}};
  }
  static nlohmann::json grant_payload(const std::string& grant_id, const std::string& launch_id,
                                      const nlohmann::json& config) {
    return {{"grant_id", grant_id},
            {"launch_id", launch_id},
            {"issued_at", ingest::format_rfc3339(unix_now())},
            {"requested_by", "oidc:agent-owner@example.org"},
            {"approved_by", "oidc:alice@example.org"},
            {"config", config},
            {"reason", "CHG-1234: the agent needs to mount its scratch volume"}};
  }

 private:
  std::filesystem::path log_path() const { return dir_ / "daemon.log"; }
  std::filesystem::path key_path(const std::string& name) const { return key(name); }
  static std::string read(const std::filesystem::path& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }

  std::filesystem::path dir_;
  nlohmann::json config_;
  std::optional<ChildProcess> child_;
  uint16_t port_ = 0;
  size_t log_offset_ = 0;
};

}  // namespace driftwatch::testing
