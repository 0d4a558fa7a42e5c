#include "observe/cgroupfs.hpp"
#include "common/posix.hpp"

#include "common/text.hpp"

#include "common/file_io.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <system_error>

namespace driftwatch::observe {
namespace {

// cgroup.procs of a large cgroup (the root of a v1 hierarchy lists every
// process on the node) is the largest file read here.
constexpr size_t kMaxCgroupFile = 16 << 20;

// cgroup v1 reports "no memory limit" as PAGE_COUNTER_MAX pages in bytes:
// 0x7FFFFFFFFFFFF000 with 4 KiB pages, 0x7FFFFFFFFFFF0000 with 64 KiB pages.
// No real limit comes near either, so everything from the smaller is
// unlimited.
constexpr uint64_t kV1MemoryUnlimited = 0x7FFFFFFFFFFF0000ULL;

std::string_view trim(std::string_view s) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\n'; };
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

template <class Int>
std::optional<Int> parse_decimal(std::string_view token) {
  if (token.empty()) return std::nullopt;
  Int value{};
  const char* end = token.data() + token.size();
  auto [ptr, ec] = std::from_chars(token.data(), end, value, 10);
  if (ec != std::errc{} || ptr != end) return std::nullopt;
  return value;
}

bool path_exists(const std::filesystem::path& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

bool dir_exists(const std::filesystem::path& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The text of dir/file; nullopt when the file is absent from a directory
// that exists (the controller is not enabled for that cgroup, or it is a
// root cgroup, which has no limit files); vanished when the directory itself
// is gone (the cgroup was removed, normally because the sandbox exited).
Result<std::optional<std::string>> read_cgroup_file(const std::filesystem::path& dir,
                                                    std::string_view file) {
  const std::filesystem::path path = dir / file;
  std::string text;
  const int error = read_file_into(path.c_str(), text, kMaxCgroupFile);
  if (error == 0) return std::optional<std::string>{std::move(text)};
  if (error == ENOENT || error == ENODEV) {
    if (dir_exists(dir)) return std::optional<std::string>{};
    return vanished("cgroup " + dir.native() + " no longer exists");
  }
  return fail("cannot read ", path.native(), ": ", describe_errno(error));
}

// The part of a /proc/PID/cgroup path below the hierarchy root, without the
// leading '/'. A path that climbs out of the hierarchy ("..": a cgroup
// outside the reader's cgroup namespace, or a hostile configured name) is
// refused rather than resolved somewhere else under root.
Result<std::string> relative_path(std::string_view path) {
  std::string out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view component = path.substr(start, end - start);
    if (component == "..") {
      return fail("cgroup path ", quote(path), " leaves its hierarchy ('..')");
    }
    if (!component.empty() && component != ".") {
      if (!out.empty()) out += '/';
      out += component;
    }
    start = end + 1;
  }
  return out;
}

std::filesystem::path join(const std::filesystem::path& base, std::string_view relative) {
  return relative.empty() ? base : base / relative;
}

std::string_view hierarchy_name(std::string_view controller) {
  // "name=systemd" is mounted at root/systemd.
  if (controller.substr(0, 5) == "name=") controller.remove_prefix(5);
  return controller;
}

// Where a v1 hierarchy is mounted under root, or nullopt when it is not.
// Co-mounted controllers ("cpu,cpuacct") are normally reached through
// per-controller symlinks; where a distribution made none, the comma-named
// directory that lists the controller is it.
std::optional<std::filesystem::path> find_hierarchy(const std::filesystem::path& root,
                                                    std::string_view controller) {
  const std::string_view name = hierarchy_name(controller);
  if (name.empty()) return std::nullopt;
  if (dir_exists(root / name)) return root / name;
  DIR* dir = ::opendir(root.c_str());
  if (dir == nullptr) return std::nullopt;
  std::optional<std::filesystem::path> found;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string_view entry_name = entry->d_name;
    if (entry_name.find(',') == std::string_view::npos) continue;
    size_t start = 0;
    while (start <= entry_name.size() && !found) {
      size_t end = entry_name.find(',', start);
      if (end == std::string_view::npos) end = entry_name.size();
      if (entry_name.substr(start, end - start) == name) found = root / entry_name;
      start = end + 1;
    }
    if (found) break;
  }
  ::closedir(dir);
  return found;
}

// One cgroup directory, v2 or in one v1 hierarchy. A v1 directory is first
// taken to be root/<name>/<path>, true on every mainstream layout and free to
// compute; only when a read finds no directory there is the hierarchy looked
// up, so the hot path costs one open per file.
class CgroupDir {
 public:
  static CgroupDir v2(std::filesystem::path dir) {
    CgroupDir d;
    d.dir_ = std::move(dir);
    return d;
  }
  static CgroupDir v1(const std::filesystem::path& root, std::string_view controller,
                      std::string relative) {
    CgroupDir d;
    d.root_ = root;
    d.controller_ = std::string(controller);
    d.relative_ = std::move(relative);
    d.dir_ = join(root / hierarchy_name(controller), d.relative_);
    return d;
  }

  const std::filesystem::path& path() const { return dir_; }
  /// Set once a read found the v1 hierarchy not mounted under root.
  bool not_mounted() const { return not_mounted_; }

  /// The text of a file; nullopt when the file is absent from an existing
  /// cgroup, vanished when the cgroup is gone.
  Result<std::optional<std::string>> read(std::string_view file) {
    auto text = read_cgroup_file(dir_, file);
    if (text || !text.error().vanished || controller_.empty() || resolved_) return text;
    resolved_ = true;
    auto hierarchy = find_hierarchy(root_, controller_);
    if (!hierarchy) {
      not_mounted_ = true;
      return fail("cgroup v1 ", controller_, " hierarchy is not mounted at ",
                  (root_ / hierarchy_name(controller_)).native());
    }
    auto resolved = join(*hierarchy, relative_);
    if (resolved == dir_) return text;
    dir_ = std::move(resolved);
    return read_cgroup_file(dir_, file);
  }

 private:
  CgroupDir() = default;
  std::filesystem::path root_;
  std::string controller_;  // empty for v2
  std::string relative_;
  std::filesystem::path dir_;
  bool resolved_ = false;
  bool not_mounted_ = false;
};

using OptionalLimit = std::optional<int64_t>;

Result<OptionalLimit> read_limit(CgroupDir& dir, std::string_view file) {
  auto text = dir.read(file);
  if (!text) return std::unexpected(text.error());
  if (!*text) return OptionalLimit{};
  auto value = parse_limit_value(**text);
  if (!value) return wrap(value.error(), (dir.path() / file).native(), ": ");
  return value;
}

Result<OptionalLimit> read_v1_memory(CgroupDir& dir) {
  auto text = dir.read("memory.limit_in_bytes");
  if (!text) return std::unexpected(text.error());
  if (!*text) return OptionalLimit{};
  const std::string_view value = trim(**text);
  auto bytes = parse_decimal<uint64_t>(value);
  if (!bytes) {
    return fail((dir.path() / "memory.limit_in_bytes").native(), ": expected a decimal, got ",
                quote(value));
  }
  if (*bytes >= kV1MemoryUnlimited) return OptionalLimit{};
  return OptionalLimit{static_cast<int64_t>(*bytes)};
}

Result<std::optional<std::string>> read_v1_cpu(CgroupDir& dir) {
  auto quota_text = dir.read("cpu.cfs_quota_us");
  if (!quota_text) return std::unexpected(quota_text.error());
  if (!*quota_text) return std::optional<std::string>{};
  const std::string_view quota_value = trim(**quota_text);
  auto quota = parse_decimal<int64_t>(quota_value);
  if (!quota || *quota == 0 || *quota < -1) {
    return fail((dir.path() / "cpu.cfs_quota_us").native(),
                ": expected -1 or a positive decimal, got ", quote(quota_value));
  }
  if (*quota == -1) return std::optional<std::string>{};
  auto period_text = dir.read("cpu.cfs_period_us");
  if (!period_text) return std::unexpected(period_text.error());
  if (!*period_text) {
    return fail((dir.path() / "cpu.cfs_period_us").native(), ": missing next to cpu.cfs_quota_us");
  }
  const std::string_view period_value = trim(**period_text);
  auto period = parse_decimal<int64_t>(period_value);
  if (!period || *period <= 0) {
    return fail((dir.path() / "cpu.cfs_period_us").native(), ": expected a positive decimal, got ",
                quote(period_value));
  }
  return std::optional<std::string>{std::to_string(*quota) + " " + std::to_string(*period)};
}

Result<void> append_procs(CgroupDir& dir, std::vector<pid_t>& pids) {
  auto text = dir.read("cgroup.procs");
  if (!text) return std::unexpected(text.error());
  if (!*text) return fail(dir.path().native(), " is not a cgroup directory (no cgroup.procs)");
  std::string_view rest = **text;
  size_t number = 0;
  while (!rest.empty()) {
    ++number;
    size_t end = rest.find('\n');
    const std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
    auto pid = parse_decimal<pid_t>(line);
    if (!pid || *pid <= 0) {
      return fail((dir.path() / "cgroup.procs").native(), " line ", std::to_string(number),
                  ": bad pid ", quote(line));
    }
    pids.push_back(*pid);
  }
  return {};
}

}  // namespace

Result<std::optional<int64_t>> parse_limit_value(std::string_view text) {
  const std::string_view value = trim(text);
  if (value == "max") return OptionalLimit{};
  auto number = parse_decimal<int64_t>(value);
  if (!number || *number < 0) {
    return fail("cgroup limit: expected 'max' or a decimal, got ", quote(value));
  }
  return OptionalLimit{*number};
}

Result<std::optional<std::string>> parse_cpu_max(std::string_view text) {
  const std::string_view value = trim(text);
  const size_t space = value.find(' ');
  if (space == std::string_view::npos) {
    return fail("cpu.max: expected 'QUOTA PERIOD', got ", quote(value));
  }
  const std::string_view quota = value.substr(0, space);
  const std::string_view period = value.substr(space + 1);
  auto period_us = parse_decimal<int64_t>(period);
  if (!period_us || *period_us <= 0) {
    return fail("cpu.max: bad period ", quote(period), " in ", quote(value));
  }
  if (quota == "max") return std::optional<std::string>{};
  auto quota_us = parse_decimal<int64_t>(quota);
  if (!quota_us || *quota_us <= 0) {
    return fail("cpu.max: bad quota ", quote(quota), " in ", quote(value));
  }
  return std::optional<std::string>{std::to_string(*quota_us) + " " + std::to_string(*period_us)};
}

CgroupReader::CgroupReader(std::filesystem::path root) : root_(std::move(root)) {
  if (path_exists(root_ / "cgroup.controllers")) {
    layout_ = CgroupLayout::unified;
  } else if (path_exists(root_ / "unified" / "cgroup.controllers")) {
    layout_ = CgroupLayout::hybrid;
  } else {
    layout_ = CgroupLayout::legacy;
  }
}

CgroupReader::CgroupReader(std::filesystem::path root, CgroupLayout layout)
    : root_(std::move(root)), layout_(layout) {}

std::filesystem::path CgroupReader::unified_dir(std::string_view path) const {
  // A ".." path is refused by limits() and procs(); here it is only dropped
  // from the lexical join so the result stays under root.
  auto relative = relative_path(path);
  const std::string_view rel = relative ? std::string_view(*relative) : std::string_view{};
  // Legacy has no v2 hierarchy; root/unified is where a hybrid would put it.
  return join(layout_ == CgroupLayout::unified ? root_ : root_ / "unified", rel);
}

std::filesystem::path CgroupReader::v1_dir(std::string_view controller,
                                           std::string_view path) const {
  auto relative = relative_path(path);
  const std::string_view rel = relative ? std::string_view(*relative) : std::string_view{};
  auto hierarchy = find_hierarchy(root_, controller);
  return join(hierarchy ? *hierarchy : root_ / hierarchy_name(controller), rel);
}

Result<CgroupLimits> CgroupReader::limits(const CgroupMembership& membership) const {
  // In a unified layout no v1 hierarchy is mounted under root, whatever the
  // membership lists; in legacy there is no v2 hierarchy.
  const bool v1_mounted = layout_ != CgroupLayout::unified;
  std::optional<CgroupDir> v2;
  if (membership.unified && layout_ != CgroupLayout::legacy) {
    auto relative = relative_path(*membership.unified);
    if (!relative) return std::unexpected(relative.error());
    v2 = CgroupDir::v2(unified_dir(*relative));
  }
  // The directory of a controller bound to v1 for this process, else nullopt.
  auto v1 = [&](std::string_view controller) -> Result<std::optional<CgroupDir>> {
    auto path = membership.v1_path(controller);
    if (!v1_mounted || !path) return std::optional<CgroupDir>{};
    auto relative = relative_path(*path);
    if (!relative) return std::unexpected(relative.error());
    return std::optional<CgroupDir>{CgroupDir::v1(root_, controller, std::move(*relative))};
  };

  CgroupLimits limits;

  auto memory_dir = v1("memory");
  if (!memory_dir) return std::unexpected(memory_dir.error());
  if (*memory_dir) {
    auto memory = read_v1_memory(**memory_dir);
    if (!memory) return std::unexpected(memory.error());
    limits.memory_max = *memory;
  } else if (v2) {
    auto memory = read_limit(*v2, "memory.max");
    if (!memory) return std::unexpected(memory.error());
    limits.memory_max = *memory;
  }

  auto pids_dir = v1("pids");
  if (!pids_dir) return std::unexpected(pids_dir.error());
  if (*pids_dir || v2) {
    auto pids = read_limit(*pids_dir ? **pids_dir : *v2, "pids.max");
    if (!pids) return std::unexpected(pids.error());
    limits.pids_max = *pids;
  }

  auto cpu_dir = v1("cpu");
  if (!cpu_dir) return std::unexpected(cpu_dir.error());
  if (*cpu_dir) {
    auto cpu = read_v1_cpu(**cpu_dir);
    if (!cpu) return std::unexpected(cpu.error());
    limits.cpu_max = *cpu;
  } else if (v2) {
    auto text = v2->read("cpu.max");
    if (!text) return std::unexpected(text.error());
    if (*text) {
      auto cpu = parse_cpu_max(**text);
      if (!cpu) return wrap(cpu.error(), (v2->path() / "cpu.max").native(), ": ");
      limits.cpu_max = *cpu;
    }
  }
  return limits;
}

Result<std::vector<pid_t>> CgroupReader::procs(const CgroupMembership& membership) const {
  std::vector<pid_t> pids;
  if (membership.unified && layout_ != CgroupLayout::legacy) {
    auto relative = relative_path(*membership.unified);
    if (!relative) return std::unexpected(relative.error());
    auto dir = CgroupDir::v2(unified_dir(*relative));
    auto appended = append_procs(dir, pids);
    if (!appended) return std::unexpected(appended.error());
  }
  if (layout_ != CgroupLayout::unified) {
    std::vector<std::filesystem::path> visited;
    for (const auto& [controller, path] : membership.v1) {
      auto relative = relative_path(path);
      if (!relative) return std::unexpected(relative.error());
      auto dir = CgroupDir::v1(root_, controller, std::move(*relative));
      // Co-mounted controllers listed on one line share a directory.
      if (std::find(visited.begin(), visited.end(), dir.path()) != visited.end()) continue;
      visited.push_back(dir.path());
      auto appended = append_procs(dir, pids);
      // A hierarchy mounted elsewhere (or not at all) cannot be listed here.
      // Every member of the sandbox is in each of its hierarchies, so the
      // ones that are mounted still find them all.
      if (!appended && dir.not_mounted()) continue;
      if (!appended) return std::unexpected(appended.error());
    }
  }
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  return pids;
}

}  // namespace driftwatch::observe
