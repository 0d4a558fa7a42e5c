#pragma once
// A scratch directory for one test, removed with everything in it when the
// test ends, however it ends (a failed REQUIRE unwinds through the guard).
// Header-only, for unit_tests and integration_tests alike.

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace driftwatch::testing {

class TempDir {
 public:
  /// mkdtemp of "driftwatch-<label>-XXXXXX" under the temp directory ($TMPDIR
  /// or /tmp). Throws std::runtime_error when it cannot be created.
  explicit TempDir(std::string_view label = "test") {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string pattern = (base / ("driftwatch-" + std::string(label) + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("cannot create a temporary directory " + pattern + ": " +
                               std::strerror(errno));
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    if (ec) std::cerr << "TempDir: cannot remove " << path_ << ": " << ec.message() << "\n";
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::filesystem::path& relative) const {
    return path_ / relative;
  }

  /// Writes `text` to path()/relative, creating the directories above it.
  std::filesystem::path write(const std::filesystem::path& relative, std::string_view text) const {
    const std::filesystem::path file = path_ / relative;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out) throw std::runtime_error("cannot write " + file.string());
    return file;
  }
  /// A symbolic link path()/relative -> target (target taken literally).
  std::filesystem::path symlink(const std::filesystem::path& relative,
                                const std::filesystem::path& target) const {
    const std::filesystem::path link = path_ / relative;
    std::filesystem::create_directories(link.parent_path());
    std::filesystem::create_symlink(target, link);
    return link;
  }
  /// The directory path()/relative (and those above it).
  std::filesystem::path mkdir(const std::filesystem::path& relative) const {
    const std::filesystem::path dir = path_ / relative;
    std::filesystem::create_directories(dir);
    return dir;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace driftwatch::testing
