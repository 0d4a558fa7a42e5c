#pragma once
// Runs the real driftwatch binary the way a user does, for integration tests.

#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/process_guard.hpp"

namespace driftwatch::testing {

inline CommandResult run_driftwatch(std::vector<std::string> args) {
  args.insert(args.begin(), DRIFTWATCH_BINARY);
  return run_command(args);
}

/// Runs driftwatch, requires `expected_exit`, and parses its stdout as one
/// JSON document.
inline nlohmann::json driftwatch_json(const std::vector<std::string>& args, int expected_exit) {
  auto result = run_driftwatch(args);
  INFO("driftwatch " << describe_command(args) << "\nstdout: " << result.out
                     << "\nstderr: " << result.err);
  REQUIRE(result.exit_code == expected_exit);
  auto doc = nlohmann::json::parse(result.out, nullptr, false);
  REQUIRE_FALSE(doc.is_discarded());
  return doc;
}

/// The findings of a diff document on `field`.
inline std::vector<nlohmann::json> findings_on(const nlohmann::json& diff,
                                               const std::string& field) {
  std::vector<nlohmann::json> out;
  for (const auto& f : diff.at("findings"))
    if (f.at("field") == field) out.push_back(f);
  return out;
}

}  // namespace driftwatch::testing
