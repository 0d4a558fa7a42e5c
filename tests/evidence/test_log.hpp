#pragma once
// A small evidence log for the evidence tests: a fixed node key, entries
// that name their index, batches of varying size.

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/crypto.hpp"
#include "evidence/log.hpp"
#include "evidence/note.hpp"

namespace driftwatch::testing {

inline const std::string kTestOrigin = "driftwatch/test-node";

inline evidence::NoteSigner test_signer() {
  auto key = Ed25519PrivateKey::from_raw(std::string(32, '\x07'));
  REQUIRE(key);
  auto signer = evidence::NoteSigner::make(kTestOrigin, *key);
  REQUIRE(signer);
  return *signer;
}

inline evidence::Log open_test_log(const std::filesystem::path& dir) {
  auto log = evidence::Log::open(dir, test_signer(), kTestOrigin);
  INFO((log ? std::string() : log.error().message));
  REQUIRE(log);
  return std::move(*log);
}

inline std::string test_entry(uint64_t i) {
  return "{\"seq\":" + std::to_string(i) + ",\"type\":\"test\"}";
}

/// Appends test entries in batches cycling through `sizes` until `total`.
inline void append_test_entries(evidence::Log& log, uint64_t total, std::vector<uint64_t> sizes) {
  for (size_t k = 0; log.size() < total; ++k) {
    const uint64_t n = std::min(sizes[k % sizes.size()], total - log.size());
    std::vector<std::string> entries;
    for (uint64_t i = log.size(); i < log.size() + n; ++i) entries.push_back(test_entry(i));
    auto appended = log.append(entries);
    INFO((appended ? std::string() : appended.error().message));
    REQUIRE(appended);
  }
}

inline std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void spit(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  REQUIRE(out);
}

}  // namespace driftwatch::testing
