#include "evidence/note.hpp"

#include <cstdio>
#include <optional>
#include <set>
#include <utility>

#include "common/sha256.hpp"

namespace driftwatch::evidence {
namespace {

constexpr std::string_view kSignaturePrefix = "\xe2\x80\x94 ";  // em dash, space

// Decodes one UTF-8 code point at `offset` (advancing it), nullopt when the
// bytes there are not well-formed UTF-8.
std::optional<char32_t> next_code_point(std::string_view text, size_t& offset) {
  const auto lead = static_cast<unsigned char>(text[offset]);
  size_t length = 0;
  char32_t code_point = 0;
  char32_t minimum = 0;
  if (lead < 0x80) {
    ++offset;
    return lead;
  } else if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, code_point = lead & 0x1F, minimum = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, code_point = lead & 0x0F, minimum = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, code_point = lead & 0x07, minimum = 0x10000;
  } else {
    return std::nullopt;
  }
  if (text.size() - offset < length) return std::nullopt;
  for (size_t i = 1; i < length; ++i) {
    const auto next = static_cast<unsigned char>(text[offset + i]);
    if ((next & 0xC0) != 0x80) return std::nullopt;
    code_point = (code_point << 6) | (next & 0x3F);
  }
  if (code_point < minimum || code_point > 0x10FFFF) return std::nullopt;
  if (code_point >= 0xD800 && code_point <= 0xDFFF) return std::nullopt;
  offset += length;
  return code_point;
}

// Go's unicode.IsSpace: the Unicode White_Space property.
bool is_unicode_space(char32_t c) {
  switch (c) {
    case U'\t':
    case U'\n':
    case U'\v':
    case U'\f':
    case U'\r':
    case U' ':
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

// Valid UTF-8 with no control character but '\n'; the error names the byte.
Result<void> check_note_characters(std::string_view text) {
  size_t offset = 0;
  while (offset < text.size()) {
    const size_t at = offset;
    const auto c = next_code_point(text, offset);
    if (!c) return fail("byte ", std::to_string(at), " is not UTF-8");
    if (*c < 0x20 && *c != U'\n')
      return fail("byte ", std::to_string(at), " is a control character");
  }
  return {};
}

uint32_t read_be32(std::string_view bytes) {
  return (uint32_t{static_cast<unsigned char>(bytes[0])} << 24) |
         (uint32_t{static_cast<unsigned char>(bytes[1])} << 16) |
         (uint32_t{static_cast<unsigned char>(bytes[2])} << 8) |
         uint32_t{static_cast<unsigned char>(bytes[3])};
}

std::string be32(uint32_t value) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>(value >> (24 - 8 * i));
  return out;
}

std::string hex8(uint32_t value) {
  char text[9];
  std::snprintf(text, sizeof text, "%08x", static_cast<unsigned>(value));
  return text;
}

std::unexpected<NoteError> note_error(NoteFailure failure, std::string message) {
  return std::unexpected(NoteError{failure, std::move(message)});
}

}  // namespace

bool is_valid_key_name(std::string_view name) {
  if (name.empty()) return false;
  size_t offset = 0;
  while (offset < name.size()) {
    const auto c = next_code_point(name, offset);
    if (!c || *c == U'+' || is_unicode_space(*c)) return false;
  }
  return true;
}

uint32_t key_hash(std::string_view name, const Ed25519PublicKey& key) {
  std::string input(name);
  input.push_back('\n');
  input.push_back(kEd25519NoteType);
  input += key.raw();
  const Sha256Digest digest = sha256(input);
  return read_be32(std::string_view(reinterpret_cast<const char*>(digest.data()), 4));
}

std::string verifier_key(std::string_view name, const Ed25519PublicKey& key) {
  std::string type_and_key(1, kEd25519NoteType);
  type_and_key += key.raw();
  return std::string(name) + "+" + hex8(key_hash(name, key)) + "+" + base64_encode(type_and_key);
}

Result<NoteVerifier> NoteVerifier::parse(std::string_view vkey) {
  const auto bad = [&](std::string_view why) {
    return fail("verifier key \"", std::string(vkey.substr(0, 200)), "\" ", why,
                "; expected <name>+<8 hex digits>+<base64 key>");
  };
  while (!vkey.empty() && (vkey.back() == '\n' || vkey.back() == '\r')) vkey.remove_suffix(1);
  // The name and the key hash hold no '+'; the base64 key may (as Go's
  // note.NewVerifier splits it: at the first two).
  const size_t first = vkey.find('+');
  const size_t second = first == std::string_view::npos ? first : vkey.find('+', first + 1);
  if (second == std::string_view::npos) return bad("does not have three parts separated by '+'");
  const std::string_view name = vkey.substr(0, first);
  const std::string_view hash_text = vkey.substr(first + 1, second - first - 1);
  if (!is_valid_key_name(name)) return bad("has an invalid key name");
  if (hash_text.size() != 8 ||
      hash_text.find_first_not_of("0123456789abcdef") != std::string_view::npos)
    return bad("has a key hash that is not 8 lowercase hex digits");
  auto key_bytes = base64_decode(vkey.substr(second + 1));
  if (!key_bytes) return bad("has a key that is not base64: " + key_bytes.error().message);
  if (key_bytes->size() != 33 || (*key_bytes)[0] != kEd25519NoteType)
    return bad("is not an Ed25519 key (type 0x01 and 32 bytes)");
  auto key = Ed25519PublicKey::from_raw(std::string_view(*key_bytes).substr(1));
  if (!key) return bad("holds an unusable key: " + key.error().message);
  auto verifier = make(std::string(name), *key);
  if (!verifier) return std::unexpected(verifier.error());
  if (hex8(verifier->key_hash()) != hash_text)
    return bad("has key hash " + std::string(hash_text) + " but its name and key hash to " +
               hex8(verifier->key_hash()));
  return verifier;
}

Result<NoteVerifier> NoteVerifier::make(std::string name, Ed25519PublicKey key) {
  if (!is_valid_key_name(name))
    return fail("\"", name, "\" is not a signed-note key name (non-empty UTF-8, no '+' or spaces)");
  NoteVerifier verifier;
  verifier.hash_ = evidence::key_hash(name, key);
  verifier.name_ = std::move(name);
  verifier.key_ = std::move(key);
  return verifier;
}

Result<NoteSigner> NoteSigner::make(std::string name, Ed25519PrivateKey key) {
  if (!is_valid_key_name(name))
    return fail("\"", name, "\" is not a signed-note key name (non-empty UTF-8, no '+' or spaces)");
  NoteSigner signer;
  signer.name_ = std::move(name);
  signer.key_ = std::move(key);
  return signer;
}

NoteVerifier NoteSigner::verifier() const {
  // The name was checked by make().
  return *NoteVerifier::make(name_, key_.public_key());
}

Result<std::string> NoteSigner::sign(std::string_view text) const {
  if (text.empty() || text.back() != '\n') return fail("a note text must end in a newline");
  if (auto ok = check_note_characters(text); !ok) return wrap(ok.error(), "note text: ");
  const std::string signature =
      be32(evidence::key_hash(name_, key_.public_key())) + key_.sign(text);
  std::string note(text);
  note += '\n';
  note += kSignaturePrefix;
  note += name_;
  note += ' ';
  note += base64_encode(signature);
  note += '\n';
  return note;
}

Result<Note> parse_note(std::string_view message) {
  if (message.size() > kMaxNoteBytes)
    return fail("the note is ", std::to_string(message.size()), " bytes, more than the ",
                std::to_string(kMaxNoteBytes), " accepted");
  if (auto ok = check_note_characters(message); !ok) return wrap(ok.error(), "malformed note: ");
  const size_t split = message.rfind("\n\n");
  if (split == std::string_view::npos)
    return fail("malformed note: no blank line before the signatures");
  Note note;
  note.text = std::string(message.substr(0, split + 1));
  std::string_view signatures = message.substr(split + 2);
  if (signatures.empty() || signatures.back() != '\n')
    return fail("malformed note: the signature block is empty or does not end in a newline");
  while (!signatures.empty()) {
    const size_t newline = signatures.find('\n');
    std::string_view line = signatures.substr(0, newline);
    signatures.remove_prefix(newline + 1);
    const std::string number = std::to_string(note.signatures.size() + 1);
    if (note.signatures.size() == kMaxNoteSignatures)
      return fail("malformed note: more than ", std::to_string(kMaxNoteSignatures), " signatures");
    if (!line.starts_with(kSignaturePrefix))
      return fail("malformed note: signature line ", number, " does not start with \"— \"");
    line.remove_prefix(kSignaturePrefix.size());
    const size_t space = line.find(' ');
    if (space == std::string_view::npos)
      return fail("malformed note: signature line ", number, " has no signature after the name");
    const std::string_view name = line.substr(0, space);
    const std::string_view encoded = line.substr(space + 1);
    if (!is_valid_key_name(name))
      return fail("malformed note: signature line ", number, " has an invalid key name");
    auto bytes = base64_decode(encoded);
    if (!bytes || bytes->size() < 5)
      return fail("malformed note: signature line ", number,
                  " does not hold base64 of a key hash and a signature");
    note.signatures.push_back(
        NoteSignature{std::string(name), read_be32(*bytes), bytes->substr(4)});
  }
  return note;
}

std::string to_string(NoteFailure failure) {
  switch (failure) {
    case NoteFailure::kMalformed:
      return "malformed";
    case NoteFailure::kUnknownKey:
      return "unknown_key";
    case NoteFailure::kBadSignature:
      return "bad_signature";
  }
  return "unknown";
}

std::expected<Note, NoteError> open_note(std::string_view message,
                                         std::span<const NoteVerifier> known) {
  auto note = parse_note(message);
  if (!note) return note_error(NoteFailure::kMalformed, note.error().message);
  Note verified;
  verified.text = note->text;
  std::set<std::pair<std::string, uint32_t>> seen;
  for (const auto& signature : note->signatures) {
    const NoteVerifier* verifier = nullptr;
    for (const auto& candidate : known)
      if (candidate.name() == signature.name && candidate.key_hash() == signature.key_hash)
        verifier = &candidate;
    if (verifier == nullptr) continue;  // unknown keys are ignored (signed-note)
    if (!seen.insert({signature.name, signature.key_hash}).second) continue;
    if (!verifier->verify(verified.text, signature.signature))
      return note_error(NoteFailure::kBadSignature,
                        "the signature by " + signature.name + "+" + hex8(signature.key_hash) +
                            " does not verify: the note was changed or forged");
    verified.signatures.push_back(signature);
  }
  if (verified.signatures.empty()) {
    std::string keys;
    for (const auto& candidate : known)
      keys += (keys.empty() ? "" : ", ") + candidate.name() + "+" + hex8(candidate.key_hash());
    std::string present;
    for (const auto& signature : note->signatures)
      present += (present.empty() ? "" : ", ") + signature.name + "+" + hex8(signature.key_hash);
    return note_error(NoteFailure::kUnknownKey,
                      "the note has no signature by " + (keys.empty() ? "any known key" : keys) +
                          " (it is signed by " + present + "); is this the right verifier key?");
  }
  return verified;
}

std::string checkpoint_origin(std::string_view node_name) {
  return "driftwatch/" + std::string(node_name);
}

std::string format_checkpoint(const Checkpoint& checkpoint) {
  std::string text = checkpoint.origin + "\n" + std::to_string(checkpoint.size) + "\n" +
                     hash_base64(checkpoint.root) + "\n";
  for (const auto& line : checkpoint.extensions) text += line + "\n";
  return text;
}

Result<Checkpoint> parse_checkpoint(std::string_view text) {
  if (text.empty() || text.back() != '\n')
    return fail("malformed checkpoint: the text does not end in a newline");
  std::vector<std::string_view> lines;
  for (std::string_view rest = text.substr(0, text.size() - 1);;) {
    const size_t newline = rest.find('\n');
    lines.push_back(rest.substr(0, newline));
    if (newline == std::string_view::npos) break;
    rest.remove_prefix(newline + 1);
  }
  if (lines.size() < 3) return fail("malformed checkpoint: fewer than three lines");
  for (size_t i = 0; i < lines.size(); ++i)
    if (lines[i].empty())
      return fail("malformed checkpoint: line ", std::to_string(i + 1), " is empty");
  if (auto ok = check_note_characters(text); !ok) return wrap(ok.error(), "malformed checkpoint: ");
  Checkpoint checkpoint;
  checkpoint.origin = std::string(lines[0]);
  const std::string_view size = lines[1];
  if (size.size() > 20 || (size.size() > 1 && size[0] == '0') ||
      size.find_first_not_of("0123456789") != std::string_view::npos)
    return fail("malformed checkpoint: the tree size \"", std::string(size.substr(0, 40)),
                "\" is not a decimal without leading zeros");
  uint64_t value = 0;
  for (const char c : size) {
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10)
      return fail("malformed checkpoint: the tree size does not fit 64 bits");
    value = value * 10 + digit;
  }
  checkpoint.size = value;
  auto root = parse_hash_base64(lines[2]);
  if (!root) return wrap(root.error(), "malformed checkpoint: the root hash: ");
  checkpoint.root = *root;
  for (size_t i = 3; i < lines.size(); ++i) checkpoint.extensions.emplace_back(lines[i]);
  return checkpoint;
}

std::expected<Checkpoint, NoteError> open_checkpoint(std::string_view message,
                                                     const NoteVerifier& verifier,
                                                     std::string_view origin) {
  auto note = open_note(message, std::span<const NoteVerifier>(&verifier, 1));
  if (!note) return std::unexpected(note.error());
  auto checkpoint = parse_checkpoint(note->text);
  if (!checkpoint) return note_error(NoteFailure::kMalformed, checkpoint.error().message);
  if (!origin.empty() && checkpoint->origin != origin)
    return note_error(NoteFailure::kUnknownKey, "the checkpoint is for log \"" +
                                                    checkpoint->origin + "\", not \"" +
                                                    std::string(origin) + "\"");
  return *checkpoint;
}

}  // namespace driftwatch::evidence
