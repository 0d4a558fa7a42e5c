// libFuzzer entry for the parsers of /proc and cgroupfs text. The first byte
// picks the parser, the rest is the file's bytes. Beyond "no crash, no
// sanitizer report, no exception", each parser's output is checked against
// properties that hold for any input it accepts.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "observe/cgroupfs.hpp"
#include "observe/proc_parsers.hpp"

using namespace driftwatch::observe;

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

template <class R>
void require_error_message(const R& result) {
  if (!result) require(!result.error().message.empty() && !result.error().vanished);
}

void fuzz_status(std::string_view text) {
  auto status = parse_status(text);
  require_error_message(status);
  if (status) require(status->seccomp >= 0 && status->seccomp <= 2);
}

void fuzz_stat(std::string_view text) {
  auto stat = parse_stat(text);
  require_error_message(stat);
  if (stat) require(stat->pid >= 0 && stat->ppid >= 0 && stat->comm.size() < text.size());
}

void fuzz_limits(std::string_view text) {
  auto limits = parse_limits(text);
  require_error_message(limits);
  if (limits) {
    require(limits->size() <= 16);
    for (const auto& row : *limits) require(row.name.rfind("RLIMIT_", 0) == 0);
  }
}

void fuzz_mountinfo(std::string_view text) {
  auto mounts = parse_mountinfo(text);
  require_error_message(mounts);
  if (mounts) {
    for (const auto& m : *mounts) {
      require(!m.root.empty() && !m.mount_point.empty() && !m.fs_type.empty());
      (void)m.read_only();
    }
  }
}

void fuzz_proc_cgroup(std::string_view text) {
  auto membership = parse_proc_cgroup(text);
  require_error_message(membership);
  if (membership) {
    for (const auto& [controller, path] : membership->v1) {
      require(!controller.empty() && !path.empty() && path.front() == '/');
      require(membership->v1_path(controller) == path);  // keys are unique
    }
  }
}

void fuzz_cmdline(std::string_view bytes) {
  // Joining argv with NULs gives back the input less one trailing NUL.
  auto argv = parse_cmdline(bytes);
  std::string joined;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (i > 0) joined += '\0';
    joined += argv[i];
  }
  std::string_view expected = bytes;
  if (!expected.empty() && expected.back() == '\0') expected.remove_suffix(1);
  require(joined == expected);
  (void)parse_lsm_label(bytes);
}

void fuzz_ns_link(std::string_view text) {
  auto inode = parse_ns_link(text);
  require_error_message(inode);
  if (inode) require(text.back() == ']' && text.find(":[") != std::string_view::npos);
}

void fuzz_limit_value(std::string_view text) {
  auto value = parse_limit_value(text);
  require_error_message(value);
  if (value && *value) {
    // A parsed limit reads back as itself.
    auto again = parse_limit_value(std::to_string(**value));
    require(again && *again == *value);
  }
}

void fuzz_cpu_max(std::string_view text) {
  auto value = parse_cpu_max(text);
  require_error_message(value);
  if (value && *value) {
    // The normalized "QUOTA PERIOD" parses to itself.
    auto again = parse_cpu_max(**value);
    require(again && *again == *value);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 9) {
    case 0:
      fuzz_status(text);
      break;
    case 1:
      fuzz_stat(text);
      break;
    case 2:
      fuzz_limits(text);
      break;
    case 3:
      fuzz_mountinfo(text);
      break;
    case 4:
      fuzz_proc_cgroup(text);
      break;
    case 5:
      fuzz_cmdline(text);
      break;
    case 6:
      fuzz_ns_link(text);
      break;
    case 7:
      fuzz_limit_value(text);
      break;
    case 8:
      fuzz_cpu_max(text);
      break;
  }
  return 0;
}
