#include "evidence/restore.hpp"

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "common/file_io.hpp"
#include "common/sha256.hpp"

namespace driftwatch::evidence {
namespace {

using nlohmann::json;

constexpr size_t kMaxRestorePointBytes = 32 << 20;

std::string str(uint64_t value) {
  return std::to_string(value);
}

// What an accepted entry is, if `entry` is one: its kind and envelope hash.
struct AcceptedEntry {
  ingest::EnvelopeKind kind = ingest::EnvelopeKind::launch;
  std::string id;
  std::string envelope_sha256;
};

std::optional<AcceptedEntry> accepted_entry(std::string_view entry) {
  // Cheap test first: most entries are observations.
  if (entry.find("_accepted\"") == std::string_view::npos) return std::nullopt;
  const json doc = json::parse(entry, nullptr, false);
  if (!doc.is_object()) return std::nullopt;
  const auto type = doc.find("type");
  if (type == doc.end() || (*type != "launch_accepted" && *type != "grant_accepted"))
    return std::nullopt;
  AcceptedEntry out;
  out.kind =
      *type == "launch_accepted" ? ingest::EnvelopeKind::launch : ingest::EnvelopeKind::grant;
  if (const auto id = doc.find("id"); id != doc.end() && id->is_string()) out.id = *id;
  if (const auto hash = doc.find("envelope_sha256"); hash != doc.end() && hash->is_string())
    out.envelope_sha256 = *hash;
  return out;
}

// A journal's position, the later one winning.
void keep_position(AcceptedEnvelopes& out, uint64_t index, JournalPosition position) {
  const std::string journal = position.journal;  // before the move below
  out.journals[journal] = {index, std::move(position)};
}

// Reads the envelope an accepted entry cites into `out`, or says why not.
void take(const Log& log, uint64_t index, const AcceptedEntry& accepted, AcceptedEnvelopes& out) {
  const std::string where = "evidence entry " + str(index) + " (" +
                            ingest::to_string(accepted.kind) + " " + accepted.id + ")";
  auto blob = log.read_blob(accepted.envelope_sha256);
  if (!blob) {
    out.problems.push_back(where + ": its envelope cannot be read: " + blob.error().message);
    return;
  }
  if (!*blob) {
    out.problems.push_back(where + ": its envelope blob/" + accepted.envelope_sha256 +
                           " is missing from the log");
    return;
  }
  out.envelopes.push_back(ingest::StoredEnvelope{accepted.kind, std::move(**blob), where});
  out.indexes.push_back(index);
}

Result<void> scan(const Log& log, uint64_t from, uint64_t to, AcceptedEnvelopes& out) {
  return log.for_each_entry(from, to, [&](uint64_t index, std::string_view entry) -> Result<void> {
    ++out.entries_read;
    if (auto accepted = accepted_entry(entry))
      take(log, index, *accepted, out);
    else if (auto position = parse_journal_position(entry))
      keep_position(out, index, std::move(*position));
    return {};
  });
}

// The entries a restore point names, read bundle by bundle; an error when
// one of them is not an accepted entry, or a position entry where it names
// one (the point is not this log's).
Result<void> read_cited(const Log& log, const RestorePoint& point, AcceptedEnvelopes& out) {
  std::vector<uint64_t> cited = point.accepted;
  cited.insert(cited.end(), point.positions.begin(), point.positions.end());
  std::sort(cited.begin(), cited.end());
  const std::set<uint64_t> positions(point.positions.begin(), point.positions.end());
  size_t next = 0;
  while (next < cited.size()) {
    const uint64_t bundle = cited[next] / kTileWidth;
    size_t last = next;
    while (last + 1 < cited.size() && cited[last + 1] / kTileWidth == bundle) ++last;
    size_t at = next;
    auto read = log.for_each_entry(
        cited[next], cited[last] + 1, [&](uint64_t index, std::string_view entry) -> Result<void> {
          if (index != cited[at]) return {};
          ++at;
          ++out.entries_read;
          if (positions.contains(index)) {
            auto position = parse_journal_position(entry);
            if (!position)
              return fail("it names entry ", str(index), ", which is not a journal position");
            keep_position(out, index, std::move(*position));
            return {};
          }
          auto accepted = accepted_entry(entry);
          if (!accepted)
            return fail("it names entry ", str(index),
                        ", which is not an accepted launch or grant");
          take(log, index, *accepted, out);
          return {};
        });
    if (!read) return read;
    next = last + 1;
  }
  return {};
}

}  // namespace

std::optional<JournalPosition> parse_journal_position(std::string_view entry) {
  // Cheap test first: most entries are observations.
  if (entry.find(kJournalPositionType) == std::string_view::npos) return std::nullopt;
  const json doc = json::parse(entry, nullptr, false);
  if (!doc.is_object() || doc.value("type", "") != kJournalPositionType) return std::nullopt;
  const auto journal = doc.find("journal"), inode = doc.find("inode"), offset = doc.find("offset"),
             preceding = doc.find("preceding_hex");
  if (journal == doc.end() || !journal->is_string() || inode == doc.end() ||
      !inode->is_number_unsigned() || offset == doc.end() || !offset->is_number_unsigned() ||
      preceding == doc.end() || !(preceding->is_null() || preceding->is_string()))
    return std::nullopt;
  JournalPosition out;
  out.journal = journal->get<std::string>();
  out.inode = inode->get<uint64_t>();
  out.offset = offset->get<uint64_t>();
  if (preceding->is_string()) {
    auto bytes = from_hex(preceding->get<std::string>());
    if (!bytes || bytes->size() > 64) return std::nullopt;
    out.preceding = std::move(*bytes);
  }
  return out;
}

std::string encode_restore_point(const RestorePoint& point) {
  json doc{{"format", kRestorePointFormat},
           {"tree_size", point.tree_size},
           {"root", to_hex(point.root)},
           {"accepted", point.accepted},
           {"positions", point.positions}};
  return doc.dump() + "\n";
}

Result<RestorePoint> parse_restore_point(std::string_view text) {
  const json doc = json::parse(text, nullptr, false);
  const auto shape = [] {
    return fail("not a restore point: {\"format\": \"", kRestorePointFormat,
                "\", \"tree_size\": N, \"root\": \"<64 hex>\", \"accepted\": [ascending indexes "
                "below tree_size], \"positions\": [likewise]}");
  };
  if (!doc.is_object() || doc.size() < 4 || doc.size() > 5) return shape();
  const auto format = doc.find("format");
  const auto size = doc.find("tree_size");
  const auto root = doc.find("root");
  const auto accepted = doc.find("accepted");
  const auto positions = doc.find("positions");
  if (doc.size() == 5 && (positions == doc.end() || !positions->is_array() ||
                          positions->size() > kMaxRestorePointEntries))
    return shape();
  if (format == doc.end() || *format != kRestorePointFormat || size == doc.end() ||
      !size->is_number_unsigned() || root == doc.end() || !root->is_string() ||
      accepted == doc.end() || !accepted->is_array() || accepted->size() > kMaxRestorePointEntries)
    return shape();
  RestorePoint point;
  point.tree_size = size->get<uint64_t>();
  const auto hash = digest_from_hex(root->get_ref<const std::string&>());
  if (!hash) return shape();
  point.root = *hash;
  const auto indexes = [&](const json& list, std::vector<uint64_t>& into) {
    for (const auto& index : list) {
      if (!index.is_number_unsigned()) return false;
      const uint64_t value = index.get<uint64_t>();
      if (value >= point.tree_size || (!into.empty() && value <= into.back())) return false;
      into.push_back(value);
    }
    return true;
  };
  if (!indexes(*accepted, point.accepted)) return shape();
  if (positions != doc.end() && !indexes(*positions, point.positions)) return shape();
  // An entry is one or the other.
  for (uint64_t index : point.positions)
    if (std::binary_search(point.accepted.begin(), point.accepted.end(), index)) return shape();
  return point;
}

std::filesystem::path restore_point_path(const std::filesystem::path& state_dir) {
  return state_dir / "restore-point.json";
}

Result<void> write_restore_point(const std::filesystem::path& state_dir,
                                 const RestorePoint& point) {
  return replace_file_durably(restore_point_path(state_dir), encode_restore_point(point), 0600,
                              "restore point");
}

Result<AcceptedEnvelopes> read_accepted(const Log& log, const std::filesystem::path& state_dir) {
  AcceptedEnvelopes out;
  const uint64_t size = log.size();
  const auto path = restore_point_path(state_dir);
  auto text = read_regular_file_if_exists(path, kMaxRestorePointBytes, "restore point");
  std::optional<RestorePoint> point;
  if (!text) {
    out.point_refused = text.error().message;
  } else if (*text) {
    auto parsed = parse_restore_point(**text);
    if (!parsed) {
      out.point_refused = path.string() + ": " + parsed.error().message;
    } else if (parsed->tree_size > size) {
      out.point_refused = path.string() + " is at tree size " + str(parsed->tree_size) +
                          ", beyond the log's " + str(size);
    } else {
      DW_TRY(root, log.root_at(parsed->tree_size));
      if (root != parsed->root)
        out.point_refused = path.string() + " does not match the log: its root at size " +
                            str(parsed->tree_size) + " differs";
      else
        point = std::move(*parsed);
    }
  }
  if (point) {
    if (auto cited = read_cited(log, *point, out); cited) {
      if (auto scanned = scan(log, point->tree_size, size, out); !scanned)
        return std::unexpected(scanned.error());
      out.how = "from the restore point at tree size " + str(point->tree_size) + " (" +
                str(point->accepted.size() + point->positions.size()) + " entries) and the " +
                str(size - point->tree_size) + " entries after it";
      return out;
    } else {
      out.point_refused = path.string() + " does not match the log: " + cited.error().message;
      const std::string refused = std::move(out.point_refused);
      out = AcceptedEnvelopes{};
      out.point_refused = refused;
    }
  }
  if (auto scanned = scan(log, 0, size, out); !scanned) return std::unexpected(scanned.error());
  out.how = "by reading all " + str(size) + " entries of the log (" +
            (text && !*text ? std::string("no restore point yet")
                            : std::string("restore point not used")) +
            ")";
  return out;
}

}  // namespace driftwatch::evidence
