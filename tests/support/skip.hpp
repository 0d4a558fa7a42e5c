#pragma once
// Skipping a test that cannot run here, so that CTest reports it "Skipped",
// never "Passed" (DESIGN.md "Real components, never mocks, in tests").
//
//   if (auto why = missing_requirement({"root", "runc"})) DW_SKIP(*why);
//   DW_SKIP("needs IPv6 loopback: " << listening.error().message);
//
// DW_SKIP records the reason, shows it as a Catch warning and returns from
// the test case. When the test case ends without a failure, the listener in
// tests/main.cpp prints one line
//
//   DRIFTWATCH-TEST-SKIPPED: <reason>
//
// and tests/CMakeLists.txt gives every discovered test that marker as its
// SKIP_REGULAR_EXPRESSION. The marker is printed by the listener only, so a
// test whose output merely mentions "skipped" stays passed or failed; and a
// test that failed before it skipped is reported failed (CTest would let a
// matching skip expression override the failure).
//
// Header-only, so that unit_tests (which does not link test_support) can use
// it. For the older form `WARN("skipped: " << why); return;` see main.cpp.

#include <optional>
#include <sstream>
#include <string>
#include <utility>

#include <catch2/catch.hpp>

namespace driftwatch::testing {

/// The line prefix CTest looks for; keep in sync with tests/CMakeLists.txt.
inline constexpr const char* kSkipMarker = "DRIFTWATCH-TEST-SKIPPED: ";

/// The reason the running test case skipped, if it did (the first one given).
inline std::optional<std::string>& current_skip_reason() {
  static std::optional<std::string> reason;
  return reason;
}

/// Records that the running test case cannot run here. Prefer DW_SKIP, which
/// also returns.
inline void note_skip(std::string reason) {
  if (reason.empty()) reason = "(no reason given)";
  if (!current_skip_reason()) current_skip_reason() = std::move(reason);
}

}  // namespace driftwatch::testing

/// Skips the running test case: records `message` (stream syntax, like
/// INFO), shows it as a warning and returns from the enclosing function,
/// which must be the TEST_CASE body (or return void to it).
#define DW_SKIP(message)                                     \
  do {                                                       \
    std::ostringstream dw_skip_reason_;                      \
    dw_skip_reason_ << message;                              \
    ::driftwatch::testing::note_skip(dw_skip_reason_.str()); \
    WARN("skipped: " << dw_skip_reason_.str());              \
    return;                                                  \
  } while (false)
