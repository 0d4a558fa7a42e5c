#pragma once
// The evidence log served as it lies on disk: state_dir/evidence/ is a C2SP
// tlog-tiles directory (DESIGN.md "Evidence log"), and GET /evidence/<path>
// answers with one of its files, or with nothing.
//
//   checkpoint                     the latest signed note     text/plain; charset=utf-8
//   checkpoints/<tree size>        every checkpoint issued    text/plain; charset=utf-8
//   tile/<L>/<N>[.p/<W>]           hash tiles                 application/octet-stream
//   tile/entries/<N>[.p/<W>]       entry bundles              application/octet-stream
//   blob/<sha256, lowercase hex>   content-addressed blobs    application/octet-stream
//
// Only these paths are looked up, in exactly the spelling tlog-tiles gives
// them (one spelling per file: no leading zeros, no "x000/" group in front);
// anything else is answered without touching the disk. A file is opened
// below the evidence directory following no symbolic link, never blocks in
// open(2) (a FIFO is refused), and is read up to the most its kind can hold.

#include <cstddef>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <string>
#include <string_view>

#include "api/http_server.hpp"
#include "common/result.hpp"

namespace driftwatch::api {

/// Which file of the tlog-tiles layout a path names.
enum class EvidenceFileKind {
  checkpoint,          // checkpoint
  checkpoint_at_size,  // checkpoints/<tree size>
  hash_tile,           // tile/<L>/<N>[.p/<W>]
  entry_bundle,        // tile/entries/<N>[.p/<W>]
  blob,                // blob/<sha256>
};
std::string_view to_string(EvidenceFileKind kind);

/// A full tile or entry bundle: 256 hashes or entries.
inline constexpr uint16_t kFullTileWidth = 256;

/// One file of the layout, as parse_evidence_path() reads it.
struct EvidencePath {
  EvidenceFileKind kind = EvidenceFileKind::checkpoint;
  /// hash_tile: L, 0..63.
  uint8_t level = 0;
  /// hash_tile, entry_bundle: N, the tile's index in its level;
  /// checkpoint_at_size: the tree size.
  uint64_t index = 0;
  /// hash_tile, entry_bundle: W, 1..255 for a partial tile (".p/<W>"),
  /// kFullTileWidth for a full one.
  uint16_t width = kFullTileWidth;
  /// blob: the SHA-256 of its content, 64 lowercase hex digits.
  std::string blob_sha256;

  bool partial() const { return width < kFullTileWidth; }
  friend bool operator==(const EvidencePath&, const EvidencePath&) = default;
};

/// Parses a path below the evidence directory ("tile/0/x001/234.p/17").
/// Accepts exactly the layout above, each file in its one spelling: L is
/// 0..63 and W is 1..255, decimal without leading zeros; N is as
/// evidence::tile_index_path() writes it, and small enough that the tile's first
/// entry, N * 256^(L+1), is below 2^64 (entry bundles: L = 0); a tree size
/// is decimal without leading zeros ("0" is one) below 2^64; a blob is
/// named by 64 lowercase hex digits. The error says why the path is not
/// one, and lists the layout. A pure function; never throws.
Result<EvidencePath> parse_evidence_path(std::string_view path);

/// The path of `file` below the evidence directory: parse_evidence_path()'s
/// inverse, "tile/0/x001/234.p/17".
std::string evidence_path_string(const EvidencePath& file);

/// Whether the file, once there, never changes: checkpoints/<N>, full tiles
/// and bundles, blobs (their name is their hash). The latest checkpoint
/// changes; a partial tile or bundle is replaced by the full one and, after
/// a crash, the writer may cut and rewrite the right edge of the tree that
/// no durable checkpoint covered yet, which a file server cannot tell apart.
bool is_immutable(const EvidencePath& file);

/// Content-Type per tlog-tiles: "text/plain; charset=utf-8" for
/// checkpoints, "application/octet-stream" for tiles, bundles and blobs.
std::string_view content_type(EvidenceFileKind kind);

/// Cache-Control: "public, max-age=31536000, immutable" for what
/// is_immutable(); "no-cache" for the latest checkpoint (tlog-tiles: no
/// caching beyond a few seconds), and "public, max-age=5" for a partial
/// tile or bundle (short: see is_immutable(); a client that fetched the
/// checkpoint requiring it may still reuse it for a few seconds).
std::string_view cache_control(const EvidencePath& file);

/// The most bytes a file of the kind may hold; a larger one is refused as
/// damaged. Checkpoints 16 KiB; a hash tile 32 * W bytes; an entry bundle W
/// entries of at most 65535 bytes with their 2-byte length; a blob 4 MiB.
size_t max_file_bytes(const EvidencePath& file);

/// Files at most this large are read on the event loop (a page-cache read
/// of microseconds); larger ones, entry bundles and blobs, elsewhere.
inline constexpr size_t kMaxBytesReadOnLoop = 64 * 1024;
inline bool read_on_loop(const EvidencePath& file) {
  return max_file_bytes(file) <= kMaxBytesReadOnLoop;
}

/// What GET /evidence/<path> asks for: the file, or the answer when it
/// names none. 400 for a path no file of any server could have ("..", ".",
/// an empty segment as in "//" or a trailing '/', a control or non-ASCII
/// byte), 404 for any other path outside the layout. Never touches the disk.
std::expected<EvidencePath, HttpResponse> evidence_request(std::string_view path);

/// The 404 for a daemon that serves no evidence log.
HttpResponse no_evidence_log_response();

/// Serves `file` from the evidence directory `dir`, blocking on the disk
/// for as long as reading max_file_bytes(file) takes: 200 with the bytes,
/// content_type() and cache_control(); 404 when the file (or `dir`) does
/// not exist; 403 when it cannot be opened as a regular file below `dir`
/// without following a link (a symbolic link anywhere below `dir`, a FIFO,
/// no permission); 500 when it cannot be read or is larger than its kind
/// allows. Error answers are JSON {"error"} with "Cache-Control: no-store"
/// (a missing tile appears later). Never throws.
HttpResponse serve_evidence_file(const std::filesystem::path& dir, const EvidencePath& file);

}  // namespace driftwatch::api
