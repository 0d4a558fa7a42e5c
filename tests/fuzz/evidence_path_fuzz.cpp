// libFuzzer target: the path below /evidence/ that any local client sends
// ("tile/0/x001/x234/067.p/5", "blob/<sha256>", "../config.json"), through
// parse_evidence_path and evidence_request (api/evidence_files.hpp).
//
// Checks, for any input bytes:
//   - an EvidencePath or an error that says the path is not in the layout,
//     never an exception; the answer to a refused path is a 400 or a 404,
//     never a 500, and a path with a dot or empty segment is never accepted;
//   - an accepted path is the one spelling of its file: written back with
//     evidence_path_string it is the input, byte for byte, and its fields
//     are in the spec's ranges (L 0..63, W 1..256, the tile's first entry
//     below 2^64, a blob name of 64 lowercase hex digits);
//   - the other way round, the input read as numbers makes a valid file
//     (kind, L, N, W), whose written path parses back to that same file.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "api/evidence_files.hpp"
#include "fuzz_support.hpp"

namespace {

using driftwatch::api::EvidenceFileKind;
using driftwatch::api::EvidencePath;

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("evidence_path_fuzz", what, detail);
}

bool has_bad_segment(std::string_view path) {
  for (;;) {
    const size_t slash = path.find('/');
    const std::string_view segment = path.substr(0, slash);
    if (segment.empty() || segment == "." || segment == "..") return true;
    if (slash == std::string_view::npos) return false;
    path.remove_prefix(slash + 1);
  }
}

void check_fields(const EvidencePath& file, std::string_view input) {
  if (file.width < 1 || file.width > driftwatch::api::kFullTileWidth)
    report("a width out of 1..256", input);
  switch (file.kind) {
    case EvidenceFileKind::hash_tile:
    case EvidenceFileKind::entry_bundle: {
      if (file.level > 63) report("a level above 63", input);
      const unsigned shift = 8 * (file.level + 1u);
      if (shift >= 64 ? file.index != 0 : file.index >= (uint64_t{1} << (64 - shift)))
        report("a tile that starts past entry 2^64", input);
      if (file.kind == EvidenceFileKind::entry_bundle && file.level != 0)
        report("an entry bundle with a level", input);
      break;
    }
    case EvidenceFileKind::blob:
      if (file.blob_sha256.size() != 64 ||
          file.blob_sha256.find_first_not_of("0123456789abcdef") != std::string::npos)
        report("a blob name that is not 64 lowercase hex digits", input);
      break;
    case EvidenceFileKind::checkpoint:
    case EvidenceFileKind::checkpoint_at_size:
      break;
  }
  if (driftwatch::api::max_file_bytes(file) == 0) report("a file that may hold nothing", input);
}

uint64_t take(const uint8_t*& data, size_t& size, size_t bytes) {
  uint64_t value = 0;
  while (bytes-- > 0 && size > 0) {
    value = value << 8 | *data++;
    --size;
  }
  return value;
}

// The input as (kind, L, N, W, hash bytes): a valid file whatever the bytes.
EvidencePath file_from(const uint8_t* data, size_t size) {
  EvidencePath file;
  static constexpr EvidenceFileKind kKinds[] = {
      EvidenceFileKind::checkpoint, EvidenceFileKind::checkpoint_at_size,
      EvidenceFileKind::hash_tile, EvidenceFileKind::entry_bundle, EvidenceFileKind::blob};
  file.kind = kKinds[take(data, size, 1) % 5];
  const auto level = static_cast<uint8_t>(take(data, size, 1) % 64);
  const uint64_t index = take(data, size, 8);
  const auto width = static_cast<uint16_t>(take(data, size, 1) + 1);  // 1..256
  switch (file.kind) {
    case EvidenceFileKind::checkpoint:
      break;
    case EvidenceFileKind::checkpoint_at_size:
      file.index = index;
      break;
    case EvidenceFileKind::hash_tile:
    case EvidenceFileKind::entry_bundle: {
      file.level = file.kind == EvidenceFileKind::hash_tile ? level : 0;
      const unsigned shift = 8 * (file.level + 1u);
      file.index = shift >= 64 ? 0 : index % (uint64_t{1} << (64 - shift));
      file.width = width;
      break;
    }
    case EvidenceFileKind::blob: {
      static constexpr char kHex[] = "0123456789abcdef";
      for (int i = 0; i < 32; ++i) {
        const auto byte = static_cast<unsigned>(take(data, size, 1));
        file.blob_sha256 += kHex[byte >> 4];
        file.blob_sha256 += kHex[byte & 15];
      }
      break;
    }
  }
  return file;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const auto parsed = driftwatch::api::parse_evidence_path(input);
  const auto request = driftwatch::api::evidence_request(input);
  if (parsed.has_value() != request.has_value()) report("parser and request disagree", input);
  if (!parsed) {
    if (parsed.error().message.find("is not in the layout") == std::string::npos)
      report("an error that does not say what is wrong", parsed.error().message);
    const int status = request.error().status;
    if (status != 400 && status != 404)
      report("a refused path answered neither 400 nor 404", input);
  } else {
    if (has_bad_segment(input)) report("a path with a dot or empty segment accepted", input);
    if (driftwatch::api::evidence_path_string(*parsed) != input)
      report("an accepted path is not its file's one spelling",
             driftwatch::api::evidence_path_string(*parsed));
    check_fields(*parsed, input);
    if (!(*request == *parsed)) report("evidence_request read another file", input);
  }

  const EvidencePath made = file_from(data, size);
  const std::string written = driftwatch::api::evidence_path_string(made);
  const auto again = driftwatch::api::parse_evidence_path(written);
  if (!again) report("a valid file's path does not parse", written + ": " + again.error().message);
  if (!(*again == made)) report("a valid file's path parses to another file", written);
  return 0;
}
