#pragma once
// The protocol between the two processes of the daemon: the privileged
// sampler (reads /proc, cgroupfs, runc/crun state and bundles; writes
// nothing) and the unprivileged front (HTTP, ingest, evidence, correlation),
// over one Unix stream socket.
//
//   sampler → front   Hello, once, first
//   front → sampler   Request {id, sweep | sample_one}
//   sampler → front   Response {same id, samples, problems, error}
//
// Each message is one frame: a 4-byte big-endian length, then that many
// bytes of compact JSON. A sample carries raw facts only (the sandbox, its
// observation, hashes and times), never the observed projection: the front
// computes that itself (to_sweep_item), so a sampler can lie about what it
// read but not about what it means.
//
// Everything received is outside input. A compromised sampler must not be
// able to crash the front, nor a compromised front the sampler: parse_* check
// every field's type and range and the limits below, reject unknown fields,
// and never throw; an error names the field that failed
// ("response: sample 3: observation.members[2].status.uid[1]: not an
// unsigned integer").
//
// JSON shape. Every field is always written; an optional one is null when
// absent. A set is an array in ascending byte order, each element once; a
// map keyed by sandbox is an array of objects (a sandbox id need not be
// UTF-8). Text (every free-form string: ids, paths, argv, comm, labels,
// problem lines) is a JSON string when it is valid UTF-8, else
// {"base64": "<standard base64 of its bytes>"}; it never holds a NUL byte.
// So each value has exactly one encoding, and to_json(parse_*(j)) == j.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "correlate/correlator.hpp"
#include "observe/proc_reader.hpp"
#include "projection/observed.hpp"
#include "projection/projection.hpp"
#include "sandbox/discovery.hpp"
#include "sandbox/ptrace_reads.hpp"
#include "sandbox/sampler.hpp"

namespace driftwatch::correlate::wire {

// ---------------------------------------------------------------- limits

/// Largest frame body (the JSON after the length). A longer frame is an
/// error of the FrameReader; the caller then drops the connection.
inline constexpr std::size_t kMaxFrameBytes = std::size_t{64} << 20;
/// The big-endian length in front of every frame.
inline constexpr std::size_t kFrameHeaderBytes = 4;
/// Largest PID (the kernel's PID_MAX_LIMIT); every PID is 1..kMaxPid.
inline constexpr int64_t kMaxPid = 4194304;
/// Samples per response, scopes per request.
inline constexpr std::size_t kMaxSandboxes = 10000;
/// Members of one observation; also its vanished PIDs and its mount views.
inline constexpr std::size_t kMaxMembers = 100000;
/// Bytes of any text (after base64 decoding), argv entries included.
inline constexpr std::size_t kMaxTextBytes = 4096;
/// Entries of one member's argv.
inline constexpr std::size_t kMaxArgvEntries = 256;
/// Entries of a set of paths or names (scopes, mount views).
inline constexpr std::size_t kMaxSetEntries = 4096;
/// Supplementary groups of one process (the kernel's NGROUPS_MAX).
inline constexpr std::size_t kMaxGroups = 65536;
/// NSpid entries: 32 nested PID namespaces below the initial one.
inline constexpr std::size_t kMaxPidNamespaceDepth = 33;
/// (controller, path) pairs of a cgroup v1 membership.
inline constexpr std::size_t kMaxCgroupV1Entries = 256;
/// Problem lines per response.
inline constexpr std::size_t kMaxProblems = 10000;
/// Unix times (started_at, sampled_at) are 0..this (the end of year 9999).
inline constexpr int64_t kMaxUnixTime = 253402300799;
/// sample_seconds is a finite number 0..this.
inline constexpr double kMaxSampleSeconds = 86400;

// ---------------------------------------------------------------- messages

/// Front → sampler: sample every sandbox, or one.
struct Request {
  enum class Op { sweep, sample_one };
  uint64_t id = 0;
  Op op = Op::sweep;
  std::string sandbox_id;  // sample_one: the sandbox (non-empty); sweep: empty
  /// The scope of each sandbox with a declared side; the others are
  /// observed in projection::default_scope() (scope_of).
  std::map<std::string, projection::ObservationScope, std::less<>> scopes;
};
/// "sweep", "sample_one".
std::string_view to_string(Request::Op op);

/// The scope the request gives `sandbox_id`: its entry, else default_scope().
projection::ObservationScope scope_of(const Request& request, std::string_view sandbox_id);

/// Sampler → front: one sandbox as sampled. A SweepItem without `observed`.
struct Sample {
  sandbox::SandboxRef ref;
  projection::Observation observation;
  std::optional<std::string> consumed_config_sha256;  // 64 lowercase hex digits
  int64_t started_at = 0;
  int64_t sampled_at = 0;
  double sample_seconds = 0;
};

/// Sampler → front: the answer to the request with the same id.
struct Response {
  uint64_t id = 0;
  /// sweep: every sandbox sampled (each sandbox once); sample_one: the one
  /// sandbox, unless `error`.
  std::vector<Sample> items;
  std::vector<std::string> problems;  // as SweepResult::problems
  /// sample_one: why the sandbox was not sampled (then `items` is empty).
  std::optional<std::string> error;
  /// sample_one: the error is a sandbox that is gone (Error::vanished);
  /// only with an error.
  bool vanished = false;
};

/// Sampler → front, once, before any response.
struct Hello {
  /// The host's namespaces as the sampler read them before it confined
  /// itself (names of observe::kNamespaceKinds; source "pid1" or "monitor").
  sandbox::Sampler::HostNamespaces host_namespaces;
  /// The sampler's confinement report, opaque to the protocol; an object.
  nlohmann::json confinement = nlohmann::json::object();
  pid_t pid = 0;  // the sampler process
  /// Its proc peer (PeerHello below): its pid and confinement report.
  pid_t proc_peer_pid = 0;
  nlohmann::json proc_peer_confinement = nlohmann::json::object();
};

nlohmann::json to_json(const Request& request);
nlohmann::json to_json(const Sample& sample);
nlohmann::json to_json(const Response& response);
nlohmann::json to_json(const Hello& hello);

/// Each checks the whole document (types, ranges, limits, no unknown
/// fields, the orderings of the JSON shape above, and what a sampler always
/// gives: an observation of the ref's sandbox, members sorted by PID with
/// the first process among them). An error names the field; never throws.
Result<Request> parse_request(const nlohmann::json& document);
Result<Sample> parse_sample(const nlohmann::json& document);
Result<Response> parse_response(const nlohmann::json& document);
Result<Hello> parse_hello(const nlohmann::json& document);

// ---------------------------------------------------------------- each side

/// Sampler: what it sends of a sweep item (all but `observed`).
Sample to_sample(SweepItem item);

/// Front: the sweep item of a received sample, its observed projection
/// computed here under `scope` (the one the request gave, scope_of).
Result<SweepItem> to_sweep_item(Sample sample, const projection::ObservationScope& scope);

/// Front: the response answers `request`: the same id; a sweep has no error;
/// a sample_one has an error or exactly the sandbox asked for.
Result<void> check_answers(const Request& request, const Response& response);

/// Sampler, before sending: what honest data can exceed is made to fit.
/// Member text written by the sandbox (argv, comm, exe, LSM label) is cut
/// to the limits (and at a NUL); a sample that still does not parse (more
/// than kMaxMembers members, say) is dropped and named in `problems`, as are
/// a second sample of one sandbox id (the first counts, as in
/// Correlator::apply_sweep) and samples beyond kMaxSandboxes; problem lines
/// and the error are cut to kMaxTextBytes, and beyond kMaxProblems lines the
/// last one says how many were left out. Afterwards parse_response accepts
/// the response, unless its error disagrees with its items or vanished
/// flag; its frame may still exceed kMaxFrameBytes (see encode_frame).
void fit_to_limits(Response& response);

/// Front, before sending: a scope that does not fit the limits (a declared
/// config with more than kMaxSetEntries masked paths, say) is dropped, so
/// its sandbox is observed in the default scope; returns one problem line
/// per sandbox dropped.
std::vector<std::string> fit_to_limits(Request& request);

// ---------------------------------------------------------------- the sampler and its proc peer
//
// The sampler holds no CAP_SYS_PTRACE: its proc peer (app/proc_peer.hpp),
// a child of its own that holds CAP_SYS_PTRACE alone and opens nothing but
// O_PATH, does the ptrace-mode reads (sandbox/ptrace_reads.hpp) for it, on
// a socket pair, in the same frames and JSON shape as above:
//
//   proc peer → sampler   PeerHello, once, first
//   sampler → proc peer   PeerRequest {id, links | root_view}
//   proc peer → sampler   PeerResponse {same id, one answer per link or path}
//
// Each side parses what the other sends as outside input, as above.

/// Link reads in one request; a client splits a longer list.
inline constexpr std::size_t kMaxPeerLinks = 65536;
/// Paths of one root view: a scope's masked and read-only candidates.
inline constexpr std::size_t kMaxRootViewPaths = 2 * kMaxSetEntries;
/// errno values are 0..this (the kernel's MAX_ERRNO).
inline constexpr int kMaxErrno = 4095;

/// Sampler → proc peer.
struct PeerRequest {
  enum class Op { links, root_view };
  uint64_t id = 0;
  Op op = Op::links;
  std::vector<sandbox::ProcLink> links;  // links: each a sandbox::is_proc_link_name
  pid_t pid = 0;                         // root_view: whose root
  std::vector<std::string> paths;        // root_view: looked up inside it
};

/// Proc peer → sampler: the answer to the request with the same id.
struct PeerResponse {
  uint64_t id = 0;
  std::vector<observe::LinkRead> links;        // links: one per link asked
  std::optional<sandbox::RootView> root_view;  // root_view: one state per path asked
};

/// Proc peer → sampler, once, before any response.
struct PeerHello {
  pid_t pid = 0;  // the proc peer
  /// Its confinement report, opaque to the protocol; an object.
  nlohmann::json confinement = nlohmann::json::object();
};

nlohmann::json to_json(const PeerRequest& request);
nlohmann::json to_json(const PeerResponse& response);
nlohmann::json to_json(const PeerHello& hello);
Result<PeerRequest> parse_peer_request(const nlohmann::json& document);
/// Also checks that it answers `request`: the same id, the answer of its op,
/// one answer per link or path asked; a link answer is a target or an errno.
Result<PeerResponse> parse_peer_response(const nlohmann::json& document,
                                         const PeerRequest& request);
Result<PeerHello> parse_peer_hello(const nlohmann::json& document);

/// Proc peer, before sending: link targets cut to kMaxTextBytes (and at a
/// NUL), so that parse_peer_response accepts them.
void fit_to_limits(PeerResponse& response);

// ---------------------------------------------------------------- framing

/// One frame: the 4-byte big-endian length of the compact JSON, then the
/// JSON. Never throws (text that is not UTF-8 in an opaque value is written
/// as U+FFFD). A frame whose JSON is longer than kMaxFrameBytes is written
/// all the same, and the reader refuses it: a sender checks
/// `frame.size() <= kFrameHeaderBytes + kMaxFrameBytes`.
std::string encode_frame(const nlohmann::json& message);

class FrameReader;

/// Blocking frame I/O on a stream socket, for the sampler and its proc peer
/// (one request at a time): the next frame's JSON (an error at end of
/// stream, on a bad frame, or when the socket's SO_RCVTIMEO passes), and
/// one frame sent whole (send(2) without SIGPIPE; never sendmsg).
Result<nlohmann::json> read_frame(int fd, FrameReader& reader);
Result<void> write_frame(int fd, const nlohmann::json& message);

/// Splits a byte stream into frames and parses each with the strict JSON
/// parser (parse_json: no BOM, valid UTF-8 only, no duplicate keys, depth
/// bounded). Incremental: bytes arrive in any pieces.
class FrameReader {
 public:
  explicit FrameReader(std::size_t max_frame_bytes = kMaxFrameBytes);

  /// Appends bytes read from the socket. Ignored once next() has failed.
  void feed(std::string_view bytes);
  /// The next whole frame's JSON, or nullopt until more bytes are fed. An
  /// error (a length above the maximum, JSON that does not parse) is final:
  /// every later call returns it, and the caller drops the connection.
  Result<std::optional<nlohmann::json>> next();

  /// Bytes fed and not yet returned as frames.
  std::size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::size_t max_frame_bytes_;
  std::string buffer_;
  std::size_t consumed_ = 0;  // bytes of buffer_ already returned as frames
  std::optional<Error> failed_;
};

}  // namespace driftwatch::correlate::wire
