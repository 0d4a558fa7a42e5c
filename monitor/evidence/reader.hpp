#pragma once
// Where the verifier and the report read an evidence log from: a directory
// (`--log DIR`, the daemon's state_dir/evidence or a copy of it) or a URL
// (`--url URL`, any static file server), read the same way, file by file,
// by the file's path in the C2SP tlog-tiles layout.

#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "evidence/http_fetch.hpp"

namespace driftwatch::evidence {

/// Reads the file at `path` of the layout ("checkpoint",
/// "tile/0/x001/234.p/17", "blob/<sha256>"): its bytes; nullopt when the
/// log has no such file; an error when it cannot be read or holds more than
/// `max_bytes`.
using Reader =
    std::function<Result<std::optional<std::string>>(std::string_view path, std::size_t max_bytes)>;

/// A log in the directory `dir`. Files are opened below it following no
/// symbolic link and refused unless regular (common/file_io.hpp), so a
/// copy cannot point the verifier at files outside it; a `dir` that does not
/// exist is an error on every read, not an empty log.
Reader directory_reader(std::filesystem::path dir);

/// A log served at the fetcher's base URL, over its one kept-alive
/// connection. Like the fetcher, not thread-safe: one reader, one thread.
Reader url_reader(HttpFetcher fetcher);

}  // namespace driftwatch::evidence
