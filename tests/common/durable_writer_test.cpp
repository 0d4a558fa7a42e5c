#include "common/durable_writer.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

// Boost 1.74's asio uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <catch2/catch.hpp>

using driftwatch::DurableWriter;
using driftwatch::Result;
using namespace std::chrono_literals;

namespace {

// A sink that records every call (on the writer thread) and can be made to
// wait, sleep or fail.
class RecordingSink {
 public:
  std::chrono::milliseconds delay{0};

  DurableWriter::Sink sink() {
    return [this](std::string_view bytes) -> Result<void> { return write(bytes); };
  }

  // The bytes of every sink call so far, in order.
  std::vector<std::string> calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  std::string written() const {
    std::lock_guard lock(mutex_);
    std::string all;
    for (const auto& call : calls_) all += call;
    return all;
  }
  std::thread::id thread() const {
    std::lock_guard lock(mutex_);
    return thread_;
  }
  // Makes the calls numbered from `call` (0-based) fail.
  void fail_from(size_t call, size_t until = SIZE_MAX) {
    std::lock_guard lock(mutex_);
    fail_from_ = call;
    fail_until_ = until;
  }
  // The next call blocks until release(); returns once it has begun.
  void hold_next() {
    std::lock_guard lock(mutex_);
    hold_ = true;
  }
  bool wait_until_held(std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [this] { return held_; });
  }
  void release() {
    {
      std::lock_guard lock(mutex_);
      hold_ = false;
    }
    changed_.notify_all();
  }

 private:
  Result<void> write(std::string_view bytes) {
    std::unique_lock lock(mutex_);
    thread_ = std::this_thread::get_id();
    if (hold_) {
      held_ = true;
      changed_.notify_all();
      changed_.wait(lock, [this] { return !hold_; });
      held_ = false;
    }
    const size_t call = calls_.size();
    lock.unlock();
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    lock.lock();
    if (call >= fail_from_ && call < fail_until_) {
      calls_.emplace_back();  // a failed call leaves nothing behind
      return driftwatch::fail("No space left on device (call ", std::to_string(call), ")");
    }
    calls_.emplace_back(bytes);
    return {};
  }

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> calls_;
  std::thread::id thread_;
  size_t fail_from_ = SIZE_MAX;
  size_t fail_until_ = SIZE_MAX;
  bool hold_ = false;
  bool held_ = false;
};

struct Completion {
  size_t index;
  bool ok;
  std::string error;
  std::thread::id thread;
  bool durable_before;  // the record was in the sink when its completion ran
};

// Runs `io` on this thread until `expected` completions came in, or 10 s.
void run_until(boost::asio::io_context& io, const std::vector<Completion>& completions,
               size_t expected) {
  auto guard = boost::asio::make_work_guard(io);
  boost::asio::steady_timer poll(io);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::function<void()> check = [&] {
    if (completions.size() >= expected || std::chrono::steady_clock::now() > deadline) {
      guard.reset();
      return;
    }
    poll.expires_after(1ms);
    poll.async_wait([&](const boost::system::error_code&) { check(); });
  };
  check();
  io.run();
  io.restart();
}

std::string record(size_t i) {
  return "record " + std::to_string(i) + "\n";
}

}  // namespace

TEST_CASE("durable writer: records submitted together share one sink call per batch", "[common]") {
  boost::asio::io_context io;
  RecordingSink sink;
  sink.delay = 50ms;  // a slow fsync
  std::vector<Completion> completions;
  constexpr size_t kRecords = 100;
  {
    DurableWriter writer(io, sink.sink());
    for (size_t i = 0; i < kRecords; ++i) {
      writer.submit(record(i), [&, i](const Result<void>& result) {
        const bool durable = sink.written().find(record(i)) != std::string::npos;
        completions.push_back(Completion{i, result.has_value(),
                                         result ? std::string() : result.error().message,
                                         std::this_thread::get_id(), durable});
      });
    }
    run_until(io, completions, kRecords);
    REQUIRE(completions.size() == kRecords);
    // One sink call (one fsync) per batch, and far fewer batches than
    // records: while one call sleeps, the rest queue up for the next.
    const size_t batches = writer.batches_written();
    INFO("batches: " << batches);
    CHECK(batches < kRecords);
    CHECK(batches <= 10);
    CHECK(sink.calls().size() == batches);
    CHECK(writer.records_written() == kRecords);
  }

  // Every completion ran on the loop's thread (this one), not the writer's,
  // in submission order, after its record was written.
  CHECK(sink.thread() != std::thread::id());
  CHECK(sink.thread() != std::this_thread::get_id());
  for (size_t i = 0; i < completions.size(); ++i) {
    INFO("completion " << i);
    CHECK(completions[i].index == i);
    CHECK(completions[i].ok);
    CHECK(completions[i].thread == std::this_thread::get_id());
    CHECK(completions[i].durable_before);
  }
  // Each record written exactly once, in submission order.
  std::string expected;
  for (size_t i = 0; i < kRecords; ++i) expected += record(i);
  CHECK(sink.written() == expected);
}

TEST_CASE("durable writer: a failed sink call fails every record of its batch, and only those",
          "[common]") {
  boost::asio::io_context io;
  RecordingSink sink;
  std::vector<Completion> completions;
  const auto done = [&](size_t i) {
    return [&, i](const Result<void>& result) {
      completions.push_back(Completion{i, result.has_value(),
                                       result ? std::string() : result.error().message,
                                       std::this_thread::get_id(), false});
    };
  };
  DurableWriter writer(io, sink.sink());

  // Batch 1: record 0 alone (the sink is held inside its call while records
  // 1..5 are submitted, so they make batch 2, which fails).
  sink.hold_next();
  sink.fail_from(1, 2);
  writer.submit(record(0), done(0));
  REQUIRE(sink.wait_until_held(5s));
  for (size_t i = 1; i <= 5; ++i) writer.submit(record(i), done(i));
  sink.release();
  run_until(io, completions, 6);
  REQUIRE(completions.size() == 6);
  CHECK(writer.batches_written() == 2);
  CHECK(writer.records_written() == 1);

  CHECK(completions[0].index == 0);
  CHECK(completions[0].ok);
  for (size_t i = 1; i <= 5; ++i) {
    INFO("record " << i);
    CHECK(completions[i].index == i);
    CHECK_FALSE(completions[i].ok);
    CHECK_THAT(completions[i].error, Catch::Contains("No space left on device (call 1)"));
  }

  // The writer goes on after a failure, and does not retry the failed batch
  // on its own: the next call holds only what was submitted since.
  writer.submit(record(6), done(6));
  run_until(io, completions, 7);
  REQUIRE(completions.size() == 7);
  CHECK(completions[6].ok);
  const auto calls = sink.calls();
  REQUIRE(calls.size() == 3);
  CHECK(calls[0] == record(0));
  CHECK(calls[1].empty());  // the failed call kept nothing
  CHECK(calls[2] == record(6));
  CHECK(writer.records_written() == 2);
  CHECK(writer.batches_written() == 3);
}

TEST_CASE("durable writer: destroying it finishes what was submitted", "[common]") {
  boost::asio::io_context io;
  RecordingSink sink;
  sink.delay = 20ms;
  std::vector<Completion> completions;
  {
    DurableWriter writer(io, sink.sink());
    for (size_t i = 0; i < 5; ++i) {
      writer.submit(record(i), [&, i](const Result<void>& result) {
        completions.push_back(
            Completion{i, result.has_value(), {}, std::this_thread::get_id(), false});
      });
    }
  }  // joined here: everything submitted is written, completions are posted
  CHECK(sink.written() == record(0) + record(1) + record(2) + record(3) + record(4));
  CHECK(completions.empty());  // nothing runs until the loop does
  io.run();
  REQUIRE(completions.size() == 5);
  for (size_t i = 0; i < 5; ++i) {
    CHECK(completions[i].index == i);
    CHECK(completions[i].ok);
  }
}
