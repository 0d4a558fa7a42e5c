// libFuzzer target: the report parser behind `driftwatch verify --report`,
// which reads whatever file an auditor was handed, and the verification
// that follows it.
//
// Input: a report document (JSON), as `verify --report` reads it.
//
// Checks: nothing crashes or throws; errors say something; a report that
// parses formats back (report_to_json) to a document that parses to the same
// report; verify_report (with a fixed key the input cannot have signed for)
// returns an error with a message, never a crash, and renders of a parsed
// report (HTML, OSCAL) do not crash either.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/crypto.hpp"
#include "evidence/note.hpp"
#include "evidence/report.hpp"
#include "fuzz_support.hpp"

namespace evidence = driftwatch::evidence;

namespace {

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("report_fuzz", what, detail);
}

const evidence::NoteVerifier& verifier() {
  static const evidence::NoteVerifier verifier = [] {
    auto key = driftwatch::Ed25519PrivateKey::from_raw(std::string(32, '\x2a'));
    if (!key) report("cannot make the fuzz key");
    auto made = evidence::NoteVerifier::make("driftwatch/fuzz", key->public_key());
    if (!made) report("cannot make the fuzz verifier");
    return *made;
  }();
  return verifier;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto parsed = evidence::parse_report(input);
  if (!parsed) {
    if (parsed.error().message.empty()) report("parse_report failed without a message");
    return 0;
  }
  const std::string again = evidence::report_to_json(*parsed).dump();
  auto reparsed = evidence::parse_report(again);
  if (!reparsed) report("a formatted report does not parse", again);
  if (evidence::report_to_json(*reparsed).dump() != again)
    report("a formatted report does not parse to the same report", again);
  auto verified = evidence::verify_report(*parsed, verifier());
  if (!verified && verified.error().message.empty())
    report("verify_report failed without a message");
  (void)evidence::report_html(*parsed);
  return 0;
}
