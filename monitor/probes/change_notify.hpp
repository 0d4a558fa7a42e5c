#pragma once
// Change notifications the eBPF probes cannot give: inotify on cgroupfs and
// on the runtimes' state directories, read on the event loop.
//
// - A write to a watched sandbox's cgroup files (`runc update` of a memory,
//   pids or cpu limit; a process moved in through `cgroup.procs`) makes no
//   capability check and passes no probe, but the VFS reports it: one watch
//   per cgroup directory of the sandbox (each v1 hierarchy's and the
//   unified one) sees an IN_MODIFY of every file in it.
// - A new sandbox: runc and crun create `<root>/<id>/` and write its state
//   file in it; a directory matched by a `cgroup_globs` pattern whose last
//   component is the only wildcard appears in the pattern's parent. Those
//   directories are watched for new entries, so discovery runs at once
//   instead of at the next sweep. A root that does not exist yet is
//   watched through its nearest existing ancestor. containerd keeps one
//   runc root per namespace (/run/containerd/runc/<namespace>/): its
//   parent is watched too, and each namespace that appears in it becomes a
//   watched root.
//
// Nothing here trusts what it reads: names come from the kernel, and a
// change only ever asks for a resample or a sweep.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace driftwatch::probes {

struct Change {
  enum class Kind {
    sandbox,    // a file in a watched sandbox's cgroup was written
    discovery,  // something appeared where sandboxes appear
    overflow,   // the kernel's queue overflowed: events were lost, sweep
  };
  Kind kind = Kind::sandbox;
  std::string sandbox_id;  // for `sandbox`
  std::string what;        // the path or file name, for the log
};

/// True for a cgroup file whose writes are the kernel's own notifications
/// (`cgroup.events`, `memory.events`, `*.events.local`): no one changed a
/// limit, so no resample.
bool is_kernel_notification(std::string_view file_name);

/// The directory to watch for new matches of a `cgroup_globs` pattern: its
/// parent, when only the last component has wildcards; else nullopt (that
/// pattern is left to the sweep).
std::optional<std::filesystem::path> glob_parent(std::string_view pattern);

class ChangeNotify {
 public:
  /// A non-blocking inotify instance.
  static Result<ChangeNotify> open();
  ChangeNotify(ChangeNotify&& other) noexcept;
  ChangeNotify& operator=(ChangeNotify&& other) noexcept;
  ChangeNotify(const ChangeNotify&) = delete;
  ChangeNotify& operator=(const ChangeNotify&) = delete;
  ~ChangeNotify();

  /// Readable when changes wait.
  int fd() const { return fd_; }

  /// Watches the runtimes' state roots, the subdirectories of `root_parents`
  /// (containerd's namespaces: each a root, those that appear later too)
  /// and the parents of the cgroup globs for new sandboxes. Returns what
  /// could not be watched (and why).
  std::vector<std::string> watch_discovery(
      const std::vector<std::filesystem::path>& roots, const std::vector<std::string>& cgroup_globs,
      const std::vector<std::filesystem::path>& root_parents = {});

  /// Watches `dirs` (a sandbox's cgroup directories) for it, and stops
  /// watching those it had that are not in `dirs`. Returns what could not
  /// be watched (and why).
  std::vector<std::string> watch_sandbox(const std::string& sandbox_id,
                                         const std::set<std::filesystem::path>& dirs);
  /// Stops watching a sandbox's directories.
  void unwatch_sandbox(const std::string& sandbox_id);
  /// The sandboxes watched now.
  std::set<std::string> sandboxes() const;

  /// Reads every waiting event (never blocks): the changes, at most one
  /// per sandbox and one discovery per call.
  Result<std::vector<Change>> take();

  /// For /healthz: what is watched, what was seen.
  nlohmann::json health() const;
  uint64_t events_seen() const { return events_seen_; }

 private:
  explicit ChangeNotify(int fd) : fd_(fd) {}
  void close_fd() noexcept;
  // Adds a watch; returns the descriptor or why not.
  Result<int> add(const std::filesystem::path& dir, uint32_t mask);
  /// `written` (optional) gets the state files already in the container
  /// directories it newly watches: (container id, path), written before
  /// the watch could see them.
  std::vector<std::string> arm_discovery(
      std::vector<std::pair<std::string, std::string>>* written = nullptr);
  // A directory whose subdirectories are containers, watched from now on.
  void add_runtime_root(const std::filesystem::path& root);
  void remember(const std::vector<std::string>& problems);
  void drop_watch(int wd);

  struct Watch {
    std::filesystem::path dir;
    std::set<std::string> sandboxes;  // owners of a cgroup directory
    bool discovery = false;           // a root or glob parent (new entries)
    bool container_dir = false;       // <root>/<id>/ (its state file)
    bool ancestor = false;            // stands in for a root that is missing
  };

  int fd_ = -1;
  std::map<int, Watch> watches_;                          // by watch descriptor
  std::map<std::string, std::set<int>> sandbox_watches_;  // by sandbox id
  std::vector<std::filesystem::path> runtime_roots_;      // <root>/<id>/ get a watch
  std::vector<std::filesystem::path> discovery_dirs_;     // runtime roots and glob parents
  std::vector<std::filesystem::path> root_parents_;       // each subdirectory a runtime root
  uint64_t events_seen_ = 0;
  uint64_t overflows_ = 0;
  std::vector<std::string> unwatched_;  // the last problems, for health
};

}  // namespace driftwatch::probes
