#pragma once
// C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, and the
// checkpoint body they carry (c2sp.org/tlog-checkpoint), as Go's
// golang.org/x/mod/sumdb/note reads and writes them:
//
//   driftwatch/node-1                      <- origin
//   1000                                   <- tree size
//   CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=   <- base64 root hash
//                                          <- blank line
//   — driftwatch/node-1 Az3grlgt...        <- base64(key hash[4] || signature)
//
// Key hash: the first 4 bytes of SHA-256(name || "\n" || 0x01 || 32-byte
// key), big-endian. Verifier key: `<name>+<hex8 key hash>+<base64(0x01 ||
// key)>`.

#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "evidence/merkle.hpp"

namespace driftwatch::evidence {

/// The signed-note signature type of Ed25519.
inline constexpr char kEd25519NoteType = 0x01;
/// Notes larger than this are refused before they are looked at.
inline constexpr size_t kMaxNoteBytes = 1 << 20;
/// Go's limit: a note with more signature lines is malformed.
inline constexpr size_t kMaxNoteSignatures = 100;

/// A valid key name: non-empty UTF-8, no '+', no Unicode white space.
bool is_valid_key_name(std::string_view name);
/// SHA-256(name || "\n" || 0x01 || key)[:4], big-endian.
uint32_t key_hash(std::string_view name, const Ed25519PublicKey& key);
/// `<name>+<hex8 key hash>+<base64(0x01 || key)>`.
std::string verifier_key(std::string_view name, const Ed25519PublicKey& key);

/// Checks note signatures by one Ed25519 key.
class NoteVerifier {
 public:
  /// From a verifier key string; refuses another signature type, a key hash
  /// that does not match the name and key, and anything malformed.
  static Result<NoteVerifier> parse(std::string_view vkey);
  static Result<NoteVerifier> make(std::string name, Ed25519PublicKey key);

  const std::string& name() const { return name_; }
  uint32_t key_hash() const { return hash_; }
  std::string vkey() const { return verifier_key(name_, key_); }
  bool verify(std::string_view text, std::string_view signature) const {
    return key_.verify(text, signature);
  }

 private:
  std::string name_;
  uint32_t hash_ = 0;
  Ed25519PublicKey key_;
};

/// Signs notes with one Ed25519 key.
class NoteSigner {
 public:
  static Result<NoteSigner> make(std::string name, Ed25519PrivateKey key);

  const std::string& name() const { return name_; }
  NoteVerifier verifier() const;
  std::string vkey() const { return verifier_key(name_, key_.public_key()); }
  /// The signed note: `text` (which must end in a newline and hold no
  /// control characters but newlines), a blank line, one signature line.
  Result<std::string> sign(std::string_view text) const;

 private:
  std::string name_;
  Ed25519PrivateKey key_;
};

struct NoteSignature {
  std::string name;
  uint32_t key_hash = 0;
  std::string signature;  // the bytes after the key hash
};

/// A note split into its text and signature lines, nothing verified.
struct Note {
  std::string text;  // includes its final newline
  std::vector<NoteSignature> signatures;
};

/// Splits a signed note strictly (Go's note.Open rules): valid UTF-8, no
/// control characters but newline, the text and the signature block
/// separated by the last blank line, each signature line `— <name>
/// <base64>` with a valid name and at least 5 bytes, at most 100 of them.
Result<Note> parse_note(std::string_view message);

enum class NoteFailure {
  kMalformed,     // not a signed note
  kUnknownKey,    // no signature by a key we know (a wrong --key)
  kBadSignature,  // a signature by a known key does not verify (forgery)
};
std::string to_string(NoteFailure failure);

struct NoteError {
  NoteFailure failure;
  std::string message;
};

/// parse_note, then checks: signatures by unknown keys are ignored (the
/// spec requires it); every signature whose name and key hash match a known
/// key must verify; at least one must. Returns the note with the verified
/// signatures only.
std::expected<Note, NoteError> open_note(std::string_view message,
                                         std::span<const NoteVerifier> known);

/// A tlog-checkpoint note body.
struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  Hash root{};
  std::vector<std::string> extensions;  // opaque, non-empty lines

  bool operator==(const Checkpoint&) const = default;
};

/// The origin line of a node's log: `driftwatch/<node_name>`.
std::string checkpoint_origin(std::string_view node_name);
/// origin, size, base64 root, extension lines, each ending in a newline.
std::string format_checkpoint(const Checkpoint& checkpoint);
/// The inverse, strict: three or more non-empty lines, a decimal size with
/// no leading zero, a base64 hash of 32 bytes.
Result<Checkpoint> parse_checkpoint(std::string_view text);

/// A checkpoint note opened with `verifier` whose origin is `origin` (when
/// given). The error says what failed and, for a note, which way.
std::expected<Checkpoint, NoteError> open_checkpoint(std::string_view message,
                                                     const NoteVerifier& verifier,
                                                     std::string_view origin = {});

}  // namespace driftwatch::evidence
