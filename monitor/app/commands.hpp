#pragma once
// The driftwatch command line: parses arguments and runs a subcommand.
// Exit codes (DESIGN.md): 0 success / verified, 1 verified and found a
// problem (drift), 2 usage or input error with a one-line reason on stderr.

namespace driftwatch::app {

inline constexpr int kExitOk = 0;
inline constexpr int kExitProblem = 1;
inline constexpr int kExitBadInput = 2;

/// Runs the command line; returns the process exit code. Nothing is written
/// to stdout unless the command succeeds (no partial output).
int run_cli(int argc, char** argv);

}  // namespace driftwatch::app
