#pragma once
// For tests of "a FIFO named as input must not hang us": runs a call that
// should refuse the FIFO at once, and fails instead of hanging when it
// blocks. Header-only, so unit_tests can use it without test_support.

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

namespace driftwatch::testing {

/// Runs `call` on a thread and waits up to 5 s for it. A call still running
/// then is blocked in open(2) on `fifo`, waiting for a writer (the defect
/// under test): the FIFO is opened for writing, which lets that open return,
/// so the test fails instead of hanging. nullopt when it had to.
template <class Call>
std::optional<std::invoke_result_t<Call>> within_deadline(Call call,
                                                          const std::filesystem::path& fifo) {
  using namespace std::chrono_literals;
  std::packaged_task<std::invoke_result_t<Call>()> task(std::move(call));
  auto future = task.get_future();
  std::thread thread(std::move(task));
  if (future.wait_for(5s) == std::future_status::ready) {
    thread.join();
    return future.get();
  }
  for (int i = 0; i < 100 && future.wait_for(100ms) != std::future_status::ready; ++i) {
    const int writer = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (writer >= 0) ::close(writer);
  }
  if (future.wait_for(1s) == std::future_status::ready) {
    thread.join();
  } else {
    thread.detach();  // still stuck: let process exit end it
  }
  return std::nullopt;
}

}  // namespace driftwatch::testing
