#include "evidence/report.hpp"

#include <algorithm>
#include <functional>
#include <set>
#include <unordered_map>

#include "common/crypto.hpp"
#include "common/sha256.hpp"
#include "evidence/log.hpp"
#include "evidence/proof.hpp"
#include "ingest/envelope.hpp"

namespace driftwatch::evidence {
namespace {

using nlohmann::json;

std::string str(uint64_t value) {
  return std::to_string(value);
}

std::unexpected<ReportError> bad_input(std::string message) {
  return std::unexpected(ReportError{ReportFailure::kBadInput, std::move(message)});
}
std::unexpected<ReportError> tampered(std::string message) {
  return std::unexpected(ReportError{ReportFailure::kTampered, std::move(message)});
}

// Entries are outside input to the report: every field is read through
// these, which check its type.
std::optional<std::string> string_field(const json& entry, const char* key) {
  const auto it = entry.find(key);
  if (it == entry.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}
json any_field(const json& entry, const char* key) {
  const auto it = entry.find(key);
  return it == entry.end() ? json() : *it;
}
bool is_sha256_hex(const std::string& text) {
  return text.size() == 64 && text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::optional<json> parse_entry(std::string_view bytes) {
  json doc = json::parse(bytes, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
  return doc;
}

// The launch and sandbox a rejected envelope aimed at, from its payload
// (the envelope was refused: nothing in it is trusted, it is only matched).
struct Target {
  std::optional<std::string> launch_id;
  std::optional<std::string> sandbox_id;
};
Target target_of_envelope(std::string_view envelope) {
  auto parsed = ingest::parse_envelope(envelope);
  if (!parsed) return {};
  json payload = json::parse(parsed->payload, nullptr, false);
  if (payload.is_discarded() || !payload.is_object()) return {};
  return Target{string_field(payload, "launch_id"), string_field(payload, "sandbox_id")};
}

enum class Role { kNone, kLaunch, kTimeline, kFinding, kGrant, kRejection, kDenied };

bool is_timeline(const std::string& type) {
  return type == "sandbox_discovered" || type == "observation" || type == "sandbox_gone";
}
bool is_rejection(const std::string& type) {
  return type == "launch_rejected" || type == "grant_rejected";
}

// The names an entry about a sandbox gives it: its "sandbox_id" and the
// strings of its "names" (a launch may name the sandbox by either).
std::vector<std::string> sandbox_names(const json& entry) {
  std::vector<std::string> names;
  if (auto id = string_field(entry, "sandbox_id")) names.push_back(*id);
  const json more = any_field(entry, "names");
  if (more.is_array())
    for (const auto& name : more)
      if (name.is_string()) names.push_back(name.get<std::string>());
  return names;
}

bool names_sandbox(const json& entry, const std::string& sandbox_id) {
  const auto names = sandbox_names(entry);
  return std::find(names.begin(), names.end(), sandbox_id) != names.end();
}

// What `entry` is to the launch `launch_id` of sandbox `sandbox_id`.
// `blobs` gives a rejected entry's kept envelope.
Role role_of(const json& entry, const std::string& launch_id, const std::string& sandbox_id,
             const BlobLookup& blobs) {
  const auto type = string_field(entry, "type");
  if (!type) return Role::kNone;
  if (*type == "launch_accepted")
    return string_field(entry, "id") == launch_id ? Role::kLaunch : Role::kNone;
  if (*type == "grant_accepted")
    return string_field(entry, "launch_id") == launch_id ? Role::kGrant : Role::kNone;
  if (is_timeline(*type) || *type == "finding" || *type == "escalation_attempt") {
    const json launch = any_field(entry, "launch_id");
    const bool ours = launch.is_string() ? launch.get<std::string>() == launch_id
                                         : launch.is_null() && !sandbox_id.empty() &&
                                               names_sandbox(entry, sandbox_id);
    if (!ours) return Role::kNone;
    return *type == "finding"              ? Role::kFinding
           : *type == "escalation_attempt" ? Role::kDenied
                                           : Role::kTimeline;
  }
  if (is_rejection(*type)) {
    if (string_field(entry, "id") == launch_id) return Role::kRejection;
    const auto hash = string_field(entry, "envelope_sha256");
    if (!hash || !is_sha256_hex(*hash)) return Role::kNone;
    const auto envelope = blobs(*hash);
    if (!envelope) return Role::kNone;
    const Target target = target_of_envelope(*envelope);
    if (target.launch_id == launch_id || (!sandbox_id.empty() && target.sandbox_id == sandbox_id))
      return Role::kRejection;
  }
  return Role::kNone;
}

std::vector<std::string> controls_of(const json& finding) {
  std::vector<std::string> out;
  const json controls = any_field(finding, "controls");
  if (controls.is_array())
    for (const auto& c : controls)
      if (c.is_string()) out.push_back(c.get<std::string>());
  return out;
}

// Entry bundles, read in order through the reader; a partial bundle that is
// gone is read from its full bundle (tlog-tiles).
class EntryScanner {
 public:
  EntryScanner(const ResourceReader& reader, uint64_t size,
               std::optional<std::chrono::steady_clock::time_point> deadline)
      : reader_(reader), size_(size), deadline_(deadline) {}

  // Calls visit(index, bytes) for every entry; stops at the first error.
  template <class Visit>
  ReportResult<void> scan(Visit&& visit) {
    for (uint64_t bundle = 0; bundle * kTileWidth < size_; ++bundle) {
      if (deadline_ && std::chrono::steady_clock::now() > *deadline_)
        return std::unexpected(ReportError{
            ReportFailure::kTooLarge, "the log is too large to report on in the time allowed (" +
                                          str(bundle * kTileWidth) + " of " + str(size_) +
                                          " entries read); use driftwatch report on a copy"});
      const auto width =
          static_cast<uint32_t>(std::min<uint64_t>(kTileWidth, size_ - bundle * kTileWidth));
      const Tile tile{kEntriesLevel, bundle, width};
      const std::string path = tile_path(tile);
      auto bytes = reader_.read(path, kMaxBundleBytes);
      if (!bytes) return bad_input(path + ": " + bytes.error().message);
      if (!*bytes && !tile.is_full()) {
        bytes = reader_.read(tile_path(Tile{kEntriesLevel, bundle, kTileWidth}), kMaxBundleBytes);
        if (!bytes) return bad_input(path + ": " + bytes.error().message);
      }
      if (!*bytes) return tampered(path + " is missing; verify the log");
      const BundleParse parsed = parse_entry_bundle(**bytes);
      if (parsed.entries.size() < width)
        return tampered(path + " holds " + str(parsed.entries.size()) + " entries, not " +
                        str(width) + "; verify the log");
      for (uint32_t i = 0; i < width; ++i)
        if (auto ok = visit(bundle * kTileWidth + i, parsed.entries[i]); !ok) return ok;
    }
    return {};
  }

 private:
  const ResourceReader& reader_;
  uint64_t size_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
};

std::optional<int64_t> entry_time(const json& entry) {
  const auto time = string_field(entry, "time");
  if (!time) return std::nullopt;
  auto parsed = ingest::parse_rfc3339(*time);
  if (!parsed) return std::nullopt;
  return *parsed;
}

}  // namespace

Result<json> describe_launch(const std::string& launch_id,
                             const std::vector<std::pair<uint64_t, std::string>>& entries,
                             const BlobLookup& blobs) {
  std::optional<json> launch;
  std::optional<uint64_t> launch_index;
  // The launch event first: it names the sandbox the other entries match.
  for (const auto& [index, bytes] : entries) {
    auto doc = parse_entry(bytes);
    if (doc && role_of(*doc, launch_id, "", blobs) == Role::kLaunch) {
      launch = std::move(doc);
      launch_index = index;
      break;
    }
  }
  if (!launch) return fail("no launch_accepted entry for launch ", launch_id, " is cited");
  const std::string sandbox_id = string_field(*launch, "sandbox_id").value_or("");

  json timeline = json::array(), findings = json::array(), grants = json::array(),
       rejections = json::array(), denied = json::array();
  std::optional<std::string> verdict, consumed, observed, declared;
  bool drift = false;
  std::set<std::string> controls, drifted_fields;
  for (const auto& [index, bytes] : entries) {
    if (index == *launch_index) continue;
    auto doc = parse_entry(bytes);
    if (!doc) return fail("entry ", str(index), " is not a JSON object");
    const json& e = *doc;
    const Role role = role_of(e, launch_id, sandbox_id, blobs);
    const json time = any_field(e, "time");
    switch (role) {
      case Role::kNone:
      case Role::kLaunch:
        return fail("entry ", str(index), " (", string_field(e, "type").value_or("?"),
                    ") does not concern launch ", launch_id);
      case Role::kTimeline: {
        timeline.push_back({{"index", index},
                            {"time", time},
                            {"type", any_field(e, "type")},
                            {"trigger", any_field(e, "trigger")},
                            {"from", any_field(e, "from")},
                            {"verdict", any_field(e, "verdict")},
                            {"grant_id", any_field(e, "grant_id")},
                            {"declared_sha256", any_field(e, "declared_sha256")},
                            {"observed_sha256", any_field(e, "observed_sha256")},
                            {"consumed_config_sha256", any_field(e, "consumed_config_sha256")}});
        verdict = string_field(e, "verdict");
        if (verdict == "drifted") drift = true;
        if (auto v = string_field(e, "consumed_config_sha256")) consumed = v;
        if (auto v = string_field(e, "observed_sha256")) observed = v;
        if (auto v = string_field(e, "declared_sha256")) declared = v;
        break;
      }
      case Role::kFinding: {
        const auto field_controls = controls_of(e);
        findings.push_back({{"index", index},
                            {"time", time},
                            {"verdict", any_field(e, "verdict")},
                            {"field", any_field(e, "field")},
                            {"declared", any_field(e, "declared")},
                            {"observed", any_field(e, "observed")},
                            {"direction", any_field(e, "direction")},
                            {"severity", any_field(e, "severity")},
                            {"controls", field_controls}});
        controls.insert(field_controls.begin(), field_controls.end());
        if (string_field(e, "verdict") == "drifted")
          if (auto field = string_field(e, "field")) drifted_fields.insert(*field);
        break;
      }
      case Role::kGrant:
        grants.push_back({{"index", index},
                          {"time", time},
                          {"id", any_field(e, "id")},
                          {"requested_by", any_field(e, "requested_by")},
                          {"approved_by", any_field(e, "approved_by")},
                          {"signed_by", any_field(e, "signed_by")},
                          {"signer_keyid", any_field(e, "signer_keyid")},
                          {"config_sha256", any_field(e, "config_sha256")},
                          {"reason", any_field(e, "reason")},
                          {"envelope_sha256", any_field(e, "envelope_sha256")}});
        break;
      case Role::kRejection:
        rejections.push_back({{"index", index},
                              {"time", time},
                              {"type", any_field(e, "type")},
                              {"result", any_field(e, "result")},
                              {"reason", any_field(e, "reason")},
                              {"source", any_field(e, "source")},
                              {"envelope_sha256", any_field(e, "envelope_sha256")},
                              {"envelope_kept", any_field(e, "envelope_kept")}});
        break;
      case Role::kDenied: {
        // One entry per sandbox, syscall and capability per interval, with
        // the exact count and one of the attempts in detail.
        const json detail = any_field(e, "detail");
        const auto of_detail = [&detail](const char* key) {
          return detail.is_object() ? any_field(detail, key) : json();
        };
        denied.push_back({{"index", index},
                          {"time", time},
                          {"kind", any_field(e, "kind")},
                          {"capability", any_field(e, "capability")},
                          {"outcome", any_field(e, "outcome")},
                          {"count", any_field(e, "count")},
                          {"total", any_field(e, "total")},
                          {"pid", of_detail("pid")},
                          {"uid", of_detail("uid")},
                          {"comm", of_detail("comm")}});
        break;
      }
    }
  }
  const json& l = *launch;
  json summary{
      {"launch_id", launch_id},
      {"sandbox_id", any_field(l, "sandbox_id")},
      {"runtime", any_field(l, "runtime")},
      {"issued_at", any_field(l, "issued_at")},
      {"requested_by", any_field(l, "requested_by")},
      {"signed_by", any_field(l, "signed_by")},
      {"signer_keyid", any_field(l, "signer_keyid")},
      {"config_sha256", any_field(l, "config_sha256")},
      {"envelope_sha256", any_field(l, "envelope_sha256")},
      {"consumed_config_sha256", consumed ? json(*consumed) : json()},
      {"declared_sha256", declared ? json(*declared) : json()},
      {"observed_sha256", observed ? json(*observed) : json()},
      {"verdict", verdict ? json(*verdict) : json("not observed")},
      {"drift", drift},
      {"drifted_fields", std::vector<std::string>(drifted_fields.begin(), drifted_fields.end())},
      {"controls", std::vector<std::string>(controls.begin(), controls.end())}};
  return json{
      {"launch_id", launch_id},
      {"summary", summary},
      {"launch_event", {{"index", *launch_index}, {"time", any_field(l, "time")}}},
      {"timeline", timeline},
      {"findings", findings},
      {"grants", grants},
      {"rejections", rejections},
      {"denied_attempts", denied},
      {"denied_attempts_note", denied.empty() ? json(std::string(kNoDeniedAttemptsNote)) : json()}};
}

ReportResult<Report> build_report(const ResourceReader& reader, const NoteVerifier& verifier,
                                  const ReportOptions& options) {
  auto note = reader.read("checkpoint", kMaxNoteBytes);
  if (!note) return bad_input("checkpoint: " + note.error().message);
  if (!*note)
    return bad_input(
        "checkpoint: is missing: this is not an evidence log, or it has not issued a checkpoint "
        "yet");
  auto checkpoint = open_checkpoint(**note, verifier, verifier.name());
  if (!checkpoint) {
    const auto& error = checkpoint.error();
    if (error.failure == NoteFailure::kBadSignature)
      return tampered("checkpoint: " + error.message +
                      "; no report from a log that does not verify");
    return bad_input("checkpoint: " + error.message);
  }
  Report report;
  report.checkpoint = **note;
  report.tree = *checkpoint;
  report.launch_filter = options.launch_id;
  report.since = options.since;
  EntryScanner scanner(reader, checkpoint->size, options.deadline);

  // Pass 1: the launches (id -> sandbox id), in log order.
  std::vector<std::string> order;
  std::unordered_map<std::string, std::string> sandbox_of;
  auto found = scanner.scan([&](uint64_t index, std::string_view bytes) -> ReportResult<void> {
    auto doc = parse_entry(bytes);
    if (!doc) return tampered("entry " + str(index) + " is not a JSON object; verify the log");
    if (string_field(*doc, "type") != "launch_accepted") return {};
    const auto id = string_field(*doc, "id");
    if (!id || sandbox_of.contains(*id)) return {};
    if (options.launch_id && *id != *options.launch_id) return {};
    order.push_back(*id);
    sandbox_of[*id] = string_field(*doc, "sandbox_id").value_or("");
    return {};
  });
  if (!found) return std::unexpected(found.error());
  if (options.launch_id && order.empty())
    return std::unexpected(ReportError{
        ReportFailure::kUnknownLaunch,
        "no launch " + *options.launch_id + " in the log's " + str(checkpoint->size) + " entries"});
  std::unordered_map<std::string, std::vector<std::string>> launches_of_sandbox;
  for (const auto& id : order)
    if (!sandbox_of[id].empty()) launches_of_sandbox[sandbox_of[id]].push_back(id);

  // Pass 2: what each launch cites (and only that is kept).
  std::map<std::string, std::vector<std::pair<uint64_t, std::string>>> cited;
  std::map<std::string, std::string> rejected_blobs;  // read for matching
  const BlobLookup lookup = [&](const std::string& hash) -> std::optional<std::string> {
    if (auto it = rejected_blobs.find(hash); it != rejected_blobs.end()) return it->second;
    auto blob = reader.read("blob/" + hash, kMaxBlobBytes);
    if (!blob || !*blob || sha256_hex(**blob) != hash) return std::nullopt;
    return **blob;
  };
  auto scanned = scanner.scan([&](uint64_t index, std::string_view bytes) -> ReportResult<void> {
    auto doc = parse_entry(bytes);
    if (!doc) return tampered("entry " + str(index) + " is not a JSON object; verify the log");
    const auto type = string_field(*doc, "type").value_or("");
    // The candidates: the launch it names, or those of the sandbox it names.
    std::set<std::string> candidates;
    for (const char* key : {"id", "launch_id"})
      if (auto id = string_field(*doc, key); id && sandbox_of.contains(*id)) candidates.insert(*id);
    for (const auto& sandbox : sandbox_names(*doc))
      if (auto it = launches_of_sandbox.find(sandbox); it != launches_of_sandbox.end())
        candidates.insert(it->second.begin(), it->second.end());
    std::optional<std::string> kept_envelope;
    if (is_rejection(type) && any_field(*doc, "envelope_kept") == json(true)) {
      if (const auto hash = string_field(*doc, "envelope_sha256"); hash && is_sha256_hex(*hash)) {
        if (auto envelope = lookup(*hash)) {
          const Target target = target_of_envelope(*envelope);
          if (target.launch_id && sandbox_of.contains(*target.launch_id))
            candidates.insert(*target.launch_id);
          if (target.sandbox_id)
            if (auto it = launches_of_sandbox.find(*target.sandbox_id);
                it != launches_of_sandbox.end())
              candidates.insert(it->second.begin(), it->second.end());
          rejected_blobs[*hash] = std::move(*envelope);
          kept_envelope = *hash;
        }
      }
    }
    bool kept = false;
    for (const auto& id : candidates) {
      const Role role = role_of(*doc, id, sandbox_of[id], lookup);
      if (role == Role::kNone) continue;
      if (role != Role::kLaunch && options.since) {
        const auto time = entry_time(*doc);
        if (!time || *time < *options.since) continue;
      }
      cited[id].emplace_back(index, std::string(bytes));
      kept = true;
    }
    if (kept_envelope && !kept) rejected_blobs.erase(*kept_envelope);
    return {};
  });
  if (!scanned) return std::unexpected(scanned.error());

  // The sections, the blobs they cite and a proof per cited entry.
  const BlobLookup kept_lookup = [&](const std::string& hash) -> std::optional<std::string> {
    if (auto it = rejected_blobs.find(hash); it != rejected_blobs.end()) return it->second;
    return std::nullopt;
  };
  for (const auto& id : order) {
    auto& entries = cited[id];
    auto view = describe_launch(id, entries, kept_lookup);
    if (!view) return tampered("launch " + id + ": " + view.error().message);
    LaunchSection section;
    section.view = std::move(*view);
    for (auto& [index, bytes] : entries) {
      section.cites.push_back(index);
      if (report.entries.contains(index)) continue;
      auto doc = parse_entry(bytes);
      if (auto hash = string_field(*doc, "envelope_sha256"); hash && is_sha256_hex(*hash)) {
        if (auto it = rejected_blobs.find(*hash); it != rejected_blobs.end())
          report.blobs[*hash] = it->second;
        else if (!is_rejection(string_field(*doc, "type").value_or(""))) {
          auto blob = reader.read("blob/" + *hash, kMaxBlobBytes);
          if (!blob) return bad_input("blob/" + *hash + ": " + blob.error().message);
          if (!*blob)
            return tampered("blob/" + *hash + " cited by entry " + str(index) +
                            " is missing; verify the log");
          if (sha256_hex(**blob) != *hash)
            return tampered("blob/" + *hash + " does not hash to its name; verify the log");
          report.blobs[*hash] = std::move(**blob);
        }
      }
      auto proof =
          make_tlog_proof_from_tiles(reader, index, report.checkpoint, verifier, verifier.name());
      if (!proof) return tampered("entry " + str(index) + ": " + proof.error().message);
      // The entry read from its bundle must be the one the tiles prove.
      if (auto ok = verify_tlog_proof(*proof, bytes, verifier, verifier.name()); !ok)
        return tampered("entry " + str(index) +
                        " in its bundle is not the entry the hash tiles "
                        "hold: " +
                        ok.error().message + "; verify the log");
      report.entries[index] = CitedEntry{std::move(bytes), std::move(*proof)};
    }
    report.launches.push_back(std::move(section));
  }
  return report;
}

// ---------------------------------------------------------------- JSON

json report_to_json(const Report& report) {
  json launches = json::array();
  for (const auto& section : report.launches) {
    json launch = section.view;
    launch["cites"] = section.cites;
    launches.push_back(std::move(launch));
  }
  json entries = json::array();
  for (const auto& [index, entry] : report.entries)
    entries.push_back({{"index", index}, {"entry", entry.bytes}, {"proof", entry.proof}});
  json blobs = json::array();
  for (const auto& [hash, bytes] : report.blobs)
    blobs.push_back({{"sha256", hash}, {"base64", base64_encode(bytes)}});
  return json{{"format", kReportFormat},
              {"origin", report.tree.origin},
              {"tree_size", report.tree.size},
              {"root", hash_base64(report.tree.root)},
              {"checkpoint", report.checkpoint},
              {"selection",
               {{"launch", report.launch_filter ? json(*report.launch_filter) : json()},
                {"since", report.since ? json(ingest::format_rfc3339(*report.since)) : json()}}},
              {"launches", launches},
              {"entries", entries},
              {"blobs", blobs}};
}

namespace {

// Strict field access for parse_report.
Result<const json*> member(const json& object, const char* key, json::value_t type,
                           const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || it->type() != type)
    return fail(where, ": \"", key, "\" is missing or not ",
                type == json::value_t::array ? "an array" : "an object");
  return &*it;
}

Result<std::string> string_member(const json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string())
    return fail(where, ": \"", key, "\" is missing or not a string");
  return it->get<std::string>();
}

Result<uint64_t> index_member(const json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_number_unsigned())
    return fail(where, ": \"", key, "\" is missing or not an entry number");
  return it->get<uint64_t>();
}

Result<std::optional<std::string>> nullable_string(const json& object, const char* key,
                                                   const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return fail(where, ": \"", key, "\" is not a string or null");
  return std::optional<std::string>(it->get<std::string>());
}

}  // namespace

Result<Report> parse_report(std::string_view text) {
  if (text.size() > kMaxReportBytes)
    return fail("the report is ", str(text.size()), " bytes, more than a report can be");
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded()) return fail("the report is not JSON");
  if (!doc.is_object()) return fail("the report is not a JSON object");
  DW_TRY(format, string_member(doc, "format", "the report"));
  if (format != kReportFormat)
    return fail("the report's format is \"", format.substr(0, 64), "\", not \"",
                std::string(kReportFormat), "\"");
  Report report;
  DW_TRY(checkpoint, string_member(doc, "checkpoint", "the report"));
  report.checkpoint = std::move(checkpoint);
  auto body = parse_note(report.checkpoint);
  if (!body) return wrap(body.error(), "the report's checkpoint: ");
  auto tree = parse_checkpoint(body->text);
  if (!tree) return wrap(tree.error(), "the report's checkpoint: ");
  report.tree = *tree;
  DW_TRY(origin, string_member(doc, "origin", "the report"));
  DW_TRY(size, index_member(doc, "tree_size", "the report"));
  DW_TRY(root, string_member(doc, "root", "the report"));
  if (origin != tree->origin || size != tree->size || root != hash_base64(tree->root))
    return fail("the report's origin, tree_size and root are not its checkpoint's");

  DW_TRY(selection, member(doc, "selection", json::value_t::object, "the report"));
  DW_TRY(launch_filter, nullable_string(*selection, "launch", "selection"));
  report.launch_filter = std::move(launch_filter);
  DW_TRY(since, nullable_string(*selection, "since", "selection"));
  if (since) {
    auto seconds = ingest::parse_rfc3339(*since);
    if (!seconds) return wrap(seconds.error(), "selection: since: ");
    report.since = *seconds;
  }

  DW_TRY(entries, member(doc, "entries", json::value_t::array, "the report"));
  for (const auto& item : *entries) {
    if (!item.is_object()) return fail("entries: an item is not an object");
    DW_TRY(index, index_member(item, "index", "an entry"));
    const std::string where = "entry " + str(index);
    DW_TRY(bytes, string_member(item, "entry", where));
    DW_TRY(proof, string_member(item, "proof", where));
    if (bytes.size() > kMaxEntryBytes)
      return fail(where, ": ", str(bytes.size()), " bytes, more than an entry can be");
    if (!report.entries.emplace(index, CitedEntry{std::move(bytes), std::move(proof)}).second)
      return fail(where, " is in the report twice");
  }
  DW_TRY(blobs, member(doc, "blobs", json::value_t::array, "the report"));
  for (const auto& item : *blobs) {
    if (!item.is_object()) return fail("blobs: an item is not an object");
    DW_TRY(hash, string_member(item, "sha256", "a blob"));
    if (!is_sha256_hex(hash)) return fail("a blob's sha256 is not 64 lowercase hex digits");
    DW_TRY(encoded, string_member(item, "base64", "blob " + hash));
    auto bytes = base64_decode(encoded);
    if (!bytes) return wrap(bytes.error(), "blob ", hash, ": ");
    if (!report.blobs.emplace(hash, std::move(*bytes)).second)
      return fail("blob ", hash, " is in the report twice");
  }
  DW_TRY(launches, member(doc, "launches", json::value_t::array, "the report"));
  for (const auto& item : *launches) {
    if (!item.is_object()) return fail("launches: an item is not an object");
    DW_TRY(id, string_member(item, "launch_id", "a launch"));
    DW_TRY(cites, member(item, "cites", json::value_t::array, "launch " + id));
    LaunchSection section;
    for (const auto& index : *cites) {
      if (!index.is_number_unsigned()) return fail("launch ", id, ": cites a non-entry number");
      section.cites.push_back(index.get<uint64_t>());
    }
    if (!std::is_sorted(section.cites.begin(), section.cites.end()) ||
        std::adjacent_find(section.cites.begin(), section.cites.end()) != section.cites.end())
      return fail("launch ", id, ": cites are not ascending");
    section.view = item;
    section.view.erase("cites");
    report.launches.push_back(std::move(section));
  }
  return report;
}

// ---------------------------------------------------------------- verify

ReportResult<void> verify_report(const Report& report, const NoteVerifier& verifier) {
  auto checkpoint = open_checkpoint(report.checkpoint, verifier, verifier.name());
  if (!checkpoint) {
    const auto& error = checkpoint.error();
    if (error.failure == NoteFailure::kUnknownKey) return bad_input("checkpoint: " + error.message);
    return tampered("checkpoint: " + error.message);
  }
  for (const auto& [index, entry] : report.entries) {
    const std::string where = "entry " + str(index);
    auto proof = parse_tlog_proof(entry.proof);
    if (!proof) return tampered(where + ": its proof: " + proof.error().message);
    if (proof->index != index)
      return tampered(where + ": its proof is of entry " + str(proof->index));
    if (proof->checkpoint != report.checkpoint)
      return tampered(where + ": its proof is against another checkpoint than the report's");
    if (auto ok = verify_tlog_proof(entry.proof, entry.bytes, verifier, verifier.name()); !ok)
      return tampered(where + ": " + ok.error().message +
                      " (the entry's bytes are not the ones the log holds)");
    if (!parse_entry(entry.bytes)) return tampered(where + ": is not a JSON object");
  }
  std::set<std::string> cited_hashes;
  for (const auto& [index, entry] : report.entries)
    if (auto hash = string_field(*parse_entry(entry.bytes), "envelope_sha256"))
      cited_hashes.insert(*hash);
  for (const auto& [hash, bytes] : report.blobs) {
    if (sha256_hex(bytes) != hash)
      return tampered("blob " + hash + ": its bytes do not hash to it: the blob was changed");
    if (!cited_hashes.contains(hash)) return tampered("blob " + hash + ": no cited entry cites it");
  }
  const BlobLookup lookup = [&](const std::string& hash) -> std::optional<std::string> {
    if (auto it = report.blobs.find(hash); it != report.blobs.end()) return it->second;
    return std::nullopt;
  };
  for (const auto& section : report.launches) {
    const auto id = string_field(section.view, "launch_id").value_or("");
    const std::string where = "launch " + id;
    std::vector<std::pair<uint64_t, std::string>> entries;
    for (const uint64_t index : section.cites) {
      const auto it = report.entries.find(index);
      if (it == report.entries.end())
        return tampered(where + ": cites entry " + str(index) + ", which the report does not hold");
      if (report.since) {
        const auto time = entry_time(*parse_entry(it->second.bytes));
        const bool launch_event =
            role_of(*parse_entry(it->second.bytes), id, "", lookup) == Role::kLaunch;
        if (!launch_event && (!time || *time < *report.since))
          return tampered(where + ": cites entry " + str(index) +
                          ", which is older than the report's since");
      }
      entries.emplace_back(index, it->second.bytes);
    }
    auto view = describe_launch(id, entries, lookup);
    if (!view) return tampered(where + ": " + view.error().message);
    if (const auto blob = string_field((*view)["summary"], "envelope_sha256");
        !blob || !report.blobs.contains(*blob))
      return tampered(where + ": the report does not carry its launch event's envelope blob");
    if (*view == section.view) continue;
    for (const auto& [key, value] : view->items()) {
      const auto it = section.view.find(key);
      if (it != section.view.end() && *it == value) continue;
      if (key == "summary" && it != section.view.end() && it->is_object())
        for (const auto& [field, expected] : value.items()) {
          const auto got = it->find(field);
          if (got == it->end() || *got != expected)
            return tampered(where + ": its summary says " + field + " is " +
                            (got == it->end() ? std::string("nothing") : got->dump()) +
                            ", but its entries say " + expected.dump());
        }
      return tampered(where + ": its " + key + " is not what its entries say");
    }
    return tampered(where + ": it says more than its entries do");
  }
  return {};
}

Result<std::string> render_report(const Report& report, std::string_view format) {
  const auto dump = [](const json& doc) {
    return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  };
  if (format == "json") return dump(report_to_json(report));
  if (format == "oscal") return dump(report_oscal(report));
  if (format == "html") return report_html(report);
  return fail("unknown report format \"", std::string(format.substr(0, 32)),
              "\" (json, html or oscal)");
}

Result<int64_t> parse_report_time(std::string_view text) {
  if (!text.empty() && text.size() <= 18 &&
      text.find_first_not_of("0123456789") == std::string_view::npos)
    return static_cast<int64_t>(std::stoll(std::string(text)));
  auto seconds = ingest::parse_rfc3339(text);
  if (!seconds)
    return fail("\"", std::string(text.substr(0, 64)),
                "\" is neither an RFC 3339 time nor unix seconds");
  return *seconds;
}

std::string content_uuid(std::string_view name) {
  std::string hex = sha256_hex(name).substr(0, 32);
  hex[12] = '5';
  const char variant[] = "89ab";
  hex[16] = variant[std::stoi(hex.substr(16, 1), nullptr, 16) & 3];
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

}  // namespace driftwatch::evidence
