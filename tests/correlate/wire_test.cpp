#include "correlate/wire.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/file_io.hpp"
#include "observe/cgroupfs.hpp"
#include "observe/proc_reader.hpp"
#include "projection/observed.hpp"
#include "sandbox/discovery.hpp"
#include "sandbox/sampler.hpp"
#include "support/observation_fixtures.hpp"
#include "support/skip.hpp"
#include "support/wait.hpp"

// The sampler/front protocol: every message round-trips field for field
// (compared as JSON: the structs have no operator==), a real sample of this
// test process and a child survives the wire byte for byte, and hostile
// documents and frames are refused with the field named.

using namespace driftwatch;
using namespace driftwatch::correlate;
using Catch::Matchers::Contains;
using driftwatch::testing::kHostNamespaces;
using driftwatch::testing::ok;
using nlohmann::json;

namespace {

const std::string kNotUtf8 = "\xff\xfe-not-utf8";

projection::MemberObservation member(pid_t pid, uint64_t start) {
  projection::MemberObservation m;
  m.pid = pid;
  m.start_time_ticks = start;
  m.status.name = "sleep";
  m.status.tgid = pid;
  m.status.ppid = 1;
  m.status.uid[0] = 1000;
  m.status.uid[1] = 0;
  m.status.uid[2] = 1001;
  m.status.uid[3] = 4294967295u;
  m.status.gid[0] = 100;
  m.status.gid[1] = 101;
  m.status.gid[2] = 102;
  m.status.gid[3] = 103;
  m.status.groups = {4, 24, 27};
  m.status.nspid = {pid, 1};
  m.status.cap_inheritable = 1;
  m.status.cap_permitted = 0xa80425fb;
  m.status.cap_effective = 0xa80425fb;
  m.status.cap_bounding = 0xffffffffffffffffull;
  m.status.cap_ambient = 2;
  m.status.no_new_privs = true;
  m.status.seccomp = 2;
  m.namespaces = kHostNamespaces;
  m.namespaces["net"] += 1000;
  m.rlimits = {{"RLIMIT_NOFILE", 1024, 4096},
               {"RLIMIT_CORE", 0, std::nullopt},
               {"RLIMIT_CPU", std::nullopt, std::nullopt}};
  m.cgroup_limits.memory_max = 268435456;
  m.cgroup_limits.pids_max = 512;
  m.cgroup_limits.cpu_max = "50000 100000";
  m.lsm_label = "docker-default (enforce)";
  m.argv = {"sleep", "3600", "", kNotUtf8};
  m.exe = "/usr/bin/sleep";
  m.nested_user_namespace = true;
  return m;
}

// A sample with every optional field present.
wire::Sample full_sample(const std::string& id = "agent-7") {
  wire::Sample s;
  s.ref.sandbox_id = id;
  s.ref.runtime = "runc";
  s.ref.engine = "containerd";
  s.ref.names = {"agents/pod-7/agent", "agent-7-alias"};
  std::sort(s.ref.names.begin(), s.ref.names.end());
  s.ref.first_process = {4242, 987654321};
  s.ref.membership = sandbox::Membership::cgroup;
  s.ref.cgroups.unified = "/system.slice/runc-" + id + ".scope";
  s.ref.cgroups.v1 = {{"memory", "/runc/" + id}, {"name=systemd", "/x"}};
  s.ref.bundle = "/run/bundles/" + id;
  s.observation.sandbox_id = id;
  s.observation.runtime = "runc";
  s.observation.members = {member(4242, 987654321), member(4250, 987654400)};
  projection::MountView view;
  view.mount_namespace = 4026532100;
  view.seen_through = 4242;
  view.root_readonly = true;
  view.masked = {"/proc/kcore", "/proc/keys"};
  view.readonly = {"/proc/bus", "/proc/sys"};
  s.observation.mount_views = {view, projection::MountView{4026532200, 4250, false, {}, {}}};
  s.observation.host_namespaces = kHostNamespaces;
  s.observation.vanished = {4243, 4244};
  s.consumed_config_sha256 = std::string(64, 'a');
  s.started_at = 1764021540;
  s.sampled_at = 1764021600;
  s.sample_seconds = 0.0123456789;
  return s;
}

// A sample with every optional field absent and every list empty that may be.
wire::Sample bare_sample() {
  wire::Sample s;
  s.ref.sandbox_id = "pid-17";
  s.ref.runtime = "process";
  s.ref.engine = "process";
  s.ref.first_process = {17, 5};
  s.ref.membership = sandbox::Membership::descendants;
  s.observation.sandbox_id = "pid-17";
  s.observation.runtime = "process";
  projection::MemberObservation m;
  m.pid = 17;
  m.start_time_ticks = 5;
  m.status.tgid = 17;
  s.observation.members = {m};
  return s;
}

wire::Request full_request() {
  wire::Request request;
  request.id = 18446744073709551615ull;
  request.op = wire::Request::Op::sweep;
  request.scopes["agent-7"] = projection::default_scope();
  projection::ObservationScope narrow;
  narrow.masked_candidates = {"/proc/kcore"};
  narrow.declared_masked = {"/proc/kcore"};
  narrow.readonly_candidates = {"/proc/sys", "/sys"};
  narrow.declared_readonly = {"/sys"};
  narrow.rlimits = std::set<std::string>{"RLIMIT_NOFILE", "RLIMIT_NPROC"};
  request.scopes[kNotUtf8] = narrow;
  request.scopes["empty"] = projection::ObservationScope{};
  return request;
}

wire::Hello full_hello() {
  wire::Hello hello;
  hello.host_namespaces.source = "pid1";
  hello.host_namespaces.inodes = kHostNamespaces;
  hello.confinement = {{"landlock", {{"abi", 4}, {"paths", {"/var/lib/driftwatch"}}}},
                       {"no_new_privs", true}};
  hello.pid = 812;
  hello.proc_peer_pid = 813;
  hello.proc_peer_confinement = {{"role", "proc_peer"}, {"capabilities", {"CAP_SYS_PTRACE"}}};
  return hello;
}

// Through the bytes of a frame as well, so the text form is covered too.
json over_the_wire(const json& document) {
  wire::FrameReader reader;
  reader.feed(wire::encode_frame(document));
  auto frame = ok(reader.next());
  REQUIRE(frame.has_value());
  return *frame;
}

// The error parsing `document` with `parse`; fails the test if it parsed.
template <class Parse>
std::string rejection(Parse parse, const json& document) {
  auto parsed = parse(document);
  REQUIRE_FALSE(parsed.has_value());
  return parsed.error().message;
}

json response_of(const wire::Sample& sample) {
  wire::Response response;
  response.id = 9;
  response.items = {sample};
  return wire::to_json(response);
}

std::string response_error(const json& patch_at_pointer_value, const std::string& pointer) {
  json doc = response_of(full_sample());
  doc[json::json_pointer(pointer)] = patch_at_pointer_value;
  return rejection(wire::parse_response, doc);
}

// A child that runs `sleep` under an argv[0] that is not UTF-8; killed and
// reaped when the guard goes.
struct SleepingChild {
  pid_t pid = -1;
  SleepingChild() {
    std::string argv0 = "\xff\xfesleep";
    std::string seconds = "60";
    char* argv[] = {argv0.data(), seconds.data(), nullptr};
    if (posix_spawnp(&pid, "sleep", nullptr, nullptr, argv, environ) != 0) pid = -1;
  }
  ~SleepingChild() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
  SleepingChild(const SleepingChild&) = delete;
  SleepingChild& operator=(const SleepingChild&) = delete;
};

}  // namespace

// ---------------------------------------------------------------- round trips

TEST_CASE("wire: a request round-trips with scopes, default and narrow, and either op",
          "[correlate]") {
  auto request = full_request();
  const auto parsed = ok(wire::parse_request(over_the_wire(wire::to_json(request))));
  CHECK(wire::to_json(parsed) == wire::to_json(request));
  CHECK(parsed.id == request.id);
  REQUIRE(parsed.scopes.size() == 3);
  CHECK(parsed.scopes.at(kNotUtf8).rlimits ==
        std::set<std::string>{"RLIMIT_NOFILE", "RLIMIT_NPROC"});
  CHECK_FALSE(parsed.scopes.at("agent-7").rlimits.has_value());
  CHECK(wire::scope_of(parsed, kNotUtf8).declared_readonly == std::set<std::string>{"/sys"});
  CHECK(wire::scope_of(parsed, "unknown").masked_candidates ==
        projection::default_scope().masked_candidates);

  wire::Request one;
  one.id = 0;
  one.op = wire::Request::Op::sample_one;
  one.sandbox_id = "agent-7";
  const auto parsed_one = ok(wire::parse_request(over_the_wire(wire::to_json(one))));
  CHECK(parsed_one.op == wire::Request::Op::sample_one);
  CHECK(parsed_one.sandbox_id == "agent-7");
  CHECK(wire::to_json(parsed_one) == wire::to_json(one));
}

TEST_CASE("wire: a sample round-trips with every optional field present", "[correlate]") {
  const auto sample = full_sample();
  const auto parsed = ok(wire::parse_sample(over_the_wire(wire::to_json(sample))));
  CHECK(wire::to_json(parsed) == wire::to_json(sample));
  // Spot checks that the JSON equality is about the fields, not a lossy form.
  REQUIRE(parsed.observation.members.size() == 2);
  const auto& m = parsed.observation.members[0];
  CHECK(m.status.uid[3] == 4294967295u);
  CHECK(m.status.cap_bounding == 0xffffffffffffffffull);
  CHECK(m.argv.back() == kNotUtf8);
  CHECK(m.rlimits[1].hard == std::nullopt);
  CHECK(m.rlimits[1].soft == 0u);
  CHECK(m.cgroup_limits.cpu_max == "50000 100000");
  CHECK(parsed.ref.bundle == std::filesystem::path("/run/bundles/agent-7"));
  CHECK(parsed.ref.engine == "containerd");
  CHECK(parsed.ref.names == sample.ref.names);
  CHECK(parsed.ref.cgroups.v1 == sample.ref.cgroups.v1);
  CHECK(parsed.sample_seconds == sample.sample_seconds);
  CHECK(parsed.observation.vanished == std::vector<pid_t>{4243, 4244});
}

TEST_CASE("wire: a sample round-trips with every optional field absent", "[correlate]") {
  const auto sample = bare_sample();
  const json written = wire::to_json(sample);
  CHECK(written["ref"]["bundle"].is_null());
  CHECK(written["consumed_config_sha256"].is_null());
  CHECK(written["observation"]["members"][0]["lsm_label"].is_null());
  const auto parsed = ok(wire::parse_sample(over_the_wire(written)));
  CHECK(wire::to_json(parsed) == written);
  CHECK_FALSE(parsed.ref.bundle.has_value());
  CHECK_FALSE(parsed.ref.cgroups.unified.has_value());
  CHECK_FALSE(parsed.observation.members[0].lsm_label.has_value());
  CHECK_FALSE(parsed.observation.members[0].cgroup_limits.memory_max.has_value());
}

TEST_CASE("wire: responses round-trip, a sweep's and a failed sample_one's", "[correlate]") {
  wire::Response sweep;
  sweep.id = 7;
  sweep.items = {full_sample("a"), full_sample("b"), bare_sample()};
  sweep.problems = {"sandbox 'c': not sampled: permission denied", kNotUtf8};
  const auto parsed = ok(wire::parse_response(over_the_wire(wire::to_json(sweep))));
  CHECK(wire::to_json(parsed) == wire::to_json(sweep));
  CHECK(parsed.items.size() == 3);
  CHECK(parsed.problems[1] == kNotUtf8);

  wire::Response gone;
  gone.id = 8;
  gone.error = "sandbox 'x' is gone: pid 12 has exited";
  gone.vanished = true;
  const auto parsed_gone = ok(wire::parse_response(over_the_wire(wire::to_json(gone))));
  CHECK(wire::to_json(parsed_gone) == wire::to_json(gone));
  CHECK(parsed_gone.vanished);
  CHECK(parsed_gone.error == gone.error);
}

TEST_CASE("wire: a hello round-trips with its opaque confinement report", "[correlate]") {
  const auto hello = full_hello();
  const auto parsed = ok(wire::parse_hello(over_the_wire(wire::to_json(hello))));
  CHECK(wire::to_json(parsed) == wire::to_json(hello));
  CHECK(parsed.confinement == hello.confinement);
  CHECK(parsed.host_namespaces.inodes == kHostNamespaces);
  CHECK(parsed.pid == 812);
}

TEST_CASE("wire: a real sample of this process and a child survives the wire", "[correlate]") {
  observe::ProcReader proc("/proc");
  if (!proc.status(getpid())) DW_SKIP("needs a readable /proc");
  // Descendants are found through /proc/PID/task/TID/children.
  const auto children =
      std::filesystem::path("/proc/self/task") / std::to_string(getpid()) / "children";
  if (!std::filesystem::exists(children))
    DW_SKIP("needs " << children << " (CONFIG_PROC_CHILDREN)");
  SleepingChild child;
  if (child.pid <= 0) DW_SKIP("cannot start sleep(1) from PATH");
  // Until the child has exec'd, it is a copy of this process.
  testing::wait_until("the child to exec sleep", std::chrono::seconds(5), [&] {
    auto argv = proc.cmdline(child.pid);
    return argv && !argv->empty() && (*argv)[0] == "\xff\xfesleep";
  });

  sandbox::Sampler sampler(proc, observe::CgroupReader("/sys/fs/cgroup"));
  auto ref = ok(sandbox::sandbox_for_pid(proc, getpid()));
  const auto scope = projection::default_scope();
  auto observation = sampler.sample(ref, scope);
  if (!observation) DW_SKIP("cannot sample this process here: " << observation.error().message);

  SweepItem item;
  item.ref = ref;
  item.observation = *observation;
  item.observed = ok(projection::observed_projection(*observation, scope));
  item.started_at = 1764021540;
  item.sampled_at = 1764021600;
  item.sample_seconds = 0.004;
  const wire::Sample sample = wire::to_sample(item);
  REQUIRE(sample.observation.members.size() >= 2);

  wire::Response response;
  response.id = 1;
  response.items = {sample};
  const json written = wire::to_json(response);
  const auto parsed = ok(wire::parse_response(over_the_wire(written)));
  CHECK(wire::to_json(parsed) == written);

  // The child's argv[0] is bytes, not UTF-8, and arrives as written.
  const auto& members = parsed.items[0].observation.members;
  const auto sleeping = std::find_if(members.begin(), members.end(),
                                     [&](const auto& m) { return m.pid == child.pid; });
  REQUIRE(sleeping != members.end());
  REQUIRE_FALSE(sleeping->argv.empty());
  CHECK(sleeping->argv[0] == "\xff\xfesleep");

  // The front's observed projection is the sampler's.
  const auto front = ok(wire::to_sweep_item(parsed.items[0], scope));
  CHECK(projection::projection_sha256(front.observed) ==
        projection::projection_sha256(item.observed));
}

// ---------------------------------------------------------------- rejections

TEST_CASE("wire: a field of the wrong type is refused, naming the sample and the field",
          "[correlate]") {
  CHECK(response_error("0", "/items/0/observation/members/1/status/uid/1") ==
        "response: sample 0: observation.members[1].status.uid[1]: not an unsigned integer");
  CHECK(response_error(1.5, "/items/0/started_at") ==
        "response: sample 0: started_at: not an integer");
  CHECK_THAT(response_error(json::object(), "/items/0/ref/first_process/pid"),
             Contains("ref.first_process.pid: not an integer"));
  CHECK_THAT(response_error(1, "/items/0/observation/members/0/nested_user_namespace"),
             Contains("nested_user_namespace: not a boolean"));
  CHECK_THAT(response_error(nullptr, "/items/0/observation/members/0/exe"),
             Contains("members[0].exe: not a string"));
  CHECK_THAT(response_error("many", "/items"), Contains("response: items: not an array"));
  CHECK_THAT(rejection(wire::parse_response, json::array()), Contains("response: not an object"));
  CHECK_THAT(rejection(wire::parse_sample, json("x")), Contains("sample: not an object"));
}

TEST_CASE("wire: out-of-range numbers are refused: PIDs, seccomp, times, seconds", "[correlate]") {
  CHECK_THAT(response_error(-1, "/items/0/observation/members/0/pid"),
             Contains("members[0].pid: -1 is not in 1..4194304"));
  CHECK_THAT(response_error(4194305, "/items/0/ref/first_process/pid"),
             Contains("4194305 is not in 1..4194304"));
  CHECK_THAT(response_error(0, "/items/0/observation/vanished/0"), Contains("vanished[0]"));
  CHECK_THAT(response_error(-3, "/items/0/observation/members/0/status/nspid/0"),
             Contains("nspid[0]: -3 is not in"));
  CHECK_THAT(response_error(3, "/items/0/observation/members/0/status/seccomp"),
             Contains("seccomp: 3 is not in 0..2"));
  CHECK_THAT(response_error(4294967296ull, "/items/0/observation/members/0/status/gid/0"),
             Contains("gid[0]: 4294967296 is above the limit 4294967295"));
  CHECK_THAT(response_error(-5, "/items/0/observation/members/0/cgroup_limits/memory_max"),
             Contains("memory_max: -5 is not in 0.."));
  CHECK_THAT(response_error(-1, "/items/0/sampled_at"), Contains("sampled_at: -1 is not in 0.."));
  CHECK_THAT(response_error(-0.5, "/items/0/sample_seconds"), Contains("sample_seconds"));
  CHECK_THAT(response_error(-1, "/id"), Contains("response: id: not an unsigned integer"));
}

TEST_CASE("wire: oversized arrays and strings are refused before their entries are read",
          "[correlate]") {
  CHECK_THAT(response_error(json(std::vector<std::string>(257, "a")),
                            "/items/0/observation/members/0/argv"),
             Contains("members[0].argv: has 257 entries, more than the limit of 256"));
  CHECK_THAT(response_error(std::string(4097, 'x'), "/items/0/observation/members/0/argv/0"),
             Contains("argv[0]: is 4097 bytes, more than the limit of 4096"));
  CHECK_THAT(response_error(json(std::vector<int>(100001, 0)), "/items/0/observation/members"),
             Contains("observation.members: has 100001 entries, more than the limit of 100000"));
  CHECK_THAT(
      response_error(json(std::vector<int>(4097, 0)), "/items/0/observation/mount_views/0/masked"),
      Contains("masked: has 4097 entries, more than the limit of 4096"));
  CHECK_THAT(
      response_error(json(std::vector<int>(34, 1)), "/items/0/observation/members/0/status/nspid"),
      Contains("nspid: has 34 entries"));

  json many = wire::to_json(wire::Response{});
  many["items"] = std::vector<int>(10001, 0);
  CHECK_THAT(rejection(wire::parse_response, many),
             Contains("response: items: has 10001 entries, more than the limit of 10000"));
  many = wire::to_json(wire::Response{});
  many["problems"] = std::vector<std::string>(10001, "p");
  CHECK_THAT(rejection(wire::parse_response, many), Contains("problems: has 10001 entries"));

  json scopes = wire::to_json(full_request());
  scopes["scopes"][0]["scope"]["masked_candidates"] = std::vector<std::string>(4097, "/p");
  CHECK_THAT(rejection(wire::parse_request, scopes),
             Contains("request: scopes[0].scope.masked_candidates: has 4097 entries"));
}

TEST_CASE("wire: unknown ops, fields, namespaces and message types are refused", "[correlate]") {
  json request = wire::to_json(full_request());
  request["op"] = "resample";
  CHECK(rejection(wire::parse_request, request) ==
        "request: op: 'resample' is not one of sweep, sample_one");
  request = wire::to_json(full_request());
  request["extra"] = 1;
  CHECK(rejection(wire::parse_request, request) == "request: unknown field 'extra'");
  request = wire::to_json(full_request());
  request.erase("scopes");
  CHECK(rejection(wire::parse_request, request) == "request: scopes: missing");
  CHECK_THAT(rejection(wire::parse_request, wire::to_json(wire::Response{})),
             Contains("request: type: 'response', not 'request'"));

  CHECK_THAT(response_error(5, "/items/0/observation/members/0/status/shadow"),
             Contains("observation.members[0].status: unknown field 'shadow'"));
  CHECK_THAT(response_error(5, "/items/0/observation/members/0/namespaces/nett"),
             Contains("namespaces: unknown namespace 'nett'"));
  CHECK_THAT(response_error("docker", "/items/0/ref/runtime"),
             Contains("ref.runtime: 'docker' is not one of runc, crun, process, cgroup"));
  CHECK_THAT(response_error("docker", "/items/0/ref/engine"),
             Contains("ref.engine: 'docker' is not one of runc, crun, podman, containerd"));
  CHECK_THAT(response_error("a name", "/items/0/ref/names/0"),
             Contains("ref.names: 'a name' is not a sandbox name"));
  CHECK_THAT(response_error("agent-7", "/items/0/ref/names/0"),
             Contains("ref.names: 'agent-7' is not a sandbox name"));
  CHECK_THAT(response_error("zzz", "/items/0/ref/names/0"),
             Contains("ref.names[1]: not after 'zzz'"));
  CHECK_THAT(response_error("siblings", "/items/0/ref/membership"),
             Contains("ref.membership: 'siblings' is not one of cgroup, descendants"));
  CHECK_THAT(response_error("NOFILE", "/items/0/observation/members/0/rlimits/0/name"),
             Contains("rlimits[0].name: not an rlimit name"));
  CHECK_THAT(response_error("RLIMIT_NOFILE", "/items/0/observation/members/0/rlimits/1/name"),
             Contains("rlimits[1].name: 'RLIMIT_NOFILE' is listed twice"));

  json hello = wire::to_json(full_hello());
  hello["host_namespaces"]["source"] = "guess";
  CHECK_THAT(rejection(wire::parse_hello, hello), Contains("hello: host_namespaces.source"));
  hello = wire::to_json(full_hello());
  hello["confinement"] = json::array({"landlock"});
  CHECK(rejection(wire::parse_hello, hello) == "hello: confinement: not an object");
  hello = wire::to_json(full_hello());
  hello["pid"] = 0;
  CHECK_THAT(rejection(wire::parse_hello, hello), Contains("hello: pid: 0 is not in 1..4194304"));
}

TEST_CASE("wire: the proc peer's requests, answers and hello round-trip", "[correlate]") {
  wire::PeerRequest links;
  links.id = 4;
  links.links = {{1, "ns/pid"}, {812, "ns/mnt"}, {812, "exe"}};
  const auto parsed_links = ok(wire::parse_peer_request(over_the_wire(wire::to_json(links))));
  CHECK(wire::to_json(parsed_links) == wire::to_json(links));
  wire::PeerRequest view;
  view.id = 5;
  view.op = wire::PeerRequest::Op::root_view;
  view.pid = 812;
  view.paths = {"/proc/kcore", std::string("/odd\xff")};
  const auto parsed_view = ok(wire::parse_peer_request(over_the_wire(wire::to_json(view))));
  CHECK(wire::to_json(parsed_view) == wire::to_json(view));

  wire::PeerResponse answers;
  answers.id = 4;
  answers.links = {{0, "pid:[4026531836]"}, {EACCES, ""}, {0, std::string("/bin/\xfe")}};
  const auto parsed = ok(wire::parse_peer_response(over_the_wire(wire::to_json(answers)), links));
  CHECK(wire::to_json(parsed) == wire::to_json(answers));
  wire::PeerResponse states;
  states.id = 5;
  states.root_view =
      sandbox::RootView{true, true, {sandbox::PathState::masked, sandbox::PathState::absent}};
  const auto parsed_states =
      ok(wire::parse_peer_response(over_the_wire(wire::to_json(states)), view));
  CHECK(wire::to_json(parsed_states) == wire::to_json(states));

  wire::PeerHello hello;
  hello.pid = 813;
  hello.confinement = {{"role", "proc_peer"}};
  const auto parsed_hello = ok(wire::parse_peer_hello(over_the_wire(wire::to_json(hello))));
  CHECK(wire::to_json(parsed_hello) == wire::to_json(hello));
  const auto sampler_hello = ok(wire::parse_hello(over_the_wire(wire::to_json(full_hello()))));
  CHECK(sampler_hello.proc_peer_pid == 813);
  CHECK(sampler_hello.proc_peer_confinement == full_hello().proc_peer_confinement);
}

TEST_CASE(
    "wire: the proc peer refuses a link that is not a namespace or exe, and the sampler an answer "
    "that does not answer its request",
    "[correlate]") {
  wire::PeerRequest links;
  links.id = 4;
  links.links = {{1, "ns/pid"}, {2, "exe"}};
  json request = wire::to_json(links);
  request["links"][1]["name"] = "mem";
  CHECK_THAT(rejection(wire::parse_peer_request, request),
             Contains("peer request: links[1].name: not exe nor ns/<kind>"));
  request = wire::to_json(links);
  request["links"][0]["name"] = "ns/../root";
  CHECK_THAT(rejection(wire::parse_peer_request, request), Contains("links[0].name"));
  // A thread's links, under task/<thread id>/, and nothing else there.
  request = wire::to_json(links);
  request["links"][0]["name"] = "task/4711/ns/net";
  request["links"][1]["name"] = "task/4711/exe";
  CHECK(ok(wire::parse_peer_request(over_the_wire(request))).links.size() == 2);
  for (const char* bad :
       {"task/4711/mem", "task/../ns/net", "task//ns/net", "task/0/exe", "task/07/exe",
        "task/12345678901/exe", "task/4711/task/1/exe", "task/4711", "task/-1/exe"}) {
    INFO(bad);
    request = wire::to_json(links);
    request["links"][0]["name"] = bad;
    CHECK_THAT(rejection(wire::parse_peer_request, request), Contains("links[0].name"));
  }
  request = wire::to_json(links);
  request["paths"] = json::array({"/etc"});
  CHECK_THAT(rejection(wire::parse_peer_request, request), Contains("peer request: paths"));
  request = wire::to_json(links);
  request["links"][0]["pid"] = 0;
  CHECK_THAT(rejection(wire::parse_peer_request, request), Contains("links[0].pid"));

  auto refused = [&](const json& document) {
    auto parsed = wire::parse_peer_response(document, links);
    REQUIRE_FALSE(parsed.has_value());
    return parsed.error().message;
  };
  wire::PeerResponse answers;
  answers.id = 4;
  answers.links = {{0, "pid:[1]"}, {ENOENT, ""}};
  json response = wire::to_json(answers);
  response["id"] = 3;
  CHECK_THAT(refused(response), Contains("peer response: id: 3 does not answer request 4"));
  response = wire::to_json(answers);
  response["links"].erase(1);
  CHECK_THAT(refused(response), Contains("1 answers to 2 links"));
  response = wire::to_json(answers);
  response["links"][1]["target"] = "/etc/shadow";
  CHECK_THAT(refused(response), Contains("not empty next to an errno"));
  response = wire::to_json(answers);
  response["links"][0]["target"] = "";
  CHECK_THAT(refused(response), Contains("empty without an errno"));
  response = wire::to_json(answers);
  response["links"][1]["errno"] = 5000;
  CHECK_THAT(refused(response), Contains("links[1].errno"));
  response = wire::to_json(answers);
  response["root_view"] = {{"opened", true}, {"read_only", false}, {"states", json::array()}};
  CHECK_THAT(refused(response), Contains("root_view: not null"));

  wire::PeerRequest view;
  view.id = 5;
  view.op = wire::PeerRequest::Op::root_view;
  view.pid = 9;
  view.paths = {"/a", "/b"};
  wire::PeerResponse states;
  states.id = 5;
  states.root_view = sandbox::RootView{true, false, {sandbox::PathState::masked}};
  auto short_view = wire::parse_peer_response(wire::to_json(states), view);
  REQUIRE_FALSE(short_view.has_value());
  CHECK_THAT(short_view.error().message, Contains("1 states for 2 paths"));
  json bad_state = wire::to_json(states);
  bad_state["root_view"]["states"] = json::array({"masked", "secret"});
  auto unknown = wire::parse_peer_response(bad_state, view);
  REQUIRE_FALSE(unknown.has_value());
  CHECK_THAT(unknown.error().message, Contains("'secret' is not one of"));
}

TEST_CASE("wire: hashes, cpu.max and text must have their one form", "[correlate]") {
  CHECK_THAT(response_error(std::string(64, 'A'), "/items/0/consumed_config_sha256"),
             Contains("consumed_config_sha256: 'AAAA"));
  CHECK_THAT(response_error(std::string(63, 'a'), "/items/0/consumed_config_sha256"),
             Contains("is not a SHA-256 (64 lowercase hex digits)"));
  CHECK_THAT(response_error("max 100000", "/items/0/observation/members/0/cgroup_limits/cpu_max"),
             Contains("cpu_max: not a cpu.max limit"));
  CHECK_THAT(
      response_error("050000 100000", "/items/0/observation/members/0/cgroup_limits/cpu_max"),
      Contains("cpu_max: not a cpu.max limit"));
  CHECK_THAT(response_error(std::string("a\0b", 3), "/items/0/observation/members/0/exe"),
             Contains("exe: contains a NUL byte"));
  CHECK_THAT(response_error({{"base64", "c2xlZXA="}}, "/items/0/observation/members/0/argv/0"),
             Contains("argv[0]: valid UTF-8 in base64 form"));
  CHECK_THAT(response_error({{"base64", "//4"}}, "/items/0/observation/members/0/argv/0"),
             Contains("argv[0].base64: invalid base64"));
  CHECK_THAT(response_error({{"base64", "//4="}, {"hex", "fffe"}},
                            "/items/0/observation/members/0/argv/0"),
             Contains("argv[0]: unknown field 'hex'"));
  CHECK_THAT(response_error(std::string("\xff"), "/items/0/observation/members/0/status/name"),
             Contains("status.name: a string that is not valid UTF-8"));
  CHECK_THAT(response_error("", "/items/0/ref/sandbox_id"), Contains("ref.sandbox_id: empty"));
  CHECK_THAT(
      response_error({"/proc/keys", "/proc/kcore"}, "/items/0/observation/mount_views/0/masked"),
      Contains("masked[1]: not after '/proc/keys' (a set is sorted, each entry once)"));
}

TEST_CASE("wire: a sample must be of its ref's sandbox, members sorted, first process among them",
          "[correlate]") {
  CHECK_THAT(response_error("other", "/items/0/observation/sandbox_id"),
             Contains("observation.sandbox_id: 'other' is not the ref's 'agent-7'"));
  CHECK_THAT(response_error("crun", "/items/0/observation/runtime"),
             Contains("observation.runtime: 'crun' is not the ref's 'runc'"));
  CHECK_THAT(response_error(4200, "/items/0/observation/members/1/pid"),
             Contains("members[1].pid: 4200 is not above the previous pid 4242"));
  CHECK_THAT(response_error(4242, "/items/0/observation/members/1/pid"),
             Contains("members[1].pid: 4242 is not above the previous pid 4242"));
  CHECK_THAT(response_error(4300, "/items/0/ref/first_process/pid"),
             Contains("observation.members: lacks the first process, pid 4300"));
  CHECK_THAT(response_error(1, "/items/0/ref/first_process/start_time_ticks"),
             Contains("not the first process (tick 1)"));
  // A first process whose main thread exited, stood for by a thread of it
  // (its own thread id and start time, the process's tgid); not by a
  // thread of another process.
  {
    wire::Response stood_for;
    stood_for.items = {full_sample()};
    auto& members = stood_for.items[0].observation.members;
    members[0] = member(4243, 987654999);
    members[0].status.tgid = 4242;
    const auto parsed = ok(wire::parse_response(over_the_wire(wire::to_json(stood_for))));
    REQUIRE(parsed.items.size() == 1);
    CHECK(parsed.items[0].observation.members[0].status.tgid == 4242);
    members[0].status.tgid = 4250;
    CHECK_THAT(rejection(wire::parse_response, wire::to_json(stood_for)),
               Contains("lacks the first process, pid 4242, and any thread of it"));
  }
  CHECK_THAT(response_error(json::array(), "/items/0/observation/members"),
             Contains("observation.members: empty"));
  CHECK_THAT(response_error(1, "/items/0/observation/mount_views/1/mount_namespace"),
             Contains("mount_views[1].mount_namespace: 1 is not above the previous one"));

  wire::Response twice;
  twice.items = {full_sample("a"), full_sample("a")};
  CHECK_THAT(rejection(wire::parse_response, wire::to_json(twice)),
             Contains("response: sample 1: ref.sandbox_id: 'a' was sampled already"));
  wire::Response both;
  both.items = {full_sample()};
  both.error = "gone";
  CHECK(rejection(wire::parse_response, wire::to_json(both)) ==
        "response: items: not empty next to an error");
  wire::Response vanished;
  vanished.vanished = true;
  CHECK(rejection(wire::parse_response, wire::to_json(vanished)) ==
        "response: vanished: true without an error");
}

TEST_CASE("wire: a sweep names no sandbox, a sample_one one, and scopes are sorted",
          "[correlate]") {
  wire::Request sweep;
  sweep.sandbox_id = "agent-7";
  CHECK(rejection(wire::parse_request, wire::to_json(sweep)) ==
        "request: sandbox_id: not empty (a sweep samples every sandbox)");
  wire::Request one;
  one.op = wire::Request::Op::sample_one;
  CHECK(rejection(wire::parse_request, wire::to_json(one)) ==
        "request: sandbox_id: empty (sample_one names a sandbox)");
  json request = wire::to_json(full_request());
  std::swap(request["scopes"][0], request["scopes"][1]);
  CHECK_THAT(rejection(wire::parse_request, request),
             Contains("request: scopes[1].sandbox_id: 'agent-7' is not after 'empty'"));
}

// ---------------------------------------------------------------- each side

TEST_CASE("wire: the front recomputes the observed projection from the raw facts", "[correlate]") {
  const auto sample = full_sample();
  const auto scope = projection::default_scope();
  const auto item = ok(wire::to_sweep_item(sample, scope));
  CHECK(item.observed == ok(projection::observed_projection(sample.observation, scope)));
  CHECK(item.observed.uid == 0);  // member euid 0
  CHECK(item.observed.namespaces.at("network") == "private");
  CHECK(item.consumed_config_sha256 == sample.consumed_config_sha256);
  CHECK(item.ref.sandbox_id == "agent-7");
  // A scope that counts one rlimit only.
  projection::ObservationScope nofile;
  nofile.rlimits = std::set<std::string>{"RLIMIT_NOFILE"};
  const auto narrow = ok(wire::to_sweep_item(sample, nofile));
  CHECK(narrow.observed.rlimits.size() == 1);
}

TEST_CASE("wire: a response answers its request or is refused", "[correlate]") {
  wire::Request sweep;
  sweep.id = 5;
  wire::Response response;
  response.id = 5;
  response.items = {full_sample()};
  CHECK(wire::check_answers(sweep, response).has_value());
  response.id = 6;
  CHECK_THAT(wire::check_answers(sweep, response).error().message,
             Contains("response 6 does not answer request 5"));

  wire::Request one;
  one.id = 6;
  one.op = wire::Request::Op::sample_one;
  one.sandbox_id = "agent-7";
  CHECK(wire::check_answers(one, response).has_value());
  one.sandbox_id = "agent-8";
  CHECK_THAT(wire::check_answers(one, response).error().message,
             Contains("answered by 1 samples instead of that sandbox's"));
  response.items.clear();
  response.error = "gone";
  CHECK(wire::check_answers(one, response).has_value());
  sweep.id = 6;
  CHECK_FALSE(wire::check_answers(sweep, response).has_value());
}

TEST_CASE("wire: the sampler fits honest data that exceeds the limits before sending",
          "[correlate]") {
  wire::Response response;
  response.id = 3;
  auto big = full_sample("big");
  big.observation.members[0].argv = std::vector<std::string>(300, std::string(5000, 'a'));
  // A long UTF-8 text is cut on a code point boundary: 4095 bytes, then é.
  big.observation.members[0].exe = std::string(4095, '/') + "\xc3\xa9";
  auto bad = full_sample("bad");
  bad.observation.members[1].pid = 1;  // unsorted: does not parse
  response.items = {big, bad, full_sample("big")};
  response.problems = std::vector<std::string>(10005, "p");
  wire::fit_to_limits(response);

  const auto parsed = ok(wire::parse_response(wire::to_json(response)));
  REQUIRE(parsed.items.size() == 1);
  const auto& m = parsed.items[0].observation.members[0];
  CHECK(m.argv.size() == 256);
  CHECK(m.argv[0].size() == 4096);
  CHECK(m.exe == std::string(4095, '/'));
  CHECK(parsed.problems.size() == 10000);
  CHECK_THAT(parsed.problems.back(), Contains("8 more problems not sent"));

  // The lines about the two dropped samples are among those cut off here;
  // with few problems they are kept.
  response.items = {big, bad, full_sample("big")};
  response.problems.clear();
  wire::fit_to_limits(response);
  REQUIRE(response.problems.size() == 2);
  CHECK_THAT(response.problems[0], Contains("sandbox 'bad': sample not sent"));
  CHECK_THAT(response.problems[0], Contains("members[1].pid: 1 is not above"));
  CHECK_THAT(response.problems[1], Contains("sandbox 'big': found twice"));
}

TEST_CASE("wire: the front drops a scope that does not fit, observing that sandbox by default",
          "[correlate]") {
  auto request = full_request();
  projection::ObservationScope huge;
  for (int i = 0; i < 5000; ++i) huge.masked_candidates.insert("/p" + std::to_string(i));
  request.scopes["huge"] = huge;
  const auto problems = wire::fit_to_limits(request);
  REQUIRE(problems.size() == 1);
  CHECK_THAT(problems[0], Contains("sandbox 'huge': observed in the default scope"));
  CHECK_THAT(problems[0], Contains("masked_candidates: has 5000 entries"));
  CHECK_FALSE(request.scopes.contains("huge"));
  CHECK(request.scopes.size() == 3);
  ok(wire::parse_request(wire::to_json(request)));
}

// ---------------------------------------------------------------- frames

TEST_CASE("wire: a frame is a big-endian length and compact JSON", "[correlate]") {
  const std::string frame = wire::encode_frame(json{{"a", 1}});
  CHECK(frame == std::string("\0\0\0\x07{\"a\":1}", 11));
}

TEST_CASE("wire: two frames in one feed come out one at a time", "[correlate]") {
  wire::FrameReader reader;
  reader.feed(wire::encode_frame(wire::to_json(full_hello())) +
              wire::encode_frame(wire::to_json(full_request())));
  auto first = ok(reader.next());
  REQUIRE(first.has_value());
  ok(wire::parse_hello(*first));
  auto second = ok(reader.next());
  REQUIRE(second.has_value());
  ok(wire::parse_request(*second));
  CHECK_FALSE(ok(reader.next()).has_value());
  CHECK(reader.buffered() == 0);
}

TEST_CASE("wire: a frame fed in pieces comes out whole once its last byte is in", "[correlate]") {
  const std::string frame =
      wire::encode_frame(response_of(full_sample())) + wire::encode_frame(json{{"then", true}});
  const std::size_t first_end = frame.size() - 17;  // the second frame is 17 bytes
  wire::FrameReader reader;
  std::vector<json> frames;
  for (std::size_t i = 0; i < frame.size(); ++i) {
    reader.feed(frame.substr(i, 1));
    auto next = ok(reader.next());
    if (next) {
      frames.push_back(*next);
      CHECK((i + 1 == first_end || i + 1 == frame.size()));
    }
  }
  REQUIRE(frames.size() == 2);
  CHECK(wire::to_json(ok(wire::parse_response(frames[0]))) == response_of(full_sample()));
  CHECK(frames[1] == json{{"then", true}});

  // Truncated: a header and part of the body stay pending, never an error.
  wire::FrameReader truncated;
  truncated.feed(frame.substr(0, 3));
  CHECK_FALSE(ok(truncated.next()).has_value());
  truncated.feed(frame.substr(3, 100));
  CHECK_FALSE(ok(truncated.next()).has_value());
  CHECK(truncated.buffered() == 103);
}

TEST_CASE("wire: a frame longer than the maximum is an error at once, and stays one",
          "[correlate]") {
  wire::FrameReader reader;
  reader.feed(std::string("\x04\x00\x00\x01", 4));  // 64 MiB + 1
  auto next = reader.next();
  REQUIRE_FALSE(next.has_value());
  CHECK(next.error().message ==
        "frame of 67108865 bytes is longer than the limit of 67108864 bytes");
  reader.feed(wire::encode_frame(json::object()));
  CHECK_FALSE(reader.next().has_value());
  CHECK(reader.buffered() == 4);  // nothing more is buffered once failed

  wire::FrameReader small(16);
  small.feed(wire::encode_frame(json{{"key", "seventeen bytes"}}));
  CHECK_THAT(small.next().error().message, Contains("longer than the limit of 16 bytes"));
}

TEST_CASE("wire: a frame that is not strict JSON is an error", "[correlate]") {
  const auto error_of = [](std::string body) {
    const auto length = static_cast<uint32_t>(body.size());
    std::string frame{static_cast<char>(length >> 24), static_cast<char>(length >> 16),
                      static_cast<char>(length >> 8), static_cast<char>(length)};
    wire::FrameReader reader;
    reader.feed(frame + body);
    auto next = reader.next();
    REQUIRE_FALSE(next.has_value());
    return next.error().message;
  };
  CHECK_THAT(error_of("\xEF\xBB\xBF{}"), Contains("byte order mark"));
  CHECK_THAT(error_of("{\"a\":\"\xff\"}"), Contains("not valid UTF-8"));
  CHECK_THAT(error_of("{\"a\":1,\"a\":2}"), Contains("duplicate object key"));
  CHECK_THAT(error_of("{} {}"), Contains("cannot parse frame"));
  CHECK_THAT(error_of(""), Contains("cannot parse frame"));
  CHECK_THAT(error_of(std::string(100, '[')), Contains("nesting deeper than"));
}
