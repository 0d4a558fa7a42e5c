#pragma once
// Quoting outside input inside error messages.

#include <string>
#include <string_view>

namespace driftwatch {

/// The token in single quotes, at most 64 bytes of it, with anything not
/// printable ASCII (and backslash) as \xNN: input may be arbitrary bytes (a
/// fuzzer, a corrupted file, a sandbox's argv), a message must stay one
/// readable line.
std::string quote(std::string_view token);

}  // namespace driftwatch
