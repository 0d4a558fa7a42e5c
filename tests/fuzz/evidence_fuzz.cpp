// libFuzzer target: the evidence log's parsers of outside input, which
// `driftwatch verify --url` and `verify --report` feed with whatever a
// server or a report file holds: signed notes, checkpoints, verifier keys,
// tlog-proof text, entry bundles and tile paths.
//
// Input: byte 0 picks what the rest is:
//   0  a signed note (opened with a fixed verifier key)
//   1  a checkpoint body, signed here with that key and opened again
//   2  a tlog-proof, verified against entry "fuzz" with that key
//   3  an entry bundle
//   4  a tile path
//   5  a verifier key string
//
// Checks: nothing crashes; errors say something; every parser that accepts
// its input gives it back byte for byte when the result is formatted again
// (one accepted spelling per value); an entry bundle's entries are at most
// 256 and re-encode to a prefix of the input (all of it when well formed);
// a note signed here opens with the key and its text comes back.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/crypto.hpp"
#include "evidence/log.hpp"
#include "evidence/merkle.hpp"
#include "evidence/note.hpp"
#include "evidence/proof.hpp"
#include "fuzz_support.hpp"

namespace evidence = driftwatch::evidence;

namespace {

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("evidence_fuzz", what, detail);
}

const evidence::NoteSigner& signer() {
  static const evidence::NoteSigner signer = [] {
    auto key = driftwatch::Ed25519PrivateKey::from_raw(std::string(32, '\x2a'));
    if (!key) report("cannot make the fuzz key");
    auto made = evidence::NoteSigner::make("driftwatch/fuzz", *key);
    if (!made) report("cannot make the fuzz signer");
    return *made;
  }();
  return signer;
}

const evidence::NoteVerifier& verifier() {
  static const evidence::NoteVerifier verifier = signer().verifier();
  return verifier;
}

template <class R>
void says_why(const R& result, const char* what) {
  if (!result && result.error().message.empty()) report(what);
}

std::string reformat_note(const evidence::Note& note) {
  std::string text = note.text + "\n";
  for (const auto& signature : note.signatures) {
    std::string bytes(4, '\0');
    for (int i = 0; i < 4; ++i)
      bytes[static_cast<size_t>(i)] = static_cast<char>(signature.key_hash >> (24 - 8 * i));
    text += "\xe2\x80\x94 " + signature.name + " " +
            driftwatch::base64_encode(bytes + signature.signature) + "\n";
  }
  return text;
}

void fuzz_note(std::string_view input) {
  auto note = evidence::parse_note(input);
  says_why(note, "parse_note failed without a message");
  if (note && reformat_note(*note) != input)
    report("a parsed note does not format back to its input", input);
  auto opened = evidence::open_note(input, std::span(&verifier(), 1));
  if (!opened && opened.error().message.empty()) report("open_note failed without a message");
  if (opened && !note) report("open_note accepted a note parse_note refuses", input);
  auto checkpoint = evidence::open_checkpoint(input, verifier());
  if (!checkpoint && checkpoint.error().message.empty())
    report("open_checkpoint failed without a message");
}

void fuzz_checkpoint(std::string_view input) {
  auto checkpoint = evidence::parse_checkpoint(input);
  says_why(checkpoint, "parse_checkpoint failed without a message");
  if (checkpoint && evidence::format_checkpoint(*checkpoint) != input)
    report("a parsed checkpoint does not format back to its input", input);
  auto signed_note = signer().sign(input);
  says_why(signed_note, "sign failed without a message");
  if (!signed_note) return;
  auto opened = evidence::open_note(*signed_note, std::span(&verifier(), 1));
  if (!opened) report("a note signed here does not open", opened.error().message);
  if (opened->text != input) report("a note signed here opens with another text", input);
  auto reopened = evidence::open_checkpoint(*signed_note, verifier());
  if (checkpoint && (!reopened || !(*reopened == *checkpoint)))
    report("a signed checkpoint does not open to what was signed", input);
}

void fuzz_proof(std::string_view input) {
  auto proof = evidence::parse_tlog_proof(input);
  says_why(proof, "parse_tlog_proof failed without a message");
  if (proof && evidence::format_tlog_proof(*proof) != input)
    report("a parsed tlog-proof does not format back to its input", input);
  auto verified = evidence::verify_tlog_proof(input, "fuzz", verifier());
  says_why(verified, "verify_tlog_proof failed without a message");
}

void fuzz_bundle(std::string_view input) {
  const evidence::BundleParse parsed = evidence::parse_entry_bundle(input);
  if (parsed.entries.size() > evidence::kTileWidth) report("more than 256 entries in a bundle");
  std::string encoded;
  for (const auto& entry : parsed.entries) encoded += evidence::encode_bundle_entry(entry);
  if (!input.starts_with(encoded)) report("bundle entries do not re-encode to a prefix", input);
  if (!parsed.problem && encoded != input)
    report("a well-formed bundle does not re-encode to its input", input);
  if (parsed.problem && parsed.problem->empty()) report("a bundle problem without a message");
  if (parsed.problem && encoded == input && parsed.entries.size() < evidence::kTileWidth)
    report("a problem reported for a bundle that re-encodes whole", input);
}

void fuzz_tile_path(std::string_view input) {
  auto tile = evidence::parse_tile_path(input);
  says_why(tile, "parse_tile_path failed without a message");
  if (tile && evidence::tile_path(*tile) != input)
    report("a parsed tile path does not format back to its input", input);
}

void fuzz_vkey(std::string_view input) {
  auto key = evidence::NoteVerifier::parse(input);
  says_why(key, "NoteVerifier::parse failed without a message");
  std::string_view trimmed = input;
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\r'))
    trimmed.remove_suffix(1);
  if (key && key->vkey() != trimmed) report("a parsed vkey does not format back", input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 6) {
    case 0:
      fuzz_note(input);
      break;
    case 1:
      fuzz_checkpoint(input);
      break;
    case 2:
      fuzz_proof(input);
      break;
    case 3:
      fuzz_bundle(input);
      break;
    case 4:
      fuzz_tile_path(input);
      break;
    case 5:
      fuzz_vkey(input);
      break;
  }
  return 0;
}
