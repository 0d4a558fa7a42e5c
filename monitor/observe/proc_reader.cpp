#include "observe/proc_reader.hpp"
#include "common/posix.hpp"

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

// procfs files driftwatch reads are a few KiB; mountinfo on a busy node is
// the largest. Anything beyond this is refused rather than cut short, since a
// truncated mount table would be a silent guess.
constexpr size_t kMaxProcFile = 1 << 20;

// ENOENT: the /proc/PID directory is gone; ESRCH: the task exited between
// open and read. Both are the benign race samplers drop.
bool is_exit_race(int error) {
  return error == ENOENT || error == ESRCH;
}

// readlink(2) into a string, growing the buffer when the target fills it.
int read_link(const char* path, std::string& out) {
  size_t size = 256;
  while (true) {
    out.resize(size);
    const ssize_t n = ::readlink(path, out.data(), out.size());
    if (n < 0) return errno;
    if (static_cast<size_t>(n) < out.size()) {
      out.resize(static_cast<size_t>(n));
      return 0;
    }
    if (size >= 65536) return ENAMETOOLONG;
    size *= 4;
  }
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string pid_dir(const std::filesystem::path& root, pid_t pid) {
  std::string path = root.native();
  path += '/';
  path += std::to_string(pid);
  return path;
}

std::string pid_file(const std::filesystem::path& root, pid_t pid, std::string_view file) {
  std::string path = pid_dir(root, pid);
  path += '/';
  path += file;
  return path;
}

Result<std::string> read_pid_file(const std::string& path, int& error) {
  std::string text;
  error = read_file_into(path.c_str(), text, kMaxProcFile);
  if (error == EFBIG) {
    return fail("cannot read ", path, ": larger than ", std::to_string(kMaxProcFile), " bytes");
  }
  if (error != 0) {
    if (is_exit_race(error)) {
      return vanished(path + ": process exited (" + describe_errno(error) + ")");
    }
    return fail("cannot read ", path, ": ", describe_errno(error));
  }
  return text;
}

// Reads and parses one file, prefixing a parse error with the file's path.
template <class Parser>
auto read_and_parse(const std::filesystem::path& root, pid_t pid, std::string_view file,
                    Parser parse, bool empty_means_exited) -> decltype(parse(std::string_view{})) {
  const std::string path = pid_file(root, pid, file);
  int error = 0;
  auto text = read_pid_file(path, error);
  if (!text) return std::unexpected(text.error());
  // status and stat are never empty for a live task; the kernel returns
  // nothing once the task is reaped between open and read.
  if (empty_means_exited && text->empty()) return vanished(path + ": process exited (empty)");
  auto parsed = parse(*text);
  if (!parsed) return wrap(parsed.error(), path, ": ");
  return parsed;
}

}  // namespace

ProcReader::ProcReader(std::filesystem::path root) : root_(std::move(root)) {}

Result<std::string> ProcReader::read(pid_t pid, std::string_view file) const {
  int error = 0;
  return read_pid_file(pid_file(root_, pid, file), error);
}

Result<ProcStatus> ProcReader::status(pid_t pid) const {
  return read_and_parse(root_, pid, "status", parse_status, true);
}

Result<ProcStat> ProcReader::stat(pid_t pid) const {
  return read_and_parse(root_, pid, "stat", parse_stat, true);
}

Result<std::vector<Rlimit>> ProcReader::limits(pid_t pid) const {
  return read_and_parse(root_, pid, "limits", parse_limits, false);
}

Result<std::vector<MountEntry>> ProcReader::mountinfo(pid_t pid) const {
  const std::string path = pid_file(root_, pid, "mountinfo");
  int error = 0;
  auto text = read_pid_file(path, error);
  // A zombie has dropped its mount namespace: the kernel answers EINVAL.
  // That is the same race as ENOENT, a moment earlier.
  if (!text && error == EINVAL) return vanished(path + ": process exited (no mount namespace)");
  if (!text) return std::unexpected(text.error());
  auto mounts = parse_mountinfo(*text);
  if (!mounts) return wrap(mounts.error(), path, ": ");
  return mounts;
}

Result<CgroupMembership> ProcReader::cgroup(pid_t pid) const {
  return read_and_parse(root_, pid, "cgroup", parse_proc_cgroup, false);
}

Result<std::vector<std::string>> ProcReader::cmdline(pid_t pid) const {
  auto text = read(pid, "cmdline");
  if (!text) return std::unexpected(text.error());
  return parse_cmdline(*text);
}

Result<std::optional<std::string>> ProcReader::lsm_label(pid_t pid) const {
  const std::string path = pid_file(root_, pid, "attr/current");
  int error = 0;
  auto text = read_pid_file(path, error);
  if (text) return parse_lsm_label(*text);
  // No LSM that keeps a task label (this machine): the read fails with
  // EINVAL. A kernel without CONFIG_SECURITY has no attr/ at all, which is
  // told apart from an exited process by the PID directory still existing.
  if (error == EINVAL || error == EOPNOTSUPP) return std::optional<std::string>{};
  if (error == ENOENT && is_directory(pid_dir(root_, pid))) return std::optional<std::string>{};
  return std::unexpected(text.error());
}

LinkRead ProcReader::read_link(pid_t pid, std::string_view link) const {
  LinkRead read;
  read.error = observe::read_link(pid_file(root_, pid, link).c_str(), read.target);
  if (read.error != 0) read.target.clear();
  return read;
}

std::string ProcReader::path_of(pid_t pid, std::string_view file) const {
  return pid_file(root_, pid, file);
}

Result<std::string> ProcReader::link_target_of(const std::string& path, const LinkRead& read) {
  if (read.error != 0) {
    if (is_exit_race(read.error))
      return vanished(path + ": process exited (" + describe_errno(read.error) + ")");
    return fail("cannot read link ", path, ": ", describe_errno(read.error));
  }
  return read.target;
}

Result<uint64_t> ProcReader::namespace_inode_of(const std::string& path, const LinkRead& read) {
  DW_TRY(target, link_target_of(path, read));
  auto inode = parse_ns_link(target);
  if (!inode) return wrap(inode.error(), path, ": ");
  return inode;
}

Result<uint64_t> ProcReader::namespace_inode(pid_t pid, std::string_view kind) const {
  if (kind.empty() || kind.find('/') != std::string_view::npos) {
    return fail("namespace kind '", kind, "' is not a name under /proc/PID/ns");
  }
  const std::string link = "ns/" + std::string(kind);
  return namespace_inode_of(pid_file(root_, pid, link), read_link(pid, link));
}

Result<std::string> ProcReader::exe_path(pid_t pid) const {
  return link_target_of(pid_file(root_, pid, "exe"), read_link(pid, "exe"));
}

std::vector<pid_t> ProcReader::pids() const {
  std::vector<pid_t> out;
  DIR* dir = ::opendir(root_.c_str());
  if (dir == nullptr) return out;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string_view name = entry->d_name;
    pid_t pid = 0;
    auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
    // from_chars takes no '+'; a '-' yields a non-positive value.
    if (ec == std::errc{} && ptr == name.data() + name.size() && pid > 0) out.push_back(pid);
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace driftwatch::observe
