#include "app/commands.hpp"

#include "app/sampler_process.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "app/daemon.hpp"
#include "app/demo.hpp"
#include "app/keys.hpp"
#include "common/build_info.hpp"
#include "common/canonical_json.hpp"
#include "common/file_io.hpp"
#include "common/posix.hpp"
#include "correlate/sweep.hpp"
#include "evidence/http_fetch.hpp"
#include "evidence/merkle.hpp"
#include "evidence/note.hpp"
#include "evidence/reader.hpp"
#include "evidence/report.hpp"
#include "evidence/verify.hpp"
#include "observe/cgroupfs.hpp"
#include "observe/proc_reader.hpp"
#include "projection/declared.hpp"
#include "projection/diff.hpp"
#include "projection/observed.hpp"
#include "sandbox/discovery.hpp"
#include "sandbox/sampler.hpp"

namespace driftwatch::app {
namespace {

using nlohmann::json;

// Where a sandbox is: exactly one of these is given on the command line.
struct Target {
  std::optional<int> pid;
  std::optional<std::string> oci_id;
  std::optional<std::string> cgroup;
  std::vector<std::string> runc_roots{"/run/runc"};
  std::vector<std::string> crun_roots{"/run/crun"};
  std::vector<std::string> containerd_roots{"/run/containerd/runc"};
  std::vector<std::string> podman_storage{"/var/lib/containers/storage"};
};

void add_target_options(CLI::App& cmd, Target& target, bool required) {
  auto* group = cmd.add_option_group("sandbox", "which sandbox to sample (exactly one)");
  group->add_option("--pid", target.pid, "a process: it, its descendants and its PID namespace");
  group->add_option("--oci", target.oci_id,
                    "a container: its id, or a name its engine gave it (Podman's --name, "
                    "Kubernetes' namespace/pod/container)");
  group->add_option("--cgroup", target.cgroup,
                    "a cgroup: a /sys/fs/cgroup/... directory or a path like /my.slice/box");
  if (required)
    group->require_option(1);
  else
    group->require_option(0, 1);
  cmd.add_option("--runc-root", target.runc_roots, "runc state roots to search")
      ->capture_default_str();
  cmd.add_option("--crun-root", target.crun_roots, "crun state roots to search")
      ->capture_default_str();
  cmd.add_option("--containerd-root", target.containerd_roots,
                 "containerd's runc roots (each subdirectory a containerd namespace)")
      ->capture_default_str();
  cmd.add_option("--podman-storage", target.podman_storage,
                 "Podman storage roots, where its containers' names are")
      ->capture_default_str();
}

sandbox::DiscoveryRoots roots_of(const Target& target) {
  sandbox::DiscoveryRoots roots;
  roots.runc_roots.assign(target.runc_roots.begin(), target.runc_roots.end());
  roots.crun_roots.assign(target.crun_roots.begin(), target.crun_roots.end());
  roots.containerd_roots.assign(target.containerd_roots.begin(), target.containerd_roots.end());
  roots.podman_storage.assign(target.podman_storage.begin(), target.podman_storage.end());
  return roots;
}

// " a b c": the paths of `lists`, each after a space, for messages.
std::string spaced(std::initializer_list<const std::vector<std::string>*> lists) {
  std::string out;
  for (const auto* list : lists)
    for (const auto& path : *list) out += " " + path;
  return out;
}

std::string roots_text(const Target& target) {
  return spaced({&target.runc_roots, &target.crun_roots, &target.containerd_roots});
}

Result<std::string> read_input_file(const std::string& path) {
  return read_regular_file(path, 4u << 20, "OCI config");
}

Result<projection::Projection> declared_from_file(const std::string& path) {
  DW_TRY(text, read_input_file(path));
  DW_TRY(config, parse_json(text, path));
  auto declared = projection::declared_projection(config);
  if (!declared) return wrap(declared.error(), path, ": ");
  return declared;
}

// Strings the sandbox wrote (argv, exe) may be any bytes: print them with
// invalid UTF-8 replaced rather than fail.
std::string dump(const json& doc) {
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

struct Sampled {
  projection::Observation observation;
  projection::Projection projection;
  std::string engine;              // one of sandbox::kEngines
  std::vector<std::string> names;  // what its engine named it, besides the id
};

// A container (--oci) goes through the daemon's own sample_one: found by id
// or by name under every engine's roots, its engine and names from its
// bundle, as the daemon sees it. A process or a cgroup is sampled as such.
Result<Sampled> sample_target(const Target& target, const projection::ObservationScope& scope) {
  if (target.oci_id) {
    correlate::SweepOptions options;
    options.roots = roots_of(target);
    options.hash_bundle_config = false;
    correlate::ScopesBySandbox scopes{{*target.oci_id, scope}};
    auto item = correlate::sample_one(options, *target.oci_id, scopes);
    if (!item)
      return fail(item.error().message, " (searched", roots_text(target), " and the names in",
                  spaced({&target.podman_storage}), ")");
    return Sampled{std::move(item->observation), std::move(item->observed),
                   std::move(item->ref.engine), std::move(item->ref.names)};
  }
  observe::ProcReader proc("/proc");
  observe::CgroupReader cgroups("/sys/fs/cgroup");
  DW_TRY(ref, target.pid ? sandbox::sandbox_for_pid(proc, *target.pid)
                         : sandbox::sandbox_for_cgroup(proc, cgroups, *target.cgroup));
  sandbox::Sampler sampler(proc, cgroups);
  DW_TRY(observation, sampler.sample(ref, scope));
  DW_TRY(observed, projection::observed_projection(observation, scope));
  return Sampled{std::move(observation), std::move(observed), std::move(ref.engine),
                 std::move(ref.names)};
}

json inspect_document(const Sampled& s) {
  json vanished = json::array();
  for (pid_t pid : s.observation.vanished) vanished.push_back(pid);
  return json{{"sandbox_id", s.observation.sandbox_id},
              {"runtime", s.observation.runtime},
              {"engine", s.engine},
              {"names", s.names},
              {"observed_sha256", projection::projection_sha256(s.projection)},
              {"projection", projection::to_json(s.projection)},
              {"members", projection::members_json(s.observation)},
              {"vanished_members", vanished}};
}

int report_error(const Error& error) {
  std::cerr << "driftwatch: " << error.message << "\n";
  return kExitBadInput;
}

// The verifier key string in `path` (node.vkey: one line).
Result<evidence::NoteVerifier> load_vkey(const std::string& path) {
  DW_TRY(text, read_regular_file(path, 4096, "verifier key file"));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  auto verifier = evidence::NoteVerifier::parse(text);
  if (!verifier) return fail(path, ": not a verifier key: ", verifier.error().message);
  return verifier;
}

struct VerifySource {
  std::string log_dir;
  std::string url;
  std::string key;
  std::string report;  // verify --report FILE
};

// The log named by --log or --url, read file by file.
Result<std::unique_ptr<evidence::ResourceReader>> open_log(const VerifySource& source) {
  if (!source.url.empty()) {
    // Over HTTP (the daemon's /evidence/ or any static copy): what a plain
    // file server cannot list (checkpoints/, blob/) is not checked.
    DW_TRY(fetcher, evidence::HttpFetcher::for_url(source.url));
    return std::make_unique<evidence::CallbackReader>(
        [get = evidence::url_reader(std::move(fetcher))](const std::string& path, size_t max) {
          return get(path, max);
        });
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(source.log_dir, ec))
    return fail(source.log_dir, " is not a directory");
  return std::make_unique<evidence::DirectoryReader>(source.log_dir);
}

// --output FILE: created or truncated, never through a symbolic link.
Result<void> write_output(const std::string& path, std::string_view bytes) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) return fail("cannot write ", path, ": ", describe_errno(errno));
  if (auto written = write_all(fd.get(), bytes); !written)
    return fail("cannot write ", path, ": ", written.error().message);
  return {};
}

int report_failure(const char* command, const evidence::ReportError& error) {
  std::cerr << "driftwatch " << command << ": " << error.message << "\n";
  return error.failure == evidence::ReportFailure::kTampered ? kExitProblem : kExitBadInput;
}

int cmd_verify_report(const std::string& path, const evidence::NoteVerifier& verifier) {
  auto text = read_regular_file(path, evidence::kMaxReportBytes, "report");
  if (!text) {
    std::cerr << "driftwatch verify: " << text.error().message << "\n";
    return kExitBadInput;
  }
  auto report = evidence::parse_report(*text);
  if (!report) {
    std::cerr << "driftwatch verify: " << path << ": " << report.error().message << "\n";
    return kExitBadInput;
  }
  if (auto ok = evidence::verify_report(*report, verifier); !ok)
    return report_failure("verify", ok.error());
  std::cout << "ok: report of " << report->launches.size() << " launch(es), "
            << report->entries.size() << " entries proved against the checkpoint of "
            << report->tree.size << " entries, " << report->blobs.size() << " blobs checked\n";
  return kExitOk;
}

int cmd_verify(const VerifySource& source) {
  auto verifier = load_vkey(source.key);
  if (!verifier) {
    std::cerr << "driftwatch verify: " << verifier.error().message << "\n";
    return kExitBadInput;
  }
  if (!source.report.empty()) return cmd_verify_report(source.report, *verifier);
  // The key is named after the log's origin (driftwatch/<node>): a
  // checkpoint of another origin is not this log's.
  evidence::VerifyOptions options;
  options.origin = verifier->name();
  auto reader = open_log(source);
  if (!reader) {
    std::cerr << "driftwatch verify: " << reader.error().message << "\n";
    return kExitBadInput;
  }
  const evidence::VerifyResult result = evidence::verify_log(**reader, *verifier, options);
  if (!result.ok()) {
    std::cerr << "driftwatch verify: " << result.message << "\n";
    return result.failure == evidence::VerifyFailure::kTampered ? kExitProblem : kExitBadInput;
  }
  std::cout << "ok: " << result.tree_size << " entries, root " << evidence::hash_base64(result.root)
            << ", " << result.tiles_checked << " tiles, " << result.checkpoints_checked
            << " checkpoints, " << result.blobs_checked << " blobs checked\n";
  return kExitOk;
}

struct ReportCommand {
  VerifySource source;
  std::optional<std::string> launch;
  std::optional<std::string> since;
  std::string format = "json";
  std::optional<std::string> output;
};

int cmd_report(const ReportCommand& command) {
  auto verifier = load_vkey(command.source.key);
  if (!verifier) {
    std::cerr << "driftwatch report: " << verifier.error().message << "\n";
    return kExitBadInput;
  }
  evidence::ReportOptions options;
  options.launch_id = command.launch;
  if (command.since) {
    auto since = evidence::parse_report_time(*command.since);
    if (!since) {
      std::cerr << "driftwatch report: --since: " << since.error().message << "\n";
      return kExitBadInput;
    }
    options.since = *since;
  }
  auto reader = open_log(command.source);
  if (!reader) {
    std::cerr << "driftwatch report: " << reader.error().message << "\n";
    return kExitBadInput;
  }
  auto report = evidence::build_report(**reader, *verifier, options);
  if (!report) return report_failure("report", report.error());
  auto document = evidence::render_report(*report, command.format);
  if (!document) {
    std::cerr << "driftwatch report: " << document.error().message << "\n";
    return kExitBadInput;
  }
  if (!command.output) {
    std::cout << *document;
    return kExitOk;
  }
  if (auto written = write_output(*command.output, *document); !written) {
    std::cerr << "driftwatch report: " << written.error().message << "\n";
    return kExitBadInput;
  }
  return kExitOk;
}

// With `inspect --daemon URL`: what that daemon holds on the sandbox, its
// verdict and launch, and the attempts its probe counted denied in it.
class DaemonAsk {
 public:
  static Result<std::optional<DaemonAsk>> open(const std::optional<std::string>& url) {
    if (!url) return std::optional<DaemonAsk>();
    auto fetcher = evidence::HttpFetcher::for_url(*url);
    if (!fetcher) return fail("--daemon: ", fetcher.error().message);
    return std::optional<DaemonAsk>(DaemonAsk(std::move(*fetcher)));
  }
  // Adds "daemon" to `document`; an error only when the daemon cannot be
  // asked at all.
  Result<void> add_to(json& document) {
    const std::string id = document["sandbox_id"].get<std::string>();
    auto reply = fetcher_.get("v1/sandboxes/" + id, 1 << 20);
    if (!reply) return fail("--daemon: ", reply.error().message);
    if (!*reply) {
      document["daemon"] = json{{"known", false}};
      return {};
    }
    auto sandbox = json::parse(**reply, nullptr, false);
    if (!sandbox.is_object()) return fail("--daemon: the answer for ", id, " is not a JSON object");
    json out{{"known", true}};
    for (const char* field : {"verdict", "launch_id", "observed_sha256", "denied_attempts"})
      if (sandbox.contains(field)) out[field] = sandbox[field];
    document["daemon"] = std::move(out);
    return {};
  }

 private:
  explicit DaemonAsk(evidence::HttpFetcher fetcher) : fetcher_(std::move(fetcher)) {}
  evidence::HttpFetcher fetcher_;
};

int cmd_inspect(const Target& target, const std::optional<std::string>& daemon_url) {
  auto scope = projection::default_scope();
  auto daemon = DaemonAsk::open(daemon_url);
  if (!daemon) return report_error(daemon.error());
  const auto with_daemon = [&daemon](json document) -> Result<json> {
    if (*daemon)
      if (auto added = (*daemon)->add_to(document); !added) return std::unexpected(added.error());
    return document;
  };
  if (target.pid || target.oci_id || target.cgroup) {
    auto sampled = sample_target(target, scope);
    if (!sampled) return report_error(sampled.error());
    auto document = with_daemon(inspect_document(*sampled));
    if (!document) return report_error(document.error());
    std::cout << dump(*document) << "\n";
    return kExitOk;
  }
  // No selector: every container on the node, one line each,
  // through the daemon's own sweep.
  correlate::SweepOptions options;
  options.roots = roots_of(target);
  options.hash_bundle_config = false;
  auto swept = correlate::sweep(options, correlate::ScopesBySandbox{});
  for (const auto& problem : swept.problems)
    std::cerr << "driftwatch: skipped: " << problem << "\n";
  std::vector<std::string> lines;
  for (auto& item : swept.items) {
    auto document =
        with_daemon(inspect_document({std::move(item.observation), std::move(item.observed),
                                      std::move(item.ref.engine), std::move(item.ref.names)}));
    if (!document) return report_error(document.error());
    lines.push_back(dump(*document));
  }
  if (lines.empty()) {
    std::cerr << "driftwatch: no running containers under" << roots_text(target)
              << " (use --pid or --cgroup for other sandboxes)\n";
  }
  for (const auto& line : lines) std::cout << line << "\n";
  return kExitOk;
}

int cmd_project(const std::string& config_path) {
  auto declared = declared_from_file(config_path);
  if (!declared) return report_error(declared.error());
  json doc{{"declared_sha256", projection::projection_sha256(*declared)},
           {"projection", projection::to_json(*declared)}};
  std::cout << dump(doc) << "\n";
  return kExitOk;
}

int cmd_diff(const std::string& config_path, const Target& target) {
  auto declared = declared_from_file(config_path);
  if (!declared) return report_error(declared.error());
  auto scope = projection::scope_for(*declared);
  auto sampled = sample_target(target, scope);
  if (!sampled) return report_error(sampled.error());
  auto findings = projection::diff(*declared, sampled->projection,
                                   projection::nested_namespace_capabilities(sampled->observation));
  std::string declared_sha = projection::projection_sha256(*declared);
  std::string observed_sha = projection::projection_sha256(sampled->projection);
  // Equal hashes and no findings must go together; if they ever do not, the
  // comparison is broken and must not claim attestation.
  if (findings.empty() && declared_sha != observed_sha) {
    std::cerr << "driftwatch: internal error: hashes differ but no field does\n";
    return kExitBadInput;
  }
  json list = json::array();
  for (const auto& f : findings) list.push_back(projection::to_json(f));
  std::string verdict = projection::comparison_verdict(findings);
  json doc{{"declared_sha256", declared_sha},
           {"observed_sha256", observed_sha},
           {"verdict", verdict},
           {"findings", list}};
  std::cout << dump(doc) << "\n";
  return verdict == "drifted" ? kExitProblem : kExitOk;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{
      "driftwatch: proves that sandboxes run with the configuration their control plane "
      "launched them with, and that nothing inside raised its own privileges since."};
  app.set_version_flag("--version", std::string(build_version()) + " (" + build_revision() + ")");
  app.require_subcommand(1);

  std::optional<std::string> run_config;
  auto* run = app.add_subcommand(
      "run",
      "The daemon: watch every sandbox on the node, correlate it with signed launch events and "
      "grants, serve the HTTP API. Without --config it runs on the embedded defaults.");
  run->add_option("--config", run_config, "node configuration (JSON; every key optional)");

  std::string keygen_name, keygen_out;
  auto* keygen = app.add_subcommand(
      "keygen", "Create an Ed25519 key pair (PEM) and print its key id and note verifier key.");
  keygen->add_option("--name", keygen_name, "key name (as in trust.json and signed notes)")
      ->required();
  keygen->add_option("--out", keygen_out, "directory for NAME.key, NAME.pub, NAME.vkey")
      ->required();

  std::string sign_key, sign_type, sign_payload;
  LaunchFromOci sign_oci;
  auto* sign = app.add_subcommand(
      "sign",
      "Wrap a launch or grant payload in a signed DSSE envelope, printed as one line (append it "
      "to a launch journal or POST it). config_sha256 is filled in when missing; a payload "
      "every driftwatch would reject as malformed is refused (exit 2). With --oci-config, the "
      "launch payload is made from an OCI runtime config.json and the options below.");
  sign->add_option("--key", sign_key, "private key PEM (from driftwatch keygen)")->required();
  sign->add_option("--type", sign_type, "payload type")
      ->required()
      ->check(CLI::IsMember({"launch", "grant"}));
  auto* sign_from = sign->add_option_group("payload", "what to sign (exactly one)");
  sign_from->add_option("payload", sign_payload, "the payload JSON file");
  auto* sign_oci_config = sign_from->add_option(
      "--oci-config", sign_oci.oci_config,
      "make the launch payload from this OCI runtime config.json (a bundle's, as handed to the "
      "runtime)");
  sign_from->require_option(1);
  auto* sign_launch_id =
      sign->add_option("--launch-id", sign_oci.launch_id, "with --oci-config: the launch id");
  auto* sign_sandbox_id = sign->add_option("--sandbox-id", sign_oci.sandbox_id,
                                           "with --oci-config: the container id it runs as");
  auto* sign_requested_by = sign->add_option("--requested-by", sign_oci.requested_by,
                                             "with --oci-config: who asked for the launch");
  auto* sign_runtime =
      sign->add_option("--runtime", sign_oci.runtime, "with --oci-config: runc or crun")
          ->capture_default_str();
  auto* sign_issued_at = sign->add_option("--issued-at", sign_oci.issued_at,
                                          "with --oci-config: RFC 3339 time (default: now)");
  for (auto* option :
       {sign_launch_id, sign_sandbox_id, sign_requested_by, sign_runtime, sign_issued_at})
    option->needs(sign_oci_config);

  std::string trust_file = "/etc/driftwatch/trust.json", trust_role, trust_key, trust_name;
  auto* trust = app.add_subcommand(
      "trust", "Manage the node's trust file (which keys may sign launch events and grants).");
  trust->require_subcommand(1);
  auto* trust_add = trust->add_subcommand(
      "add",
      "Add a public key to a role of the trust file, atomically (created when missing). Refused, "
      "with the file as it was: not an Ed25519 public key PEM, a name already used, a key "
      "already trusted in either role. The daemon reads the file at start.");
  trust_add
      ->add_option("--role", trust_role,
                   "control_plane (may sign launch events) or operator (may sign grants)")
      ->required()
      ->check(CLI::IsMember({"control_plane", "operator"}));
  trust_add->add_option("--key", trust_key, "public key PEM (NAME.pub from driftwatch keygen)")
      ->required();
  trust_add->add_option("--name", trust_name,
                        "the key's name in the trust file (default: the key file's name "
                        "without .pub)");
  trust_add->add_option("--trust", trust_file, "the trust file")->capture_default_str();

  Target inspect_target;
  auto* inspect = app.add_subcommand(
      "inspect",
      "Sample one sandbox now and print its observed projection (canonical JSON) and SHA-256. "
      "Without a selector: every runc and crun container on the node, one JSON line each.");
  add_target_options(*inspect, inspect_target, false);
  std::optional<std::string> inspect_daemon;
  inspect->add_option("--daemon", inspect_daemon,
                      "also ask the driftwatch daemon at this URL (http://HOST:PORT) for each "
                      "sandbox's verdict, launch and the escalation attempts its probes counted "
                      "denied in it");

  std::string project_config;
  auto* project = app.add_subcommand(
      "project", "Print the declared projection of an OCI runtime config and its SHA-256.");
  project->add_option("--oci-config", project_config, "an OCI runtime config.json")->required();

  std::string diff_config;
  Target diff_target;
  auto* diff = app.add_subcommand(
      "diff",
      "Compare an OCI config's declared projection with a live sandbox's observed one. "
      "Exit 0: attested or narrowed; 1: drifted (escalation or change); 2: bad input.");
  diff->add_option("--oci-config", diff_config, "the OCI runtime config.json it was launched with")
      ->required();
  add_target_options(*diff, diff_target, true);

  VerifySource verify_source;
  auto* verify = app.add_subcommand(
      "verify",
      "Check an evidence log offline: recompute every tile and the root from the entry "
      "bundles, check every checkpoint's signature and its consistency with the latest tree, "
      "and every blob's hash. Exit 0: intact; 1: tampered (the first bad entry, tile or "
      "checkpoint is named); 2: bad input (not a log, wrong key).");
  auto* verify_from = verify->add_option_group("source", "where the log is");
  verify_from->add_option("--log", verify_source.log_dir,
                          "a copy of the log directory (state_dir/evidence)");
  verify_from->add_option("--url", verify_source.url,
                          "the log served over HTTP (the daemon's /evidence/ or a static copy)");
  verify_from->add_option("--report", verify_source.report,
                          "a report (driftwatch report --format json) instead of a log: each "
                          "cited entry's proof, each blob, and the summaries recomputed");
  verify_from->require_option(1);
  verify->add_option("--key", verify_source.key, "the node's verifier key file (node.vkey)")
      ->required();

  ReportCommand report_command;
  auto* report = app.add_subcommand(
      "report",
      "The correlation report of the log's launches (or one, --launch): the signed launch "
      "event, the verdict timeline, findings with their controls, grants, rejected envelopes, "
      "denied attempts, and every cited entry with its tlog-proof, the checkpoint and the cited "
      "blobs, verifiable offline (verify --report). Exit 0: written; 1: the log does not check "
      "out; 2: bad input (not a log, wrong key, unknown launch).");
  auto* report_from = report->add_option_group("source", "where the log is");
  report_from->add_option("--log", report_command.source.log_dir,
                          "a copy of the log directory (state_dir/evidence)");
  report_from->add_option("--url", report_command.source.url,
                          "the log served over HTTP (the daemon's /evidence/ or a static copy)");
  report_from->require_option(1);
  report->add_option("--key", report_command.source.key, "the node's verifier key file (node.vkey)")
      ->required();
  report->add_option("--launch", report_command.launch, "only this launch id");
  report->add_option("--since", report_command.since,
                     "only entries at or after this time (RFC 3339 or unix seconds); the launch "
                     "event is always cited");
  report->add_option("--format", report_command.format, "json, html or oscal")
      ->check(CLI::IsMember({"json", "html", "oscal"}))
      ->capture_default_str();
  report->add_option("--output", report_command.output, "write to this file instead of stdout");

  DemoOptions demo_options;
  auto* demo = app.add_subcommand(
      "demo",
      "Show the whole story on this machine with throwaway keys: start the daemon and a runc "
      "container, sign its launch, see it attested, give it a capability, see it drifted and "
      "why, then remove everything. Needs root, runc and busybox-static.");
  demo->add_flag("--keep", demo_options.keep,
                 "keep the work directory (keys, node config, the evidence log) and say how to "
                 "verify it and make a report");

  // The daemon's sampler process, started by `run` (app/sampler_process.hpp).
  // Not listed in --help: it refuses to run unless started that way.
  auto* sampler_process = app.add_subcommand(
      "sampler-process", "internal: the daemon's sampler process, started by `driftwatch run`");
  sampler_process->group("");

  // CLI11 reports a mistyped command as "a subcommand is required"; name it.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* command :
         {run, inspect, project, diff, keygen, sign, trust, verify, report, demo}) {
      known |= command->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + command->get_name();
    }
    known |= sampler_process->get_name() == argv[1];
    if (!known) {
      std::cerr << "driftwatch: unknown command '" << argv[1] << "' (commands: " << names
                << "; see --help)\n";
      return kExitBadInput;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string message = e.what();
    std::cerr << "driftwatch: " << message << " (see --help)\n";
    return kExitBadInput;
  }

  // Errors are Results; an exception reaching here is a bug, but a command
  // still ends with a one-line reason and exit 2, never `terminate`.
  try {
    if (*run)
      return cmd_run(run_config ? std::optional<std::filesystem::path>(*run_config) : std::nullopt);
    if (*keygen) return cmd_keygen(keygen_name, keygen_out);
    if (*sign && sign_oci_config->count() > 0) {
      if (sign_type != "launch") {
        std::cerr << "driftwatch: sign --oci-config makes launch payloads: use --type launch\n";
        return kExitBadInput;
      }
      for (auto* option : {sign_launch_id, sign_sandbox_id, sign_requested_by})
        if (option->count() == 0) {
          std::cerr << "driftwatch: sign --oci-config needs " << option->get_name() << "\n";
          return kExitBadInput;
        }
      return cmd_sign_oci(sign_key, sign_oci);
    }
    if (*sign) return cmd_sign(sign_key, sign_type, sign_payload);
    if (*trust_add) return cmd_trust_add(trust_file, trust_role, trust_key, trust_name);
    if (*inspect) return cmd_inspect(inspect_target, inspect_daemon);
    if (*project) return cmd_project(project_config);
    if (*diff) return cmd_diff(diff_config, diff_target);
    if (*verify) return cmd_verify(verify_source);
    if (*report) return cmd_report(report_command);
    if (*demo) return cmd_demo(demo_options);
    if (*sampler_process) return run_sampler_process();
  } catch (const std::exception& e) {
    std::cerr << "driftwatch: internal error: " << e.what() << "\n";
    return kExitBadInput;
  }
  return kExitBadInput;
}

}  // namespace driftwatch::app
