#pragma once
// Reading whole files: one open, a read loop, one close; no iostreams, no
// stat (it is on the sampling hot path for /proc and cgroupfs files).

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace driftwatch {

/// Reads all of `path` into `out` (reusing its capacity). Returns 0 or an
/// errno value; EFBIG when the file holds more than `max_bytes`.
int read_file_into(const char* path, std::string& out, size_t max_bytes);

/// The whole file, or an error "cannot read WHAT PATH: reason" (`what` may
/// be empty) and "…: larger than N bytes" past `max_bytes`.
Result<std::string> read_file(const std::filesystem::path& path, size_t max_bytes,
                              std::string_view what = "");

/// mkdir -p with mode 0700 for what it creates (state and key directories:
/// nobody else needs to list them). Existing directories keep their mode.
Result<void> make_private_dirs(const std::filesystem::path& dir);

}  // namespace driftwatch
