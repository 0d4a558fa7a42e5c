#include "evidence/proof.hpp"

#include "common/crypto.hpp"

namespace driftwatch::evidence {
namespace {

std::string str(uint64_t value) {
  return std::to_string(value);
}

// The next line of `rest` (without its newline), nullopt when no newline is left.
std::optional<std::string_view> next_line(std::string_view& rest) {
  const size_t newline = rest.find('\n');
  if (newline == std::string_view::npos) return std::nullopt;
  const std::string_view line = rest.substr(0, newline);
  rest.remove_prefix(newline + 1);
  return line;
}

}  // namespace

std::string format_tlog_proof(const TlogProof& proof) {
  std::string text(kTlogProofHeader);
  text += '\n';
  if (proof.extra) text += "extra " + base64_encode(*proof.extra) + "\n";
  text += "index " + str(proof.index) + "\n";
  for (const Hash& hash : proof.path) text += hash_base64(hash) + "\n";
  text += '\n';
  text += proof.checkpoint;
  return text;
}

Result<TlogProof> parse_tlog_proof(std::string_view text) {
  if (text.size() > kMaxNoteBytes + 64 * 1024)
    return fail("the tlog-proof is ", str(text.size()), " bytes, too large to be one");
  std::string_view rest = text;
  const auto header = next_line(rest);
  if (!header || *header != kTlogProofHeader)
    return fail("not a tlog-proof: the first line is not \"", std::string(kTlogProofHeader), "\"");
  TlogProof proof;
  auto line = next_line(rest);
  if (line && line->starts_with("extra ")) {
    auto extra = base64_decode(line->substr(6));
    if (!extra) return wrap(extra.error(), "malformed tlog-proof: the extra line: ");
    proof.extra = std::move(*extra);
    line = next_line(rest);
  }
  if (!line || !line->starts_with("index "))
    return fail("malformed tlog-proof: no \"index N\" line after the header");
  const std::string_view index = line->substr(6);
  if (index.empty() || index.size() > 20 || (index.size() > 1 && index[0] == '0') ||
      index.find_first_not_of("0123456789") != std::string_view::npos)
    return fail("malformed tlog-proof: the index \"", std::string(index.substr(0, 40)),
                "\" is not a decimal without leading zeros");
  for (const char c : index) {
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (proof.index > (UINT64_MAX - digit) / 10)
      return fail("malformed tlog-proof: the index does not fit 64 bits");
    proof.index = proof.index * 10 + digit;
  }
  for (;;) {
    line = next_line(rest);
    if (!line) return fail("malformed tlog-proof: no blank line before the checkpoint");
    if (line->empty()) break;
    if (proof.path.size() == kMaxProofHashes)
      return fail("malformed tlog-proof: more than ", str(kMaxProofHashes), " proof hashes");
    auto hash = parse_hash_base64(*line);
    if (!hash)
      return wrap(hash.error(), "malformed tlog-proof: proof line ", str(proof.path.size() + 1),
                  ": ");
    proof.path.push_back(*hash);
  }
  if (rest.empty()) return fail("malformed tlog-proof: the checkpoint is missing");
  proof.checkpoint = std::string(rest);
  return proof;
}

Result<std::string> make_tlog_proof(const Log& log, uint64_t index,
                                    std::optional<std::string> checkpoint_note,
                                    std::optional<std::string> extra) {
  if (!checkpoint_note) checkpoint_note = log.latest_checkpoint();
  if (!checkpoint_note)
    return fail("no checkpoint to prove entry ", str(index),
                " against: the log has not issued one yet");
  auto checkpoint = open_checkpoint(*checkpoint_note, log.verifier(), log.origin());
  if (!checkpoint)
    return fail("the checkpoint to prove against is not one of this log: ",
                checkpoint.error().message);
  if (index >= checkpoint->size)
    return fail("entry ", str(index), " is not in the checkpoint of ", str(checkpoint->size),
                " entries; prove it against a later checkpoint");
  DW_TRY(root, log.root_at(checkpoint->size));
  if (root != checkpoint->root)
    return fail("the log's tree of ", str(checkpoint->size),
                " entries does not have the checkpoint's root; verify the log");
  DW_TRY(path, log.inclusion_proof(index, checkpoint->size));
  return format_tlog_proof(TlogProof{std::move(extra), index, std::move(path), *checkpoint_note});
}

Result<std::string> make_tlog_proof_from_tiles(const ResourceReader& reader, uint64_t index,
                                               std::string_view checkpoint_note,
                                               const NoteVerifier& verifier,
                                               std::string_view origin) {
  auto checkpoint = open_checkpoint(checkpoint_note, verifier, origin);
  if (!checkpoint)
    return fail("the checkpoint to prove against does not verify with ", verifier.vkey(), ": ",
                checkpoint.error().message);
  if (index >= checkpoint->size)
    return fail("entry ", str(index), " is not in the checkpoint of ", str(checkpoint->size),
                " entries");
  TileHashSource tiles(reader, checkpoint->size);
  DW_TRY(root, tree_hash(tiles, checkpoint->size));
  if (root != checkpoint->root)
    return fail("the hash tiles of the tree of ", str(checkpoint->size),
                " entries do not give the checkpoint's root; verify the log");
  DW_TRY(path, inclusion_proof(tiles, index, checkpoint->size));
  return format_tlog_proof(
      TlogProof{std::nullopt, index, std::move(path), std::string(checkpoint_note)});
}

Result<VerifiedProof> verify_tlog_proof(std::string_view proof_text, std::string_view entry,
                                        const NoteVerifier& verifier, std::string_view origin) {
  DW_TRY(proof, parse_tlog_proof(proof_text));
  auto checkpoint = open_checkpoint(proof.checkpoint, verifier, origin);
  if (!checkpoint)
    return fail("the proof's checkpoint does not verify with ", verifier.vkey(), ": ",
                checkpoint.error().message);
  if (auto ok = verify_inclusion(proof.index, checkpoint->size, leaf_hash(entry), proof.path,
                                 checkpoint->root);
      !ok)
    return wrap(ok.error(), "the entry is not at index ", str(proof.index),
                " of the checkpointed tree of ", str(checkpoint->size), ": ");
  return VerifiedProof{proof.index, *checkpoint};
}

}  // namespace driftwatch::evidence
