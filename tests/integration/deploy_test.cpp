// Install and deploy, on the real thing: the systemd unit's bounding set is
// enough for the real daemon to start, attach its probes and attest a runc
// container; the files in deploy/examples/ are what a real daemon accepts;
// /healthz says `degraded` without trust; `driftwatch trust add` and the
// checks of `driftwatch sign`, through the binary; and every command and
// endpoint the alert rules' texts tell an operator to use exists.
// (The unit's syntax, the federation configs and `cmake --install`: CTest
// tests of their own, scripts/check-deploy.sh and scripts/check-install.sh.)

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "ingest/trust.hpp"
#include "integration/daemon_harness.hpp"
#include "observe/capabilities.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"

using namespace driftwatch::testing;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path repo_dir() {
  return fs::path(DRIFTWATCH_TESTS_DIR).parent_path();
}
fs::path example(const std::string& name) {
  return repo_dir() / "deploy" / "examples" / name;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

json read_json(const fs::path& path) {
  return json::parse(read_text(path));
}

bool on_path(const std::string& tool) {
  return run_command({"sh", "-c", "command -v " + tool}).exit_code == 0;
}

// CapabilityBoundingSet= of deploy/systemd/driftwatch.service, as written.
std::vector<std::string> unit_bounding_set() {
  std::istringstream unit(read_text(repo_dir() / "deploy" / "systemd" / "driftwatch.service"));
  std::vector<std::string> caps;
  for (std::string line; std::getline(unit, line);) {
    const std::string key = "CapabilityBoundingSet=";
    if (!line.starts_with(key)) continue;
    std::istringstream words(line.substr(key.size()));
    for (std::string cap; words >> cap;) caps.push_back(cap);
  }
  return caps;
}

// setpriv's spelling: "-all,+bpf,+sys_admin".
std::string setpriv_caps(const std::vector<std::string>& caps) {
  std::string out = "-all";
  for (std::string cap : caps) {
    cap = cap.substr(std::string_view("CAP_").size());
    std::transform(cap.begin(), cap.end(), cap.begin(), ::tolower);
    out += ",+" + cap;
  }
  return out;
}

// CapBnd of a live process, by name.
std::set<std::string> bounding_set_of(pid_t pid) {
  std::istringstream status(read_text("/proc/" + std::to_string(pid) + "/status"));
  std::set<std::string> names;
  for (std::string line; std::getline(status, line);) {
    if (!line.starts_with("CapBnd:")) continue;
    const uint64_t mask = std::stoull(line.substr(7), nullptr, 16);
    for (int cap = 0; cap < 64; ++cap)
      if (mask & (uint64_t{1} << cap)) names.insert(driftwatch::observe::capability_name(cap));
  }
  return names;
}

// A launch payload from deploy/examples/ made current: the example's
// issued_at is a fixed date, which the daemon (rightly) calls stale.
json current(json payload, int64_t seconds_ago) {
  payload["issued_at"] = driftwatch::ingest::format_rfc3339(unix_now() - seconds_ago);
  return payload;
}

std::string one_line(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

}  // namespace

TEST_CASE(
    "deploy: under the unit's CapabilityBoundingSet the daemon starts, attaches its probes and "
    "attests a runc container",
    "[root][runc][bpf][integration][deploy]") {
  if (auto why = missing_requirement({"root", "runc", "busybox", "btf"})) DW_SKIP(*why);
  if (!on_path("setpriv")) DW_SKIP("needs setpriv (util-linux) to apply a bounding set");
  const auto caps = unit_bounding_set();
  REQUIRE_FALSE(caps.empty());
  INFO("CapabilityBoundingSet=" << json(caps).dump());
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("dep-cap")));

  DaemonUnderTest daemon;
  // As systemd starts it: root, that bounding set, NoNewPrivileges=yes.
  const std::vector<std::string> as_the_unit = {"setpriv", "--bounding-set", setpriv_caps(caps),
                                                "--no-new-privs"};
  daemon.start(as_the_unit);
  const std::set<std::string> allowed(caps.begin(), caps.end());
  for (const auto& cap : bounding_set_of(daemon.pid())) {
    INFO(cap << " is in the running daemon's bounding set");
    CHECK(allowed.contains(cap));
  }
  auto health = daemon.get("/healthz");
  INFO(health.dump(2) << "\n" << daemon.log());
  CHECK(health["status"] == "ok");
  CHECK(health["probes"]["cap_capable"]["attached"] == true);
  // The sampler's (CAP_SYS_PTRACE is its proc peer's alone).
  CHECK(health["capabilities"] == json({"CAP_DAC_READ_SEARCH"}));
  CHECK(health["user"]["name"] == "driftwatch");
  // Without CAP_SYS_ADMIN the daemon still starts, only with a weaker
  // confinement: that is part of "enough" too.
  for (const char* process : {"front", "sampler"}) {
    INFO(process);
    CHECK(health["confinement"][process]["read_only_mounts"] == true);
    CHECK(health["confinement"][process]["seccomp"] == "filter");
  }
  CHECK(health["confinement"]["front"]["landlocked"] == true);

  REQUIRE(daemon.post_launch("L-dep-cap-1", container.id(), bundle.config()).status == 202);
  daemon.wait_for_verdict(container.id(), "attested");
  CHECK(daemon.stop() == 0);

  // Restart=on-failure: a second start under the same set, on the state dir
  // the first one handed to the driftwatch user, restores the launch.
  daemon.start(as_the_unit);
  CHECK(daemon.get("/healthz")["held"]["launches"] == 1);
  daemon.wait_for_verdict(container.id(), "attested");
  CHECK(daemon.stop() == 0);
}

TEST_CASE("deploy: the example node config and trust file start a real daemon",
          "[root][integration][deploy]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  // The example as it is, but for what must differ on a test host: a free
  // port, a state dir and journal of the test's own.
  json config = read_json(example("node.json"));
  config["listen"] = "127.0.0.1:0";
  config["state_dir"] = (daemon.dir() / "state").string();
  config["launch_journals"] = json::array({daemon.journal().string()});
  config["trust"] = example("trust.json").string();
  std::ofstream(daemon.config_path()) << config.dump(2);
  daemon.start();
  auto health = daemon.get("/healthz");
  INFO(health.dump(2));
  CHECK(health["node"] == "node-1");
  CHECK(health["trust_keys"] == 2);
  CHECK(health["status"] == "ok");
  CHECK(health["reasons"] == json::array());
  CHECK(daemon.stop() == 0);
}

TEST_CASE(
    "deploy: the example launch and grant payloads, signed with driftwatch sign, are accepted "
    "by a real daemon",
    "[root][integration][deploy]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  const json launch = read_json(example("launch.json"));
  const json grant = read_json(example("grant.json"));
  REQUIRE(grant["launch_id"] == launch["launch_id"]);

  auto reply = daemon.post("/v1/launch-events", daemon.sign("launch", current(launch, 20), "cp-1"));
  INFO(reply.body);
  REQUIRE(reply.status == 202);
  CHECK(json::parse(reply.body)["id"] == launch["launch_id"]);
  reply = daemon.post("/v1/grants", daemon.sign("grant", current(grant, 10), "alice"));
  INFO(reply.body);
  REQUIRE(reply.status == 202);
  CHECK(json::parse(reply.body)["id"] == grant["grant_id"]);
}

TEST_CASE(
    "deploy: driftwatch sign --oci-config makes a launch event from a bundle that attests its "
    "container",
    "[root][runc][integration][deploy]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  auto bundle = OciBundle::with_default_spec();
  const std::string id = unique_container_id("dep-oci");
  DaemonUnderTest daemon;
  daemon.start();
  auto signed_ =
      run_driftwatch({"sign", "--key", daemon.key("cp-1").string(), "--type", "launch",
                      "--oci-config", bundle.config_path().string(), "--launch-id", "L-dep-oci-1",
                      "--sandbox-id", id, "--requested-by", "oidc:ci@example.org"});
  INFO(signed_.err);
  REQUIRE(signed_.exit_code == 0);
  auto reply = daemon.post("/v1/launch-events", one_line(signed_.out));
  INFO(reply.body);
  REQUIRE(reply.status == 202);
  auto container = value_or_throw(Container::start("runc", bundle, id));
  daemon.wait_for_verdict(container.id(), "attested");
}

TEST_CASE("deploy: /healthz says degraded, and why, until a control-plane key is trusted",
          "[root][integration][deploy]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon(json::object(), /*with_trust=*/false);
  daemon.start();
  auto health = daemon.get("/healthz");
  CHECK(health["status"] == "degraded");
  REQUIRE(health["reasons"].size() == 1);
  CHECK_THAT(health["reasons"][0].get<std::string>(), Catch::Contains("no trust key is loaded"));
  CHECK(daemon.stop() == 0);

  // An operator key alone: grants could be checked, launches never.
  const std::string trust = (daemon.dir() / "trust.json").string();
  auto added = run_driftwatch({"trust", "add", "--role", "operator", "--key",
                               daemon.key("alice", ".pub").string(), "--trust", trust});
  REQUIRE(added.exit_code == 0);
  daemon.start();
  health = daemon.get("/healthz");
  CHECK(health["status"] == "degraded");
  REQUIRE(health["reasons"].size() == 1);
  CHECK_THAT(health["reasons"][0].get<std::string>(), Catch::Contains("no control_plane key"));
  CHECK(daemon.stop() == 0);

  added = run_driftwatch({"trust", "add", "--role", "control_plane", "--key",
                          daemon.key("cp-1", ".pub").string(), "--trust", trust});
  REQUIRE(added.exit_code == 0);
  daemon.start();
  health = daemon.get("/healthz");
  CHECK(health["status"] == "ok");
  CHECK(health["reasons"] == json::array());
  CHECK(health["trust_keys"] == 2);
}

TEST_CASE("deploy: driftwatch trust add adds keys to roles and refuses bad ones, file unchanged",
          "[integration][deploy]") {
  TempDir dir("trust-add");
  for (const char* name : {"cp-1", "alice"})
    REQUIRE(run_driftwatch({"keygen", "--name", name, "--out", dir.path().string()}).exit_code ==
            0);
  const std::string trust = (dir / "etc" / "trust.json").string();
  fs::create_directories(dir / "etc");
  auto add = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"trust", "add", "--trust", trust});
    return run_driftwatch(args);
  };

  auto first = add({"--role", "control_plane", "--key", (dir / "cp-1.pub").string()});
  INFO(first.err);
  REQUIRE(first.exit_code == 0);
  const json said = json::parse(first.out);
  CHECK(said["name"] == "cp-1");
  CHECK(said["role"] == "control_plane");
  REQUIRE(add({"--role", "operator", "--key", (dir / "alice.pub").string()}).exit_code == 0);
  auto store = driftwatch::ingest::TrustStore::load(trust);
  REQUIRE(store);
  CHECK(store->count(driftwatch::ingest::TrustRole::control_plane) == 1);
  CHECK(store->count(driftwatch::ingest::TrustRole::operator_) == 1);
  const std::string before = read_text(trust);

  struct Refusal {
    std::vector<std::string> args;
    const char* says;
  };
  const Refusal refusals[] = {
      // A private key is not a public key (and must never be in trust.json).
      {{"--role", "operator", "--key", (dir / "alice.key").string(), "--name", "k"},
       "is a private key"},
      {{"--role", "operator", "--key", (dir / "alice.vkey").string(), "--name", "k"},
       "not a PEM public key"},
      // One key, one role.
      {{"--role", "operator", "--key", (dir / "cp-1.pub").string(), "--name", "cp-1b"},
       "may hold only one role"},
      {{"--role", "control_plane", "--key", (dir / "cp-1.pub").string(), "--name", "again"},
       "listed twice"},
      // One name, one key.
      {{"--role", "control_plane", "--key", (dir / "alice.pub").string(), "--name", "cp-1"},
       "already used"},
      {{"--role", "launch", "--key", (dir / "cp-1.pub").string()}, "--role"},
  };
  for (const auto& refusal : refusals) {
    auto refused = add(refusal.args);
    INFO(describe_command(refusal.args) << "\n" << refused.err);
    CHECK(refused.exit_code == 2);
    CHECK(refused.out.empty());
    CHECK_THAT(refused.err, Catch::Contains(refusal.says));
    CHECK(read_text(trust) == before);
  }
  // A trust file that does not load is not added to.
  const std::string broken = dir.write("broken.json", "{\"control_plane\": 1}").string();
  auto refused = run_driftwatch({"trust", "add", "--trust", broken, "--role", "operator", "--key",
                                 (dir / "alice.pub").string()});
  CHECK(refused.exit_code == 2);
  CHECK(read_text(broken) == "{\"control_plane\": 1}");
  CHECK_FALSE(fs::exists(broken + ".tmp"));
}

TEST_CASE("deploy: driftwatch sign refuses what is not a launch or grant payload, exit 2",
          "[integration][deploy]") {
  TempDir dir("sign-check");
  REQUIRE(run_driftwatch({"keygen", "--name", "cp-1", "--out", dir.path().string()}).exit_code ==
          0);
  const std::string key = (dir / "cp-1.key").string();
  const json launch = read_json(example("launch.json"));
  json unknown_field = launch;
  unknown_field["priority"] = "high";
  json bad_config = launch;
  bad_config.erase("config_sha256");
  bad_config["config"]["process"]["user"]["uid"] = "root";

  struct Case {
    const char* type;
    json payload;
    const char* says;
  };
  const Case cases[] = {
      {"launch", json{{"hello", "world"}}, "has no \"launch_id\""},
      {"grant", launch, "not a grant payload"},
      {"launch", unknown_field, "unknown field \"priority\""},
      {"launch", bad_config, "declared projection cannot be computed"},
      {"launch", json::array({launch}), "is an object"},
  };
  for (const auto& c : cases) {
    const std::string path = dir.write("payload.json", c.payload.dump()).string();
    auto signed_ = run_driftwatch({"sign", "--key", key, "--type", c.type, path});
    INFO(c.type << " " << c.payload.dump().substr(0, 200) << "\n" << signed_.err);
    CHECK(signed_.exit_code == 2);
    CHECK(signed_.out.empty());
    CHECK_THAT(signed_.err, Catch::Contains(c.says));
  }
  // The example itself signs.
  auto signed_ =
      run_driftwatch({"sign", "--key", key, "--type", "launch", example("launch.json").string()});
  CHECK(signed_.exit_code == 0);

  // --oci-config makes launches only, and needs the fields around the config.
  const std::string config = dir.write("config.json", launch["config"].dump()).string();
  auto refused = run_driftwatch({"sign", "--key", key, "--type", "grant", "--oci-config", config,
                                 "--launch-id", "L-1", "--sandbox-id", "s", "--requested-by", "x"});
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.err, Catch::Contains("--type launch"));
  refused = run_driftwatch(
      {"sign", "--key", key, "--type", "launch", "--oci-config", config, "--sandbox-id", "s"});
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.err, Catch::Contains("--launch-id"));
  auto made = run_driftwatch({"sign", "--key", key, "--type", "launch", "--oci-config", config,
                              "--launch-id", "L-1", "--sandbox-id", "agent-7", "--requested-by",
                              "oidc:ci@example.org", "--issued-at", "2026-11-24T22:00:00Z"});
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  auto envelope = driftwatch::ingest::parse_envelope(one_line(made.out));
  REQUIRE(envelope);
  const json payload = json::parse(envelope->payload);
  CHECK(payload["config"] == launch["config"]);
  CHECK(payload["issued_at"] == "2026-11-24T22:00:00Z");
  CHECK(payload["config_sha256"].get<std::string>().size() == 64);
}

TEST_CASE(
    "deploy: every driftwatch command and endpoint the alert texts name exists on a real daemon",
    "[root][runc][integration][deploy][prometheus]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  const std::string rules = read_text(repo_dir() / "dashboards" / "alerts.yml");
  // What an operator is told to run is in backticks; comments are not
  // alert texts.
  std::vector<std::string> quoted;
  {
    std::istringstream lines(rules);
    std::string text;
    for (std::string line; std::getline(lines, line);) {
      const auto first = line.find_first_not_of(' ');
      if (first != std::string::npos && line[first] != '#') text += line + "\n";
    }
    const std::regex backticks("`([^`]+)`");
    for (auto it = std::sregex_iterator(text.begin(), text.end(), backticks);
         it != std::sregex_iterator(); ++it)
      quoted.push_back((*it)[1]);
  }
  REQUIRE_FALSE(quoted.empty());

  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("dep-al")));
  DaemonUnderTest daemon(json{{"checkpoint_interval_seconds", 1}});
  daemon.start();
  REQUIRE(daemon.post_launch("L-dep-alert-1", container.id(), bundle.config()).status == 202);
  daemon.wait_for_verdict(container.id(), "attested");
  // The labels the alerts' templates fill in, as this daemon has them.
  const std::string instance = "127.0.0.1:" + std::to_string(daemon.port());
  const std::vector<std::pair<std::regex, std::string>> labels = {
      {std::regex(R"(\{\{ \$labels\.instance \}\})"), instance},
      {std::regex(R"(\{\{ \$labels\.sandbox \}\})"), container.id()},
      {std::regex(R"(\{\{ \$labels\.launch_id \}\})"), "L-dep-alert-1"},
      {std::regex(R"(\bnode\.vkey\b)"), (daemon.dir() / "state" / "node.vkey").string()}};

  const std::string help = run_driftwatch({"--help"}).out;
  const std::regex command(R"((^|\s)driftwatch ([a-z][a-z-]*)((\s+\S+)*))");
  const std::regex url(R"(https?://[^/\s'"]+(/[^\s'"`]*))");
  int commands = 0, endpoints = 0;
  for (std::string text : quoted) {
    for (const auto& [label, value] : labels) text = std::regex_replace(text, label, value);
    INFO("alert text: `" << text << "`");
    std::smatch m;
    if (std::regex_search(text, m, command)) {
      // The subcommand is one `driftwatch --help` lists, and the command as
      // written runs against this daemon.
      const std::string subcommand = m[2];
      CHECK(std::regex_search(help, std::regex("\\n\\s+" + subcommand + "\\s")));
      std::vector<std::string> args;
      std::istringstream words(m[2].str() + m[3].str());
      for (std::string word; words >> word;) args.push_back(word);
      // What is read over /evidence is what the latest checkpoint covers
      // (checkpoint_interval_seconds): the launch is there within seconds.
      auto ran = run_driftwatch(args);
      for (int i = 0; i < 30 && ran.exit_code != 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        ran = run_driftwatch(args);
      }
      INFO("driftwatch " << describe_command(args) << " -> " << ran.exit_code << "\n" << ran.err);
      CHECK(ran.exit_code == 0);
      ++commands;
      continue;
    }
    if (std::regex_search(text, m, url)) {
      std::string path = m[1];
      const auto space = path.find(' ');
      if (space != std::string::npos) path.resize(space);
      auto reply = http_request(daemon.port(), "GET", path);
      INFO("GET " << path << " -> " << reply.status << " " << reply.body.substr(0, 300));
      CHECK(reply.status == 200);
      ++endpoints;
    }
  }
  INFO("backticked texts: " << json(quoted).dump());
  CHECK(commands >= 2);
  CHECK(endpoints >= 3);
}
