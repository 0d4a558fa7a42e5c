// `driftwatch report --format oscal`: the report as an OSCAL 1.0.6
// Assessment Results document (NIST's JSON schema, a copy of which is in
// tests/fixtures/oscal/).
//
//   assessment-results
//     metadata          title, last-modified (the latest cited entry's time,
//                       so the same log gives the same document), version
//     import-ap         href "#<uuid>": there is no separate assessment plan;
//                       the plan is driftwatch's method, described by a
//                       back-matter resource of this document
//     results[0]        start/end: the first and last cited entry's time;
//                       reviewed-controls: the controls drift findings
//                       evidence (projection/diff.cpp) and any cited
//       observations    one per cited entry, subjects the launch and its
//                       sandbox, relevant-evidence its entry bundle's path
//       findings        one per launch and control: not-satisfied when a
//                       drift finding cites the control, else satisfied
//     back-matter       the method, and the checkpoint (base64)
//
// uuids are content_uuid() of what they stand for, so regenerating the
// document from the same log yields the same uuids.

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "common/crypto.hpp"
#include "common/sha256.hpp"
#include "evidence/report.hpp"
#include "ingest/envelope.hpp"

namespace driftwatch::evidence {
namespace {

using nlohmann::json;

// The controls every drift finding evidences (projection/diff.cpp
// controls_for), reviewed for every launch even when nothing drifted.
const std::vector<std::string> kReviewedControls = {"ac-6", "cm-2", "cm-3", "cm-6"};

json field(const json& object, const char* key) {
  if (!object.is_object()) return json();
  const auto it = object.find(key);
  return it == object.end() ? json() : *it;
}

std::string text_of(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "none";
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

// "AC-6" or "ac-6.9" as the catalog spells it ("ac-6", "ac-6.9"); nullopt
// for anything that is not a control id.
std::optional<std::string> catalog_id(const std::string& control) {
  std::string id;
  for (const char c : control) id += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const size_t dash = id.find('-');
  if (dash != 2 || !std::isalpha(static_cast<unsigned char>(id[0])) ||
      !std::isalpha(static_cast<unsigned char>(id[1])) || id.size() == 3)
    return std::nullopt;
  bool dot = false;
  for (size_t i = 3; i < id.size(); ++i) {
    if (id[i] == '.' && !dot && i > 3 && i + 1 < id.size()) {
      dot = true;
      continue;
    }
    if (!std::isdigit(static_cast<unsigned char>(id[i]))) return std::nullopt;
  }
  return id;
}

// An RFC 3339 time as OSCAL's date-time pattern takes it, from an entry's
// time (re-formatted, so nothing odd passes through), else `fallback`.
std::string oscal_time(const json& time, const std::string& fallback) {
  if (!time.is_string()) return fallback;
  auto seconds = ingest::parse_rfc3339(time.get<std::string>());
  if (!seconds) return fallback;
  return ingest::format_rfc3339(*seconds);
}

}  // namespace

nlohmann::json report_oscal(const Report& report) {
  const std::string root = hash_base64(report.tree.root);
  const std::string scope = report.tree.origin + "@" + std::to_string(report.tree.size) + ":" +
                            root + ":" + report.launch_filter.value_or("*");

  // Times of the cited entries bound the result.
  std::vector<std::string> times;
  for (const auto& [index, entry] : report.entries) {
    json doc = json::parse(entry.bytes, nullptr, false);
    if (auto t = oscal_time(field(doc, "time"), ""); !t.empty()) times.push_back(t);
  }
  std::sort(times.begin(), times.end());
  const std::string start = times.empty() ? "1970-01-01T00:00:00Z" : times.front();
  const std::string end = times.empty() ? start : times.back();

  json observations = json::array();
  json findings = json::array();
  std::set<std::string> reviewed(kReviewedControls.begin(), kReviewedControls.end());
  std::map<uint64_t, std::string> observation_of;  // entry index -> observation uuid

  for (const auto& section : report.launches) {
    const json& view = section.view;
    const std::string launch_id = text_of(field(view, "launch_id"));
    const json summary = field(view, "summary");
    const std::string sandbox_id = text_of(field(summary, "sandbox_id"));
    const json subjects = json::array(
        {{{"subject-uuid", content_uuid("launch:" + report.tree.origin + ":" + launch_id)},
          {"type", "resource"},
          {"title", "launch " + launch_id}},
         {{"subject-uuid", content_uuid("sandbox:" + report.tree.origin + ":" + sandbox_id)},
          {"type", "component"},
          {"title", "sandbox " + sandbox_id}}});
    // What each cited entry is, by its role in the view.
    std::map<uint64_t, std::pair<std::string, std::string>> described;  // title, description
    described[field(field(view, "launch_event"), "index").get<uint64_t>()] = {
        "signed launch event", "Launch " + launch_id + " of sandbox " + sandbox_id +
                                   " requested by " + text_of(field(summary, "requested_by")) +
                                   ", signed by " + text_of(field(summary, "signed_by")) +
                                   " (key " + text_of(field(summary, "signer_keyid")) +
                                   "), config sha256 " + text_of(field(summary, "config_sha256")) +
                                   "."};
    for (const auto& t : field(view, "timeline"))
      described[field(t, "index").get<uint64_t>()] = {
          text_of(field(t, "type")) + ": " + text_of(field(t, "verdict")),
          "Sandbox " + sandbox_id + " observed " + text_of(field(t, "verdict")) +
              ", observed projection sha256 " + text_of(field(t, "observed_sha256")) +
              ", consumed config sha256 " + text_of(field(t, "consumed_config_sha256")) + "."};
    std::map<std::string, std::vector<uint64_t>> drift_by_control;
    for (const auto& f : field(view, "findings")) {
      const uint64_t index = field(f, "index").get<uint64_t>();
      described[index] = {
          "finding: " + text_of(field(f, "field")),
          "Field " + text_of(field(f, "field")) + " (" + text_of(field(f, "direction")) + ", " +
              text_of(field(f, "severity")) + "): declared " + text_of(field(f, "declared")) +
              ", observed " + text_of(field(f, "observed")) + "; controls " +
              text_of(field(f, "controls")) + "."};
      const bool drifted = field(f, "verdict") == json("drifted");
      for (const auto& c : field(f, "controls"))
        if (c.is_string())
          if (auto id = catalog_id(c.get<std::string>())) {
            reviewed.insert(*id);
            if (drifted) drift_by_control[*id].push_back(index);
          }
    }
    for (const auto& g : field(view, "grants"))
      described[field(g, "index").get<uint64_t>()] = {
          "grant " + text_of(field(g, "id")),
          "Grant requested by " + text_of(field(g, "requested_by")) + ", approved by " +
              text_of(field(g, "approved_by")) + ": " + text_of(field(g, "reason"))};
    for (const auto& r : field(view, "rejections"))
      described[field(r, "index").get<uint64_t>()] = {
          "rejected envelope: " + text_of(field(r, "result")),
          "A " + text_of(field(r, "type")) + " aimed at this launch: " +
              text_of(field(r, "result")) + ", " + text_of(field(r, "reason"))};
    for (const auto& d : field(view, "denied_attempts"))
      described[field(d, "index").get<uint64_t>()] = {
          "denied attempt", text_of(field(d, "count")) + " " + text_of(field(d, "kind")) +
                                " attempts needing " + text_of(field(d, "capability")) +
                                " denied by the kernel (one by pid " + text_of(field(d, "pid")) +
                                ", " + text_of(field(d, "comm")) + ")"};

    std::vector<std::string> launch_observations;
    for (const auto& [index, what] : described) {
      const auto entry = report.entries.find(index);
      if (entry == report.entries.end()) continue;
      const std::string uuid =
          content_uuid("observation:" + launch_id + ":" + std::to_string(index) + ":" +
                       sha256_hex(entry->second.bytes));
      observation_of[index] = uuid;
      launch_observations.push_back(uuid);
      json doc = json::parse(entry->second.bytes, nullptr, false);
      const uint64_t bundle = index / kTileWidth;
      const uint32_t width = static_cast<uint32_t>(
          std::min<uint64_t>(kTileWidth, report.tree.size - bundle * kTileWidth));
      observations.push_back(
          {{"uuid", uuid},
           {"title", "entry " + std::to_string(index) + ", " + what.first},
           {"description", what.second},
           {"methods",
            json::array(
                {index == field(field(view, "launch_event"), "index") ? "EXAMINE" : "TEST"})},
           {"subjects", subjects},
           {"relevant-evidence",
            json::array(
                {{{"href", tile_path(Tile{kEntriesLevel, bundle, width})},
                  {"description", "Entry " + std::to_string(index) + " of the evidence log " +
                                      report.tree.origin +
                                      " (entry bundle at this path of "
                                      "the log; sha256 of the entry " +
                                      sha256_hex(entry->second.bytes) +
                                      "), proved against the checkpoint in back-matter."}}})},
           {"collected", oscal_time(field(doc, "time"), start)}});
    }

    std::set<std::string> controls(kReviewedControls.begin(), kReviewedControls.end());
    for (const auto& [id, indexes] : drift_by_control) controls.insert(id);
    for (const auto& control : controls) {
      const auto drift = drift_by_control.find(control);
      const bool satisfied = drift == drift_by_control.end();
      json related = json::array();
      if (satisfied) {
        for (const auto& uuid : launch_observations)
          related.push_back({{"observation-uuid", uuid}});
      } else {
        for (const uint64_t index : drift->second)
          related.push_back({{"observation-uuid", observation_of[index]}});
      }
      json finding{
          {"uuid", content_uuid("finding:" + scope + ":" + launch_id + ":" + control)},
          {"title", control + " for launch " + launch_id + ": " +
                        (satisfied ? "satisfied" : "not satisfied")},
          {"description",
           satisfied ? "No drift of sandbox " + sandbox_id + " from its signed launch event " +
                           "evidences against " + control + " in the cited entries."
                     : "Sandbox " + sandbox_id + " drifted from its signed launch event: " +
                           text_of(field(summary, "drifted_fields")) + "."},
          {"target",
           {{"type", "objective-id"},
            {"target-id", control + "_obj"},
            {"status", {{"state", satisfied ? "satisfied" : "not-satisfied"}}}}}};
      if (!related.empty()) finding["related-observations"] = related;
      findings.push_back(std::move(finding));
    }
  }

  json include = json::array();
  for (const auto& control : reviewed) include.push_back({{"control-id", control}});
  const std::string method_uuid = content_uuid("method:driftwatch-report@v1");
  json result{{"uuid", content_uuid("result:" + scope)},
              {"title", "driftwatch correlation of signed launch events with observed sandboxes"},
              {"description", "What the evidence log " + report.tree.origin + " (checkpoint of " +
                                  std::to_string(report.tree.size) + " entries, root " + root +
                                  ") says about " + std::to_string(report.launches.size()) +
                                  " launch(es): each observation is one cited log entry."},
              {"start", start},
              {"end", end},
              {"reviewed-controls",
               {{"control-selections", json::array({{{"include-controls", include}}})}}}};
  if (!observations.empty()) result["observations"] = observations;
  if (!findings.empty()) result["findings"] = findings;

  return json{
      {"assessment-results",
       {{"uuid", content_uuid("assessment-results:" + scope)},
        {"metadata",
         {{"title",
           "driftwatch report: " + (report.launch_filter ? "launch " + *report.launch_filter
                                                         : report.tree.origin + ", every launch")},
          {"last-modified", end},
          {"version", std::string(kReportFormat) + " tree " + std::to_string(report.tree.size)},
          {"oscal-version", "1.0.6"}}},
        {"import-ap",
         {{"href", "#" + method_uuid},
          {"remarks",
           "There is no separate assessment plan: the plan is driftwatch's continuous "
           "method, the back-matter resource this refers to."}}},
        {"results", json::array({result})},
        {"back-matter",
         {{"resources",
           json::array(
               {{{"uuid", method_uuid},
                 {"title", "driftwatch continuous assessment"},
                 {"description",
                  "driftwatch compares each sandbox's observed security configuration with the "
                  "configuration of its signed launch event and grants, and logs launches, "
                  "verdicts and findings to a C2SP tlog-tiles transparency log."}},
                {{"uuid", content_uuid("checkpoint:" + report.checkpoint)},
                 {"title", "checkpoint of " + report.tree.origin},
                 {"description",
                  "The signed checkpoint (C2SP tlog-checkpoint) every cited entry "
                  "is proved against."},
                 {"base64",
                  {{"filename", "checkpoint"},
                   {"media-type", "text/plain"},
                   {"value", base64_encode(report.checkpoint)}}}}})}}}}}};
}

}  // namespace driftwatch::evidence
