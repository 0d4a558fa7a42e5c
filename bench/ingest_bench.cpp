// How fast signed launch events become durable: the daemon's path (verify on
// the loop, then the writer thread's group commit into the evidence log: one
// flush for every envelope queued meanwhile, its `launch_accepted` entry and
// envelope blob) against one flush per envelope (each appended on its own).
// Both on the same disk, in the same run, with the same pre-signed
// envelopes; the state directories are removed at the end.
//
//   build/bench/ingest_bench [--events N] [--dir DIR] [--rounds R]
//
// DIR must be on the disk the state dir would be on (default /var/tmp; /run
// and often /tmp are tmpfs, where an fsync costs nothing).

// Boost 1.74's asio uses std::exchange without including <utility>.
#include <utility>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "common/canonical_json.hpp"
#include "common/crypto.hpp"
#include "common/durable_writer.hpp"
#include "common/sha256.hpp"
#include "evidence/entries.hpp"
#include "evidence/log.hpp"
#include "ingest/ingestor.hpp"

using namespace driftwatch;
using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<std::string> signed_launches(const Ed25519PrivateKey& key, int count,
                                         const std::string& prefix) {
  const json config = {{"ociVersion", "1.0.2"},
                       {"process", {{"args", {"sleep", "1000"}}, {"noNewPrivileges", true}}},
                       {"root", {{"path", "rootfs"}, {"readonly", true}}}};
  const std::string config_sha256 = sha256_hex(*canonical_json(config));
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    const json payload = {{"launch_id", prefix + std::to_string(i)},
                          {"sandbox_id", "bench-" + std::to_string(i)},
                          {"runtime", "runc"},
                          {"issued_at", ingest::format_rfc3339(unix_now())},
                          {"requested_by", "oidc:bench@example.org"},
                          {"config", config},
                          {"config_sha256", config_sha256}};
    out.push_back(ingest::sign_envelope(ingest::kLaunchPayloadType, *canonical_json(payload), key));
  }
  return out;
}

// One accepted envelope as the daemon stores it: the blob, then the entry.
struct Accepted {
  std::string envelope;
  evidence::Pending pending;
};

Result<void> store(evidence::Log& log, std::vector<Accepted>& batch) {
  std::vector<std::string> sealed;
  for (auto& a : batch) {
    for (const auto& blob : a.pending.blobs)
      if (auto put = log.put_blob(blob); !put) return std::unexpected(put.error());
    auto bytes = evidence::seal(std::move(a.pending.entry), log.size() + sealed.size());
    if (!bytes) return std::unexpected(bytes.error());
    sealed.push_back(std::move(*bytes));
  }
  if (auto appended = log.append(sealed); !appended) return std::unexpected(appended.error());
  return {};
}

struct Run {
  double seconds = 0;
  size_t accepted = 0;
  size_t fsyncs = 0;
};

Run one_fsync_each(ingest::Ingestor& ingestor, evidence::Log& log,
                   const std::vector<std::string>& envelopes) {
  Run run;
  const auto start = Clock::now();
  for (const auto& envelope : envelopes) {
    auto begun = ingestor.begin(envelope, ingest::EnvelopeKind::launch, unix_now());
    if (std::holds_alternative<ingest::IngestOutcome>(begun)) continue;
    auto& pending = std::get<ingest::PendingAccept>(begun);
    std::vector<Accepted> one;
    one.push_back({envelope, evidence::accepted(unix_now(), pending, envelope, "bench")});
    const auto stored = store(log, one);
    auto outcome = ingestor.finish(std::move(pending), stored);
    run.accepted += outcome.result == ingest::IngestResult::accepted;
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  run.fsyncs = envelopes.size();
  return run;
}

// As the daemon does with concurrent POSTs: every envelope verified on the
// loop as it arrives, its entry handed to the writer thread.
Run group_commit(ingest::Ingestor& ingestor, evidence::Log& log,
                 const std::vector<std::string>& envelopes) {
  Run run;
  boost::asio::io_context io;
  // The completions come from the writer thread: keep run_one() waiting.
  auto guard = boost::asio::make_work_guard(io);
  auto writer = std::make_unique<BatchWriter<Accepted>>(
      io, [&log](std::vector<Accepted>& batch) { return store(log, batch); });
  const auto start = Clock::now();
  size_t finished = 0;
  for (const auto& envelope : envelopes) {
    auto begun = ingestor.begin(envelope, ingest::EnvelopeKind::launch, unix_now());
    if (std::holds_alternative<ingest::IngestOutcome>(begun)) {
      ++finished;
      continue;
    }
    auto pending =
        std::make_shared<ingest::PendingAccept>(std::move(std::get<ingest::PendingAccept>(begun)));
    Accepted accepted{envelope, evidence::accepted(unix_now(), *pending, envelope, "bench")};
    writer->submit(std::move(accepted), [&, pending](const Result<void>& stored) {
      auto outcome = ingestor.finish(std::move(*pending), stored);
      run.accepted += outcome.result == ingest::IngestResult::accepted;
      ++finished;
    });
  }
  while (finished < envelopes.size()) io.run_one();
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  run.fsyncs = writer->batches_written();
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  int events = 2000, rounds = 5;
  fs::path dir = "/var/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--events")) events = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
  }
  auto key = Ed25519PrivateKey::generate();
  if (!key) return 2;
  const std::string trust_text =
      json{{"control_plane", {{{"name", "cp-bench"}, {"public_key_pem", key->public_key().pem()}}}}}
          .dump();
  std::vector<double> sync_rate, group_rate, group_fsyncs;
  for (int round = 0; round < rounds; ++round) {
    // Interleaved, each on a fresh state dir, the same kind of envelopes.
    for (const bool grouped : {false, true}) {
      const fs::path state = dir / ("driftwatch-ingest-bench-" + std::to_string(getpid()) + "-" +
                                    std::to_string(round) + (grouped ? "-g" : "-s"));
      fs::remove_all(state);
      fs::create_directories(state);
      auto trust = ingest::TrustStore::parse(trust_text, "bench trust");
      if (!trust) return 2;
      ingest::Ingestor ingestor(std::move(*trust), {});
      auto node_key = Ed25519PrivateKey::generate();
      if (!node_key) return 2;
      auto signer = evidence::NoteSigner::make("driftwatch/bench", std::move(*node_key));
      if (!signer) return 2;
      auto log = evidence::Log::open(state / "evidence", std::move(*signer), "driftwatch/bench");
      if (!log) {
        std::cerr << "ingest_bench: " << log.error().message << "\n";
        return 1;
      }
      const auto envelopes = signed_launches(*key, events, grouped ? "L-g-" : "L-s-");
      const Run run = grouped ? group_commit(ingestor, *log, envelopes)
                              : one_fsync_each(ingestor, *log, envelopes);
      fs::remove_all(state);
      if (run.accepted != envelopes.size()) {
        std::cerr << "ingest_bench: only " << run.accepted << " of " << envelopes.size()
                  << " accepted\n";
        return 1;
      }
      (grouped ? group_rate : sync_rate).push_back(run.accepted / run.seconds);
      if (grouped) group_fsyncs.push_back(static_cast<double>(run.fsyncs));
    }
  }
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("| path | accepted envelopes/s, median of %d rounds (min-max) | fsyncs per %d |\n",
              rounds, events);
  std::printf("| --- | ---: | ---: |\n");
  std::printf("| one flush per envelope (each appended alone) | %.0f (%.0f-%.0f) | %d |\n",
              median(sync_rate), *std::min_element(sync_rate.begin(), sync_rate.end()),
              *std::max_element(sync_rate.begin(), sync_rate.end()), events);
  std::printf("| the daemon's group commit (`BatchWriter`) | %.0f (%.0f-%.0f) | %.0f |\n",
              median(group_rate), *std::min_element(group_rate.begin(), group_rate.end()),
              *std::max_element(group_rate.begin(), group_rate.end()), median(group_fsyncs));
  std::printf("\ngroup commit / one fsync each: %.1fx\n", median(group_rate) / median(sync_rate));
  return 0;
}
