#pragma once
// Waiting in tests for something that happens elsewhere (a daemon's sweep, a
// container's state). A wait that times out fails the test, naming what it
// waited for and what it saw last: it never returns as if it had succeeded.
// Header-only, for unit_tests and integration_tests alike.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

#include <catch2/catch.hpp>

namespace driftwatch::testing {

namespace wait_detail {
inline std::string no_description() {
  return {};
}
}  // namespace wait_detail

/// Calls `done()` every `interval` until it is true; FAILs the test when
/// `timeout` passes first. `describe()` (optional) says what was seen last,
/// for the failure message.
template <class Done, class Describe = decltype(&wait_detail::no_description)>
void wait_until(std::string_view what, std::chrono::milliseconds timeout, Done done,
                Describe describe = &wait_detail::no_description,
                std::chrono::milliseconds interval = std::chrono::milliseconds(50)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      const std::string last = describe();
      FAIL("timed out after " << timeout.count() << " ms waiting for " << what
                              << (last.empty() ? "" : "; last seen: ") << last);
    }
    std::this_thread::sleep_for(interval);
  }
}

/// Calls `poll()` (returning std::optional<T>) every `interval` until it
/// returns a value, and returns that value; FAILs the test when `timeout`
/// passes first. `describe()` as for wait_until.
template <class Poll, class Describe = decltype(&wait_detail::no_description)>
auto wait_for_value(std::string_view what, std::chrono::milliseconds timeout, Poll poll,
                    Describe describe = &wait_detail::no_description,
                    std::chrono::milliseconds interval = std::chrono::milliseconds(50)) ->
    typename std::invoke_result_t<Poll&>::value_type {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto value = poll();
    if (value) return std::move(*value);
    if (std::chrono::steady_clock::now() >= deadline) {
      const std::string last = describe();
      FAIL("timed out after " << timeout.count() << " ms waiting for " << what
                              << (last.empty() ? "" : "; last seen: ") << last);
    }
    std::this_thread::sleep_for(interval);
  }
}

}  // namespace driftwatch::testing
