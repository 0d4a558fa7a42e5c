#pragma once
// One writer thread for everything that must be durable before it is
// acknowledged (the evidence log and the accepted store), so that the event
// loop never waits on disk.
//
// Group commit: records submitted while a write is in progress queue up and
// go to the sink together, in submission order, with one fsync for the lot
// (a single fdatasync costs milliseconds; one per record would cap ingest
// near a few hundred records per second). Each record's completion is
// posted back to the io_context with the batch's result, so handlers run on
// the loop thread, in submission order, after the records are on disk or
// after the write failed (then nothing of the batch is kept: the sink undoes
// a partial write).

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

// Boost 1.74's asio uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "common/result.hpp"

namespace driftwatch {

template <class Record>
class BatchWriter {
 public:
  /// Makes `records` (one batch, in submission order) durable, or fails
  /// leaving nothing of them behind. Runs on the writer thread only; it may
  /// change the records (the evidence log numbers its entries there).
  using BatchSink = std::function<Result<void>(std::vector<Record>& records)>;
  using Done = std::function<void(const Result<void>&)>;

  BatchWriter(boost::asio::io_context& io, BatchSink sink)
      : io_(io), sink_(std::move(sink)), thread_([this] { run(); }) {}
  /// Finishes what was submitted (its completions are posted, and run if
  /// the loop runs again), then joins the thread.
  ~BatchWriter() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  BatchWriter(const BatchWriter&) = delete;
  BatchWriter& operator=(const BatchWriter&) = delete;

  /// Queues `record` for the next batch; `done` runs on the io_context once
  /// the batch holding it is durable (or failed). Call from the loop thread.
  void submit(Record record, Done done) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(Item{std::move(record), std::move(done)});
    }
    wake_.notify_one();
  }

  /// Records written and batches (fsyncs) issued so far.
  size_t records_written() const {
    std::lock_guard lock(mutex_);
    return records_written_;
  }
  size_t batches_written() const {
    std::lock_guard lock(mutex_);
    return batches_written_;
  }

 private:
  struct Item {
    Record record;
    Done done;
  };

  void run() {
    for (;;) {
      std::deque<Item> batch;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, and nothing left to write
        batch.swap(queue_);
      }
      std::vector<Record> records;
      records.reserve(batch.size());
      for (Item& item : batch) records.push_back(std::move(item.record));
      // A sink that throws (a bug) fails its batch; it never takes the
      // writer thread, and the process, down.
      Result<void> result = fail("the durable writer's sink failed");
      try {
        result = sink_(records);
      } catch (const std::exception& e) {
        result = fail("internal error while writing: ", e.what());
      }
      {
        std::lock_guard lock(mutex_);
        if (result) records_written_ += batch.size();
        ++batches_written_;
      }
      for (Item& item : batch)
        boost::asio::post(io_, [done = std::move(item.done), result] { done(result); });
    }
  }

  boost::asio::io_context& io_;
  BatchSink sink_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  size_t records_written_ = 0;
  size_t batches_written_ = 0;
  std::thread thread_;  // last: started once everything above exists
};

/// A writer of byte records (whole lines, say) to a sink that takes them
/// concatenated.
class DurableWriter : public BatchWriter<std::string> {
 public:
  /// Writes `bytes` (one or more whole records, concatenated) and makes them
  /// durable, or fails leaving nothing of them behind.
  using Sink = std::function<Result<void>(std::string_view bytes)>;

  DurableWriter(boost::asio::io_context& io, Sink sink)
      : BatchWriter(io, [sink = std::move(sink)](std::vector<std::string>& records) {
          std::string bytes;
          for (const auto& record : records) bytes += record;
          return sink(bytes);
        }) {}
};

}  // namespace driftwatch
