// libFuzzer target: the whole Ingestor::ingest, as the journal tail and the
// POST endpoints drive it, against a trust store of generated keys (cp-1 in
// control_plane, alice in operator). A random envelope never carries a valid
// signature, so most inputs are payloads that this target signs itself: the
// checks after the signature (payload fields, config hash, the declared
// projection of the config, replay, conflicts, grants and their launch, the
// issued_at window, and restore from what was stored) see fuzzer-chosen
// input too.
//
// The input is a script, one step per line; the first byte of a line says
// what to do with the rest:
//   L  rest is a launch payload (JSON): config_sha256 is set to the hash of
//      its config, then it is signed by cp-1 as a launch event
//   l  the same, the payload signed as it is
//   G  a grant payload: config_sha256 set, signed by alice as a grant
//   g  the same, signed as it is
//   W  a launch payload (hash set) signed by alice: the wrong role
//   U  a launch payload (hash set) signed by a key nobody trusts
//   F  a launch payload with one node (picked by a hash of the line)
//      replaced by a value of each JSON type in turn, each one with its
//      hash set and signed by cp-1 (type flips, fuzz_support.hpp)
//   T  a payload (as it is) signed by cp-1 under the payload type that
//      follows it after a TAB ("application/x\t{...}")
//   R  restart: a new Ingestor, restore() of every envelope accepted so far
//      (what the daemon's evidence log holds)
//   anything else: the whole line is an envelope, ingested as it is
// The clock is fixed at 2026-11-24T22:00:00Z.
//
// Checks: every call ends in exactly one counted result with a reason; an
// accepted envelope's record is there and the same bytes again are a
// `duplicate`; a rejected one changes no record; a restart restores exactly
// what was accepted, nothing more or less.
// DRIFTWATCH_FUZZ_VERBOSE=1 in the environment prints every outcome.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/canonical_json.hpp"
#include "common/crypto.hpp"
#include "common/sha256.hpp"
#include "fuzz_support.hpp"
#include "ingest/envelope.hpp"
#include "ingest/ingestor.hpp"
#include "ingest/trust.hpp"

namespace ingest = driftwatch::ingest;
using driftwatch::Ed25519PrivateKey;
using nlohmann::json;

namespace {

constexpr int64_t kNow = 1795557600;  // 2026-11-24T22:00:00Z
constexpr size_t kMaxSteps = 16;

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("ingest_fuzz", what, detail);
}

Ed25519PrivateKey generated_key() {
  auto key = Ed25519PrivateKey::generate();
  if (!key) report("cannot generate a key", key.error().message);
  return *key;
}

struct Keys {
  Ed25519PrivateKey control_plane = generated_key();
  Ed25519PrivateKey operator_ = generated_key();
  Ed25519PrivateKey untrusted = generated_key();
  ingest::TrustStore trust;
  Keys() {
    const json text = {
        {"control_plane",
         {{{"name", "cp-1"}, {"public_key_pem", control_plane.public_key().pem()}}}},
        {"operator", {{{"name", "alice"}, {"public_key_pem", operator_.public_key().pem()}}}}};
    auto parsed = ingest::TrustStore::parse(text.dump(), "the fuzzer's trust store");
    if (!parsed) report("cannot build the trust store", parsed.error().message);
    trust = std::move(*parsed);
  }
};

const Keys& keys() {
  static const Keys k;
  return k;
}

// The payload with config_sha256 set to its config's hash, when it is an
// object with a config that canonicalises; otherwise as it is.
std::string with_config_hash(std::string_view text) {
  auto doc = driftwatch::parse_json(text, "payload");
  if (!doc || !doc->is_object() || !doc->contains("config")) return std::string(text);
  auto canonical = driftwatch::canonical_json((*doc)["config"]);
  if (!canonical) return std::string(text);
  (*doc)["config_sha256"] = driftwatch::sha256_hex(*canonical);
  return doc->dump();
}

// DRIFTWATCH_FUZZ_VERBOSE=1: print every outcome (to see what a corpus reaches).
bool verbose() {
  static const bool on = std::getenv("DRIFTWATCH_FUZZ_VERBOSE") != nullptr;
  return on;
}

uint64_t total_count(const ingest::Ingestor& ingestor) {
  uint64_t total = 0;
  for (auto kind : {ingest::EnvelopeKind::launch, ingest::EnvelopeKind::grant})
    for (auto result : ingest::kAllIngestResults) total += ingestor.count(kind, result);
  return total;
}

class Run {
 public:
  Run() { start(); }

  void step(char op, std::string_view rest) {
    const Keys& k = keys();
    switch (op) {
      case 'L':
        return send(ingest::sign_envelope(ingest::kLaunchPayloadType, with_config_hash(rest),
                                          k.control_plane));
      case 'l':
        return send(ingest::sign_envelope(ingest::kLaunchPayloadType, rest, k.control_plane));
      case 'G':
        return send(
            ingest::sign_envelope(ingest::kGrantPayloadType, with_config_hash(rest), k.operator_));
      case 'g':
        return send(ingest::sign_envelope(ingest::kGrantPayloadType, rest, k.operator_));
      case 'W':
        return send(
            ingest::sign_envelope(ingest::kLaunchPayloadType, with_config_hash(rest), k.operator_));
      case 'U':
        return send(
            ingest::sign_envelope(ingest::kLaunchPayloadType, with_config_hash(rest), k.untrusted));
      case 'F':
        // A launch payload with one node replaced by each JSON type in turn:
        // every field's type check is reached with every wrong type.
        driftwatch::fuzz::for_each_type_flip(rest, [&](const std::string& flipped) {
          send(ingest::sign_envelope(ingest::kLaunchPayloadType, with_config_hash(flipped),
                                     k.control_plane));
        });
        return;
      case 'T': {
        const size_t tab = rest.find('\t');
        const std::string_view type = rest.substr(0, tab);
        const std::string_view body = tab == rest.npos ? std::string_view() : rest.substr(tab + 1);
        return send(ingest::sign_envelope(type, body, k.control_plane));
      }
      case 'R':
        return restart();
      default:
        return;
    }
  }

  void send(const std::string& envelope) {
    const uint64_t before = total_count(*ingestor_);
    const size_t held_before = ingestor_->launches_held() + ingestor_->grants_held();
    const ingest::IngestOutcome outcome = ingestor_->ingest(envelope, std::nullopt, kNow);
    if (verbose())
      std::fprintf(stderr, "ingest_fuzz: %s: %s\n", ingest::to_string(outcome.result).c_str(),
                   outcome.reason.c_str());
    if (outcome.reason.empty()) report("an outcome without a reason", envelope);
    if (total_count(*ingestor_) != before + 1)
      report("an ingest not counted exactly once", envelope);

    if (outcome.result != ingest::IngestResult::accepted) {
      if (ingestor_->launches_held() + ingestor_->grants_held() != held_before)
        report("a rejected envelope changed what is held", envelope);
      return;
    }
    if (!outcome.kind || outcome.id.empty()) report("accepted without a kind or id", envelope);
    if (*outcome.kind == ingest::EnvelopeKind::launch) {
      const ingest::LaunchRecord* record = ingestor_->launch(outcome.id);
      if (record == nullptr) report("an accepted launch cannot be looked up", envelope);
      if (record->config_sha256.size() != 64) report("a launch without a config hash", envelope);
      accepted_launches_.insert(outcome.id);
    }
    stored_.push_back(
        ingest::StoredEnvelope{*outcome.kind, envelope, "entry " + std::to_string(stored_.size())});
    if (ingestor_->launches_held() + ingestor_->grants_held() != held_before + 1)
      report("accepted, but not held", envelope);
    const auto again = ingestor_->ingest(envelope, std::nullopt, kNow);
    if (again.result != ingest::IngestResult::duplicate)
      report("the same accepted bytes again are not a duplicate", ingest::to_string(again.result));
  }

 private:
  void start() {
    ingestor_ = std::make_unique<ingest::Ingestor>(keys().trust, ingest::IngestOptions{});
  }

  void restart() {
    start();
    const auto restored = ingestor_->restore(stored_);
    if (restored.restored != stored_.size() || !restored.skipped.empty())
      report("a restart did not restore exactly what was accepted",
             std::to_string(restored.restored) + " restored, " + std::to_string(stored_.size()) +
                 " accepted, " + std::to_string(restored.skipped.size()) + " skipped");
    for (const auto& id : accepted_launches_)
      if (ingestor_->launch(id) == nullptr) report("an accepted launch was not restored", id);
  }

  std::unique_ptr<ingest::Ingestor> ingestor_;
  std::vector<ingest::StoredEnvelope> stored_;
  std::set<std::string> accepted_launches_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view script(reinterpret_cast<const char*>(data), size);
  Run run;
  for (size_t steps = 0; !script.empty() && steps < kMaxSteps; ++steps) {
    const size_t newline = script.find('\n');
    const std::string_view line = script.substr(0, newline);
    script = newline == script.npos ? std::string_view() : script.substr(newline + 1);
    if (line.empty()) continue;
    const char op = line.front();
    if (std::string_view("LlGgWUFTR").find(op) != std::string_view::npos) {
      run.step(op, line.substr(1));
    } else {
      run.send(std::string(line));
    }
  }
  return 0;
}
