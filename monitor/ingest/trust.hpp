#pragma once
// The trust store: which keys may sign what (trust.json). A key listed in
// both roles is refused at load.

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"

namespace driftwatch::ingest {

enum class TrustRole { control_plane, operator_ };
std::string to_string(TrustRole role);

struct TrustedKey {
  std::string name;
  TrustRole role;
  std::string keyid;
  Ed25519PublicKey key;
};

/// Parses a role's name as trust.json spells it ("control_plane", "operator").
Result<TrustRole> parse_trust_role(std::string_view name);

/// `driftwatch trust add`: the text of trust file `existing` (nullopt: there
/// is none yet) with the public key `public_key_pem` added to `role` under
/// `name`. The result is what TrustStore::parse accepts, or an error saying
/// why not: not one Ed25519 public key PEM block (a private key included),
/// a name already used, the key already in either role, or an `existing`
/// text that does not load. Keys already there stay as they were, in order.
Result<std::string> add_trusted_key(const std::optional<std::string>& existing, TrustRole role,
                                    const std::string& name, const std::string& public_key_pem);

class TrustStore {
 public:
  /// An empty store: nothing can be accepted.
  TrustStore() = default;
  /// Parses trust.json text: {"control_plane": [{"name", "public_key_pem"}],
  /// "operator": [...]}. Unknown keys, wrong types, non-Ed25519 keys, a key
  /// in both roles, duplicate names: errors naming the entry. A role that
  /// is absent holds no keys.
  static Result<TrustStore> parse(std::string_view text, std::string_view what);
  /// Reads and parses a trust file. A missing file is an error here; the
  /// daemon decides whether to run on without trust (DESIGN.md: it does,
  /// with every sandbox unattested, and says so loudly).
  static Result<TrustStore> load(const std::filesystem::path& path);

  /// The key with this key id (lowercase hex SHA-256 of its DER SPKI), or null.
  const TrustedKey* find(std::string_view keyid) const;
  bool empty() const { return keys_.empty(); }
  size_t size() const { return keys_.size(); }
  /// How many keys hold `role` (for the startup log line).
  size_t count(TrustRole role) const;

 private:
  std::map<std::string, TrustedKey, std::less<>> keys_;  // by keyid
};

}  // namespace driftwatch::ingest
