// `driftwatch report --format html`: one page an auditor prints. Self
// contained (inline print CSS, no scripts, no remote assets); every string
// that came from the log is escaped, since entries carry what an attacker
// chose (sandbox ids, reasons, rejected payloads).

#include <sstream>

#include "evidence/report.hpp"
#include "ingest/envelope.hpp"

namespace driftwatch::evidence {
namespace {

using nlohmann::json;

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A value of the view as text: strings as they are, null as a dash, the
// rest as JSON.
std::string text_of(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "—";
  if (value.is_boolean()) return value.get<bool>() ? "yes" : "no";
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string cell(const json& value) {
  return "<td>" + escape(text_of(value)) + "</td>";
}

json field(const json& object, const char* key) {
  if (!object.is_object()) return json();
  const auto it = object.find(key);
  return it == object.end() ? json() : *it;
}

// A table of `rows` (objects) with one column per key.
void table(std::ostringstream& out, const json& rows,
           const std::vector<std::pair<const char*, const char*>>& columns,
           std::string_view empty) {
  if (!rows.is_array() || rows.empty()) {
    out << "<p class=\"none\">" << escape(empty) << "</p>\n";
    return;
  }
  out << "<table><thead><tr>";
  for (const auto& [key, title] : columns) out << "<th>" << escape(title) << "</th>";
  out << "</tr></thead><tbody>\n";
  for (const auto& row : rows) {
    out << "<tr>";
    for (const auto& [key, title] : columns) out << cell(field(row, key));
    out << "</tr>\n";
  }
  out << "</tbody></table>\n";
}

constexpr const char* kStyle = R"(
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10pt; margin: 1.5cm; color: #000; }
h1 { font-size: 16pt; margin: 0 0 .3em 0; }
h2 { font-size: 13pt; margin: 1.2em 0 .3em 0; border-bottom: 1px solid #000; }
h3 { font-size: 11pt; margin: 1em 0 .3em 0; }
table { border-collapse: collapse; width: 100%; margin: .3em 0; table-layout: fixed; }
th, td { border: 1px solid #555; padding: 2pt 4pt; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; word-break: break-all; }
th { background: #eee; }
table.summary th { width: 28%; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 8pt; border: 1px solid #555;
      padding: 4pt; }
.drift { font-weight: bold; }
.none { font-style: italic; }
section.launch { page-break-before: always; }
section.launch:first-of-type { page-break-before: auto; }
@page { size: A4; margin: 1.5cm; }
@media print { body { margin: 0; } thead { display: table-header-group; } tr { page-break-inside: avoid; } }
)";

}  // namespace

std::string report_html(const Report& report) {
  std::ostringstream out;
  std::string title = report.launches.size() == 1
                          ? "launch " + text_of(field(report.launches[0].view, "launch_id"))
                          : std::to_string(report.launches.size()) + " launches";
  out << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      << "<title>driftwatch report: " << escape(title) << "</title>\n"
      << "<style>" << kStyle << "</style></head><body>\n"
      << "<h1>driftwatch correlation report: " << escape(title) << "</h1>\n"
      << "<p>Evidence log <b>" << escape(report.tree.origin) << "</b>, checkpoint of "
      << report.tree.size << " entries, root <code>" << escape(hash_base64(report.tree.root))
      << "</code>";
  if (report.since) out << "; entries since " << escape(ingest::format_rfc3339(*report.since));
  out << ". Verify it with <code>driftwatch verify --report</code> on the JSON form.</p>\n";

  for (const auto& section : report.launches) {
    const json& view = section.view;
    const json summary = field(view, "summary");
    const bool drift = field(summary, "drift") == json(true);
    out << "<section class=\"launch\">\n<h2>Launch " << escape(text_of(field(view, "launch_id")))
        << "</h2>\n<table class=\"summary\"><tbody>\n";
    const auto row = [&](const char* name, const json& value, bool strong = false) {
      out << "<tr><th>" << escape(name) << "</th><td" << (strong ? " class=\"drift\"" : "") << ">"
          << escape(text_of(value)) << "</td></tr>\n";
    };
    row("Launch id", field(summary, "launch_id"));
    row("Sandbox", field(summary, "sandbox_id"));
    row("Requested by", field(summary, "requested_by"));
    row("Signed by (key name)", field(summary, "signed_by"));
    row("Signing key id", field(summary, "signer_keyid"));
    row("Verdict now", field(summary, "verdict"), drift);
    row("Drift", json(drift), drift);
    const json fields = field(summary, "drifted_fields");
    row("Drifted fields", fields.is_array() && fields.empty() ? json("none") : fields, drift);
    const json controls = field(summary, "controls");
    row("Controls touched (NIST SP 800-53)",
        controls.is_array() && controls.empty() ? json("none") : controls);
    row("Declared config sha256 (signed)", field(summary, "config_sha256"));
    row("Consumed config sha256 (runtime)", field(summary, "consumed_config_sha256"));
    row("Declared projection sha256", field(summary, "declared_sha256"));
    row("Observed projection sha256", field(summary, "observed_sha256"));
    row("Launch event", "entry " + text_of(field(field(view, "launch_event"), "index")) + " at " +
                            text_of(field(field(view, "launch_event"), "time")));
    out << "</tbody></table>\n";

    out << "<h3>Timeline</h3>\n";
    table(out, field(view, "timeline"),
          {{"index", "Entry"},
           {"time", "Time"},
           {"type", "Type"},
           {"from", "From"},
           {"verdict", "Verdict"},
           {"observed_sha256", "Observed sha256"},
           {"consumed_config_sha256", "Consumed config sha256"}},
          "No observation of this launch's sandbox.");
    out << "<h3>Findings</h3>\n";
    table(out, field(view, "findings"),
          {{"index", "Entry"},
           {"time", "Time"},
           {"field", "Field"},
           {"direction", "Direction"},
           {"severity", "Severity"},
           {"declared", "Declared"},
           {"observed", "Observed"},
           {"controls", "Controls"}},
          "No findings.");
    out << "<h3>Grants</h3>\n";
    table(out, field(view, "grants"),
          {{"index", "Entry"},
           {"time", "Time"},
           {"id", "Grant"},
           {"requested_by", "Requested by"},
           {"approved_by", "Approved by"},
           {"signed_by", "Signed by"},
           {"reason", "Reason"}},
          "No grants.");
    out << "<h3>Rejected envelopes aimed at this launch</h3>\n";
    table(out, field(view, "rejections"),
          {{"index", "Entry"},
           {"time", "Time"},
           {"type", "Type"},
           {"result", "Result"},
           {"reason", "Reason"},
           {"source", "Source"}},
          "No rejected envelopes.");
    out << "<h3>Denied attempts</h3>\n";
    const json note = field(view, "denied_attempts_note");
    table(out, field(view, "denied_attempts"),
          {{"index", "Entry"},
           {"time", "Time"},
           {"kind", "Syscall"},
           {"capability", "Capability"},
           {"count", "Denied"},
           {"total", "Since watched"},
           {"pid", "Pid"},
           {"comm", "Command"}},
          note.is_string() ? note.get<std::string>() : std::string("None."));
    out << "</section>\n";
  }

  out << "<h2>Checkpoint</h2>\n<pre>" << escape(report.checkpoint) << "</pre>\n";
  out << "<h2>Cited entries</h2>\n<p>Each entry's exact bytes (JCS); its inclusion proof against "
         "the checkpoint above is in the JSON form of this report.</p>\n";
  for (const auto& [index, entry] : report.entries)
    out << "<h3>Entry " << index << "</h3>\n<pre>" << escape(entry.bytes) << "</pre>\n";
  out << "</body></html>\n";
  return out.str();
}

}  // namespace driftwatch::evidence
