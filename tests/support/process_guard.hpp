#pragma once
// Child processes for tests on the real thing: a guard that always kills and
// reaps what a test launched, and a one-shot command runner with captured
// output. No shell is involved anywhere; argv goes to execvp as is.
//
// Harness code, not monitor code: a harness failure (cannot fork, a command
// hangs) throws std::runtime_error so that Catch reports it in the test.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace driftwatch::testing {

/// The full path of an executable found in PATH, or "" when there is none.
std::string have_tool(std::string_view name);

/// Where a ChildProcess's standard streams go.
struct SpawnOptions {
  /// File read as stdin; an empty pipe (immediate EOF) when unset.
  std::optional<std::filesystem::path> stdin_path = std::nullopt;
  /// File that receives stdout and stderr, created or appended to; discarded
  /// (an anonymous memfd) when unset. A file, never a pipe: a detached
  /// grandchild (a container) inherits these streams and would hold a pipe
  /// open for its lifetime. Defaults are never the host's /dev/null: crun
  /// chowns the stdio it inherits for a user-namespaced container.
  std::optional<std::filesystem::path> output_path = std::nullopt;
};

/// What a finished command did.
struct CommandResult {
  int exit_code = -1;  // 128 + N for a death by signal N
  std::string out;
  std::string err;
};

/// Runs argv (argv[0] looked up in PATH) to completion with stdout and stderr
/// captured through pipes, feeding `stdin_text` through a pipe (an empty
/// one when not given; never /dev/null, see SpawnOptions). Not for commands that leave a detached
/// process holding their stdout (e.g. `runc run -d`): that process would keep the pipe open. Throws
/// std::runtime_error when the program cannot be started or does not finish within `timeout` (it is
/// then killed).
CommandResult run_command(const std::vector<std::string>& argv,
                          std::optional<std::string> stdin_text = {},
                          std::chrono::milliseconds timeout = std::chrono::seconds(120));

/// A child process in its own process group. The destructor SIGKILLs the
/// whole group and reaps the child unless it was already reaped, so a test
/// that fails midway leaves nothing running (bwrap's sandbox, for one, lives
/// on when only the outer bwrap dies; it stays in the group).
class ChildProcess {
 public:
  /// Starts argv (argv[0] looked up in PATH). Throws std::runtime_error when
  /// the program cannot be started.
  static ChildProcess start(const std::vector<std::string>& argv, const SpawnOptions& options = {});

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  /// The host pid of the child (also its process group id).
  pid_t pid() const { return pid_; }

  /// The exit status once the child has exited, reaping it; nullopt while it
  /// runs. A death by signal N reads as 128 + N, as a shell reports it.
  std::optional<int> poll();
  /// Like poll(), but waits up to `timeout` for the exit.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);
  /// SIGKILLs the process group and reaps the child; returns its status.
  /// Does nothing more once the child has been reaped.
  int kill();

 private:
  friend CommandResult run_command(const std::vector<std::string>&, std::optional<std::string>,
                                   std::chrono::milliseconds);
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
  std::optional<int> status_;
};

/// argv joined with spaces, for messages.
std::string describe_command(const std::vector<std::string>& argv);

}  // namespace driftwatch::testing
