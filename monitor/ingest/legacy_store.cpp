#include "ingest/legacy_store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/file_io.hpp"
#include "common/posix.hpp"

namespace driftwatch::ingest {
namespace {

constexpr size_t kMaxLegacyStoreBytes = size_t{1} << 30;

Result<void> fsync_directory(const std::filesystem::path& dir) {
  const Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0)
    return fail("cannot fsync directory ", dir.string(), ": ", std::strerror(errno));
  return {};
}

}  // namespace

LegacyStore parse_legacy_store(std::string_view text, const std::filesystem::path& path) {
  LegacyStore store;
  store.path = path;
  size_t keep = text.size();
  if (!text.empty() && text.back() != '\n') {
    const size_t newline = text.rfind('\n');
    keep = newline == std::string_view::npos ? 0 : newline + 1;
    store.torn_bytes = text.size() - keep;
  }
  const std::string_view kept = text.substr(0, keep);
  size_t pos = 0, line_number = 0;
  while (pos < kept.size()) {
    const size_t end = kept.find('\n', pos);
    const std::string_view line = kept.substr(pos, end - pos);
    pos = end + 1;
    const std::string where = path.string() + " line " + std::to_string(++line_number);
    const auto entry = nlohmann::json::parse(line, nullptr, false);
    const auto kind = entry.is_object() ? entry.find("kind") : entry.end();
    if (kind != entry.end() && *kind == "recovered") continue;  // an earlier recovery's record
    const auto envelope = entry.is_object() ? entry.find("envelope") : entry.end();
    if (kind == entry.end() || !kind->is_string() || (*kind != "launch" && *kind != "grant") ||
        envelope == entry.end() || !envelope->is_string()) {
      store.skipped.push_back(where +
                              " skipped: not an {\"kind\", \"envelope\", \"accepted_at\"} line");
      continue;
    }
    store.envelopes.push_back(
        StoredEnvelope{*kind == "launch" ? EnvelopeKind::launch : EnvelopeKind::grant,
                       envelope->get<std::string>(), where});
  }
  return store;
}

Result<std::optional<LegacyStore>> read_legacy_store(const std::filesystem::path& state_dir) {
  const auto path = state_dir / "ingest" / "accepted.jsonl";
  DW_TRY(text, read_regular_file_if_exists(path, kMaxLegacyStoreBytes, "accepted store"));
  if (!text) return std::optional<LegacyStore>();
  return std::optional<LegacyStore>(parse_legacy_store(*text, path));
}

Result<std::filesystem::path> retire_legacy_store(const LegacyStore& store) {
  std::filesystem::path retired = store.path;
  retired += ".migrated";
  if (::rename(store.path.c_str(), retired.c_str()) != 0)
    return fail("cannot rename ", store.path.string(), " to ", retired.string(), ": ",
                std::strerror(errno));
  if (auto synced = fsync_directory(store.path.parent_path()); !synced)
    return std::unexpected(synced.error());
  return retired;
}

}  // namespace driftwatch::ingest
