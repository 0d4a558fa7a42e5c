#include "app/demo.hpp"

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/commands.hpp"
#include "common/file_io.hpp"
#include "evidence/http_fetch.hpp"

extern char** environ;

namespace driftwatch::app {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::atomic<bool> g_interrupted{false};

void on_signal(int) {
  g_interrupted = true;
}

// A command's exit status and what it printed (stdout, or both streams
// into `log` when given).
struct Ran {
  int exit_code = -1;
  std::string out;
};

std::string shell_words(const std::vector<std::string>& argv) {
  std::string line;
  for (const auto& word : argv) {
    const bool plain = !word.empty() && word.find_first_of(" \t\"'$\\") == std::string::npos;
    line += (line.empty() ? "" : " ") + (plain ? word : "'" + word + "'");
  }
  return line;
}

// Runs argv (argv[0] looked up in PATH) and waits for it; stdout captured
// through a file in `scratch`, stderr passed through.
Ran run(const std::vector<std::string>& argv, const fs::path& scratch) {
  const fs::path out_path = scratch / ".out";
  Ran ran;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    ran.out = std::string("cannot run ") + argv[0] + ": " + std::strerror(spawned);
    return ran;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ran.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(out_path);
  ran.out.assign(std::istreambuf_iterator<char>(in), {});
  fs::remove(out_path);
  return ran;
}

void say(const std::string& line) {
  std::cout << line << std::endl;
}
void show(const std::vector<std::string>& argv) {
  say("  $ " + shell_words(argv));
}

std::string rfc3339_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::optional<std::string> missing_requirement() {
  if (::geteuid() != 0)
    return "needs root (it starts a runc container and the daemon, which loads eBPF "
           "programs): run it with sudo";
  for (const char* tool : {"runc"}) {
    bool found = false;
    std::istringstream path(std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/usr/sbin");
    for (std::string dir; std::getline(path, dir, ':');)
      found = found || ::access((fs::path(dir) / tool).c_str(), X_OK) == 0;
    if (!found)
      return std::string("needs ") + tool + " in PATH (Debian: apt-get install " + tool + ")";
  }
  // The rootfs is busybox alone: it must need no program interpreter
  // (PT_INTERP), i.e. be linked statically.
  std::ifstream busybox("/bin/busybox", std::ios::binary);
  Elf64_Ehdr header{};
  if (!busybox.read(reinterpret_cast<char*>(&header), sizeof header) ||
      std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64)
    return "needs a static /bin/busybox for the sandbox's rootfs (Debian: apt-get install "
           "busybox-static)";
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr program{};
    busybox.seekg(static_cast<std::streamoff>(header.e_phoff + i * header.e_phentsize));
    if (!busybox.read(reinterpret_cast<char*>(&program), sizeof program) ||
        program.p_type == PT_INTERP)
      return "/bin/busybox is not linked statically; the sandbox's rootfs needs the static one "
             "(Debian: apt-get install busybox-static)";
  }
  return std::nullopt;
}

// Everything the demo made, removed in reverse order however it ends.
class Demo {
 public:
  explicit Demo(const DemoOptions& options) : options_(options) {}
  Demo(const Demo&) = delete;
  Demo& operator=(const Demo&) = delete;
  ~Demo() { clean_up(); }

  int play();

 private:
  bool fail(const std::string& why) {
    say("demo: " + why);
    if (daemon_pid_ > 0) {
      say("demo: the daemon's log (" + (dir_ / "daemon.log").string() + "), last lines:");
      std::ifstream log(dir_ / "daemon.log");
      std::vector<std::string> lines;
      for (std::string line; std::getline(log, line);) lines.push_back(line);
      for (size_t i = lines.size() > 20 ? lines.size() - 20 : 0; i < lines.size(); ++i)
        say("  " + lines[i]);
    }
    return false;
  }
  bool step(const std::vector<std::string>& argv, Ran* out = nullptr) {
    show(argv);
    Ran ran = run(argv, dir_);
    if (ran.exit_code != 0)
      return fail(shell_words(argv) + " failed (exit " + std::to_string(ran.exit_code) +
                  "): " + ran.out);
    if (out) *out = std::move(ran);
    return true;
  }
  bool make_dir();
  bool make_keys_and_trust();
  bool start_daemon();
  bool start_sandbox();
  bool sign_launch();
  bool wait_for(const std::string& verdict, json& document);
  bool drift();
  void clean_up();

  DemoOptions options_;
  fs::path dir_;
  std::string self_ = "/proc/self/exe";
  std::string id_;
  bool container_started_ = false;
  pid_t daemon_pid_ = -1;
  std::string url_;
};

bool Demo::make_dir() {
  std::string pattern = (options_.parent / "driftwatch-demo.XXXXXX").string();
  if (!::mkdtemp(pattern.data()))
    return fail("cannot make a work directory under " + options_.parent.string() + ": " +
                std::strerror(errno));
  dir_ = pattern;
  // The daemon drops to its own user, which walks into its state dir here.
  ::chmod(dir_.c_str(), 0755);
  // The binary itself, for the commands shown and run (not /proc/self/exe,
  // which a user cannot type).
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) self_ = exe.string();
  id_ = "driftwatch-demo-" + std::to_string(::getpid());
  say("driftwatch demo: work directory " + dir_.string() +
      (options_.keep ? " (kept at the end: --keep)" : " (removed at the end)"));
  return true;
}

bool Demo::make_keys_and_trust() {
  say("\n1. A control-plane key (throwaway) and the node's trust file, which names it:");
  if (!step({self_, "keygen", "--name", "demo-cp", "--out", (dir_ / "keys").string()}))
    return false;
  auto pem = read_file(dir_ / "keys" / "demo-cp.pub", 1 << 16);
  if (!pem) return fail(pem.error().message);
  const json trust = {{"control_plane", {{{"name", "demo-cp"}, {"public_key_pem", *pem}}}}};
  std::ofstream(dir_ / "trust.json") << trust.dump(2) << "\n";
  say("  wrote " + (dir_ / "trust.json").string() + ": control_plane demo-cp");
  return true;
}

bool Demo::start_daemon() {
  say("\n2. The daemon, on a node config of its own (a launch journal, its own state dir, an "
      "API port the kernel picks):");
  const json config = {{"node_name", "demo"},
                       {"listen", "127.0.0.1:0"},
                       {"state_dir", (dir_ / "state").string()},
                       {"trust", (dir_ / "trust.json").string()},
                       {"launch_journals", {(dir_ / "launches.jsonl").string()}},
                       {"sweep_interval_seconds", 10}};
  std::ofstream(dir_ / "node.json") << config.dump(2) << "\n";
  std::ofstream(dir_ / "launches.jsonl").flush();
  const std::vector<std::string> argv = {self_, "run", "--config", (dir_ / "node.json").string()};
  show(argv);
  const fs::path log_path = dir_ / "daemon.log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int spawned = posix_spawn(&daemon_pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    daemon_pid_ = -1;
    return fail(std::string("cannot start the daemon: ") + std::strerror(spawned));
  }
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  std::string port;
  while (Clock::now() < deadline && !g_interrupted) {
    int status = 0;
    if (::waitpid(daemon_pid_, &status, WNOHANG) == daemon_pid_) {
      daemon_pid_ = -1;
      std::ifstream log(log_path);
      std::string text((std::istreambuf_iterator<char>(log)), {});
      return fail("the daemon exited at start-up:\n" + text);
    }
    std::ifstream log(log_path);
    bool running = false;
    for (std::string line; std::getline(log, line);) {
      if (const auto at = line.find("(port "); at != std::string::npos && port.empty())
        port = line.substr(at + 6, line.find(')', at) - at - 6);
      running = running || line.ends_with(" info running");
    }
    if (running && !port.empty()) {
      url_ = "http://127.0.0.1:" + port + "/";
      say("  running (pid " + std::to_string(daemon_pid_) + "), API " + url_ + ", log " +
          log_path.string());
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return fail(g_interrupted ? "interrupted" : "the daemon did not say 'running' within 60 s");
}

bool Demo::start_sandbox() {
  say("\n3. A sandbox: a runc container from a busybox bundle, running `sleep`:");
  const fs::path bundle = dir_ / "bundle";
  std::error_code ec;
  fs::create_directories(bundle / "rootfs" / "bin", ec);
  for (const char* d : {"proc", "dev", "sys", "tmp"})
    fs::create_directories(bundle / "rootfs" / d, ec);
  fs::copy_file("/bin/busybox", bundle / "rootfs" / "bin" / "busybox", ec);
  if (ec) return fail("cannot copy /bin/busybox into the bundle: " + ec.message());
  for (const char* applet : {"sh", "sleep"})
    fs::create_symlink("busybox", bundle / "rootfs" / "bin" / applet, ec);
  ::chmod(bundle.c_str(), 0755);
  if (!step({"runc", "spec", "--bundle", bundle.string()})) return false;
  auto text = read_file(bundle / "config.json", 1 << 20);
  if (!text) return fail(text.error().message);
  json config = json::parse(*text, nullptr, false);
  if (config.is_discarded() || !config.is_object()) return fail("runc spec wrote no JSON object");
  config["process"]["terminal"] = false;
  config["process"]["args"] = {"sleep", "3600"};
  std::ofstream(bundle / "config.json") << config.dump(2) << "\n";
  say("  (config.json: runc's default spec, process.args [\"sleep\", \"3600\"], no terminal)");
  if (!step({"runc", "run", "--detach", "--bundle", bundle.string(), id_})) return false;
  container_started_ = true;
  return true;
}

bool Demo::sign_launch() {
  say("\n4. The control plane signs the launch (the config it handed the runtime) and the "
      "envelope goes into the launch journal (it could be POSTed to /v1/launch-events too):");
  auto text = read_file(dir_ / "bundle" / "config.json", 1 << 20);
  if (!text) return fail(text.error().message);
  const json payload = {{"launch_id", "demo-" + std::to_string(::getpid())},
                        {"sandbox_id", id_},
                        {"runtime", "runc"},
                        {"issued_at", rfc3339_now()},
                        {"requested_by", "driftwatch demo"},
                        {"config", json::parse(*text)}};
  std::ofstream(dir_ / "launch.json") << payload.dump(2) << "\n";
  Ran signed_envelope;
  if (!step({self_, "sign", "--key", (dir_ / "keys" / "demo-cp.key").string(), "--type", "launch",
             (dir_ / "launch.json").string()},
            &signed_envelope))
    return false;
  std::ofstream(dir_ / "launches.jsonl", std::ios::app) << signed_envelope.out;
  say("  appended the envelope to " + (dir_ / "launches.jsonl").string());
  return true;
}

bool Demo::wait_for(const std::string& verdict, json& document) {
  auto fetcher = evidence::HttpFetcher::for_url(url_);
  if (!fetcher) return fail(fetcher.error().message);
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  std::string last = "none yet";
  while (Clock::now() < deadline && !g_interrupted) {
    auto body = fetcher->get("v1/sandboxes/" + id_, 1 << 20);
    if (body && *body) {
      document = json::parse(**body, nullptr, false);
      if (document.is_object() && document.contains("verdict") && document["verdict"].is_string()) {
        last = document["verdict"].get<std::string>();
        if (last == verdict) return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return fail(g_interrupted
                  ? "interrupted"
                  : "the verdict was not '" + verdict + "' within 30 s (last: " + last + ")");
}

bool Demo::drift() {
  say("\n6. Something gives the sandbox a capability its launch did not grant (here runc "
      "itself; inside, it could be a kernel bug or a misconfigured runtime):");
  return step({"runc", "exec", "--detach", "--cap", "CAP_SYS_ADMIN", id_, "sleep", "3600"});
}

int Demo::play() {
  if (!make_dir() || !make_keys_and_trust() || !start_daemon() || !start_sandbox() ||
      !sign_launch())
    return kExitProblem;
  json document;
  say("\n5. The daemon samples the live sandbox and compares it with the signed launch:");
  say("  $ curl " + url_ + "v1/sandboxes/" + id_);
  if (!wait_for("attested", document)) return kExitProblem;
  say("  verdict attested: declared " + document.value("declared_sha256", std::string("?")) +
      "\n                    observed " + document.value("observed_sha256", std::string("?")));
  if (!drift()) return kExitProblem;
  say("\n7. The daemon sees it (a probe on the exec, or the next sweep) and says what drifted:");
  say("  $ curl " + url_ + "v1/sandboxes/" + id_);
  const auto drifted_from = Clock::now();
  if (!wait_for("drifted", document)) return kExitProblem;
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - drifted_from).count();
  say("  verdict drifted, " + std::to_string(ms) + " ms after runc exec returned; findings:");
  if (document.contains("findings") && document["findings"].is_array())
    for (const auto& finding : document["findings"])
      say("    " + finding.value("field", std::string("?")) + ": " +
          finding.value("direction", std::string("?")) + ", severity " +
          finding.value("severity", std::string("?")) + "; declared " +
          (finding.contains("declared") ? finding["declared"].dump() : "null") + ", observed " +
          (finding.contains("observed") ? finding["observed"].dump() : "null"));
  say("\nThe same is in " + url_ +
      "metrics (driftwatch_sandbox_info{verdict=\"drifted\"}, "
      "driftwatch_drift_findings_total) and in the evidence log under " +
      (dir_ / "state" / "evidence").string() + ".");
  return kExitOk;
}

void Demo::clean_up() {
  if (dir_.empty()) return;
  say("");
  if (container_started_) {
    const std::vector<std::string> argv = {"runc", "delete", "--force", id_};
    show(argv);
    run(argv, dir_);
    container_started_ = false;
  }
  if (daemon_pid_ > 0) {
    say("  stopping the daemon (SIGTERM)");
    ::kill(daemon_pid_, SIGTERM);
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    int status = 0;
    while (::waitpid(daemon_pid_, &status, WNOHANG) == 0 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (Clock::now() >= deadline) {
      ::kill(daemon_pid_, SIGKILL);
      ::waitpid(daemon_pid_, &status, 0);
    }
    daemon_pid_ = -1;
  }
  if (options_.keep) {
    say("kept " + dir_.string() + ". To look at the evidence:\n  " + self_ + " verify --log " +
        (dir_ / "state" / "evidence").string() + " --key " +
        (dir_ / "state" / "node.vkey").string() + "\n  " + self_ + " report --log " +
        (dir_ / "state" / "evidence").string() + " --key " +
        (dir_ / "state" / "node.vkey").string() + " --format html --output report.html");
  } else {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    say(ec ? "could not remove " + dir_.string() + ": " + ec.message()
           : "removed " + dir_.string());
  }
  dir_.clear();
}

}  // namespace

int cmd_demo(const DemoOptions& options) {
  if (auto why = missing_requirement()) {
    std::cerr << "driftwatch demo: " << *why << "\n";
    return kExitBadInput;
  }
  struct sigaction action {};
  action.sa_handler = on_signal;
  ::sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  Demo demo(options);
  return demo.play();
}

}  // namespace driftwatch::app
