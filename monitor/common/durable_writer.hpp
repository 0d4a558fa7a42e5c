#pragma once
// One writer thread for everything that must be durable before it is
// acknowledged (the accepted store now, the evidence log next), so that the
// event loop never waits on disk.
//
// Group commit: records submitted while a write is in progress queue up and
// go to the sink together, in submission order, with one fsync for the lot
// (a single fdatasync costs milliseconds; one per record would cap ingest
// near a few hundred records per second). Each record's completion is
// posted back to the io_context with the batch's result, so handlers run on
// the loop thread, in submission order, after the bytes are on disk or
// after the write failed (then nothing of the batch is kept: the sink undoes
// a partial write).

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include <boost/asio/io_context.hpp>

#include "common/result.hpp"

namespace driftwatch {

class DurableWriter {
 public:
  /// Writes `bytes` (one or more whole records, concatenated) and makes them
  /// durable, or fails leaving nothing of them behind. Runs on the writer
  /// thread only.
  using Sink = std::function<Result<void>(std::string_view bytes)>;
  using Done = std::function<void(const Result<void>&)>;

  DurableWriter(boost::asio::io_context& io, Sink sink);
  /// Finishes what was submitted (its completions are posted, and run if
  /// the loop runs again), then joins the thread.
  ~DurableWriter();
  DurableWriter(const DurableWriter&) = delete;
  DurableWriter& operator=(const DurableWriter&) = delete;

  /// Queues `record` for the next batch; `done` runs on the io_context once
  /// the batch holding it is durable (or failed). Call from the loop thread.
  void submit(std::string record, Done done);

  /// Records written and fsyncs issued so far (for tests and benchmarks).
  size_t records_written() const;
  size_t batches_written() const;

 private:
  struct Item {
    std::string record;
    Done done;
  };
  void run();

  boost::asio::io_context& io_;
  Sink sink_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  size_t records_written_ = 0;
  size_t batches_written_ = 0;
  std::thread thread_;
};

}  // namespace driftwatch
