// The evidence log under load, on a real disk (bench/evidence.sh runs it):
//
//   evidence_bench append --dir DIR [--producers 1,4,16,64] [--seconds S]
//     Durable appends with concurrent producers: N threads, each submitting
//     one entry at a time through a BatchWriter into Log::append (the
//     daemon's write path: blobs, seal, one append per batch) and waiting for
//     its durable callback before the next, as an HTTP client waits for its
//     202. Two kinds of entry: a heartbeat `observation` (~400 bytes) and a
//     `launch_accepted` citing its ~2 KiB signed envelope as a blob. Next to
//     it, on the same disk, one fdatasync per entry (write + fdatasync of
//     the encoded entry to one file). Prints Markdown.
//
//   evidence_bench flush --dir DIR [--batches N]
//     What one batch's flush costs, two ways, on the files a batch of 64
//     entries writes (its bundle and three partial hash tiles, staged and
//     renamed into place as Log::write_file does; with 64 blobs for
//     launches): one syncfs(2) of the file system (what Log::flush does),
//     against fdatasync of each file before its rename and fsync of each
//     directory that got a new name. Batches interleaved, medians.
//
//   evidence_bench generate --state-dir DIR --node-name NAME --entries N
//     Writes a log of N realistic entries into DIR/evidence, signed with
//     DIR/node.key (made when missing, as the daemon does), origin
//     driftwatch/NAME: heartbeats, with a launch_accepted and its envelope
//     blob every 50 entries, in batches of 4,096, a checkpoint every 16,384
//     entries and at the end. Prints the verifier key.
//
// DIR must be on the disk the state dir would be on (/run and often /tmp are
// tmpfs, where a flush costs nothing).

// Boost 1.74's asio uses std::exchange without including <utility>.
#include <utility>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "app/keys.hpp"
#include "common/canonical_json.hpp"
#include "common/crypto.hpp"
#include "common/durable_writer.hpp"
#include "common/posix.hpp"
#include "common/sha256.hpp"
#include "evidence/entries.hpp"
#include "evidence/log.hpp"
#include "ingest/envelope.hpp"

using namespace driftwatch;
using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kStartTime = 1'790'000'000;  // 2026-09-21, the entries' first "time"

std::string hex64(uint64_t n, char tag) {
  std::string hex = sha256_hex(std::string(1, tag) + std::to_string(n));
  return hex;
}

// A heartbeat observation of one runc sandbox with four members: ~400 bytes
// once sealed.
evidence::Pending observation(uint64_t n, int64_t now) {
  correlate::SandboxStatus status;
  status.sandbox_id = "ci-runner-" + std::to_string(n % 500);
  status.runtime = "runc";
  status.launch_id = "L-2026-" + std::to_string(n % 500);
  status.verdict = "attested";
  status.declared_sha256 = hex64(n % 500, 'd');
  status.observed_sha256 = hex64(n % 500, 'd');
  status.consumed_config_sha256 = hex64(n % 500, 'c');
  status.members = {4101, 4102, 4103, 4104};
  status.last_observed = now;
  return evidence::heartbeat(now, status);
}

// A launch event as the control plane signs it: an OCI config padded with
// mounts and environment to about 2 KiB of envelope.
std::string launch_envelope(const Ed25519PrivateKey& key, uint64_t n, int64_t now) {
  json env = json::array();
  for (int i = 0; i < 24; ++i)
    env.push_back("CI_VAR_" + std::to_string(i) + "=" + hex64(n * 16 + i, 'e').substr(0, 24));
  const json config = {
      {"ociVersion", "1.0.2"},
      {"process",
       {{"args", {"/bin/sh", "-c", "make test"}}, {"env", env}, {"noNewPrivileges", true}}},
      {"root", {{"path", "rootfs"}, {"readonly", true}}},
      {"mounts", {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}}}}};
  const json payload = {{"launch_id", "L-bench-" + std::to_string(n)},
                        {"sandbox_id", "ci-runner-" + std::to_string(n)},
                        {"runtime", "runc"},
                        {"issued_at", ingest::format_rfc3339(now)},
                        {"requested_by", "oidc:ci@example.org"},
                        {"config", config},
                        {"config_sha256", sha256_hex(*canonical_json(config))}};
  return ingest::sign_envelope(ingest::kLaunchPayloadType, *canonical_json(payload), key);
}

evidence::Pending launch_accepted(const Ed25519PrivateKey& key, uint64_t n, int64_t now) {
  ingest::PendingAccept accept;
  accept.kind = ingest::EnvelopeKind::launch;
  accept.id = "L-bench-" + std::to_string(n);
  accept.launch.launch_id = accept.id;
  accept.launch.sandbox_id = "ci-runner-" + std::to_string(n);
  accept.launch.runtime = "runc";
  accept.launch.issued_at = ingest::format_rfc3339(now);
  accept.launch.requested_by = "oidc:ci@example.org";
  accept.launch.config_sha256 = hex64(n, 'c');
  accept.launch.signed_by = "cp-1";
  accept.launch.signer_keyid = hex64(1, 'k').substr(0, 16);
  return evidence::accepted(now, accept, launch_envelope(key, n, now), "http");
}

// The daemon's batch sink (app/daemon.cpp write_batch) without the accepted
// store and the jobs: blobs, then the entries numbered by their index, one
// append.
Result<void> write_batch(evidence::Log& log, std::vector<evidence::Pending>& records) {
  std::vector<std::string> sealed;
  for (auto& pending : records) {
    for (const auto& blob : pending.blobs)
      if (auto stored = log.put_blob(blob); !stored) return std::unexpected(stored.error());
    DW_TRY(bytes, evidence::seal(std::move(pending.entry), log.size() + sealed.size()));
    sealed.push_back(std::move(bytes));
  }
  if (auto appended = log.append(sealed); !appended) return std::unexpected(appended.error());
  return {};
}

Result<evidence::NoteSigner> bench_signer() {
  DW_TRY(key, Ed25519PrivateKey::generate());
  return evidence::NoteSigner::make("driftwatch/bench-node", std::move(key));
}

double percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t at = std::min(values.size() - 1, static_cast<size_t>(p * values.size()));
  return values[at];
}

struct Run {
  size_t entries = 0;
  double seconds = 0;
  size_t batches = 0;
  std::vector<double> latency_ms;
  size_t entry_bytes = 0;  // of the first entry, sealed
};

// `producers` threads for `seconds`, each taking the next record of `pool`
// (a thread takes no record twice), submitting it on the loop and waiting
// for its completion.
Result<Run> concurrent_appends(const fs::path& dir, int producers, double seconds,
                               const std::vector<evidence::Pending>& pool) {
  fs::remove_all(dir);
  fs::create_directories(dir.parent_path());
  DW_TRY(signer, bench_signer());
  DW_TRY(log, evidence::Log::open(dir, std::move(signer), "driftwatch/bench-node"));
  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  std::thread loop([&io] { io.run(); });
  Run run;
  {
    auto sealed = evidence::seal(pool.front().entry, 0);
    run.entry_bytes = sealed ? sealed->size() : 0;
  }
  std::atomic<bool> failed{false};
  std::string failure;
  {
    BatchWriter<evidence::Pending> writer(
        io, [&log](std::vector<evidence::Pending>& records) { return write_batch(log, records); });
    std::atomic<size_t> next{0};
    std::mutex latencies_mutex;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration<double>(seconds);
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
      threads.emplace_back([&] {
        std::vector<double> mine;
        while (Clock::now() < deadline && !failed) {
          const size_t i = next.fetch_add(1);
          if (i >= pool.size()) break;
          evidence::Pending record = pool[i];
          std::promise<Clock::time_point> durable;
          auto future = durable.get_future();
          const auto submitted = Clock::now();
          boost::asio::post(io, [&, record = std::move(record)]() mutable {
            writer.submit(std::move(record), [&](const Result<void>& result) {
              if (!result && !failed.exchange(true)) failure = result.error().message;
              durable.set_value(Clock::now());
            });
          });
          const auto done = future.get();
          mine.push_back(std::chrono::duration<double, std::milli>(done - submitted).count());
        }
        std::lock_guard lock(latencies_mutex);
        run.latency_ms.insert(run.latency_ms.end(), mine.begin(), mine.end());
      });
    for (auto& t : threads) t.join();
    run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    run.batches = writer.batches_written();
  }
  guard.reset();
  loop.join();
  if (failed) return fail("append failed: ", failure);
  run.entries = log.size();
  if (run.entries != run.latency_ms.size())
    return fail("the log holds ", std::to_string(run.entries), " entries, ",
                std::to_string(run.latency_ms.size()), " were acknowledged");
  log.wait_for_janitor();  // it deletes partials in there
  fs::remove_all(dir);
  return run;
}

// The baseline: each entry appended to one file and fdatasync'ed before the
// next, by one thread.
Result<Run> one_fdatasync_each(const fs::path& dir, double seconds,
                               const std::vector<evidence::Pending>& pool) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path path = dir / "entries";
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd) return fail("cannot create ", path.string(), ": ", describe_errno(errno));
  Run run;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  for (size_t i = 0; i < pool.size() && Clock::now() < deadline; ++i) {
    const auto t0 = Clock::now();
    DW_TRY(bytes, evidence::seal(pool[i].entry, i));
    if (auto ok = write_all(fd.get(), evidence::encode_bundle_entry(bytes)); !ok)
      return std::unexpected(ok.error());
    if (::fdatasync(fd.get()) != 0) return fail("fdatasync: ", describe_errno(errno));
    run.latency_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    ++run.entries;
    ++run.batches;
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  fs::remove_all(dir);
  return run;
}

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoi(item));
  return out;
}

void print_row(const std::string& what, const Run& run) {
  std::vector<double> latencies = run.latency_ms;
  std::printf("| %s | %zu | %.0f | %.1f | %.2f | %.2f |\n", what.c_str(), run.entries,
              run.entries / run.seconds, static_cast<double>(run.entries) / run.batches,
              percentile(latencies, 0.50), percentile(latencies, 0.99));
}

int cmd_append(const fs::path& dir, const std::vector<int>& producers, double seconds) {
  auto key = Ed25519PrivateKey::generate();
  if (!key) return 2;
  // Enough records that no run runs out: 40,000 entries/s for `seconds`.
  const size_t pool_size = static_cast<size_t>(40'000 * seconds) + 1000;
  std::vector<evidence::Pending> observations, launches;
  for (size_t i = 0; i < pool_size; ++i) {
    observations.push_back(observation(i, kStartTime + static_cast<int64_t>(i / 100)));
    launches.push_back(launch_accepted(*key, i, kStartTime + static_cast<int64_t>(i / 100)));
  }
  const size_t envelope_bytes = launches.front().blobs.front().size();
  std::printf(
      "| producers | entry | entries | entries/s | entries per batch | "
      "latency to durable p50, ms | p99, ms |\n");
  std::printf("| ---: | --- | ---: | ---: | ---: | ---: | ---: |\n");
  double best = 0;
  for (const auto* kind : {"observation", "launch_accepted"}) {
    const bool launch = std::strcmp(kind, "launch_accepted") == 0;
    const auto& pool = launch ? launches : observations;
    for (const int n : producers) {
      auto run = concurrent_appends(dir / ("log-" + std::to_string(n)), n, seconds, pool);
      if (!run) {
        std::cerr << "evidence_bench: " << run.error().message << "\n";
        return 1;
      }
      std::ostringstream what;
      what << n << " | `" << kind << "` (" << run->entry_bytes << " B"
           << (launch ? " + " + std::to_string(envelope_bytes) + " B blob" : std::string()) << ")";
      print_row(what.str(), *run);
      if (!launch) best = std::max(best, run->entries / run->seconds);
      std::fflush(stdout);
    }
  }
  auto baseline = one_fdatasync_each(dir / "baseline", seconds, observations);
  if (!baseline) {
    std::cerr << "evidence_bench: " << baseline.error().message << "\n";
    return 1;
  }
  print_row("1 | `observation`, write + fdatasync each, one file (baseline)", *baseline);
  std::printf("\nbest observation rate / one fdatasync each: %.0fx\n",
              best / (baseline->entries / baseline->seconds));
  return 0;
}

// Writes `bytes` to a staging file and renames it to `target`; the fd is
// fdatasync'ed first when `sync_each`.
Result<void> stage_and_rename(const fs::path& staging, const fs::path& target,
                              const std::string& bytes, bool sync_each) {
  Fd fd(::open(staging.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return fail("cannot create ", staging.string(), ": ", describe_errno(errno));
  if (auto ok = write_all(fd.get(), bytes); !ok) return ok;
  if (sync_each && ::fdatasync(fd.get()) != 0) return fail("fdatasync: ", describe_errno(errno));
  fd = Fd();
  if (::rename(staging.c_str(), target.c_str()) != 0)
    return fail("rename to ", target.string(), ": ", describe_errno(errno));
  return {};
}

Result<void> fsync_path(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0)
    return fail("cannot fsync ", path.string(), ": ", describe_errno(errno));
  return {};
}

int cmd_flush(const fs::path& dir, int batches) {
  fs::remove_all(dir);
  for (const char* sub : {".staging", "tile/entries/x001/234.p", "tile/0/x001/234.p",
                          "tile/1/004.p", "tile/2/000.p", "blob"})
    fs::create_directories(dir / sub);
  Fd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  const std::string entry(400, 'e'), blob(2048, 'b');
  uint64_t counter = 0;
  // One batch: the four files of 64 entries at width `w`, and 64 blobs.
  const auto batch = [&](bool sync_each, bool blobs, int w) -> Result<double> {
    const auto t0 = Clock::now();
    std::vector<std::pair<fs::path, std::string>> files;
    if (blobs)
      for (int i = 0; i < 64; ++i) files.emplace_back(dir / "blob" / hex64(counter + i, 'b'), blob);
    std::string bundle;
    for (int i = 0; i < w; ++i) bundle += evidence::encode_bundle_entry(entry);
    files.emplace_back(dir / "tile/entries/x001/234.p" / std::to_string(w), bundle);
    files.emplace_back(dir / "tile/0/x001/234.p" / std::to_string(w), std::string(32 * w, 'h'));
    files.emplace_back(dir / "tile/1/004.p" / std::to_string(w), std::string(32 * 17, 'h'));
    files.emplace_back(dir / "tile/2/000.p" / std::to_string(w), std::string(32 * 4, 'h'));
    std::vector<fs::path> dirs;
    for (auto& [target, bytes] : files) {
      const fs::path staging = dir / ".staging" / std::to_string(++counter);
      if (auto ok = stage_and_rename(staging, target, bytes, sync_each); !ok)
        return std::unexpected(ok.error());
      if (std::find(dirs.begin(), dirs.end(), target.parent_path()) == dirs.end())
        dirs.push_back(target.parent_path());
    }
    if (sync_each) {
      for (const auto& d : dirs)
        if (auto ok = fsync_path(d); !ok) return std::unexpected(ok.error());
    } else if (::syncfs(root.get()) != 0) {
      return fail("syncfs: ", describe_errno(errno));
    }
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  std::printf(
      "| a batch of 64 entries | one syncfs, ms (median, p90) | fdatasync each file + "
      "fsync each directory, ms (median, p90) |\n| --- | ---: | ---: |\n");
  for (const bool blobs : {false, true}) {
    std::vector<double> whole, each;
    for (int b = 0; b < batches; ++b) {
      const int w = 64 + b % 191;  // new partial names, as the log's right edge moves
      auto a = batch(false, blobs, w);
      auto c = batch(true, blobs, w);
      if (!a || !c) {
        std::cerr << "evidence_bench: " << (a ? c.error() : a.error()).message << "\n";
        return 1;
      }
      whole.push_back(*a);
      each.push_back(*c);
    }
    std::printf("| %s | %.2f (%.2f) | %.2f (%.2f) |\n",
                blobs ? "launch_accepted: 4 log files + 64 blobs" : "observation: 4 log files",
                percentile(whole, 0.5), percentile(whole, 0.9), percentile(each, 0.5),
                percentile(each, 0.9));
  }
  fs::remove_all(dir);
  return 0;
}

int cmd_generate(const fs::path& state_dir, const std::string& node_name, uint64_t total) {
  const std::string origin = "driftwatch/" + node_name;
  fs::create_directories(state_dir);
  auto signer = app::load_or_create_node_key(state_dir, origin);
  if (!signer) {
    std::cerr << "evidence_bench: " << signer.error().message << "\n";
    return 1;
  }
  const std::string vkey = signer->vkey();
  auto log = evidence::Log::open(state_dir / "evidence", std::move(*signer), origin);
  if (!log) {
    std::cerr << "evidence_bench: " << log.error().message << "\n";
    return 1;
  }
  auto key = Ed25519PrivateKey::generate();
  if (!key) return 2;
  constexpr uint64_t kBatch = 4096, kCheckpointEvery = 16384;
  const auto start = Clock::now();
  uint64_t next_checkpoint = (log->size() / kCheckpointEvery + 1) * kCheckpointEvery;
  while (log->size() < total) {
    std::vector<evidence::Pending> batch;
    for (uint64_t i = log->size(); i < std::min(total, log->size() + kBatch); ++i) {
      const int64_t now = kStartTime + static_cast<int64_t>(i / 100);
      batch.push_back(i % 50 == 49 ? launch_accepted(*key, i, now) : observation(i, now));
    }
    if (auto ok = write_batch(*log, batch); !ok) {
      std::cerr << "evidence_bench: " << ok.error().message << "\n";
      return 1;
    }
    if (log->size() >= next_checkpoint || log->size() == total) {
      next_checkpoint += kCheckpointEvery;
      if (auto note = log->checkpoint(); !note) {
        std::cerr << "evidence_bench: " << note.error().message << "\n";
        return 1;
      }
    }
  }
  log->wait_for_janitor();
  std::cerr << "evidence_bench: wrote " << log->size() << " entries in "
            << std::chrono::duration<double>(Clock::now() - start).count() << " s\n";
  std::cout << vkey << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: evidence_bench append --dir DIR [--producers 1,4,16,64] [--seconds S]\n"
                 "       evidence_bench flush --dir DIR [--batches N]\n"
                 "       evidence_bench generate --state-dir DIR --node-name NAME --entries N\n";
    return 2;
  }
  const std::string command = argv[1];
  fs::path dir = "/var/tmp/driftwatch-evidence-bench-" + std::to_string(getpid());
  fs::path state_dir;
  std::string node_name = "bench-node";
  std::vector<int> producers{1, 4, 16, 64, 256};
  double seconds = 2;
  uint64_t entries = 1'000'000;
  int batches = 100;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--dir") dir = value;
    if (flag == "--producers") producers = parse_list(value);
    if (flag == "--seconds") seconds = std::stod(value);
    if (flag == "--state-dir") state_dir = value;
    if (flag == "--node-name") node_name = value;
    if (flag == "--entries") entries = std::stoull(value);
    if (flag == "--batches") batches = std::stoi(value);
  }
  if (command == "append") return cmd_append(dir, producers, seconds);
  if (command == "flush") return cmd_flush(dir, batches);
  if (command == "generate" && !state_dir.empty())
    return cmd_generate(state_dir, node_name, entries);
  std::cerr << "evidence_bench: unknown command or missing --state-dir\n";
  return 2;
}
