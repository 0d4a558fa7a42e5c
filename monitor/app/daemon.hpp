#pragma once
// `driftwatch run`: the long-running monitor on one Boost.Asio event loop.

#include <filesystem>
#include <optional>

namespace driftwatch::app {

/// Runs the daemon until SIGTERM/SIGINT; returns the exit code (0 after a
/// clean stop, 2 when startup fails, with the failing step named).
int cmd_run(const std::optional<std::filesystem::path>& config_path);

}  // namespace driftwatch::app
