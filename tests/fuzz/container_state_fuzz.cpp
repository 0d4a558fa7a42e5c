// libFuzzer target: the container state files the runtimes write, which a
// process able to write the state root controls: runc's <root>/<id>/state.json
// (parse_runc_state) and crun's <root>/<id>/status (parse_crun_status), both
// directly and through find_container on a scratch state root, with a
// fixture /proc holding one process (pid 4242, start time 777, in cgroup
// /sandbox) so that a state naming it is resolved all the way.
//
// The first byte picks the runtime (even: runc, odd: crun); the rest is the
// file. Checks: an error says something; a parsed state names the sandbox by
// the id it was read under, its runtime, and a pid in range; through
// find_container the same file gives the same first process and bundle, and
// resolves only the fixture's process with its own start time. All of this
// also for the file with one node replaced by a value of each JSON type in
// turn (type flips, fuzz_support.hpp).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "observe/proc_reader.hpp"
#include "sandbox/discovery.hpp"

namespace sandbox = driftwatch::sandbox;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kId = "fuzz-ctr";
constexpr pid_t kFixturePid = 4242;

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("container_state_fuzz", what, detail);
}

void write(const fs::path& path, std::string_view text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  if (!out) report("cannot write a scratch file", path.string());
}

struct Fixture {
  driftwatch::fuzz::ScratchDir dir{"container-state-fuzz"};
  fs::path proc = dir.path() / "proc";
  fs::path runc_root = dir.path() / "runc";
  fs::path crun_root = dir.path() / "crun";
  Fixture() {
    const fs::path pid = proc / std::to_string(kFixturePid);
    write(pid / "stat",
          "4242 (sleep) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 777 2252800 200 "
          "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
    write(pid / "cgroup", "0::/sandbox\n");
    fs::create_directories(runc_root);
    fs::create_directories(crun_root);
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

void check_ref(const sandbox::SandboxRef& ref, const char* runtime, std::string_view text) {
  if (ref.sandbox_id != kId) report("the sandbox is not named by its id", text);
  if (ref.runtime != runtime) report("the runtime is not the one whose file was read", text);
  if (ref.first_process.pid <= 0 || ref.first_process.pid > 0x3fffffff)
    report("a pid out of range was accepted", text);
}

void check_state(bool runc, std::string_view text) {
  const char* runtime = runc ? "runc" : "crun";

  auto parsed = runc ? sandbox::parse_runc_state(text, kId) : sandbox::parse_crun_status(text, kId);
  if (!parsed) {
    if (parsed.error().message.empty()) report("parse failed without a message", text);
  } else {
    check_ref(*parsed, runtime, text);
  }

  const Fixture& f = fixture();
  const fs::path root = runc ? f.runc_root : f.crun_root;
  const fs::path file = root / std::string(kId) / (runc ? "state.json" : "status");
  write(file, text);
  sandbox::DiscoveryRoots roots;
  roots.runc_roots = {f.runc_root};
  roots.crun_roots = {f.crun_root};
  auto found = sandbox::find_container(roots, kId, driftwatch::observe::ProcReader(f.proc));
  fs::remove(file);
  if (!found) {
    if (found.error().message.empty()) report("find_container failed without a message", text);
    return;
  }
  if (!parsed) report("find_container accepted a state its parser refuses", text);
  check_ref(*found, runtime, text);
  if (!(found->first_process == parsed->first_process) || found->bundle != parsed->bundle)
    report("find_container read another process or bundle than the parser", text);
  // The fixture's only process: pid 4242, started at tick 777. Anything else
  // is a process that is not there, or a PID reused by another process.
  if (found->first_process.pid != kFixturePid || found->first_process.start_time_ticks != 777)
    report("resolved a process that is not there", text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool runc = data[0] % 2 == 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  check_state(runc, text);
  // The same for the file with one node replaced by each JSON type.
  driftwatch::fuzz::for_each_type_flip(
      text, [runc](const std::string& flipped) { check_state(runc, flipped); });
  return 0;
}
