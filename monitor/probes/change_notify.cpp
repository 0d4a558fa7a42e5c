#include "probes/change_notify.hpp"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/posix.hpp"

namespace driftwatch::probes {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A written file in a watched cgroup directory.
constexpr uint32_t kCgroupMask = IN_MODIFY;
// New entries where sandboxes appear.
constexpr uint32_t kDiscoveryMask = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR;
// A container's state file written (runc's state.json is renamed in place).
constexpr uint32_t kContainerMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_ONLYDIR;
// The state files runc and crun write in <root>/<id>/.
constexpr std::array<const char*, 2> kStateFiles = {"state.json", "status"};
// Problems kept for /healthz.
constexpr size_t kKeptProblems = 10;

bool is_state_file(std::string_view name) {
  return std::ranges::any_of(kStateFiles, [name](const char* f) { return name == f; });
}

bool has_wildcard(std::string_view text) {
  return text.find_first_of("*?[") != std::string_view::npos;
}

bool is_dir(const fs::path& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// `path` is `dir` or lies under it (both lexically normal, absolute).
bool is_under(const fs::path& path, const fs::path& dir) {
  auto [d, p] = std::mismatch(dir.begin(), dir.end(), path.begin(), path.end());
  return d == dir.end();
}

}  // namespace

bool is_kernel_notification(std::string_view file_name) {
  return file_name.ends_with(".events") || file_name.ends_with(".events.local");
}

std::optional<fs::path> glob_parent(std::string_view pattern) {
  const fs::path path = fs::path(pattern).lexically_normal();
  if (!path.is_absolute() || !path.has_parent_path() || path.filename().empty())
    return std::nullopt;
  const fs::path parent = path.parent_path();
  if (has_wildcard(parent.native()) || parent == path) return std::nullopt;
  return parent;
}

Result<ChangeNotify> ChangeNotify::open() {
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return fail("cannot create an inotify instance: ", describe_errno(errno));
  return ChangeNotify(fd);
}

ChangeNotify::ChangeNotify(ChangeNotify&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      watches_(std::move(other.watches_)),
      sandbox_watches_(std::move(other.sandbox_watches_)),
      runtime_roots_(std::move(other.runtime_roots_)),
      discovery_dirs_(std::move(other.discovery_dirs_)),
      root_parents_(std::move(other.root_parents_)),
      events_seen_(other.events_seen_),
      overflows_(other.overflows_),
      unwatched_(std::move(other.unwatched_)) {}

ChangeNotify& ChangeNotify::operator=(ChangeNotify&& other) noexcept {
  if (this != &other) {
    close_fd();
    fd_ = std::exchange(other.fd_, -1);
    watches_ = std::move(other.watches_);
    sandbox_watches_ = std::move(other.sandbox_watches_);
    runtime_roots_ = std::move(other.runtime_roots_);
    discovery_dirs_ = std::move(other.discovery_dirs_);
    root_parents_ = std::move(other.root_parents_);
    events_seen_ = other.events_seen_;
    overflows_ = other.overflows_;
    unwatched_ = std::move(other.unwatched_);
  }
  return *this;
}

ChangeNotify::~ChangeNotify() {
  close_fd();
}

void ChangeNotify::close_fd() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Result<int> ChangeNotify::add(const fs::path& dir, uint32_t mask) {
  // IN_MASK_ADD: a directory watched for two reasons keeps both masks (the
  // kernel gives one descriptor per inode). IN_DONT_FOLLOW: a symlink is
  // not followed to somewhere else.
  const int wd = ::inotify_add_watch(fd_, dir.c_str(), mask | IN_MASK_ADD | IN_DONT_FOLLOW);
  if (wd < 0) return fail("cannot watch ", dir.string(), ": ", describe_errno(errno));
  watches_[wd].dir = dir;
  return wd;
}

void ChangeNotify::drop_watch(int wd) {
  auto it = watches_.find(wd);
  if (it == watches_.end()) return;
  for (const auto& id : it->second.sandboxes) {
    auto owned = sandbox_watches_.find(id);
    if (owned != sandbox_watches_.end()) owned->second.erase(wd);
  }
  watches_.erase(it);
}

std::vector<std::string> ChangeNotify::watch_discovery(const std::vector<fs::path>& roots,
                                                       const std::vector<std::string>& globs,
                                                       const std::vector<fs::path>& root_parents) {
  runtime_roots_.clear();
  discovery_dirs_.clear();
  root_parents_.clear();
  for (const auto& root : roots) {
    runtime_roots_.push_back(root.lexically_normal());
    discovery_dirs_.push_back(root.lexically_normal());
  }
  for (const auto& parent : root_parents) {
    root_parents_.push_back(parent.lexically_normal());
    discovery_dirs_.push_back(parent.lexically_normal());
  }
  std::vector<std::string> problems;
  for (const auto& pattern : globs) {
    if (auto parent = glob_parent(pattern))
      discovery_dirs_.push_back(*parent);
    else
      problems.push_back("cgroup glob " + pattern +
                         ": wildcards before its last component; new matches wait for the sweep");
  }
  for (auto& p : arm_discovery()) problems.push_back(std::move(p));
  remember(problems);
  return problems;
}

// Watches each discovery directory that exists, and the nearest existing
// ancestor of each that does not. Runs again when an ancestor sees an
// entry created on the way to a missing one.
std::vector<std::string> ChangeNotify::arm_discovery(
    std::vector<std::pair<std::string, std::string>>* written) {
  std::vector<std::string> problems;
  auto listing_failed = [&](const fs::path& dir, const std::error_code& ec) {
    if (ec && ec != std::errc::no_such_file_or_directory)
      problems.push_back("cannot list " + dir.string() + ": " + ec.message() +
                         "; what is already there waits for the sweep");
  };
  // The namespaces already under each root parent are roots of their own.
  for (const auto& parent : root_parents_) {
    if (!is_dir(parent)) continue;
    std::error_code ec;
    for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec))
      if (is_dir(it->path())) add_runtime_root(it->path());
    listing_failed(parent, ec);
  }
  for (const auto& dir : discovery_dirs_) {
    if (is_dir(dir)) {
      auto wd = add(dir, kDiscoveryMask);
      if (!wd) {
        problems.push_back(wd.error().message);
        continue;
      }
      watches_[*wd].discovery = true;
      if (std::ranges::find(runtime_roots_, dir) == runtime_roots_.end()) continue;
      // The containers already there: their state files, and those
      // written before this watch (looked at after it is armed).
      std::error_code ec;
      for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        if (!is_dir(it->path())) continue;
        auto c = add(it->path(), kContainerMask);
        if (!c) continue;
        const bool fresh = !watches_[*c].container_dir;
        watches_[*c].container_dir = true;
        if (!fresh || !written) continue;
        for (const char* file : kStateFiles)
          if (::access((it->path() / file).c_str(), F_OK) == 0)
            written->emplace_back(it->path().filename().string(), (it->path() / file).string());
      }
      listing_failed(dir, ec);
      continue;
    }
    fs::path ancestor = dir.parent_path();
    while (!ancestor.empty() && ancestor != ancestor.parent_path() && !is_dir(ancestor))
      ancestor = ancestor.parent_path();
    if (!is_dir(ancestor)) continue;
    if (auto wd = add(ancestor, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR))
      watches_[*wd].ancestor = true;
    else
      problems.push_back(wd.error().message);
  }
  return problems;
}

void ChangeNotify::add_runtime_root(const fs::path& root) {
  const fs::path dir = root.lexically_normal();
  if (std::ranges::find(runtime_roots_, dir) != runtime_roots_.end()) return;
  runtime_roots_.push_back(dir);
  discovery_dirs_.push_back(dir);
}

void ChangeNotify::remember(const std::vector<std::string>& problems) {
  for (const auto& p : problems) unwatched_.push_back(p);
  if (unwatched_.size() > kKeptProblems)
    unwatched_.erase(unwatched_.begin(), unwatched_.end() - static_cast<ptrdiff_t>(kKeptProblems));
}

std::vector<std::string> ChangeNotify::watch_sandbox(const std::string& sandbox_id,
                                                     const std::set<fs::path>& dirs) {
  std::vector<std::string> problems;
  auto& owned = sandbox_watches_[sandbox_id];
  // Those it no longer has.
  for (auto it = owned.begin(); it != owned.end();) {
    auto watch = watches_.find(*it);
    if (watch != watches_.end() && dirs.contains(watch->second.dir)) {
      ++it;
      continue;
    }
    if (watch != watches_.end()) {
      watch->second.sandboxes.erase(sandbox_id);
      const Watch& w = watch->second;
      if (w.sandboxes.empty() && !w.discovery && !w.container_dir && !w.ancestor) {
        ::inotify_rm_watch(fd_, watch->first);
        watches_.erase(watch);
      }
    }
    it = owned.erase(it);
  }
  for (const auto& dir : dirs) {
    const bool have = std::ranges::any_of(owned, [&](int wd) {
      auto w = watches_.find(wd);
      return w != watches_.end() && w->second.dir == dir;
    });
    if (have) continue;
    auto wd = add(dir, kCgroupMask);
    if (!wd) {
      problems.push_back(wd.error().message);
      continue;
    }
    watches_[*wd].sandboxes.insert(sandbox_id);
    owned.insert(*wd);
  }
  remember(problems);
  return problems;
}

void ChangeNotify::unwatch_sandbox(const std::string& sandbox_id) {
  watch_sandbox(sandbox_id, {});
  sandbox_watches_.erase(sandbox_id);
}

std::set<std::string> ChangeNotify::sandboxes() const {
  std::set<std::string> out;
  for (const auto& [id, wds] : sandbox_watches_)
    if (!wds.empty()) out.insert(id);
  return out;
}

Result<std::vector<Change>> ChangeNotify::take() {
  std::vector<Change> changes;
  std::set<std::string> resampled;
  bool discovered = false, rearm = false;
  auto discover = [&](std::string id, std::string what) {
    // A container's id is worth a change of its own (it is sampled alone);
    // anything else asks for one sweep.
    if (!id.empty()) {
      if (!resampled.insert("\n" + id).second) return;
    } else if (std::exchange(discovered, true)) {
      return;
    }
    changes.push_back({Change::Kind::discovery, std::move(id), std::move(what)});
  };
  alignas(inotify_event) std::array<char, 64 * 1024> buffer;
  for (;;) {
    const ssize_t n = ::read(fd_, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) return fail("cannot read change notifications: ", describe_errno(errno));
    if (n == 0) break;
    for (ssize_t at = 0; at + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer.data() + at);
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      ++events_seen_;
      const std::string name =
          event->len > 0 ? std::string(event->name, strnlen(event->name, event->len)) : "";
      if (event->mask & IN_Q_OVERFLOW) {
        ++overflows_;
        changes.push_back({Change::Kind::overflow, "", "the kernel's event queue overflowed"});
        continue;
      }
      if (event->mask & IN_IGNORED) {
        // The directory is gone (a container removed, a root deleted).
        const auto it = watches_.find(event->wd);
        if (it != watches_.end() && (it->second.discovery || it->second.ancestor)) rearm = true;
        drop_watch(event->wd);
        continue;
      }
      const auto it = watches_.find(event->wd);
      if (it == watches_.end()) continue;
      Watch& w = it->second;
      if ((event->mask & IN_MODIFY) && !name.empty() && !is_kernel_notification(name)) {
        for (const auto& id : w.sandboxes)
          if (resampled.insert(id).second) changes.push_back({Change::Kind::sandbox, id, name});
      }
      const bool created = event->mask & (IN_CREATE | IN_MOVED_TO);
      if (created && w.discovery && !name.empty()) {
        const fs::path entry = w.dir / name;
        if (std::ranges::find(root_parents_, w.dir) != root_parents_.end()) {
          // A new containerd namespace: a root of its own from now on.
          add_runtime_root(entry);
          rearm = true;
        } else if (std::ranges::find(runtime_roots_, w.dir) != runtime_roots_.end()) {
          // A new container: its state file is written next; watch for it,
          // and look, in case it was written before the watch.
          if (auto c = add(entry, kContainerMask)) watches_[*c].container_dir = true;
          for (const char* file : kStateFiles)
            if (::access((entry / file).c_str(), F_OK) == 0) discover(name, entry / file);
        } else {
          discover("", entry.string());
        }
      }
      if ((event->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) && w.container_dir && is_state_file(name))
        discover(w.dir.filename().string(), (w.dir / name).string());
      if (created && w.ancestor && !name.empty()) {
        const fs::path entry = w.dir / name;
        if (std::ranges::any_of(discovery_dirs_,
                                [&](const fs::path& dir) { return is_under(dir, entry); }))
          rearm = true;
      }
    }
  }
  if (rearm) {
    std::vector<std::pair<std::string, std::string>> written;
    remember(arm_discovery(&written));
    for (auto& [id, file] : written) discover(std::move(id), std::move(file));
    discover("", "a discovery directory appeared or went");
  }
  return changes;
}

json ChangeNotify::health() const {
  size_t cgroup_dirs = 0, container_dirs = 0;
  json discovery = json::array(), waiting = json::array();
  for (const auto& [wd, w] : watches_) {
    if (!w.sandboxes.empty()) ++cgroup_dirs;
    if (w.container_dir) ++container_dirs;
    if (w.discovery) discovery.push_back(w.dir.string());
    if (w.ancestor) waiting.push_back(w.dir.string());
  }
  return json{{"attached", true},
              {"sandboxes", sandboxes().size()},
              {"cgroup_dirs", cgroup_dirs},
              {"container_dirs", container_dirs},
              {"discovery_dirs", discovery},
              {"waiting_in", waiting},
              {"events", events_seen_},
              {"overflows", overflows_},
              {"problems", unwatched_}};
}

}  // namespace driftwatch::probes
