#pragma once
// `driftwatch demo`: the whole story on a newcomer's machine, with
// throwaway keys, in one command. It runs the same commands a user would
// (printing each one): makes a control-plane key and a trust file, starts
// `driftwatch run` on a node config of its own (its own state dir, a launch
// journal, an API port the kernel picks), starts a runc container from a
// busybox bundle, signs the container's launch and appends it to the
// journal, waits for `attested`, drifts the container (`runc exec --cap
// CAP_SYS_ADMIN`), waits for `drifted` and prints the findings, then stops
// and removes everything it made (also on Ctrl-C), unless --keep.
//
// Needs root, runc and a static busybox (/bin/busybox, Debian's
// busybox-static): it says which is missing and exits 2 before it changes
// anything.

#include <filesystem>

namespace driftwatch::app {

struct DemoOptions {
  /// Leave the work directory (keys, node config, state dir with the
  /// evidence log) in place and say how to look at it.
  bool keep = false;
  /// Where the work directory is made (a fresh driftwatch-demo.XXXXXX).
  std::filesystem::path parent = "/var/tmp";
};

/// Exit code: 0 when the sandbox was seen attested and then drifted; 1 when
/// the story did not happen (the daemon did not start, the verdicts did not
/// come in time: the step and the daemon's log are printed); 2 when
/// something it needs is missing.
int cmd_demo(const DemoOptions& options);

}  // namespace driftwatch::app
