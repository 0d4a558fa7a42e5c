#include "common/durable_writer.hpp"

// Boost 1.74's asio uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio/post.hpp>

namespace driftwatch {

DurableWriter::DurableWriter(boost::asio::io_context& io, Sink sink)
    : io_(io), sink_(std::move(sink)), thread_([this] { run(); }) {}

DurableWriter::~DurableWriter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void DurableWriter::submit(std::string record, Done done) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(Item{std::move(record), std::move(done)});
  }
  wake_.notify_one();
}

size_t DurableWriter::records_written() const {
  std::lock_guard lock(mutex_);
  return records_written_;
}

size_t DurableWriter::batches_written() const {
  std::lock_guard lock(mutex_);
  return batches_written_;
}

void DurableWriter::run() {
  for (;;) {
    std::deque<Item> batch;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to write
      batch.swap(queue_);
    }
    std::string bytes;
    for (const Item& item : batch) bytes += item.record;
    Result<void> result = sink_(bytes);
    {
      std::lock_guard lock(mutex_);
      if (result) records_written_ += batch.size();
      ++batches_written_;
    }
    for (Item& item : batch) {
      boost::asio::post(io_, [done = std::move(item.done), result] { done(result); });
    }
  }
}

}  // namespace driftwatch
