#pragma once
// Shared by the fuzz targets: reporting a broken property as a crash, and a
// scratch directory for targets that go through the file system.

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace driftwatch::fuzz {

/// A property does not hold: say which, with the input or detail, and abort
/// so that libFuzzer saves the input as a crash.
[[noreturn]] inline void report(const char* target, const char* what,
                                std::string_view detail = {}) {
  constexpr size_t kShown = 2000;
  std::fprintf(stderr, "%s: %s: %.*s%s\n", target, what,
               static_cast<int>(std::min(detail.size(), kShown)), detail.data(),
               detail.size() > kShown ? "…" : "");
  std::abort();
}

/// One directory per fuzzing process under $TMPDIR (scripts/fuzz.sh points
/// TMPDIR into its scratch space), removed when the process exits normally.
/// A crash leaves it for inspection; the script removes its scratch space.
class ScratchDir {
 public:
  explicit ScratchDir(std::string_view label) {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string pattern = (base / ("driftwatch-" + std::string(label) + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  /// Empties the directory, for the next input.
  void clear() const {
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator(path_, ignored))
      std::filesystem::remove_all(entry.path(), ignored);
  }

 private:
  std::filesystem::path path_;
};

}  // namespace driftwatch::fuzz
