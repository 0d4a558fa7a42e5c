#pragma once
// The entries of a daemon-under-test's evidence log, for the integration
// tests that look at what it recorded: read from the entry bundles under its
// latest checkpoint, which must verify with the node's key.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "evidence/log.hpp"
#include "evidence/merkle.hpp"
#include "evidence/note.hpp"
#include "integration/daemon_harness.hpp"

namespace driftwatch::testing {

inline std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// The node's verifier key, from state_dir/node.vkey.
inline evidence::NoteVerifier verifier_of(const DaemonUnderTest& daemon) {
  std::string vkey = read_all(daemon.dir() / "state" / "node.vkey");
  while (!vkey.empty() && vkey.back() == '\n') vkey.pop_back();
  auto verifier = evidence::NoteVerifier::parse(vkey);
  REQUIRE(verifier);
  return *verifier;
}

/// Every entry of the log under the latest checkpoint, read from the bundles.
inline std::vector<std::string> entries_of(const DaemonUnderTest& daemon) {
  namespace ev = evidence;
  const std::filesystem::path dir = daemon.dir() / "state" / "evidence";
  auto checkpoint = ev::open_checkpoint(read_all(dir / "checkpoint"), verifier_of(daemon));
  REQUIRE(checkpoint);
  std::vector<std::string> entries;
  for (uint64_t bundle = 0; bundle * ev::kTileWidth < checkpoint->size; ++bundle) {
    const auto width =
        static_cast<uint32_t>(std::min<uint64_t>(ev::kTileWidth, checkpoint->size - bundle * 256));
    const std::string path = ev::tile_path(ev::Tile{ev::kEntriesLevel, bundle, width});
    const std::string bytes = read_all(dir / path);
    auto parsed = ev::parse_entry_bundle(bytes);
    INFO(path);
    REQUIRE_FALSE(parsed.problem);
    REQUIRE(parsed.entries.size() == width);
    for (auto entry : parsed.entries) entries.emplace_back(entry);
  }
  return entries;
}

inline std::vector<nlohmann::json> documents_of(const std::vector<std::string>& entries) {
  std::vector<nlohmann::json> docs;
  for (const auto& entry : entries) docs.push_back(nlohmann::json::parse(entry));
  return docs;
}

/// The log's entries as JSON documents, in order.
inline std::vector<nlohmann::json> evidence_documents(const DaemonUnderTest& daemon) {
  return documents_of(entries_of(daemon));
}

}  // namespace driftwatch::testing
