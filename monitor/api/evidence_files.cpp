#include "api/evidence_files.hpp"

#include "evidence/merkle.hpp"

#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "common/file_io.hpp"

namespace driftwatch::api {
namespace {

constexpr std::string_view kLayout =
    "the evidence log has checkpoint, checkpoints/<tree size>, tile/<L>/<N>[.p/<W>], "
    "tile/entries/<N>[.p/<W>] and blob/<sha256>";
constexpr std::string_view kImmutable = "public, max-age=31536000, immutable";
constexpr size_t kMaxCheckpointBytes = 16 * 1024;
constexpr size_t kMaxBlobBytes = 4 * 1024 * 1024;
constexpr size_t kHashBytes = 32;
constexpr size_t kMaxEntryBytes = 65535;  // a big-endian uint16 length
// 2^64 - 1 has 20 digits: 7 groups of three.
constexpr size_t kMaxIndexGroups = 7;

std::string dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

HttpResponse error_response(int status, std::string message) {
  return HttpResponse{status,
                      "application/json",
                      dump({{"error", std::move(message)}}),
                      {{"Cache-Control", "no-store"}}};
}

std::vector<std::string_view> split(std::string_view path) {
  std::vector<std::string_view> segments;
  for (;;) {
    const size_t slash = path.find('/');
    segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) return segments;
    path.remove_prefix(slash + 1);
  }
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Decimal without leading zeros ("0" itself is fine), below 2^64.
std::optional<uint64_t> parse_decimal(std::string_view text) {
  if (text.empty() || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  uint64_t value = 0;
  for (const char c : text) {
    if (!is_digit(c)) return std::nullopt;
    const auto digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// N from its groups ("x001", "x234", "067"), or why not.
Result<uint64_t> parse_index(const std::vector<std::string_view>& groups) {
  if (groups.size() > kMaxIndexGroups) {
    return fail("a tile index of ", std::to_string(groups.size()),
                " groups is past the largest, 2^64 - 1");
  }
  uint64_t index = 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    std::string_view group = groups[i];
    const bool last = i + 1 == groups.size();
    if (!last) {
      if (!group.starts_with('x')) return fail("tile index group '", group, "' lacks its 'x'");
      group.remove_prefix(1);
    }
    if (group.size() != 3 || !is_digit(group[0]) || !is_digit(group[1]) || !is_digit(group[2]))
      return fail("tile index group '", groups[i], "' is not three digits");
    const auto value =
        static_cast<uint64_t>((group[0] - '0') * 100 + (group[1] - '0') * 10 + (group[2] - '0'));
    if (i == 0 && !last && value == 0)
      return fail("tile index starts with a zero group '", groups[i], "'");
    if (index > (std::numeric_limits<uint64_t>::max() - value) / 1000)
      return fail("tile index is past the largest, 2^64 - 1");
    index = index * 1000 + value;
  }
  return index;
}

// tile/<L or entries>/<N>[.p/<W>]: the segments after "tile/<L>".
Result<EvidencePath> parse_tile(EvidencePath file, std::vector<std::string_view> rest) {
  if (rest.empty()) return fail("a tile path has no index");
  if (rest.size() >= 2 && rest[rest.size() - 2].ends_with(".p")) {
    const auto width = parse_decimal(rest.back());
    if (!width || *width < 1 || *width >= kFullTileWidth)
      return fail("partial tile width '", rest.back(), "' is not 1..255 without leading zeros");
    file.width = static_cast<uint16_t>(*width);
    rest.pop_back();
    rest.back().remove_suffix(2);
  }
  DW_TRY(index, parse_index(rest));
  // The tile's first entry, N * 256^(L+1), is an index into a tree of at
  // most 2^64 - 1 entries.
  const unsigned shift = 8 * (static_cast<unsigned>(file.level) + 1);
  if (shift >= 64 ? index != 0 : index >= (uint64_t{1} << (64 - shift)))
    return fail("tile ", std::to_string(index), " at level ", std::to_string(file.level),
                " would start past entry 2^64");
  file.index = index;
  return file;
}

Result<EvidencePath> parse_layout(std::string_view path) {
  const auto segments = split(path);
  const std::string_view top = segments[0];
  EvidencePath file;
  if (top == "checkpoint" && segments.size() == 1) return file;
  if (top == "checkpoints" && segments.size() == 2) {
    const auto size = parse_decimal(segments[1]);
    if (!size)
      return fail("tree size '", segments[1], "' is not decimal without leading zeros below 2^64");
    file.kind = EvidenceFileKind::checkpoint_at_size;
    file.index = *size;
    return file;
  }
  if (top == "blob" && segments.size() == 2) {
    const std::string_view hash = segments[1];
    const bool hex =
        hash.size() == 64 && hash.find_first_not_of("0123456789abcdef") == std::string_view::npos;
    if (!hex) return fail("blob name '", hash, "' is not 64 lowercase hex digits");
    file.kind = EvidenceFileKind::blob;
    file.blob_sha256 = std::string(hash);
    return file;
  }
  if (top == "tile" && segments.size() >= 3) {
    const std::vector<std::string_view> rest(segments.begin() + 2, segments.end());
    if (segments[1] == "entries") {
      file.kind = EvidenceFileKind::entry_bundle;
      return parse_tile(std::move(file), rest);
    }
    const auto level = parse_decimal(segments[1]);
    if (!level || *level > 63)
      return fail("tile level '", segments[1], "' is not 0..63 without leading zeros");
    file.kind = EvidenceFileKind::hash_tile;
    file.level = static_cast<uint8_t>(*level);
    return parse_tile(std::move(file), rest);
  }
  return fail("no such file");
}

// A path no server could hold a file at: dot segments, empty segments,
// bytes that are not printable ASCII.
bool is_malformed(std::string_view path) {
  if (path.empty()) return false;  // GET /evidence/: no listing, a 404
  for (const unsigned char c : path) {
    if (c < 0x20 || c >= 0x7f || c == '\\') return true;
  }
  for (const auto segment : split(path)) {
    if (segment.empty() || segment == "." || segment == "..") return true;
  }
  return false;
}

}  // namespace

std::string_view to_string(EvidenceFileKind kind) {
  switch (kind) {
    case EvidenceFileKind::checkpoint:
      return "checkpoint";
    case EvidenceFileKind::checkpoint_at_size:
      return "checkpoint_at_size";
    case EvidenceFileKind::hash_tile:
      return "hash_tile";
    case EvidenceFileKind::entry_bundle:
      return "entry_bundle";
    case EvidenceFileKind::blob:
      return "blob";
  }
  return "unknown";
}

Result<EvidencePath> parse_evidence_path(std::string_view path) {
  auto parsed = parse_layout(path);
  if (!parsed) {
    // Client bytes in a message: printable ASCII only, and not too many.
    std::string shown;
    for (const unsigned char c : path.substr(0, 200))
      shown += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
    if (path.size() > 200) shown += "...";
    return fail("evidence path '", shown, "' is not in the layout: ", parsed.error().message, "; ",
                kLayout);
  }
  return parsed;
}

std::string evidence_path_string(const EvidencePath& file) {
  switch (file.kind) {
    case EvidenceFileKind::checkpoint:
      return "checkpoint";
    case EvidenceFileKind::checkpoint_at_size:
      return "checkpoints/" + std::to_string(file.index);
    case EvidenceFileKind::blob:
      return "blob/" + file.blob_sha256;
    case EvidenceFileKind::hash_tile:
    case EvidenceFileKind::entry_bundle:
      break;
  }
  std::string path = file.kind == EvidenceFileKind::entry_bundle
                         ? std::string("tile/entries/")
                         : "tile/" + std::to_string(file.level) + "/";
  path += evidence::tile_index_path(file.index);
  if (file.partial()) path += ".p/" + std::to_string(file.width);
  return path;
}

bool is_immutable(const EvidencePath& file) {
  switch (file.kind) {
    case EvidenceFileKind::checkpoint:
      return false;
    case EvidenceFileKind::checkpoint_at_size:
    case EvidenceFileKind::blob:
      return true;
    case EvidenceFileKind::hash_tile:
    case EvidenceFileKind::entry_bundle:
      return !file.partial();
  }
  return false;
}

std::string_view content_type(EvidenceFileKind kind) {
  switch (kind) {
    case EvidenceFileKind::checkpoint:
    case EvidenceFileKind::checkpoint_at_size:
      return "text/plain; charset=utf-8";
    case EvidenceFileKind::hash_tile:
    case EvidenceFileKind::entry_bundle:
    case EvidenceFileKind::blob:
      break;
  }
  return "application/octet-stream";
}

std::string_view cache_control(const EvidencePath& file) {
  if (is_immutable(file)) return kImmutable;
  if (file.kind == EvidenceFileKind::checkpoint) return "no-cache";
  return "public, max-age=5";
}

size_t max_file_bytes(const EvidencePath& file) {
  switch (file.kind) {
    case EvidenceFileKind::checkpoint:
    case EvidenceFileKind::checkpoint_at_size:
      return kMaxCheckpointBytes;
    case EvidenceFileKind::hash_tile:
      return kHashBytes * file.width;
    case EvidenceFileKind::entry_bundle:
      return (2 + kMaxEntryBytes) * file.width;
    case EvidenceFileKind::blob:
      return kMaxBlobBytes;
  }
  return 0;
}

std::expected<EvidencePath, HttpResponse> evidence_request(std::string_view path) {
  auto file = parse_evidence_path(path);
  if (file) return std::move(*file);
  return std::unexpected(error_response(is_malformed(path) ? 400 : 404, file.error().message));
}

HttpResponse no_evidence_log_response() {
  return error_response(404, "this daemon serves no evidence log");
}

HttpResponse serve_evidence_file(const std::filesystem::path& dir, const EvidencePath& file) {
  const std::string relative = evidence_path_string(file);
  auto opened = open_regular_file_beneath(dir, relative, "evidence file");
  if (!opened) {
    spdlog::warn("GET /evidence/{}: refused: {}", relative, opened.error().message);
    return error_response(403, "refused: " + opened.error().message);
  }
  if (!*opened) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 && errno == ENOENT)
      return error_response(404, "the evidence log " + dir.string() + " does not exist yet");
    return error_response(404, "no " + relative + " in the evidence log");
  }
  const size_t limit = max_file_bytes(file);
  if ((*opened)->size > limit) {
    const std::string why = "evidence file " + relative + " holds " +
                            std::to_string((*opened)->size) + " bytes, more than a " +
                            std::string(to_string(file.kind)) + " can (" + std::to_string(limit) +
                            "): the log is damaged";
    spdlog::error("GET /evidence/{}: {}", relative, why);
    return error_response(500, why);
  }
  auto text = read_opened_file(**opened, limit, "evidence file " + relative);
  if (!text) {
    spdlog::error("GET /evidence/{}: {}", relative, text.error().message);
    return error_response(500, text.error().message);
  }
  return HttpResponse{200,
                      std::string(content_type(file.kind)),
                      std::move(*text),
                      {{"Cache-Control", std::string(cache_control(file))}}};
}

}  // namespace driftwatch::api
