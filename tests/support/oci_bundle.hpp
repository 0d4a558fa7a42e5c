#pragma once
// OCI bundles with a busybox rootfs and RAII guards for real runc and crun
// containers, for integration tests that compare a launch config with what
// the kernel shows.
//
// Conventions learned on the real runtimes (see the runtime notes):
//  - A container's stdio is a file in the bundle, never a pipe (a detached
//    container holds it open forever) and never /dev/null (crun chowns its
//    stdio to the container's root when a user namespace is configured, which
//    would chown the host's /dev/null).
//  - Bundle directories are 0755: with a user namespace the runtimes fail
//    ("permission denied") when the mapped root cannot search the bundle.
//
// A runtime refusing a config is a normal outcome a test may want to assert,
// so start/exec/update return Result with the runtime's own message. Harness
// breakage (cannot write a file, `state` output is not JSON, a runtime hangs)
// throws std::runtime_error. `value_or_throw` turns a Result into a throw
// where a test only wants the happy path.

#include <sys/types.h>

#include <filesystem>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "support/process_guard.hpp"

namespace driftwatch::testing {

/// What is missing for a test that needs `needs` ("root", "runc", "crun",
/// "bwrap", "busybox", "btf", "podman", "containerd"), as one readable
/// message, or nullopt when all is there. "btf": the kernel's BTF, without
/// which the probes cannot load. "podman" includes crun's needs (its default
/// runtime); "containerd" means containerd, ctr, its runc shim and runc.
/// "crun" also fails on a hybrid cgroup host where crun 1.8 cannot start
/// containers yet; the message then says to run scripts/prepare-test-host.sh.
/// "busybox" requires a statically linked /bin/busybox (busybox-static).
/// Usage: `if (auto why = missing_requirement({"root", "runc"})) DW_SKIP(*why);`
/// (support/skip.hpp), so that CTest reports the test skipped, not passed.
std::optional<std::string> missing_requirement(std::initializer_list<std::string_view> needs);

/// Skips the test (support/skip.hpp's DW_SKIP, so CTest reports it
/// skipped) when missing_requirement(...) names something missing.
#define SKIP_WITHOUT(...) \
  if (auto why = ::driftwatch::testing::missing_requirement({__VA_ARGS__})) DW_SKIP(*why)

/// The value of a Result, or a std::runtime_error carrying its message.
template <class T>
T value_or_throw(Result<T> result) {
  if (!result) throw std::runtime_error(result.error().message);
  return std::move(*result);
}
inline void value_or_throw(Result<void> result) {
  if (!result) throw std::runtime_error(result.error().message);
}

/// A container id unique to this test process: "dwtest-<label>-<pid>-<n>".
std::string unique_container_id(std::string_view label);

/// A temporary OCI bundle: DIR/rootfs holds a static busybox with a symlink
/// per applet in /bin (sh, sleep, cat, unshare, nsenter, id, …), empty
/// /proc /dev /sys /tmp, and /etc/passwd and /etc/group with root (0),
/// user (1000) and nobody (65534). DIR is under /run/driftwatch-test/ when
/// root, else under /var/tmp; never /tmp. The destructor force-deletes any
/// runc/crun container still running from this bundle, then removes DIR.
class OciBundle {
 public:
  /// A bundle with a rootfs and no config.json yet. Throws std::runtime_error
  /// when the rootfs cannot be built (no /bin/busybox, disk full, …).
  OciBundle();
  /// A bundle whose config is `runc spec`'s default (`crun spec` when runc is
  /// missing) with process.terminal=false and process.args ["sleep","3600"],
  /// already written to config.json.
  static OciBundle with_default_spec();
  /// with_default_spec() run as uid and gid 1000 with every capability set
  /// empty: the sandbox the probe tests and benchmarks make attempts in.
  static OciBundle without_capabilities();

  /// Copies the program `from` into the rootfs as /bin/`name`.
  void add_program(const std::filesystem::path& from, const std::string& name) const;

  OciBundle(OciBundle&& other) noexcept;
  OciBundle& operator=(OciBundle&& other) noexcept;
  OciBundle(const OciBundle&) = delete;
  OciBundle& operator=(const OciBundle&) = delete;
  ~OciBundle();

  /// The config in memory; call write_config() after changing it.
  nlohmann::json& config() { return config_; }
  const nlohmann::json& config() const { return config_; }
  /// Writes config() to config.json.
  void write_config() const;

  std::filesystem::path dir() const { return dir_; }
  std::filesystem::path config_path() const { return dir_ / "config.json"; }
  std::filesystem::path rootfs() const { return dir_ / "rootfs"; }

  /// Adds a user namespace mapping container ids 0..size-1 to host ids
  /// host_id.. (uid and gid alike), chowns the rootfs to host_id so that the
  /// container's root owns its files, and writes config.json.
  void enable_user_namespace(uint32_t host_id = 100000, uint32_t size = 65536);

 private:
  std::filesystem::path dir_;
  nlohmann::json config_;
};

/// A running runc or crun container started with `run -d`. The destructor
/// runs `<runtime> delete -f ID`, ignoring errors, always. Must not outlive
/// the OciBundle it was started from.
class Container {
 public:
  /// `<runtime> run -d --bundle DIR ID` ("runc" or "crun"), then waits until
  /// `<runtime> state ID` says "running". An error carries the runtime's
  /// stderr, e.g. crun's "capset: Operation not permitted".
  static Result<Container> start(std::string runtime, const OciBundle& bundle, std::string id);

  Container(Container&& other) noexcept;
  Container& operator=(Container&& other) noexcept;
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;
  ~Container();

  const std::string& id() const { return id_; }
  const std::string& runtime() const { return runtime_; }
  /// Host pid of the container's init process, from `state` ("pid").
  pid_t init_pid() const { return init_pid_; }
  /// The inode of the init process's PID namespace (/proc/PID/ns/pid);
  /// throws std::runtime_error when it cannot be read.
  uint32_t pid_namespace_inode() const;

  /// `<runtime> state ID` as JSON.
  Result<nlohmann::json> state() const;

  /// `<runtime> exec -d --pid-file F <runtime_flags…> ID <args…>`; the host
  /// pid of the exec'd process. E.g. exec({"sleep", "3600"}, {"--cap",
  /// "CAP_SYS_ADMIN"}). Note the runtimes differ: runc adds --cap to the
  /// container's sets and keeps its noNewPrivileges; crun 1.8 replaces the
  /// sets with just the --cap ones and sets no_new_privs only with
  /// --no-new-privs. The process writes its output to <id>.exec-<n>.log in the bundle.
  Result<pid_t> exec(const std::vector<std::string>& args,
                     const std::vector<std::string>& runtime_flags = {});

  /// `<runtime> exec <runtime_flags…> ID <args…>` in the foreground, with its
  /// output captured: for reading something inside the container.
  CommandResult exec_wait(const std::vector<std::string>& args,
                          const std::vector<std::string>& runtime_flags = {}) const;

  /// `<runtime> update <flags…> ID`, e.g. {"--memory", "134217728",
  /// "--pids-limit", "100"}. crun 1.8 takes plain byte counts only ("128M"
  /// is a JSON parse error) and rejects "--pids-limit -1".
  Result<void> update(const std::vector<std::string>& flags);

  /// What the container's init wrote to its stdout and stderr so far.
  std::string log() const;

 private:
  Container(std::string runtime, std::string runtime_path, std::string id,
            std::filesystem::path bundle_dir);
  void remove() noexcept;

  std::string runtime_;       // "runc" / "crun", as given
  std::string runtime_path_;  // resolved executable
  std::string id_;
  std::filesystem::path bundle_dir_;
  pid_t init_pid_ = -1;
  int exec_count_ = 0;
};

}  // namespace driftwatch::testing
