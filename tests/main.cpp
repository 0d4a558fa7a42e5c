// Catch2's main for unit_tests and integration_tests, plus the listener that
// turns a skip into the marker line CTest reads (support/skip.hpp).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <string>
#include <string_view>

#include "support/skip.hpp"

namespace {

// The older form of a skip, `WARN("skipped: " << why); return;` (and
// `WARN("skipped <what>: " …)`), still used by tests written before DW_SKIP:
// a warning whose text begins with "skipped" counts as DW_SKIP. Only the
// start of a warning is looked at, never other output.
constexpr std::string_view kLegacySkipPrefix = "skipped";

class SkipListener : public Catch::TestEventListenerBase {
 public:
  using TestEventListenerBase::TestEventListenerBase;

  void testCaseStarting(Catch::TestCaseInfo const& info) override {
    TestEventListenerBase::testCaseStarting(info);
    driftwatch::testing::current_skip_reason().reset();
  }

  bool assertionEnded(Catch::AssertionStats const& stats) override {
    const Catch::AssertionResult& result = stats.assertionResult;
    if (result.getResultType() == Catch::ResultWas::Warning) {
      const std::string message = result.getMessage();
      if (std::string_view(message).starts_with(kLegacySkipPrefix)) {
        std::string reason = message.substr(kLegacySkipPrefix.size());
        while (!reason.empty() && (reason.front() == ':' || reason.front() == ' '))
          reason.erase(0, 1);
        driftwatch::testing::note_skip(std::move(reason));
      }
    }
    return true;
  }

  void testCaseEnded(Catch::TestCaseStats const& stats) override {
    auto& reason = driftwatch::testing::current_skip_reason();
    if (reason) {
      if (stats.totals.assertions.failed > 0) {
        // CTest would let the skip expression override the failure.
        stream << "\nskip ignored: test case \"" << stats.testInfo.name
               << "\" failed before it asked to skip (" << *reason << ")\n";
      } else {
        stream << '\n' << driftwatch::testing::kSkipMarker << *reason << '\n';
      }
      stream.flush();
    }
    reason.reset();
    TestEventListenerBase::testCaseEnded(stats);
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(SkipListener)
