#pragma once
// Shared by the fuzz targets: reporting a broken property as a crash, a
// scratch directory for targets that go through the file system, and type
// flips of JSON inputs.

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

namespace driftwatch::fuzz {

/// A property does not hold: say which, with the input or detail, and abort
/// so that libFuzzer saves the input as a crash.
[[noreturn]] inline void report(const char* target, const char* what,
                                std::string_view detail = {}) {
  constexpr size_t kShown = 2000;
  std::fprintf(stderr, "%s: %s: %.*s%s\n", target, what,
               static_cast<int>(std::min(detail.size(), kShown)), detail.data(),
               detail.size() > kShown ? "…" : "");
  std::abort();
}

/// One directory per fuzzing process under $TMPDIR (scripts/fuzz.sh points
/// TMPDIR into its scratch space), removed when the process exits normally.
/// A crash leaves it for inspection; the script removes its scratch space.
class ScratchDir {
 public:
  explicit ScratchDir(std::string_view label) {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string pattern = (base / ("driftwatch-" + std::string(label) + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  /// Empties the directory, for the next input.
  void clear() const {
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator(path_, ignored))
      std::filesystem::remove_all(entry.path(), ignored);
  }

 private:
  std::filesystem::path path_;
};

/// Type flips. Byte mutations seldom turn a JSON object into a number, which
/// is what a missed type check trips over; this does it directly. `text` is
/// parsed (leniently); if it is JSON, one node below the root, picked by a
/// hash of `text` (so that the fuzzer's mutations move it around), is
/// replaced in turn by a value of every JSON type, and `check` is called with
/// each flipped document as text.
template <class Check>
void for_each_type_flip(std::string_view text, Check&& check) {
  const auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return;
  std::vector<nlohmann::json::json_pointer> nodes;
  const auto collect = [&nodes](const auto& self, const nlohmann::json& node,
                                const nlohmann::json::json_pointer& at) -> void {
    if (node.is_object()) {
      for (const auto& [key, value] : node.items()) {
        nodes.push_back(at / key);
        self(self, value, at / key);
      }
    } else if (node.is_array()) {
      for (size_t i = 0; i < node.size(); ++i) {
        nodes.push_back(at / i);
        self(self, node[i], at / i);
      }
    }
  };
  collect(collect, doc, nlohmann::json::json_pointer());
  if (nodes.empty()) return;
  uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (const unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  const auto& at = nodes[hash % nodes.size()];
  for (const auto& replacement :
       {nlohmann::json(5), nlohmann::json(-1), nlohmann::json(1.5), nlohmann::json("x"),
        nlohmann::json(""), nlohmann::json(nullptr), nlohmann::json(true),
        nlohmann::json::array({5}), nlohmann::json::object({{"x", 5}})}) {
    nlohmann::json flipped = doc;
    flipped[at] = replacement;
    check(flipped.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
}

}  // namespace driftwatch::fuzz
